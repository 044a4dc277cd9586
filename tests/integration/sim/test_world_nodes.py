"""The world with simulated nodes (``WorldConfig.nodes``): blue's pool has Machines and Ready Nodes that run pods."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from bluegreen.sim import capi, eksa, machines, nodes, workloads_ctl, world
from tests.fixtures.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.nodepools]





def blue_machines(started: world.World) -> list[dict[str, Any]]:
    if started.config.provider == "eksa":
        return started.management.list(machines.machine_resource(eksa.MACHINE_API_VERSION), "eksa-system")
    return started.management.list(machines.machine_resource(started.config.capi_version), "fleet")


@pytest.mark.parametrize("provider", ["capi", "eksa"])
@pytest.mark.parametrize("count", [3, 0])
async def test_world_nodes(tmp_path: pathlib.Path, provider: str, count: int) -> None:
    blue_version = "1.30" if provider == "eksa" else "v1.30.4"
    config = world.WorldConfig(provider=provider, blue_version=blue_version, nodes=count, prometheus=False,
                               provision_delay=0.2, rate=5.0)
    started = world.World(config, state_dir=tmp_path / "world")
    await started.start()
    try:
        blue = started.lifecycle.clusters["prod-blue"]
        info = started.info()
        found = blue_machines(started)
        if count == 0:
            assert info["nodes"] is False and "node_pool" not in info
            assert found == [] and blue.list("v1/nodes") == []
            assert workloads_ctl._attached[id(blue)].emulator is blue
            assert id(blue) not in nodes._attached
            return
        assert info["nodes"] is True and info["node_pool"] == {"name": "md-0", "replicas": count}
        assert len(found) == count and all(m["status"]["phase"] == "Running" for m in found)
        ready = [node for node in blue.list("v1/nodes", label_selector="bluegreen.io/pool=md-0")
                 if nodes.node_ready(node)]
        assert sorted(node["metadata"]["name"] for node in ready) == sorted(m["metadata"]["name"] for m in found)
        assert id(blue) not in workloads_ctl._attached
        # The nodes run pods: a Deployment's replicas are scheduled onto them and turn Ready.
        blue.create("apps/v1/deployments", {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
        await eventually(lambda: sum((p.get("status") or {}).get("phase") == "Running"
                                     for p in blue.list("v1/pods", "default")) == 2, what="2 pods running")
        assert {p["spec"]["nodeName"] for p in blue.list("v1/pods", "default")} <= {n["metadata"]["name"]
                                                                                     for n in ready}
        cluster = (started.management.get(eksa.cluster_resource(), "fleet", "prod-blue") if provider == "eksa"
                   else started.management.get(capi.cluster_resource(config.capi_version), "fleet", "prod-blue"))
        assert cluster is not None
        pools = eksa.worker_pools(cluster) if provider == "eksa" else capi.worker_pools(cluster)
        assert [(pool.name, pool.replicas) for pool in pools] == [("md-0", count)]
    finally:
        await started.stop()
