"""The emulated world: everything around the operator, in one process.

What is emulated: the Kubernetes API servers (management and one per workload
cluster, strict emulators on kmock), Cluster API's and Flux's controllers
(they set the conditions those controllers set). What is real: HAProxy (the
Debian binary, started here on 127.0.0.1), the two HTTP backends standing for
blue's and green's ingress, and the requests a load generator sends through
HAProxy. The operator is not part of the world: it connects to the
management emulator through the kubeconfig written here, as to a real cluster.

The world starts with one blue Cluster API cluster (ClusterClass topology) in
namespace ``fleet``, its kubeconfig Secret, a GitRepository and two Flux
Kustomizations that deploy to blue through ``kubeConfig.secretRef``, and
HAProxy sending all traffic to blue. The GitRepository's artifact is really
served over HTTP (see ``sim.artifacts``), so preflight's source scan downloads
and reads it as it would source-controller's. A control API (HTTP, 127.0.0.1)
answers traffic summaries and flips faults for tests.

For analysis there is a real Prometheus too (the Debian binary), scraping
every second HAProxy's built-in exporter and each backend's own metrics.
HAProxy's servers are named after the clusters they point at (``prod-blue``,
``prod-green``), as they would be in front of real clusters, so a query's
``{{cluster}}`` placeholder selects one side: green's server is named after
the name the world expects green to get (``WorldConfig.green``, by default
the name the operator gives it). The control API also plays a webhook
receiver with a status to answer (``/gates/{name}``): a Flagger gate a test
opens and closes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import pathlib
import socket
import time
from collections.abc import Mapping
from typing import Any

import yaml
from aiohttp import web

from bluegreen.api.spec import default_green_name
from bluegreen.sim import (
    artifacts,
    backends,
    capi,
    eksa,
    flux,
    flux_incluster,
    gitserver,
    haproxy,
    jobs,
    load,
    node_lb,
    prometheus,
    prometheus_spares,
    workloads_ctl,
)
from bluegreen.sim.kube import KubeEmulator

GATE_CALLS_KEPT = 500
# What Prometheus scrapes, one target per job: HAProxy's exporter and each side's ingress.
SCRAPE_JOBS = (prometheus_spares.Job("haproxy"), prometheus_spares.Job("ingress-blue"),
               prometheus_spares.Job("ingress-green"))
# What each Kustomization's directory of the world's GitRepository holds (Flux's render is simulated apart).
_SETTINGS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}-settings
data:
  path: ./{name}
"""


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    provider: str = "capi"  # capi: Flux remote mode on the management cluster; eksa: Flux in each cluster, git mode
    namespace: str = "fleet"
    blue: str = "prod-blue"
    blue_version: str = "v1.30.4"
    capi_version: str = "v1beta2"
    endpoint_host: str = "10.20.30.40"  # eksa: blue's control-plane VIP
    git_secret: str = "fleet-environment-git"  # eksa: the Secret holding the repository's credentials
    flux_interval: float = 0.5  # eksa: how often each cluster's Flux fetches the repository
    provision_delay: float = 2.0
    flux_delay: float = 0.5
    revision: str = "main@sha1:4f6d0a1c9e2b7d3f8a5c6e1b0d9f2a3c4b5e6d7f"
    rate: float = 50.0
    load_duration: float = 900.0
    kustomizations: tuple[str, ...] = ("infra", "apps")
    green: str | None = None  # the name green is expected to get; default: the operator's default for blue
    prometheus: bool = True
    scrape_interval: str = "1s"
    # A Prometheus already running for this world (sim.prometheus_spares), described in this file: HAProxy's
    # exporter and the ingresses listen on the ports it scrapes, and the world does not wait for a new one.
    prometheus_spare: pathlib.Path | None = None
    # > 0: blue's worker pool (md-0) has this many machines, and every cluster simulates Machines, Nodes,
    # a scheduler and kubelets (sim.machines, sim.nodes) in place of sim.workloads_ctl's status-only replicas.
    nodes: int = 0

    @property
    def green_name(self) -> str:
        return self.green or default_green_name(self.blue)


@dataclasses.dataclass
class Gate:
    """A webhook receiver: answers with ``status`` and keeps what it was sent."""

    status: int = 200
    calls: collections.deque[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=GATE_CALLS_KEPT))


class World:
    def __init__(self, config: WorldConfig, *, state_dir: pathlib.Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self.management = KubeEmulator(name="management", kubernetes_version="1.31")
        self._spare = self._read_spare()
        ports = prometheus_spares.ports_by_job(self._spare) if self._spare is not None else {}
        self.blue_backend = backends.Backend(cluster=config.blue, port=ports.get("ingress-blue", 0),
                                             reuse_port=bool(ports))
        # Renamed when a green cluster comes up under another name than the expected one.
        self.green_backend = backends.Backend(cluster=config.green_name, port=ports.get("ingress-green", 0),
                                              reuse_port=bool(ports))
        self.haproxy = haproxy.HAProxyProcess(
            state_dir=state_dir / "haproxy",
            blue_address=self.blue_backend.address,
            green_address=self.green_backend.address,
            blue_server=config.blue,
            green_server=config.green_name,
            # With nodes, a backend of node slots that a load balancer controller fills with blue's Ready
            # nodes (sim.node_lb): what NodePools checks before it moves a pod.
            node_slots=max(16, 4 * config.nodes) if config.nodes else 0,
            stats_port=ports.get("haproxy", 0),
        )
        self.prometheus: prometheus.PrometheusServer | None = None
        self.gates: dict[str, Gate] = {}
        self.capi: capi.CapiController | None = None
        self.eksa: eksa.EksaController | None = None
        self.git: gitserver.GitServer | None = None
        self.artifacts: artifacts.ArtifactServer | None = None  # capi: source-controller's artifact storage
        self._source_trees: dict[str, pathlib.Path] = {}  # GitRepository name -> what its artifact holds
        self.in_cluster_flux: dict[str, flux_incluster.InClusterFlux] = {}
        self._failing: dict[str, bool] = {}  # health-check faults asked for before their cluster exists
        if config.provider == "eksa":
            self.eksa = eksa.EksaController(management=self.management, provision_delay=config.provision_delay,
                                            on_ready=self._cluster_ready, on_deleted=self._cluster_deleted,
                                            simulate_nodes=config.nodes > 0)
            self.git = gitserver.GitServer(state_dir=state_dir / "git", clusters=(config.blue,))
        else:
            self.capi = capi.CapiController(
                management=self.management,
                api_version=config.capi_version,
                provision_delay=config.provision_delay,
                on_ready=self._cluster_ready,
                on_deleted=self._cluster_deleted,
                simulate_nodes=config.nodes > 0,
            )
        self.flux = flux.FluxController(management=self.management, clusters=self.capi or self.eksa,
                                        delay=config.flux_delay, render=self._render)
        self.load: load.LoadGenerator | None = None
        self.node_lb: node_lb.NodeLoadBalancer | None = None
        self._clock_offset = time.time() - time.monotonic()
        self._control: web.AppRunner | None = None
        self.control_url = ""

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self.blue_backend.start()
        await self.haproxy.start()
        # Prometheus takes about 5 s to scrape for the first time (see sim.prometheus):
        # it starts first and the rest of the world comes up meanwhile.
        scraping: asyncio.Task[None] | None = None
        if self._spare is not None:
            self.prometheus = self._attach_spare(self._spare)
            # HAProxy's exporter and blue's ingress listen from now on (green's when green exists).
            scraping = asyncio.create_task(self.prometheus.wait_scraped(since=time.time()), name="first scrapes")
        elif self.config.prometheus:
            self.prometheus = prometheus.PrometheusServer(
                state_dir=self.state_dir / "prometheus", targets=self._scrape_targets(),
                scrape_interval=self.config.scrape_interval,
            )
            scraping = asyncio.create_task(self.prometheus.start(), name="prometheus start")
        try:
            await self._start_clusters()
            await self._start_control()
            self.load = load.LoadGenerator(url=self.haproxy.frontend_url, rate=self.config.rate,
                                           duration=self.config.load_duration)
            await self.load.start()
            if scraping is not None:
                await scraping
        finally:
            if scraping is not None and not scraping.done():
                scraping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scraping
        self._write_state()

    async def _start_clusters(self) -> None:
        await self.management.start()
        flux.install(self.management)
        if self.git is not None:
            await self.git.start(http=True)
        if self.eksa is not None:
            eksa.install(self.management)
            self._seed_eksa()
            await self.eksa.start()
        else:
            capi.install(self.management, api_version=self.config.capi_version)
            self.artifacts = artifacts.ArtifactServer()
            await self.artifacts.start()
            self._seed_capi()
            assert self.capi is not None
            await self.capi.start()
        await self.flux.start()
        await self.lifecycle.wait_ready(self.config.namespace, self.config.blue)

    async def stop(self) -> None:
        if self.load is not None:
            await self.load.stop()
        if self._control is not None:
            await self._control.cleanup()
        for in_cluster in self.in_cluster_flux.values():
            await in_cluster.stop()
        await self.flux.stop()
        await self.lifecycle.stop()
        if self.git is not None:
            await self.git.stop()
        if self.artifacts is not None:
            await self.artifacts.stop()
        if self.prometheus is not None:
            await self.prometheus.stop()
        await self.haproxy.stop()
        await self.green_backend.stop()
        await self.blue_backend.stop()
        await self.management.stop()

    @property
    def lifecycle(self) -> capi.CapiController | eksa.EksaController:
        """The simulated cluster lifecycle controller of the provider this world plays."""
        controller = self.eksa if self.eksa is not None else self.capi
        assert controller is not None
        return controller

    def _cluster_resource(self) -> str:
        return eksa.cluster_resource() if self.eksa is not None else capi.cluster_resource(self.config.capi_version)

    def _namespaces(self) -> None:
        for namespace in (self.config.namespace, "flux-system", "eksa-system"):
            if self.management.get("v1/namespaces", None, namespace) is None:
                self.management.create("v1/namespaces", {"metadata": {"name": namespace}})

    def _seed_eksa(self) -> None:
        """An EKS-A vSphere cluster whose own Flux syncs clusters/<blue>/ of the environment repository."""
        assert self.git is not None
        self._namespaces()
        eksa.seed_cluster(self.management, namespace=self.config.namespace, name=self.config.blue,
                          version=self.config.blue_version, endpoint_host=self.config.endpoint_host,
                          repository_url=self.git.http_url, worker_count=self.config.nodes or 2)
        # The credentials a platform team keeps next to its ClusterUpgrades (Flux's key names).
        self.management.create("v1/secrets", {
            "metadata": {"name": self.config.git_secret, "namespace": self.config.namespace},
            "stringData": {"username": self.git.username, "password": self.git.password},
        })

    def _seed_capi(self) -> None:
        ns, blue = self.config.namespace, self.config.blue
        self._namespaces()
        capi.seed_cluster(self.management, namespace=ns, name=blue, version=self.config.blue_version,
                          api_version=self.config.capi_version, worker_replicas=self.config.nodes or 2)
        flux.seed_source(self.management, namespace=ns, name="fleet-infra", revision=self.config.revision)
        tree = self._source_trees["fleet-infra"] = self.state_dir / "sources" / "fleet-infra"
        artifacts.write_tree(tree, {f"{kustomization}/settings.yaml": _SETTINGS.format(name=kustomization)
                                    for kustomization in self.config.kustomizations})
        self._publish("fleet-infra", revision=self.config.revision)
        for kustomization in self.config.kustomizations:
            flux.seed_kustomization(
                self.management, namespace=ns, name=f"{kustomization}-{blue}", source="fleet-infra",
                path=f"./{kustomization}", cluster=blue, labels={"bluegreen.io/cluster": blue},
            )

    def _scrape_targets(self) -> list[prometheus.ScrapeTarget]:
        # Green's backend refuses connections until its cluster is up: Prometheus
        # records the target as down (up == 0) until then, as it would a new ingress.
        addresses = {"haproxy": self.haproxy.stats_address, "ingress-blue": self.blue_backend.address,
                     "ingress-green": self.green_backend.address}
        return [prometheus.ScrapeTarget(job=job.name, address=addresses[job.name], metrics_path=job.metrics_path)
                for job in SCRAPE_JOBS]

    def _read_spare(self) -> dict[str, Any] | None:
        if not self.config.prometheus or self.config.prometheus_spare is None:
            return None
        spare = prometheus_spares.read(self.config.prometheus_spare)
        jobs = sorted(prometheus_spares.ports_by_job(spare))
        wanted = sorted(job.name for job in SCRAPE_JOBS)
        if jobs != wanted or spare.get("scrape_interval") != self.config.scrape_interval:
            raise ValueError(f"the Prometheus spare scrapes {jobs} every {spare.get('scrape_interval')}; this world "
                             f"needs {wanted} every {self.config.scrape_interval}")
        return spare

    def _attach_spare(self, spare: dict[str, Any]) -> prometheus.PrometheusServer:
        targets = self._scrape_targets()
        mine = sorted((t.job, t.address, t.metrics_path) for t in targets)
        theirs = sorted((str(t["job"]), str(t["address"]), str(t["metrics_path"])) for t in spare["targets"])
        if mine != theirs:
            raise ValueError(f"the Prometheus spare scrapes {theirs}, not this world's {mine}")
        return prometheus.PrometheusServer.attach(url=str(spare["url"]), state_dir=pathlib.Path(spare["state_dir"]),
                                                  targets=targets, scrape_interval=self.config.scrape_interval)

    def _write_state(self) -> None:
        kubeconfig = self.state_dir / "management.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(self.management.kubeconfig()))
        (self.state_dir / "world.json").write_text(json.dumps(self.info(), indent=2))

    def info(self) -> dict[str, Any]:
        """What a client of the world needs to know: addresses, names, and how to reach each part."""
        kubeconfig = self.state_dir / "management.kubeconfig"
        info: dict[str, Any] = {
            "management_url": self.management.url,
            "management_kubeconfig": str(kubeconfig),
            "control_url": self.control_url,
            "namespace": self.config.namespace,
            "clusters": sorted(self.lifecycle.clusters),
            "blue": self.config.blue,
            "haproxy": {
                "runtime_api": self.haproxy.runtime_api,
                "frontend_url": self.haproxy.frontend_url,
                "metrics_url": self.haproxy.metrics_url,
                "backend": self.haproxy.backend,
                "blue_server": self.haproxy.blue_server,
                "green_server": self.haproxy.green_server,
                **({"nodes_backend": self.haproxy.nodes_backend} if self.config.nodes else {}),
            },
            "backends": {"blue": self.blue_backend.url, "green": self.green_backend.url},
            "green": self.green_backend.cluster,
            "prometheus": None if self.prometheus is None else {
                "url": self.prometheus.url,
                "scrape_interval": self.config.scrape_interval,
                "jobs": {"haproxy": "HAProxy's exporter (haproxy_server_*{proxy, server=<cluster>})",
                         "ingress-blue": "blue's backend (ingress_*{cluster})",
                         "ingress-green": "green's backend (ingress_*{cluster})"},
            },
            "gates_url": f"{self.control_url}/gates",
            "provider": self.config.provider,
            "nodes": self.config.nodes > 0,  # Machines and Nodes are simulated (blue's pool: node_pool)
        }
        if self.config.nodes > 0:
            info["node_pool"] = {"name": "md-0", "replicas": self.config.nodes}
        if self.artifacts is not None:
            info["artifacts_url"] = self.artifacts.base_url
        if self.git is not None:
            info["git"] = {"http_url": self.git.http_url, "file_url": self.git.file_url,
                           "secret": self.config.git_secret, "branch": self.git.branch, "root": self.git.root}
        return info

    # --- what happens to clusters --------------------------------------------------------------

    async def _cluster_ready(self, name: str, emulator: KubeEmulator) -> None:
        """A new cluster's ingress comes up with it (blue's is already running), and, with EKS-A, its Flux."""
        jobs.attach(emulator)  # its Jobs run, as local processes (see sim.jobs)
        if not self.config.nodes:  # with nodes, sim.nodes runs Deployments (the lifecycle controller attached it)
            workloads_ctl.attach(emulator)  # its StatefulSets and Deployments scale (see sim.workloads_ctl)
        elif name == self.config.blue:
            self.node_lb = node_lb.attach(emulator, runtime_api=self.haproxy.runtime_api,
                                          backend=self.haproxy.nodes_backend, port=self.haproxy.node_port)
        if self.git is not None and name not in self.in_cluster_flux:
            in_cluster = flux_incluster.InClusterFlux(emulator=emulator, cluster=name, repo_url=self.git.file_url,
                                                      branch=self.git.branch, root=self.git.root,
                                                      interval=self.config.flux_interval)
            self.in_cluster_flux[name] = in_cluster
            in_cluster.set_failing(self._failing.get(name, False))
            await in_cluster.start()
        if name != self.config.blue and not self.green_backend.running:
            self.green_backend.cluster = name
            await self.green_backend.start()

    async def _cluster_deleted(self, name: str) -> None:
        """A deleted cluster's ingress goes away with it: anything still routed there fails."""
        in_cluster = self.in_cluster_flux.pop(name, None)
        if in_cluster is not None:
            await in_cluster.stop()
        if name == self.config.blue:
            await self.blue_backend.stop()
        elif name == self.green_backend.cluster:
            await self.green_backend.stop()

    # --- control API ---------------------------------------------------------------------------

    async def _start_control(self) -> None:
        app = web.Application()
        app.router.add_get("/traffic", self._traffic)
        app.router.add_post("/load/stop", self._load_stop)
        app.router.add_get("/clusters", self._clusters)
        app.router.add_get("/world", self._world)
        app.router.add_post("/backends/fault", self._backend_fault)
        app.router.add_route("GET", "/gates/{name}", self._gate)
        app.router.add_route("POST", "/gates/{name}", self._gate)
        app.router.add_post("/gates/{name}/set", self._gate_set)
        app.router.add_get("/gates/{name}/calls", self._gate_calls)
        app.router.add_post("/flux/failing", self._flux_failing)
        app.router.add_post("/flux/revision", self._flux_revision)
        app.router.add_post("/git/concurrent-push", self._git_concurrent_push)
        app.router.add_post("/nodes/lb", self._nodes_lb)
        app.router.add_route("GET", "/kube/fault", self._kube_faults)
        app.router.add_route("POST", "/kube/fault", self._kube_fault)
        app.router.add_route("DELETE", "/kube/fault", self._kube_faults)
        self._control = web.AppRunner(app)
        await self._control.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        await web.SockSite(self._control, listener).start()
        self.control_url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    def _monotonic(self, wall: str | None) -> float | None:
        return None if wall is None else float(wall) - self._clock_offset

    async def _traffic(self, request: web.Request) -> web.Response:
        """The load's summary over [since, until) (epoch seconds); ``samples=1`` adds every request."""
        assert self.load is not None
        since = self._monotonic(request.query.get("since"))
        until = self._monotonic(request.query.get("until"))
        summary = self.load.summary(since=since, until=until)
        if request.query.get("samples") in {"1", "true"}:
            summary["samples"] = [
                {"time": sample.started + self._clock_offset, "elapsed": sample.elapsed, "status": sample.status,
                 "cluster": sample.cluster, "failure": sample.failure}
                for sample in self.load.samples
                if (since is None or sample.started >= since) and (until is None or sample.started < until)
            ]
        return web.json_response(summary)

    async def _load_stop(self, request: web.Request) -> web.Response:
        assert self.load is not None
        await self.load.stop()
        return web.json_response(self.load.summary())

    async def _clusters(self, request: web.Request) -> web.Response:
        found = []
        for obj in self.management.list(self._cluster_resource()):
            meta = obj["metadata"]
            spec = obj.get("spec") or {}
            found.append({
                "name": meta["name"], "namespace": meta.get("namespace"), "exists": True,
                "deleting": bool(meta.get("deletionTimestamp")),
                "phase": (obj.get("status") or {}).get("phase"),
                "version": spec.get("kubernetesVersion") or (spec.get("topology") or {}).get("version"),
                "api_running": meta["name"] in self.lifecycle.clusters,
            })
        return web.json_response({"clusters": found})

    async def _world(self, request: web.Request) -> web.Response:
        info = self.info()
        info["faults"] = {backend.cluster: backend.fault for backend in (self.blue_backend, self.green_backend)}
        info["gates"] = {name: gate.status for name, gate in sorted(self.gates.items())}
        return web.json_response(info)

    async def _backend_fault(self, request: web.Request) -> web.Response:
        """Make one cluster's backend answer errors or slowly from now on: {"cluster", "errorRate", "latency"}."""
        body = await request.json()
        cluster = str(body.get("cluster", ""))
        found = [backend for backend in (self.blue_backend, self.green_backend) if backend.cluster == cluster]
        if not found:
            known = ", ".join(sorted({self.blue_backend.cluster, self.green_backend.cluster}))
            raise web.HTTPNotFound(text=f"no backend for cluster {cluster!r}; the world has {known}")
        backend = found[0]
        try:
            backend.set_fault(
                error_rate=None if body.get("errorRate") is None else float(body["errorRate"]),
                latency=None if body.get("latency") is None else float(body["latency"]),
            )
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        return web.json_response({"cluster": backend.cluster, **backend.fault})

    async def _gate(self, request: web.Request) -> web.Response:
        """A webhook endpoint (a Flagger gate): answer the status last set, keep what was sent."""
        name = request.match_info["name"]
        gate = self.gates.setdefault(name, Gate())
        text = await request.text()
        payload: Any = text
        if text:
            with contextlib.suppress(ValueError):
                payload = json.loads(text)
        gate.calls.append({"time": time.time(), "method": request.method, "payload": payload})
        return web.json_response({"gate": name, "status": gate.status}, status=gate.status)

    async def _gate_set(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.json()
        status = int(body.get("status", 200))
        if not 200 <= status <= 599:
            raise web.HTTPBadRequest(text=f"status is an HTTP status to answer with (200-599), got {status}")
        self.gates.setdefault(name, Gate()).status = status
        return web.json_response({"gate": name, "status": status})

    async def _gate_calls(self, request: web.Request) -> web.Response:
        gate = self.gates.get(request.match_info["name"]) or Gate()
        return web.json_response({"status": gate.status, "calls": list(gate.calls)})

    async def _flux_failing(self, request: web.Request) -> web.Response:
        body = await request.json()
        target, failing = str(body["target"]), bool(body.get("failing", True))
        self.flux.set_failing(target, failing)
        in_cluster = self.in_cluster_flux.get(target)
        if in_cluster is not None:
            in_cluster.set_failing(failing)
        self._failing[target] = failing
        return web.json_response({"ok": True})

    async def _flux_revision(self, request: web.Request) -> web.Response:
        """A new commit; ``files`` (path -> text, null removes) change what the served artifact holds."""
        body = await request.json()
        source, revision = str(body.get("source", "fleet-infra")), str(body["revision"])
        if source in self._source_trees:
            artifacts.write_tree(self._source_trees[source], body.get("files") or {})
            self._publish(source, revision=revision)
        else:
            flux.set_revision(self.management, namespace=self.config.namespace, name=source, revision=revision)
        return web.json_response({"ok": True})

    def _render(self, kustomization: Mapping[str, Any], revision: str) -> list[dict[str, Any]]:
        """What Flux applies: the world's marker ConfigMap, and the YAML files at the Kustomization's path in
        what its source's artifact holds (plain files; a kustomization.yaml there is not built, it is skipped)."""
        objects = flux.default_render(kustomization, revision)
        spec = kustomization.get("spec") or {}
        tree = self._source_trees.get(str((spec.get("sourceRef") or {}).get("name", "")))
        if tree is None:
            return objects
        directory = (tree / str(spec.get("path") or ".")).resolve()
        if not directory.is_relative_to(tree.resolve()) or not directory.is_dir():
            return objects
        namespace = spec.get("targetNamespace") or "default"
        for path in sorted(directory.rglob("*.y*ml")):
            if path.name in {"kustomization.yaml", "kustomization.yml"}:
                continue
            for document in yaml.safe_load_all(path.read_text()):
                if isinstance(document, dict) and document.get("kind"):
                    document.setdefault("metadata", {}).setdefault("namespace", namespace)
                    objects.append(document)
        return objects

    def _publish(self, source: str, *, revision: str) -> None:
        assert self.artifacts is not None
        artifacts.publish_source(self.management, self.artifacts, namespace=self.config.namespace, name=source,
                                 directory=self._source_trees[source], revision=revision)


    async def _nodes_lb(self, request: web.Request) -> web.Response:
        """Hold (``{"paused": true}``) or resume the registration of blue's nodes in HAProxy's nodes backend."""
        if self.node_lb is None:
            raise web.HTTPNotFound(text="this world simulates no nodes (start it with --nodes N)")
        body = await request.json()
        self.node_lb.paused = bool(body.get("paused", True))
        return web.json_response({"paused": self.node_lb.paused, "unplaced": sorted(self.node_lb.unplaced)})

    def _emulator(self, cluster: str) -> KubeEmulator:
        if cluster == "management":
            return self.management
        found = self.lifecycle.clusters.get(cluster)
        if found is None:
            known = ", ".join(["management", *sorted(self.lifecycle.clusters)])
            raise web.HTTPNotFound(text=f"no API server for cluster {cluster!r}; the world has {known}")
        return found

    async def _kube_fault(self, request: web.Request) -> web.Response:
        """Make one API server misbehave for ``count`` matching requests (see ``sim.kube_faults``):
        ``{"cluster": "management"|<name>, "verb", "resource", "namespace", "name", "status", "stall", "count"}``."""
        body = await request.json()
        emulator = self._emulator(str(body.get("cluster", "management")))
        try:
            rule = emulator.injected.add(
                verb=str(body.get("verb", "*")), resource=str(body.get("resource", "*")),
                namespace=body.get("namespace"), name=body.get("name"),
                status=None if body.get("status") is None else int(body["status"]),
                stall=float(body.get("stall") or 0.0), count=int(body.get("count", 1)),
            )
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        return web.json_response({"cluster": emulator.name, **rule.to_dict()})

    async def _kube_faults(self, request: web.Request) -> web.Response:
        """GET: the rules left and the faults served, per cluster; DELETE: drop every rule left."""
        emulators = {"management": self.management, **self.lifecycle.clusters}
        if request.method == "DELETE":
            for emulator in emulators.values():
                emulator.injected.clear()
        return web.json_response({name: {"rules": [rule.to_dict() for rule in emulator.injected.rules()],
                                         "served": list(emulator.injected.served)}
                                  for name, emulator in emulators.items()})

    async def _git_concurrent_push(self, request: web.Request) -> web.Response:
        """Someone else pushes to the environment repository right before the next push arrives."""
        if self.git is None:
            raise web.HTTPNotFound(text="this world has no git server (start it with --provider eksa)")
        body = await request.json()
        git = self.git
        path, text = str(body.get("path", "README.md")), str(body.get("text", "changed by a colleague\n"))
        git.before_next_push(lambda: git.commit_as_someone_else({path: text}, message=str(body.get(
            "message", "A colleague's change, pushed while bluegreen was working"))))
        return web.json_response({"ok": True})


async def serve(config: WorldConfig, *, state_dir: pathlib.Path, ready: asyncio.Event | None = None) -> None:
    """Run the world until cancelled (Ctrl-C or SIGTERM)."""
    world = World(config, state_dir=state_dir)
    try:
        await world.start()
        print("ready", flush=True)
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await world.stop()
