"""The ``ClusterUpgrade`` status: the operator's only memory.

A restarted operator resumes from this alone, so everything a decision needs
that cannot be observed again from the world lives here: the phase and when
it began, the step and when it began, the weights last applied and verified,
when green first held 100 %, and a bounded journal of external changes.
"""

from __future__ import annotations

import datetime
import enum
from typing import Any

import pydantic
from pydantic import Field
from pydantic.alias_generators import to_camel

JOURNAL_LIMIT = 50


class Phase(enum.StrEnum):
    """Where an upgrade is. One value at a time; every change emits an Event."""

    PENDING = "Pending"
    """Accepted, nothing done yet."""
    PREFLIGHT = "Preflight"
    """Checking blue, the target version and the spec against the world."""
    BLOCKED = "Blocked"
    """Preflight found something that must be fixed; nothing was created. Fix it, then annotate retry."""
    PROVISIONING = "Provisioning"
    """Green's cluster is being created at the target version and awaited."""
    SYNCING = "Syncing"
    """Flux deploys the workloads to green; waiting for Ready at blue's revision."""
    VERIFYING = "Verifying"
    """Green is checked at 0 % traffic before any traffic moves."""
    UPGRADING = "Upgrading"
    """InPlace: the cluster's own version is raised one minor at a time (status.inPlace), each rollout awaited."""
    ROTATING = "Rotating"
    """NodePools: new worker pools come up, old nodes are cordoned and drained one at a time (status.nodePools)."""
    SHIFTING = "Shifting"
    """Traffic moves to green step by step."""
    PAUSED = "Paused"
    """Held by spec.paused or by a pause step that waits for a human (annotation bluegreen.io/promote)."""
    PROMOTED = "Promoted"
    """Green serves 100 %; blue is kept intact for the rollback window (promotion.retainBlueFor)."""
    RETIRING = "Retiring"
    """The rollback window has passed; blue's workloads and cluster are being removed."""
    COMPLETED = "Completed"
    """Done: green is the live cluster; blue is deleted (or retained, per policy)."""
    ROLLING_BACK = "RollingBack"
    """Traffic is being returned to blue."""
    ROLLED_BACK = "RolledBack"
    """Blue serves 100 % again; green is kept for inspection. Annotate retry to shift again."""
    FAILED = "Failed"
    """Stopped by an error a person must look at; traffic is where status.weights says."""
    DELETING = "Deleting"
    """The ClusterUpgrade was deleted; spec.onDelete is carried out (status.deletion) before it goes away."""


TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED})


class ConditionType(enum.StrEnum):
    READY = "Ready"
    """The upgrade reached its goal (Completed)."""
    PROGRESSING = "Progressing"
    """The operator is working toward the goal (False when held or finished)."""
    PREFLIGHT_PASSED = "PreflightPassed"
    GREEN_READY = "GreenReady"
    WORKLOADS_IN_SYNC = "WorkloadsInSync"
    ANALYSIS_PASSING = "AnalysisPassing"
    TRAFFIC_SHIFTED = "TrafficShifted"
    BLUE_RETIRED = "BlueRetired"
    NODES_DRAINED = "NodesDrained"
    """NodePools: the old nodes' pods moved (False with reason DrainBlocked while a budget refuses too long)."""


class StatusModel(pydantic.BaseModel):
    # Status is written by the operator and read back as stored; fields other
    # tools add (kopf's own progress) are ignored, never an error.
    model_config = pydantic.ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class Condition(StatusModel):
    type: str
    status: str = Field(pattern="^(True|False|Unknown)$")
    reason: str
    message: str = ""
    last_transition_time: datetime.datetime
    observed_generation: int | None = None


class ClusterStatus(StatusModel):
    name: str
    version: str | None = None
    kubeconfig_secret: str | None = None


class Weights(StatusModel):
    """Percent of traffic per side, as applied and verified on every router.

    ``verified`` is False until the operator has applied and read back weights
    itself: the defaults describe the intent, not what the routers do.
    """

    blue: int = Field(default=100, ge=0, le=100)
    green: int = Field(default=0, ge=0, le=100)
    verified: bool = False


class StepStatus(StatusModel):
    index: int = Field(default=0, ge=0)
    started_at: datetime.datetime | None = None
    weights_changed_at: datetime.datetime | None = Field(
        default=None, description="When this step's weights were applied (DNS dwell counts from here)."
    )


class JournalEntry(StatusModel):
    """One external change the operator made."""

    time: datetime.datetime
    target: str = Field(description="What was changed: a router name, 'cluster', 'workloads'.")
    action: str
    detail: str = ""
    weights: Weights | None = None
    change_id: str | None = None


RESULTS_LIMIT = 30


class CheckPhase(enum.StrEnum):
    """The verdict of one check (a metric measurement, a webhook call, a smoke Job)."""

    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"  # no verdict: no data, NaN, an error reaching the provider


class CheckResult(StatusModel):
    """One check's outcome, kept (bounded) in status.analysis.results."""

    name: str = Field(description="The metric's, webhook's or Job's name in spec.analysis.")
    kind: str = Field(description="metric, webhook or job.")
    phase: CheckPhase
    time: datetime.datetime
    value: float | None = Field(default=None, description="Green's value (or green against blue when comparative).")
    blue_value: float | None = Field(default=None, description="Blue's value, for a comparative metric.")
    green_value: float | None = Field(default=None, description="Green's own value, for a comparative metric.")
    message: str = ""
    step: int | None = Field(default=None, description="status.step.index when checked.")
    green_weight: int | None = Field(default=None, description="Green's traffic share when checked.")


class MetricState(StatusModel):
    """Running counts of one metric in the current analysis run (reset by retry)."""

    name: str
    successes: int = 0
    failures: int = 0
    inconclusive: int = 0
    consecutive_successes: int = Field(default=0, description="Successful measurements in a row (analysis steps).")
    last_time: datetime.datetime | None = None
    last_phase: CheckPhase | None = None
    last_value: float | None = None


class AnalysisStatus(StatusModel):
    """What analysis has measured: counts per metric, the latest results, and why it holds if it does."""

    run: int = Field(default=0, description="Analysis run number; bluegreen.io/retry starts a new one.")
    metrics: list[MetricState] = Field(default_factory=list)
    results: list[CheckResult] = Field(default_factory=list, description="The latest check results, oldest first.")
    held: str | None = Field(default=None, description="Why analysis holds the upgrade (inconclusive), if it does.")

    def metric(self, name: str) -> MetricState | None:
        return next((m for m in self.metrics if m.name == name), None)

    def latest(self, name: str, kind: str) -> CheckResult | None:
        return next((r for r in reversed(self.results) if r.name == name and r.kind == kind), None)


class SavedRouter(StatusModel):
    """What one router held before bluegreen first changed it, for finalize to restore."""

    name: str
    original: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )


LIST_LIMIT = 50


class FindingStatus(StatusModel):
    """An object using an API version the target no longer serves (see bluegreen.preflight.findings)."""

    kind: str
    namespace: str | None = None
    name: str
    api_version: str
    removed_in: str
    replacement: str
    where: str = Field(description="live on <cluster>, or in <source path>.")


class StatefulStatus(StatusModel):
    """A workload that must not run on both clusters at once."""

    kind: str
    namespace: str
    name: str
    reason: str
    handoff: str | None = Field(default=None, description="The spec.hooks[] handoff that moves it, if any.")


class StrategyChoice(StatusModel):
    """The strategy this upgrade runs with and why (Auto chooses; the others are as asked)."""

    chosen: str
    reasons: list[str] = Field(default_factory=list)


class CapacityVerdict(enum.StrEnum):
    ENOUGH = "Enough"
    TOO_SMALL = "TooSmall"
    UNKNOWN = "Unknown"  # a side's size cannot be told (e.g. machine templates without sizes)


class CapacityStatus(StatusModel):
    verdict: CapacityVerdict
    message: str
    green_cpu_millis: int | None = None
    green_memory_bytes: int | None = None
    blue_allocatable_cpu_millis: int | None = None
    blue_allocatable_memory_bytes: int | None = None
    blue_requested_cpu_millis: int | None = None
    blue_requested_memory_bytes: int | None = None


class PreflightStatus(StatusModel):
    """What the preflight scans found; cleared when preflight runs again (retry, changed spec)."""

    scanned_at: datetime.datetime | None = None
    findings: list[FindingStatus] = Field(default_factory=list, description=f"At most {LIST_LIMIT}.")
    findings_total: int = 0
    stateful_workloads: list[StatefulStatus] = Field(default_factory=list, description=f"At most {LIST_LIMIT}.")
    stateful_total: int = 0
    problems: list[str] = Field(
        default_factory=list, description="What could not be scanned (a source unreachable); treated as findings.",
    )
    capacity: CapacityStatus | None = None
    strategy: StrategyChoice | None = None
    path: list[str] = Field(default_factory=list, description="InPlace: the minors the cluster goes through.")


class InPlaceStatus(StatusModel):
    """Where an InPlace upgrade is: path[index] is the minor being rolled out (or just done)."""

    path: list[str] = Field(default_factory=list)
    index: int = Field(default=0, ge=0)
    rolled_out: bool = Field(default=False, description="path[index] is rolled out; its betweenMinors steps run.")
    step: int = Field(default=0, ge=0, description="Index in spec.inPlace.betweenMinors after path[index].")
    since: datetime.datetime | None = Field(default=None, description="When this minor (or step) began.")


class RotationStage(enum.StrEnum):
    """Where a NodePools rotation is."""

    CREATING_POOLS = "CreatingPools"
    """The new pools are asked for; waiting for their nodes to be Ready."""
    CHECKING_LOAD_BALANCERS = "CheckingLoadBalancers"
    """Every new node must be registered and healthy in spec.nodePools.loadBalancers before any pod moves."""
    CORDONING = "Cordoning"
    """Every old node is marked unschedulable."""
    DRAINING = "Draining"
    """The old node nodes[nodesDrained] is drained through the Eviction API, one pod per pass."""
    WAITING_FOR_REPLACEMENTS = "WaitingForReplacements"
    """The node is empty; its evicted pods' replacements must be Running and Ready on new nodes."""
    PAUSING = "Pausing"
    """spec.nodePools.drain.pauseBetweenNodes before the next node."""
    SCALING_DOWN = "ScalingDown"
    """Every old node is drained; the old pools are scaled to 0 (kept for the next rotation)."""
    DONE = "Done"
    UNCORDONING = "Uncordoning"
    """Aborted: the old nodes are made schedulable again; nothing is deleted."""
    ABORTED = "Aborted"


class PodName(StatusModel):
    namespace: str
    name: str
    uid: str = ""


class ControllerName(StatusModel):
    kind: str
    namespace: str
    name: str


class EvictionEntry(StatusModel):
    """One pod the rotation evicted, and how many of its controller's pods were Ready just before."""

    pod: PodName
    node: str
    controller: ControllerName
    at: datetime.datetime
    ready_before: int
    ready_elsewhere_before: int


class DrainState(StatusModel):
    """The last drain pass of the node being drained."""

    node: str
    outcome: str
    message: str = ""
    remaining: int = 0
    pod: PodName | None = None
    budget: str | None = None
    since: datetime.datetime | None = Field(default=None, description="When the current budget refusal began.")
    retry_after_seconds: float | None = None


class PoolRotation(StatusModel):
    """One spec.nodePools.pools[] entry: the pool being replaced and its replacement."""

    pool: str
    old: str
    new: str
    replicas: int
    old_nodes: list[str] = Field(default_factory=list)
    new_nodes: list[str] = Field(default_factory=list)


EVICTIONS_LIMIT = 100


class NodePoolsStatus(StatusModel):
    """Where a NodePools rotation is; the eviction journal keeps the last EVICTIONS_LIMIT evictions."""

    stage: RotationStage = RotationStage.CREATING_POOLS
    since: datetime.datetime | None = Field(default=None, description="When this stage (or node) began.")
    pools: list[PoolRotation] = Field(default_factory=list)
    nodes_total: int = 0
    nodes_drained: int = 0
    drained: list[str] = Field(default_factory=list)
    current: DrainState | None = None
    blocking_pod: str | None = Field(default=None, description="The pod whose eviction is refused, and by what.")
    blocked_reported: bool = Field(default=False, description="The current block outlasted the budget timeout "
                                   "and was reported.")
    evictions: list[EvictionEntry] = Field(default_factory=list)
    evictions_total: int = 0
    pause_until: datetime.datetime | None = None
    load_balancers: str = Field(default="", description="What the load balancer check last found.")

    @property
    def old_nodes(self) -> list[str]:
        """Every old node, in the order they are drained."""
        return [node for pool in self.pools for node in pool.old_nodes]

    @property
    def new_nodes(self) -> list[str]:
        return [node for pool in self.pools for node in pool.new_nodes]


class HookPhase(enum.StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REVERTING = "Reverting"  # a rollback hands the workload back (green down, then blue up)
    REVERTED = "Reverted"
    HAND_BACK_FAILED = "HandBackFailed"  # could not be handed back (e.g. the workload is gone): a person must look


class HookStatus(StatusModel):
    name: str
    at: str
    phase: HookPhase
    message: str = ""
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None


class DeletionStage(enum.StrEnum):
    """Where the cleanup of a deleted ClusterUpgrade is (spec.onDelete), in the order they run."""

    RETURNING_TRAFFIC = "ReturningTraffic"
    """Rollback: every router back to blue 100 % and verified; handoffs handed back."""
    UNCORDONING = "Uncordoning"
    """Rollback, NodePools: the old nodes made schedulable again."""
    RETIRING_GREEN = "RetiringGreen"
    """Rollback: routers finalized for green, green's Kustomizations and (if this upgrade made it) cluster deleted."""
    DONE = "Done"
    """Nothing is left to do: the finalizer bluegreen.io/cleanup is removed and the object goes."""


class DeletionStatus(StatusModel):
    """The cleanup of a deleted ClusterUpgrade: decided once from the phase it was deleted in, then resumable."""

    policy: str = Field(description="spec.onDelete when the cleanup began (Rollback or Leave).")
    from_phase: Phase = Field(description="The phase the upgrade was in when it was deleted (Paused: what it held).")
    stage: DeletionStage = Field(description="The stage under way (Done: the finalizer goes).")
    stages: list[DeletionStage] = Field(default_factory=list, description="The stages the cleanup runs, in order.")
    started_at: datetime.datetime


class ClusterUpgradeStatus(StatusModel):
    phase: Phase = Phase.PENDING
    phase_since: datetime.datetime | None = None
    observed_generation: int | None = None
    message: str = ""
    blue: ClusterStatus | None = None
    green: ClusterStatus | None = None
    weights: Weights = Field(default_factory=Weights)
    step: StepStatus = Field(default_factory=StepStatus)
    promoted_at: datetime.datetime | None = Field(
        default=None, description="When green first held 100 % (start of the rollback window)."
    )
    held_phase: Phase | None = Field(
        default=None, description="The phase to resume when spec.paused is cleared."
    )
    routers_finalized: bool = Field(
        default=False, description="At retirement: every router removed what routed to blue."
    )
    preflight: PreflightStatus = Field(default_factory=PreflightStatus)
    in_place: InPlaceStatus | None = None
    node_pools: NodePoolsStatus | None = None
    hooks: list[HookStatus] = Field(default_factory=list)
    analysis: AnalysisStatus = Field(default_factory=AnalysisStatus)
    routers: list[SavedRouter] | None = Field(
        default=None, description="Each router's state before the first change (None: not saved yet).",
    )
    rolled_back_at: datetime.datetime | None = Field(
        default=None, description="When blue held 100 % again after a rollback (start of green's inspection window).",
    )
    green_retired: bool = Field(default=False, description="After a rollback: green's routers, workloads and "
                                "cluster were removed (or retained, per spec.rollback.greenDeletionPolicy).")
    deletion: DeletionStatus | None = Field(
        default=None, description="Set once the ClusterUpgrade is deleted: what spec.onDelete does and how far it is.",
    )
    journal: list[JournalEntry] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    failures: int = Field(default=0, description="Consecutive failed attempts of the current action.")
    in_effect: dict[str, str] | None = Field(
        default=None,
        description="What this upgrade is, as the spec said at its first external action: field path -> value "
                    "(JSON). A later spec that differs in one of these fields is refused (reason UnsafeSpecChange).",
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def hook(self, name: str) -> HookStatus | None:
        return next((h for h in self.hooks if h.name == name), None)


def parse_status(raw: dict[str, Any] | None) -> ClusterUpgradeStatus:
    """Read status as stored; an empty or foreign status is a fresh one."""
    if not raw:
        return ClusterUpgradeStatus()
    return ClusterUpgradeStatus.model_validate(raw)
