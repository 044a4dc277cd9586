"""A whole blue/green upgrade on real clusters: CAPD's blue at 1.30 replaced by a green at 1.31.

The router is the webhook router aimed at a receiver in this test process. Any other router needs
something in front of both clusters that a kind setup does not have by itself: HAProxy or Gateway API
would have to reach the CAPD clusters' ingress from one place and be installed and fed in each, and the
AWS routers need AWS. The webhook receiver records every weight the operator sets and answers its reads,
so the test sees the traffic steps as a load balancer would, while the clusters, Cluster API's clone of
blue, Flux's copy of blue's workloads and the retirement of blue are all real. The operator runs as a
process on the runner (as `kopf run` does in its Deployment), against the management cluster's kubeconfig.
"""

from __future__ import annotations

import json
import pathlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from pytest_kind import KindCluster  # type: ignore[import-untyped]

from bluegreen.sim import harness
from tests.e2e.conftest import BLUE_CLUSTER, NAMESPACE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(7200)]

GREEN_CLUSTER = f"{BLUE_CLUSTER}-green"
UPGRADE = "e2e-to-1-31"
# Provisioning a CAPD cluster (pull, control plane, CNI, a worker) takes minutes; blue's retirement too.
UPGRADE_DEADLINE = 5400.0
POLL = 10.0


class Receiver:
    """A load balancer's adapter for the webhook router: it keeps the weights it is sent and shows them."""

    def __init__(self) -> None:
        self.weights = {"blue": 100, "green": 0}
        self.finalized = False
        self.posts: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with receiver._lock:
                    self._reply({**receiver.weights, "finalized": receiver.finalized})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                with receiver._lock:
                    receiver.posts.append(body)
                    receiver.weights = {"blue": int(body["blue"]), "green": int(body["green"])}
                    receiver.finalized = bool(body.get("finalize"))
                self._reply({"changeId": str(len(receiver.posts))})

            def _reply(self, document: dict[str, Any]) -> None:
                data = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/weights"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    thread = threading.Thread(target=started.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield started
    finally:
        started.server.shutdown()
        started.server.server_close()


def get(management: KindCluster, *args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(management.kubectl("get", *args, "-o", "json"))
    return document


def upgrade_manifest(receiver_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "bluegreen.io/v1alpha1",
        "kind": "ClusterUpgrade",
        "metadata": {"name": UPGRADE, "namespace": NAMESPACE},
        "spec": {
            "strategy": "BlueGreen",
            "cluster": {"provider": "capi", "name": BLUE_CLUSTER, "namespace": NAMESPACE},
            "target": {"kubernetesVersion": "1.31", "greenName": GREEN_CLUSTER, "readyTimeout": "45m"},
            "workloads": {
                "flux": {"mode": "remote", "selector": {"matchLabels": {"bluegreen.io/cluster": BLUE_CLUSTER}}},
                "requireSameRevision": True,
                "timeout": "15m",
            },
            "traffic": {
                "routers": [{"name": "lb", "webhook": {"url": receiver_url, "readURL": receiver_url}}],
                "steps": [{"setWeight": 50}, {"pause": {"duration": "10s"}}, {"setWeight": 100}],
            },
            "promotion": {"retainBlueFor": "10s", "blueDeletionPolicy": "Delete"},
        },
    }


def wait_for_phase(management: KindCluster, wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + UPGRADE_DEADLINE
    upgrade: dict[str, Any] = {}
    while time.monotonic() < deadline:
        upgrade = get(management, "clusterupgrade", UPGRADE, "-n", NAMESPACE)
        phase = (upgrade.get("status") or {}).get("phase")
        if phase == wanted:
            return upgrade
        assert phase not in {"Failed", "RolledBack", "Blocked"}, yaml.safe_dump(upgrade.get("status"))
        time.sleep(POLL)
    pytest.fail(f"{UPGRADE} not {wanted} in {UPGRADE_DEADLINE:.0f} s; status:\n{yaml.safe_dump(upgrade.get('status'))}")


def test_blue_green_upgrade_of_a_capd_cluster_completes(
    management: KindCluster, receiver: Receiver, tmp_path: pathlib.Path
) -> None:
    blue = get(management, "cluster", BLUE_CLUSTER, "-n", NAMESPACE)
    assert blue["spec"]["topology"]["version"].startswith("v1.30.")
    manifest = tmp_path / "upgrade.yaml"
    manifest.write_text(yaml.safe_dump(upgrade_manifest(receiver.url)))
    operator = harness.start_operator(management.kubeconfig_path, log_path=tmp_path / "operator.log")
    try:
        management.kubectl("apply", "-f", str(manifest))
        upgrade = wait_for_phase(management, "Completed")
    finally:
        operator.stop()
        print(operator.log()[-20000:])

    # Traffic went to green in the steps asked for, and blue was then retired at the load balancer.
    shifts = [(post["blue"], post["green"]) for post in receiver.posts if not post.get("finalize")]
    assert shifts[-2:] == [(50, 50), (0, 100)]
    finals = [post for post in receiver.posts if post.get("finalize")]
    assert [(post["retired"], post["blue"], post["green"]) for post in finals] == [("blue", 0, 100)]
    assert receiver.weights == {"blue": 0, "green": 100}

    # Green is a real cluster at the target, built from blue's ClusterClass, and serves blue's workloads.
    green = get(management, "cluster", GREEN_CLUSTER, "-n", NAMESPACE)
    assert green["spec"]["topology"]["version"].startswith("v1.31.")
    assert green["spec"]["topology"]["class"] == blue["spec"]["topology"]["class"]
    ready = {c["type"]: c["status"] for c in green["status"]["conditions"]}
    assert ready.get("Ready") == "True"
    kustomizations = get(management, "kustomizations.kustomize.toolkit.fluxcd.io", "-n", NAMESPACE,
                         "-l", f"bluegreen.io/cluster={GREEN_CLUSTER}")["items"]
    assert kustomizations, "no Flux Kustomization deploys to green"
    for kustomization in kustomizations:
        assert kustomization["spec"]["kubeConfig"]["secretRef"]["name"] == f"{GREEN_CLUSTER}-kubeconfig"
        conditions = {c["type"]: c["status"] for c in kustomization["status"]["conditions"]}
        assert conditions.get("Ready") == "True"

    # Blue is gone (blueDeletionPolicy: Delete) and the upgrade says where it ended.
    remaining = get(management, "clusters.cluster.x-k8s.io", "-n", NAMESPACE)["items"]
    assert BLUE_CLUSTER not in {cluster["metadata"]["name"] for cluster in remaining}
    assert upgrade["status"]["weights"]["green"] == 100
    assert upgrade["status"]["green"]["name"] == GREEN_CLUSTER
