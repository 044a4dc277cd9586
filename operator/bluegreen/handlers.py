"""kopf wiring, and nothing else: which objects are watched and who is woken.

- Each ClusterUpgrade runs one daemon (an asyncio task, not a thread) that
  loops in :class:`bluegreen.reconcile.UpgradeLoop`.
- Watches on Cluster API Clusters, their kubeconfig Secrets and Flux
  Kustomizations wake the upgrades that depend on them at once, through
  :class:`bluegreen.wakeups.Wakeups`; nothing is polled.
- A change to the ClusterUpgrade itself (spec, annotations) wakes its daemon.
- A deleted ClusterUpgrade is cleaned up (spec.onDelete) by the same loop in an on.delete handler, since
  kopf stops daemons on deletion; the loop's finalizer bluegreen.io/cleanup holds it until then.
- Prometheus metrics (:mod:`bluegreen.metrics`) are served on the metrics port from startup to cleanup.

Run with ``kopf run -m bluegreen.handlers --all-namespaces`` (or ``--namespace``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from aiohttp import web

from bluegreen import metrics
from bluegreen.api import spec as api
from bluegreen.kube.client import OPERATOR_USER_AGENT, KubeClient
from bluegreen.kube.remote import RemoteClients
from bluegreen.reconcile import Context, UpgradeLoop
from bluegreen.settings import OperatorSettings, peering_priority
from bluegreen.wakeups import Wakeups

KUBECONFIG_SECRET_LABEL = "cluster.x-k8s.io/cluster-name"
FIELD_MANAGER = "bluegreen"  # the operator's name in metadata.managedFields
# Libraries that write credentials into their DEBUG lines (botocore logs each request's headers: the
# access key id, the signature and the session token). kopf's --verbose/--debug lower the root logger;
# these stay at INFO whatever it is set to.
QUIET_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
# The watch handlers below only wake upgrades; kopf logs "Handler '...' succeeded." at INFO for each call,
# which is every status write of every upgrade and every change of a Cluster, Secret or Kustomization:
# ~50 lines an upgrade, written on the event loop. Their failures are still logged.
WATCH_HANDLERS = ("upgrade_changed", "cluster_changed", "eksa_cluster_changed", "kubeconfig_changed",
                  "kustomization_changed")


class QuietWatchHandlers(logging.Filter):
    """Drops kopf's success line of the watch handlers (WATCH_HANDLERS), and nothing else."""

    LINES = frozenset(f"Handler {name!r} succeeded." for name in WATCH_HANDLERS)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.INFO or record.getMessage() not in self.LINES


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator = OperatorSettings.from_env()
    # Events are posted by the reconcile loop, one per transition; kopf's per-log-line events would flood.
    settings.posting.level = logging.WARNING
    for quiet in QUIET_LOGGERS:
        logging.getLogger(quiet).setLevel(logging.INFO)
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(existing, QuietWatchHandlers) for existing in objects.filters):
        objects.addFilter(QuietWatchHandlers())
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Daemons are stopped fast on exit; the loop holds no state outside status.
    settings.process.ultimate_exiting_timeout = 10
    # Replicas (kopf run --peering=NAME): the oldest acts, the others stand by. kopf pauses every replica
    # when they share the top priority, and all share its default 0; a --priority given by hand is kept.
    if not settings.peering.standalone and settings.peering.priority == 0:
        settings.peering.priority = peering_priority()
    settings.peering.lifetime = operator.peering_lifetime_seconds
    # managedFields on every cluster then say which writes were the operator's.
    management = KubeClient.from_env(timeout=operator.api_timeout_seconds, field_manager=FIELD_MANAGER,
                                     user_agent=OPERATOR_USER_AGENT)
    context = Context(
        management=management,
        remote=RemoteClients(management, timeout=operator.api_timeout_seconds, field_manager=FIELD_MANAGER),
        wakeups=Wakeups(),
        settings=operator,
    )
    memo["context"] = context
    if operator.metrics_port:
        memo["metrics_server"] = await metrics.serve(context.metrics, host=operator.metrics_host,
                                                     port=operator.metrics_port)
    # What start-up allocated (modules, pydantic's schemas, kopf's registries) lives as long as the process:
    # out of the collector's generations, a full collection no longer walks it. With a fleet in flight this
    # cut the worst reaction times (the bench, bench/fleet_bench.py).
    gc.freeze()


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    server: web.AppRunner | None = memo.get("metrics_server")
    if server is not None:
        await server.cleanup()
    context: Context | None = memo.get("context")
    if context is not None:
        await context.remote.close()
        await context.management.close()


@kopf.daemon(api.GROUP, api.VERSION, api.PLURAL, cancellation_timeout=5.0)
async def upgrade(stopped: kopf.DaemonStopped, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    context: Context = memo["context"]
    stop = asyncio.Event()

    async def relay_stop() -> None:
        await stopped.wait()
        stop.set()

    relay = asyncio.create_task(relay_stop())
    try:
        await UpgradeLoop(context, namespace=namespace or "", name=name).run(stop=stop)
    finally:
        relay.cancel()


@kopf.on.delete(api.GROUP, api.VERSION, api.PLURAL)
async def cleanup(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """kopf stops the daemon on deletion; spec.onDelete is carried out by the same loop here, until it releases
    the finalizer bluegreen.io/cleanup (at once when the upgrade holds none). Killed meanwhile, kopf calls this
    again after a restart, and the loop goes on from status.deletion."""
    context: Context = memo["context"]
    await UpgradeLoop(context, namespace=namespace or "", name=name).run(stop=asyncio.Event())


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def upgrade_changed(
    namespace: str | None, name: str, meta: Mapping[str, Any], memo: Any, **_: Any
) -> None:
    context: Context = memo["context"]
    context.wakeups.upgrade_changed((namespace or "", name), fingerprint=upgrade_fingerprint(meta))


def upgrade_fingerprint(meta: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a person changes on a ClusterUpgrade (the loop itself writes only status and removes annotations)."""
    annotations = meta.get("annotations") or {}
    ours = tuple(sorted((k, v) for k, v in annotations.items() if k.startswith("bluegreen.io/")))
    return (meta.get("generation"), ours, meta.get("deletionTimestamp"))


@kopf.on.event("cluster.x-k8s.io", "clusters")
async def cluster_changed(name: str, memo: Any, **_: Any) -> None:
    context: Context = memo["context"]
    context.wakeups.cluster_changed(name)


@kopf.on.event("anywhere.eks.amazonaws.com", "clusters")
async def eksa_cluster_changed(name: str, memo: Any, **_: Any) -> None:
    context: Context = memo["context"]
    context.wakeups.cluster_changed(name)


@kopf.on.event("", "v1", "secrets", labels={KUBECONFIG_SECRET_LABEL: kopf.PRESENT})
async def kubeconfig_changed(labels: Mapping[str, str], memo: Any, **_: Any) -> None:
    context: Context = memo["context"]
    context.wakeups.cluster_changed(labels[KUBECONFIG_SECRET_LABEL])


@kopf.on.event("kustomize.toolkit.fluxcd.io", "kustomizations")
async def kustomization_changed(namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any) -> None:
    context: Context = memo["context"]
    context.wakeups.kustomization_changed(namespace or "", labels)
