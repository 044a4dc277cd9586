"""A fleet of clusters for the benchmarks: many blue clusters on one management emulator, and cheap routers.

The same simulated controllers as the test world (``sim.world``), without what costs per cluster there:

* one management :class:`~bluegreen.sim.kube.KubeEmulator`, with Cluster API's and Flux's controllers
  (:class:`~bluegreen.sim.capi.CapiController`, :class:`~bluegreen.sim.flux.FluxController`): each
  cluster is its own emulated API server, started when the Cluster is provisioned, and Flux really applies
  to it over HTTP;
* one GitRepository whose artifact is served (``sim.artifacts``), so preflight's source scan downloads it;
* no HAProxy, no Prometheus, no load: the routers are a :class:`~bluegreen.sim.weight_receiver.WeightReceiver`
  (a webhook router's receiver), one HTTP server for all upgrades (each POST names its upgrade).

``POST /seed {"count": N}`` on the control API adds N blue clusters ``u0000-blue`` ... (a ClusterClass
topology Cluster, its kubeconfig, one Kustomization ``apps-<blue>`` labelled ``bluegreen.io/cluster=<blue>``)
and answers once every one is provisioned and its Kustomization Ready. ``GET /usage`` answers how many
requests each client (by User-Agent product) made to the management emulator and to the clusters' emulators,
and ``GET /weights`` what every upgrade's router was sent.

Run with ``python -m bluegreen.sim.fleet --state-dir DIR``: it writes ``DIR/management.kubeconfig`` and
``DIR/fleet.json`` and prints ``ready``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import logging
import pathlib
import sys
import time
from typing import Any

import yaml
from aiohttp import web

from bluegreen.sim import artifacts, capi, cli, flux
from bluegreen.sim.kube import KubeEmulator
from bluegreen.sim.weight_receiver import WeightReceiver

SOURCE = "fleet-infra"
KUSTOMIZATION_PATH = "apps"
CLUSTER_LABEL = "bluegreen.io/cluster"
_SETTINGS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: apps-settings
data:
  tier: fleet
"""


@dataclasses.dataclass(frozen=True)
class FleetConfig:
    namespace: str = "fleet"
    blue_version: str = "v1.30.4"
    capi_version: str = "v1beta2"
    provision_delay: float = 1.0
    flux_delay: float = 0.1
    delete_delay: float = 0.1
    revision: str = "main@sha1:4f6d0a1c9e2b7d3f8a5c6e1b0d9f2a3c4b5e6d7f"


def blue_name(index: int) -> str:
    return f"u{index:04d}-blue"


class Fleet:
    def __init__(self, config: FleetConfig, *, state_dir: pathlib.Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self.management = KubeEmulator(name="management", kubernetes_version="1.31")
        self.capi = capi.CapiController(management=self.management, api_version=config.capi_version,
                                        provision_delay=config.provision_delay, delete_delay=config.delete_delay,
                                        on_ready=self._cluster_ready)
        self.flux = flux.FluxController(management=self.management, clusters=self.capi, delay=config.flux_delay)
        self.artifacts = artifacts.ArtifactServer()
        self.weights = WeightReceiver()
        self.seeded = 0
        # Every cluster's emulator that ever ran: a deleted cluster's requests still count.
        self._emulators: list[KubeEmulator] = []
        self._control: web.AppRunner | None = None
        self.control_url = ""

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self.management.start()
        flux.install(self.management)
        capi.install(self.management, api_version=self.config.capi_version)
        self.management.create("v1/namespaces", {"metadata": {"name": self.config.namespace}})
        await self.artifacts.start()
        tree = self.state_dir / "sources" / SOURCE
        artifacts.write_tree(tree, {f"{KUSTOMIZATION_PATH}/settings.yaml": _SETTINGS})
        flux.seed_source(self.management, namespace=self.config.namespace, name=SOURCE, revision=self.config.revision)
        artifacts.publish_source(self.management, self.artifacts, namespace=self.config.namespace, name=SOURCE,
                                 directory=tree, revision=self.config.revision)
        await self.capi.start()
        await self.flux.start()
        await self.weights.start()
        await self._start_control()
        (self.state_dir / "management.kubeconfig").write_text(yaml.safe_dump(self.management.kubeconfig()))
        (self.state_dir / "fleet.json").write_text(json.dumps(self.info(), indent=2))

    async def stop(self) -> None:
        if self._control is not None:
            await self._control.cleanup()
        await self.flux.stop()
        await self.capi.stop()
        await self.weights.stop()
        await self.artifacts.stop()
        await self.management.stop()

    def info(self) -> dict[str, Any]:
        return {
            "management_url": self.management.url,
            "management_kubeconfig": str(self.state_dir / "management.kubeconfig"),
            "control_url": self.control_url,
            "namespace": self.config.namespace,
            "weights_url": self.weights.url,
        }

    async def seed(self, count: int) -> list[str]:
        """Add ``count`` blue clusters; returns their names once all are provisioned and synced."""
        namespace = self.config.namespace
        names = [blue_name(index) for index in range(self.seeded, self.seeded + count)]
        self.seeded += count
        for name in names:
            capi.seed_cluster(self.management, namespace=namespace, name=name, version=self.config.blue_version,
                              api_version=self.config.capi_version)
            flux.seed_kustomization(self.management, namespace=namespace, name=f"apps-{name}", source=SOURCE,
                                    path=f"./{KUSTOMIZATION_PATH}", cluster=name, labels={CLUSTER_LABEL: name})
        watch: Any = self.management.watch(flux.KUSTOMIZATIONS)  # first: no Ready in between is missed
        try:
            await asyncio.gather(*(self.capi.wait_ready(namespace, name) for name in names))
            pending = {f"apps-{name}" for name in names}
            pending -= {name for name in pending
                        if _ready(self.management.get(flux.KUSTOMIZATIONS, namespace, name))}
            async for _, kustomization in watch:
                if not pending:
                    break
                if _ready(kustomization):
                    pending.discard(kustomization["metadata"]["name"])
                    if not pending:
                        break
        finally:
            await watch.aclose()
        return names

    def usage(self) -> dict[str, dict[str, int]]:
        """Requests per User-Agent product: on the management emulator, and on all the clusters' emulators; and
        per call (``"<where> <agent> <verb> <group/resource>"``)."""
        totals: dict[str, collections.Counter[str]] = {"management": collections.Counter(),
                                                        "clusters": collections.Counter(),
                                                        "calls": collections.Counter()}
        for where, emulators in (("management", [self.management]), ("clusters", self._emulators)):
            for emulator in emulators:
                for (agent, verb, group, resource), count in emulator.usage.items():
                    totals[where][agent] += count
                    totals["calls"][f"{where} {agent} {verb} {group or 'core'}/{resource}"] += count
        return {where: dict(counter) for where, counter in totals.items()}

    def _cluster_ready(self, name: str, emulator: KubeEmulator) -> None:
        self._emulators.append(emulator)

    # --- control API -------------------------------------------------------------------------

    async def _start_control(self) -> None:
        app = web.Application()
        app.router.add_post("/seed", self._seed)
        app.router.add_get("/usage", self._usage)
        app.router.add_get("/weights", self._weights)
        self._control = web.AppRunner(app, access_log=None)
        await self._control.setup()
        site = web.TCPSite(self._control, "127.0.0.1", 0)
        await site.start()
        port = self._control.addresses[0][1]
        self.control_url = f"http://127.0.0.1:{port}"

    async def _seed(self, request: web.Request) -> web.Response:
        body = await request.json()
        started = time.monotonic()
        names = await self.seed(int(body["count"]))
        return web.json_response({"blue": names, "seconds": round(time.monotonic() - started, 3)})

    async def _usage(self, request: web.Request) -> web.Response:
        return web.json_response(self.usage())

    async def _weights(self, request: web.Request) -> web.Response:
        posts: dict[str, list[Any]] = collections.defaultdict(list)
        for post in self.weights.posts:
            posts[str((post.get("upgrade") or {}).get("name", ""))].append(post)
        return web.json_response(posts)


def _ready(kustomization: dict[str, Any] | None) -> bool:
    conditions = ((kustomization or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def serve(config: FleetConfig, *, state_dir: pathlib.Path) -> None:
    fleet = Fleet(config, state_dir=state_dir)
    try:
        await fleet.start()
        print("ready", flush=True)
        await asyncio.Event().wait()
    finally:
        await fleet.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bluegreen.sim.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = FleetConfig()
    parser.add_argument("--state-dir", type=pathlib.Path, required=True)
    parser.add_argument("--provision-delay", type=float, default=defaults.provision_delay)
    parser.add_argument("--flux-delay", type=float, default=defaults.flux_delay)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = FleetConfig(provision_delay=args.provision_delay, flux_delay=args.flux_delay)
    return cli.until_signalled(serve(config, state_dir=args.state_dir))


if __name__ == "__main__":
    sys.exit(main())
