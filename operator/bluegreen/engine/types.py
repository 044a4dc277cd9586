"""What the engine reads (``Observed``) and what it returns (``Decision``).

The engine is pure: these are plain frozen values. The I/O layer fills an
``Observed`` from watches and indexes, calls :func:`bluegreen.engine.decide`,
carries out ``Decision.actions`` in order (each idempotent), appends journal
entries for external changes, and writes ``Decision.status`` only when every
action succeeded. A failed action leaves the old status in place, so the next
pass decides the same thing again: nothing is skipped and nothing is lost.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping

from bluegreen.api.status import ClusterUpgradeStatus

ANNOTATION_PREFIX = "bluegreen.io/"
ANNOTATION_PROMOTE = "bluegreen.io/promote"  # "step" or "full"
ANNOTATION_ABORT = "bluegreen.io/abort"
ANNOTATION_RETRY = "bluegreen.io/retry"
LABEL_UPGRADE = "bluegreen.io/upgrade"  # "namespace.name" of the owning ClusterUpgrade
CONTROL_ANNOTATIONS = (ANNOTATION_PROMOTE, ANNOTATION_ABORT, ANNOTATION_RETRY)
# Held on a ClusterUpgrade while deleting it would have something to undo (spec.onDelete); removed when the
# cleanup is over, so the object goes only after it. Removing it by hand leaves everything as it is.
FINALIZER = "bluegreen.io/cleanup"


@dataclasses.dataclass(frozen=True)
class ClusterObservation:
    """One cluster as its provider reports it on the management cluster."""

    name: str
    exists: bool
    ready: bool = False
    version: str | None = None
    reason: str = ""  # why not ready, in words for a condition message
    kubeconfig_secret: str | None = None  # set once the kubeconfig Secret exists
    deleting: bool = False
    failed: bool = False  # the provider reports a terminal failure
    # The ClusterUpgrade ("namespace.name") that created this cluster, from its
    # bluegreen.io/upgrade label; None for clusters bluegreen did not create.
    managed_by: str | None = None
    # The provider reports a version change still rolling out (CAPI RollingOut=True or machines not
    # up to date; EKS-A Ready not yet at the new generation): ``version`` is asked for, not reached.
    rolling_out: bool = False
    # Worker groups pinned to their own version (EKS-A workerNodeGroupConfigurations[].kubernetesVersion,
    # CAPI machineDeployment version overrides), by group name; empty when all follow the control plane.
    worker_versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The versions the provider can build (an EKS-A release bundle's kubeVersions); None: it does not say.
    offered_versions: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class KustomizationObservation:
    name: str
    namespace: str
    ready: bool
    revision: str | None  # status.lastAppliedRevision
    reason: str = ""
    message: str = ""
    copy_of: str | None = None  # for green's copies: the name of blue's Kustomization


@dataclasses.dataclass(frozen=True)
class WorkloadsObservation:
    blue: tuple[KustomizationObservation, ...] = ()
    green: tuple[KustomizationObservation, ...] = ()
    # green copies that should exist (one per blue Kustomization) but do not yet
    green_missing: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class JobObservation:
    """A smoke Job in its cluster: Missing (not created), Running, Succeeded or Failed."""

    state: str
    message: str = ""  # on failure: why, and the tail of its log


@dataclasses.dataclass(frozen=True)
class HookObservation:
    """One spec.hooks[] entry as the world shows it, in the direction status asks for (forward, or back
    while status.hooks[].phase is Reverting): Missing (nothing done yet), Running, Succeeded or Failed."""

    state: str
    message: str = ""


@dataclasses.dataclass(frozen=True)
class NodeObservation:
    """One Node of a worker pool, as the workload cluster shows it (missing: the machine has no Node yet)."""

    name: str
    exists: bool = True
    ready: bool = False
    schedulable: bool = True


@dataclasses.dataclass(frozen=True)
class PoolObservation:
    """One worker pool of the rotated cluster: its entry in the cluster's definition and its machines' Nodes."""

    name: str
    replicas: int  # what the cluster's definition asks for
    machines: int  # machines that exist (a scale-down is over when this reaches replicas)
    nodes: tuple[NodeObservation, ...] = ()  # the Nodes of its machines (by the machines' nodeRef)
    template: str = ""  # the class (CAPI) or machine config (EKS-A) it is built from, for messages

    @property
    def ready_nodes(self) -> int:
        return sum(1 for node in self.nodes if node.exists and node.ready)


@dataclasses.dataclass(frozen=True)
class Observed:
    """The world as seen at the start of one pass."""

    generation: int
    annotations: Mapping[str, str]
    blue: ClusterObservation
    green: ClusterObservation
    workloads: WorkloadsObservation
    spec_error: str | None = None  # set when the spec failed validation; the engine holds
    # What the providers found wrong before anything is created (observed in Pending,
    # Preflight and Blocked only): each names what to fix.
    preflight_problems: tuple[str, ...] = ()
    # Secrets the spec names that are missing or lack their key, one line each naming the spec field
    # (observed in Pending, Preflight and Blocked, for every strategy): they block before any action.
    reference_problems: tuple[str, ...] = ()
    deleting: bool = False  # the ClusterUpgrade itself is being deleted
    # Smoke Jobs of the current analysis run, by spec.analysis.jobs[].name (observed while one may run).
    jobs: Mapping[str, JobObservation] = dataclasses.field(default_factory=dict)
    # Hooks at the point the phase is at (and handoffs being handed back), by spec.hooks[].name.
    hooks: Mapping[str, HookObservation] = dataclasses.field(default_factory=dict)
    # NodePools: every worker pool of the rotated cluster, by the name of its entry (observed for NodePools).
    pools: Mapping[str, PoolObservation] = dataclasses.field(default_factory=dict)
    # NodePools, stage CheckingLoadBalancers: what stops the new nodes from counting as attached, one line per
    # load balancer and node; () when every new node is registered and healthy; None when not looked at.
    attachment: tuple[str, ...] | None = None
    # NodePools, stage WaitingForReplacements: (ready, why) for the evicted pods of the node just drained.
    replacements: tuple[bool, str] | None = None


# --- actions: what the I/O layer must make true, idempotently --------------------------------


@dataclasses.dataclass(frozen=True)
class ProvisionGreen:
    """Make green's cluster exist: blue's definition cloned at ``version`` under ``name``."""

    name: str
    version: str


@dataclasses.dataclass(frozen=True)
class SyncWorkloads:
    """Make green's Flux Kustomizations exist, pointing at green's kubeconfig."""

    green_name: str
    kubeconfig_secret: str


@dataclasses.dataclass(frozen=True)
class SetWeights:
    """Make every router send ``green`` percent to green (and the rest to blue), then verify."""

    green: int

    @property
    def blue(self) -> int:
        return 100 - self.green


@dataclasses.dataclass(frozen=True)
class DeleteWorkloads:
    """Remove one side's Flux Kustomizations (those the operator created, or blue's at retirement)."""

    side: str  # "blue" | "green"


@dataclasses.dataclass(frozen=True)
class DeleteCluster:
    """Delete one side's cluster through its provider."""

    side: str
    name: str


@dataclasses.dataclass(frozen=True)
class SaveRouters:
    """Before the first weight change: read what every router holds, for finalize to restore (status.routers)."""


@dataclasses.dataclass(frozen=True)
class FinalizeRouters:
    """Once a side is retired ("blue" after a promotion, "green" after a rollback), every router drops it,
    in reverse order, as each router's spec.traffic.routers[].onFinalize says."""

    retired: str = "blue"


@dataclasses.dataclass(frozen=True)
class RunChecks:
    """Run these checks now; the I/O layer records each result in status.analysis (see engine.analysis.record).

    ``metrics`` and ``webhooks`` are names from spec.analysis. Webhook results gate (confirm-*, pre-rollout,
    rollout) or are only recorded (post-rollout, rollback).
    """

    metrics: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class StartJob:
    """Make a smoke Job exist in one cluster (spec.analysis.jobs[] by name), under its run's object name."""

    name: str
    side: str  # "green" | "blue"


@dataclasses.dataclass(frozen=True)
class ScanPreflight:
    """Scan blue and its Flux sources (removed APIs, stateful workloads, capacity); the I/O layer stores the
    result in status.preflight (findings, statefulWorkloads, problems, capacity, scannedAt)."""


@dataclasses.dataclass(frozen=True)
class UpgradeInPlace:
    """InPlace: set the cluster's own Kubernetes version (one minor above what it runs)."""

    name: str
    version: str


@dataclasses.dataclass(frozen=True)
class RunHook:
    """Move one spec.hooks[] entry forward one stage (idempotent): start its Job, or for a handoff scale blue
    down, then (once blue's pods are gone) green up. ``reverse``: hand a handoff back (green down, blue up)."""

    name: str
    reverse: bool = False


@dataclasses.dataclass(frozen=True)
class EnsurePool:
    """NodePools: make the worker pool ``name`` exist beside ``source`` with the spec's changes for ``pool``
    (spec.nodePools.pools[].name), at ``replicas`` and the target version; an existing one is updated."""

    pool: str
    source: str
    name: str
    replicas: int


@dataclasses.dataclass(frozen=True)
class ScalePool:
    """NodePools: set the worker pool ``name``'s replica count (0: the old pool, kept for the next rotation)."""

    name: str
    replicas: int


@dataclasses.dataclass(frozen=True)
class CordonNodes:
    """Mark these nodes unschedulable (or, ``unschedulable=False``, schedulable again); missing nodes are skipped."""

    nodes: tuple[str, ...]
    unschedulable: bool = True


@dataclasses.dataclass(frozen=True)
class DrainNode:
    """One drain pass of ``node`` (nodepools.drain.drain_step): evict at most one pod, or say why not. The I/O
    layer records the outcome in status.nodePools (current, evictions, blockingPod)."""

    node: str


@dataclasses.dataclass(frozen=True)
class RemoveAnnotation:
    """Consume a control annotation so the same request is not acted on twice."""

    key: str


Action = (
    ProvisionGreen | SyncWorkloads | SaveRouters | SetWeights | FinalizeRouters | DeleteWorkloads | DeleteCluster
    | RemoveAnnotation | RunChecks | StartJob | ScanPreflight | UpgradeInPlace | RunHook
    | EnsurePool | ScalePool | CordonNodes | DrainNode
)


@dataclasses.dataclass(frozen=True)
class Event:
    """A Kubernetes Event to emit on the ClusterUpgrade."""

    reason: str
    message: str
    type: str = "Normal"  # or "Warning"


@dataclasses.dataclass(frozen=True)
class Decision:
    status: ClusterUpgradeStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    # When to run again if nothing changes in the world; None: only on a watched change.
    wake_at: datetime.datetime | None = None
    # A deleted ClusterUpgrade's cleanup is over: after writing status, the I/O layer removes the finalizer
    # bluegreen.io/cleanup and the object goes.
    release: bool = False
