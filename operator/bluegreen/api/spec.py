"""The ``ClusterUpgrade`` spec: what the user asks for.

These models are the single source of truth for the API: the CRD schema in
``crds/`` is generated from them (see :mod:`bluegreen.api.crd`), and the
operator validates every spec with them before acting. Field names are the
camelCase names users write; Python attributes are snake_case.

Validation messages name the field and the fix, because the person reading
them is on a terminal with ``kubectl describe`` and nothing else.
"""

from __future__ import annotations

import datetime
import enum
from typing import Annotated, Any

import pydantic
from pydantic import Field, model_validator
from pydantic.alias_generators import to_camel

from bluegreen.api import durations, versions

GROUP = "bluegreen.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ClusterUpgrade"
PLURAL = "clusterupgrades"
SINGULAR = "clusterupgrade"
SHORT_NAMES = ("cu",)

Duration = Annotated[str, Field(pattern=durations.DURATION_PATTERN, examples=["30s", "5m", "1h30m"])]
K8sName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]


class Model(pydantic.BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected."""

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON form users write (camelCase, defaults omitted where unset)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Strategy(enum.StrEnum):
    """How the cluster is upgraded."""

    BLUE_GREEN = "BlueGreen"
    IN_PLACE = "InPlace"
    NODE_POOLS = "NodePools"
    AUTO = "Auto"


# Strategies this build carries out; the others are part of the API but refused
# by validation until their issue lands, with a message that says so.
IMPLEMENTED_STRATEGIES = frozenset({Strategy.BLUE_GREEN})


class ClusterProviderKind(enum.StrEnum):
    CAPI = "capi"
    EKSA = "eksa"


IMPLEMENTED_PROVIDERS = frozenset({ClusterProviderKind.CAPI})


class ClusterRef(Model):
    """The live (blue) cluster, on this management cluster."""

    provider: ClusterProviderKind = Field(description="Who manages the cluster: capi (Cluster API) or eksa.")
    name: K8sName = Field(description="Name of the live (blue) Cluster object.")
    namespace: K8sName = Field(default="default", description="Namespace of the Cluster object.")


class Target(Model):
    """What green should be."""

    kubernetes_version: Annotated[str, Field(pattern=versions.VERSION_PATTERN)] = Field(
        description='Kubernetes version of green, e.g. "1.31" or "v1.31.2".'
    )
    green_name: K8sName | None = Field(
        default=None,
        description="Name of the green cluster. Default alternates: x-blue <-> x-green, "
        "x-spoon <-> x-knife, otherwise x-green.",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON merge patch applied to the cloned cluster spec (e.g. a new endpoint).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    ready_timeout: Duration = Field(default="60m", description="How long green may take to become ready.")


class LabelSelector(Model):
    match_labels: dict[str, str] = Field(default_factory=dict)


class FluxMode(enum.StrEnum):
    REMOTE = "remote"
    GIT = "git"


class FluxWorkloads(Model):
    """How Flux deploys the workloads, and where blue's Kustomizations are."""

    mode: FluxMode = Field(
        default=FluxMode.REMOTE,
        description="remote: Kustomizations on the management cluster with kubeConfig.secretRef.",
    )
    namespace: K8sName | None = Field(
        default=None, description="Namespace of blue's Kustomizations (default: the cluster's namespace)."
    )
    selector: LabelSelector = Field(description="Labels that pick blue's Kustomizations.")


class Workloads(Model):
    flux: FluxWorkloads
    require_same_revision: bool = Field(
        default=True, description="Green must be Ready at blue's source revision before traffic moves."
    )
    timeout: Duration = Field(default="30m", description="How long green's workloads may take to sync.")


class HAProxyRouter(Model):
    """A top-level HAProxy whose backend holds one server for blue and one for green."""

    runtime_api: str = Field(
        alias="runtimeAPI",
        pattern=r"^(unix://.+|tcp://[^:/]+:[0-9]+)$",
        description="HAProxy runtime API socket: unix:///run/haproxy.sock or tcp://host:port.",
    )
    backend: str = Field(min_length=1)
    blue_server: str = Field(min_length=1)
    green_server: str = Field(min_length=1)
    timeout: Duration = Field(default="5s")


# Router kinds, one key each in a router entry; the registry in bluegreen.traffic
# maps each key to its module. A key that is not here is a validation error.
ROUTER_KINDS: tuple[str, ...] = ("haproxy",)


class Router(Model):
    """One traffic router; exactly one kind key is set."""

    name: str | None = Field(default=None, description="Optional name used in status and events.")
    haproxy: HAProxyRouter | None = None

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Router:
        kinds = [kind for kind in ROUTER_KINDS if getattr(self, kind) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"set exactly one router kind (one of: {', '.join(ROUTER_KINDS)}); found {kinds or 'none'}"
            )
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in ROUTER_KINDS if getattr(self, kind) is not None)

    @property
    def config(self) -> Model:
        config = getattr(self, self.kind)
        assert isinstance(config, Model)
        return config

    @property
    def display_name(self) -> str:
        return self.name or self.kind


class Pause(Model):
    duration: Duration | None = Field(
        default=None, description="How long to wait; without it, wait for `kubectl bluegreen promote`."
    )


class Step(Model):
    """One traffic step; exactly one of setWeight, pause, analysis is set."""

    set_weight: int | None = Field(default=None, ge=0, le=100, description="Percent of traffic to green.")
    pause: Pause | None = None
    analysis: dict[str, Any] | None = Field(
        default=None, description="Run spec.analysis now.", json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        present = [name for name, value in (("setWeight", self.set_weight), ("pause", self.pause),
                                            ("analysis", self.analysis)) if value is not None]
        if len(present) != 1:
            raise ValueError(f"set exactly one of setWeight, pause, analysis in a step; found {present or 'none'}")
        return self


class Traffic(Model):
    routers: list[Router] = Field(min_length=1, description="Where weights are applied, in this order.")
    steps: list[Step] = Field(min_length=1, description="The way traffic moves to green.")

    @model_validator(mode="after")
    def _weights_go_up_to_100(self) -> Traffic:
        weights = [(index, step.set_weight) for index, step in enumerate(self.steps) if step.set_weight is not None]
        previous = 0
        for index, weight in weights:
            if weight is not None and weight < previous:
                raise ValueError(
                    f"steps[{index}].setWeight is {weight}, below the previous {previous}; "
                    "weights must not decrease (rollback is automatic)"
                )
            previous = weight if weight is not None else previous
        if not weights or weights[-1][1] != 100:
            raise ValueError("no step sets weight 100; end the steps with `- setWeight: 100`")
        return self


class BlueDeletionPolicy(enum.StrEnum):
    DELETE = "Delete"
    RETAIN = "Retain"


class Promotion(Model):
    retain_blue_for: Duration = Field(
        default="24h", description="Rollback window: how long blue is kept after green holds 100 %."
    )
    blue_deletion_policy: BlueDeletionPolicy = Field(default=BlueDeletionPolicy.DELETE)


class ClusterUpgradeSpec(Model):
    """Spec of a ClusterUpgrade."""

    strategy: Strategy = Field(default=Strategy.BLUE_GREEN)
    cluster: ClusterRef
    target: Target
    workloads: Workloads
    traffic: Traffic
    promotion: Promotion = Field(default_factory=Promotion)
    paused: bool = Field(default=False, description="Hold the upgrade where it is.")

    @model_validator(mode="after")
    def _coherent(self) -> ClusterUpgradeSpec:
        if self.strategy not in IMPLEMENTED_STRATEGIES:
            raise ValueError(
                f"strategy {self.strategy.value} is not available in this release; use BlueGreen"
            )
        if self.cluster.provider not in IMPLEMENTED_PROVIDERS:
            raise ValueError(
                f"cluster.provider {self.cluster.provider.value} is not available in this release; use capi"
            )
        if self.target.green_name is not None and self.target.green_name == self.cluster.name:
            raise ValueError(
                f"target.greenName equals cluster.name ({self.cluster.name!r}); "
                "give green a name of its own or leave it unset"
            )
        return self

    @property
    def green_name(self) -> str:
        return self.target.green_name or default_green_name(self.cluster.name)

    @property
    def flux_namespace(self) -> str:
        return self.workloads.flux.namespace or self.cluster.namespace


_PAIRS = (("blue", "green"), ("spoon", "knife"))


def default_green_name(blue: str) -> str:
    """``x-blue`` -> ``x-green`` (and back), ``x-spoon`` -> ``x-knife`` (and back), else ``x-green``."""
    for one, other in _PAIRS:
        for this, that in ((one, other), (other, one)):
            if blue == this:
                return that
            if blue.endswith(f"-{this}"):
                return f"{blue[: -len(this)]}{that}"
    suffix = "-green"
    return f"{blue[: 63 - len(suffix)]}{suffix}"


def duration(text: str) -> datetime.timedelta:
    """Shortcut for the engine: a validated duration string as a timedelta."""
    return durations.parse_duration(text)


class SpecError(ValueError):
    """A spec the operator refuses, with one line per problem naming the field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_spec(raw: dict[str, Any]) -> ClusterUpgradeSpec:
    """Validate a spec as stored; raise SpecError whose lines read ``spec.a.b: what to fix``."""
    try:
        return ClusterUpgradeSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise SpecError([_describe(error) for error in exc.errors()]) from None


def _describe(error: Any) -> str:
    path = "spec"
    for part in error.get("loc", ()):
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown field; check the spelling against `kubectl explain clusterupgrade.spec`"
    elif error.get("type") == "missing":
        message = "required field is missing"
    return f"{path}: {message}"


def validate_semantics(spec: ClusterUpgradeSpec, *, blue_version: str | None = None) -> list[str]:
    """Checks beyond the schema that need the observed world (blue's version)."""
    problems: list[str] = []
    target = versions.parse_version(spec.target.kubernetes_version)
    if blue_version is not None:
        blue = versions.parse_version(blue_version)
        if target.minor_key <= blue.minor_key:
            problems.append(
                f"spec.target.kubernetesVersion: {spec.target.kubernetes_version} is not newer than blue's "
                f"{blue_version}; set a later minor version"
            )
    return problems

