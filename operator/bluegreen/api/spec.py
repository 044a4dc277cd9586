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
import difflib
import enum
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any

import pydantic
from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from bluegreen.api import durations, shares, versions

GROUP = "bluegreen.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ClusterUpgrade"
PLURAL = "clusterupgrades"
SINGULAR = "clusterupgrade"
SHORT_NAMES = ("cu",)

# RFC 1123 label, what Kubernetes accepts as a namespace or a Cluster API cluster name.
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
RUNTIME_API_PATTERN = r"^(unix://.+|tcp://[^:/]+:[0-9]+)$"
# HAProxy's own charset for proxy and server names; anything else could smuggle a
# second runtime API command into the line (";" separates commands).
HAPROXY_NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
# Every URL the operator calls (webhooks, Prometheus, probes, AWS endpoints): http or https only, so a spec
# cannot point the operator at file://, gopher:// or another scheme a client library might also speak.
HTTP_URL_PATTERN = r"^https?://.+"


def _not_too_long(text: str) -> str:
    durations.parse_duration(text)  # its ValueError is the message: the limit and the fix
    return text


Duration = Annotated[
    str, Field(pattern=durations.DURATION_PATTERN, examples=["30s", "5m", "1h30m"]), AfterValidator(_not_too_long),
]
K8sName = Annotated[str, Field(min_length=1, max_length=63, pattern=K8S_NAME_PATTERN)]

# What a value of each pattern looks like, for messages: pydantic would print the
# regular expression, which tells a person on a terminal nothing.
_PATTERN_HINTS = {
    durations.DURATION_PATTERN: ("a duration", "write a number with a unit: 30s, 5m, 1h30m"),
    versions.VERSION_PATTERN: ("a Kubernetes version", 'write it as "1.31" or "v1.31.2"'),
    K8S_NAME_PATTERN: (
        "a valid name",
        "use a lowercase RFC 1123 name: a-z, 0-9 and '-', starting and ending with a letter or digit "
        "(e.g. prod-green)",
    ),
    RUNTIME_API_PATTERN: ("a runtime API address", "write unix:///run/haproxy.sock or tcp://host:port"),
    HAPROXY_NAME_PATTERN: ("an HAProxy name", "use letters, digits and - _ . : as in the HAProxy configuration"),
    HTTP_URL_PATTERN: ("an http or https URL", "write http://host[:port]/path or https://...; other schemes are "
                       "refused"),
}


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

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, data: Any) -> Any:
        # pydantic would read `setWeight: "10"` as 10 and `false` as 0; the API server refuses both
        # (type integer), and so must the operator, or the two would disagree on what a spec says.
        if not isinstance(data, dict):
            return data
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for name, info in cls.model_fields.items():
            key = info.alias or name
            value = data.get(key, data.get(name))
            if _without_none(info.annotation) not in (int, float) or value is None:
                continue
            if isinstance(value, bool):
                problems.append(((key,), f"{str(value).lower()} is a boolean; write a number, e.g. 10"))
            elif isinstance(value, str) and _is_number(value):
                problems.append(((key,), f"{value!r} is text; write the number without quotes: {value}"))
        if problems:
            raise _FieldProblems(problems)
        return data


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Strategy(enum.StrEnum):
    """How the cluster is upgraded: BlueGreen (a new cluster), InPlace, NodePools or Auto."""

    BLUE_GREEN = "BlueGreen"
    IN_PLACE = "InPlace"
    NODE_POOLS = "NodePools"
    AUTO = "Auto"


# Strategies this build carries out; the others are part of the API but refused
# by validation until their issue lands, with a message that says so.
IMPLEMENTED_STRATEGIES = frozenset({Strategy.BLUE_GREEN, Strategy.IN_PLACE, Strategy.NODE_POOLS, Strategy.AUTO})


class ClusterProviderKind(enum.StrEnum):
    """Who manages the cluster: capi (Cluster API) or eksa (EKS Anywhere)."""

    CAPI = "capi"
    EKSA = "eksa"


IMPLEMENTED_PROVIDERS = frozenset({ClusterProviderKind.CAPI, ClusterProviderKind.EKSA})


class ClusterRef(Model):
    """The live (blue) cluster, on this management cluster."""

    provider: ClusterProviderKind = Field(description="Who manages the cluster: capi (Cluster API) or eksa.")
    name: K8sName = Field(description="Name of the live (blue) Cluster object.")
    namespace: K8sName = Field(default="default", description="Namespace of the Cluster object.")

    @field_validator("provider")
    @classmethod
    def _implemented(cls, provider: ClusterProviderKind) -> ClusterProviderKind:
        if provider not in IMPLEMENTED_PROVIDERS:
            available = ", ".join(sorted(IMPLEMENTED_PROVIDERS))
            raise ValueError(f"provider {provider.value} is not available in this release; use {available}")
        return provider


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
    """A Kubernetes label selector (matchLabels only)."""

    match_labels: dict[str, str] = Field(default_factory=dict, description="Labels an object must all carry.")


class FluxMode(enum.StrEnum):
    """remote: Kustomizations on the management cluster; git: commits to the environment repository."""

    REMOTE = "remote"
    GIT = "git"


class SecretRef(Model):
    """A Secret in the ClusterUpgrade's namespace."""

    name: K8sName


class SecretKeyRef(Model):
    """One key of a Secret in the ClusterUpgrade's namespace."""

    name: K8sName
    key: str | None = Field(default=None, min_length=1, description="Default depends on the use (value, token).")


class GitAuthor(Model):
    name: str = Field(default="bluegreen", min_length=1)
    email: str = Field(default="bluegreen@bluegreen.io", min_length=3)


class Substitution(Model):
    """A literal text replacement applied to every file copied from blue's directory to green's."""

    from_: str = Field(alias="from", min_length=1, description="Text as it appears in blue's files.")
    to: str = Field(description="What green's copy says instead.")


GIT_URL_PATTERN = r"^(ssh://.+|https://.+|http://.+|file:///.+|git://.+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:.+)$"


class GitRepository(Model):
    """The environment repository Flux syncs each cluster from (``<root>/<cluster>/...``)."""

    url: str = Field(
        pattern=GIT_URL_PATTERN,
        description="ssh://git@host/org/env.git, git@host:org/env.git, https://host/org/env.git or file:///path",
    )
    branch: str = Field(default="main", min_length=1, pattern=r"^[^\s~^:?*\[\\]+$")
    root: str = Field(default="clusters", description="Directory holding one subdirectory per cluster.")
    paths: list[str] = Field(
        default_factory=list,
        description="Subdirectories of <root>/<blue>/ to copy to green; empty: all but flux-system "
        "(which EKS Anywhere manages itself).",
    )
    secret_ref: SecretRef | None = Field(
        default=None,
        description="Credentials (Flux's keys): identity and known_hosts for SSH; username and "
        "password (or a token as password) for HTTPS. Required for ssh and https URLs.",
    )
    substitutions: list[Substitution] = Field(
        default_factory=list, description="What must differ per cluster in the copied files (host names...)."
    )
    author: GitAuthor = Field(default_factory=GitAuthor)
    timeout: Duration = Field(default="60s", description="How long one git operation may take.")


class FluxWorkloads(Model):
    """How Flux deploys the workloads, and where blue's Kustomizations are."""

    mode: FluxMode = Field(
        default=FluxMode.REMOTE,
        description="remote: Kustomizations on the management cluster with kubeConfig.secretRef; git: "
        "each cluster runs its own Flux syncing <root>/<cluster> of the environment repository.",
    )
    namespace: K8sName | None = Field(
        default=None,
        description="remote: namespace of blue's Kustomizations on the management cluster (default: the "
        "cluster's namespace). git: namespace of Flux inside each cluster (default: flux-system).",
    )
    selector: LabelSelector = Field(
        default_factory=LabelSelector,
        description="Labels that pick blue's Kustomizations (remote: required; git: default all in the namespace).",
    )
    git: GitRepository | None = Field(default=None, description="The environment repository (git mode).")

    @model_validator(mode="after")
    def _mode_fields(self) -> FluxWorkloads:
        if self.mode == FluxMode.REMOTE:
            if not self.selector.match_labels:
                raise ValueError(
                    "selector.matchLabels is required in remote mode (an empty selector would pick every "
                    "Kustomization); give the labels of blue's Kustomizations, e.g. bluegreen.io/cluster: <blue>"
                )
            if self.git is not None:
                raise ValueError("git is only used with mode: git; remove it or set mode: git")
        elif self.git is None:
            raise ValueError("mode git needs git: {url: ..., secretRef: {name: ...}} for the environment repository")
        return self


class Workloads(Model):
    """How the workloads get to green, and when they count as in sync."""

    flux: FluxWorkloads
    require_same_revision: bool = Field(
        default=True, description="Green must be Ready at blue's source revision before traffic moves."
    )
    timeout: Duration = Field(default="30m", description="How long green's workloads may take to sync.")


class HealthCheckPolicy(enum.StrEnum):
    """Whether green's side of a router must be health-checked before it gets traffic.

    The health check is the dead-man's switch: while traffic is split, the router
    itself (HAProxy's checks, Route 53's health checks) takes a failing green out
    and sends everything to blue, with no operator and no management cluster.
    """

    REQUIRE = "Require"  # refuse to send green any traffic until its side is health-checked
    WARN = "Warn"  # send it anyway, and say in the journal that nothing guards blue's users if green fails


class HAProxyRouter(Model):
    """A top-level HAProxy whose backend holds one server for blue and one for green."""

    runtime_api: str = Field(
        alias="runtimeAPI",
        pattern=RUNTIME_API_PATTERN,
        description="HAProxy runtime API socket: unix:///run/haproxy.sock or tcp://host:port.",
    )
    backend: str = Field(pattern=HAPROXY_NAME_PATTERN, description="The backend that holds both servers.")
    blue_server: str = Field(pattern=HAPROXY_NAME_PATTERN, description="The server in the backend that points at blue.")
    green_server: str = Field(
        pattern=HAPROXY_NAME_PATTERN, description="The server in the backend that points at green."
    )
    timeout: Duration = Field(default="5s", description="How long one runtime API command may take.")
    green_health_check: HealthCheckPolicy = Field(
        default=HealthCheckPolicy.REQUIRE,
        description="Require: refuse to give greenServer weight while it has no enabled health check (`check` on "
        "its server line), the fallback that sends everything to blue if green fails while the operator is "
        "down; Warn: shift anyway and say so in the journal.",
    )


class AwsAccess(Model):
    """How to reach AWS: credentials come from the default chain (IRSA, instance role, environment)."""

    region: str | None = Field(default=None, description="AWS region (Route 53 is global; ELBv2 needs one).")
    endpoint_url: str | None = Field(
        default=None, alias="endpointURL", pattern=HTTP_URL_PATTERN,
        description="An AWS API endpoint other than the public one (a VPC endpoint).",
    )


class Route53Record(Model):
    """One side's weighted record."""

    set_identifier: str = Field(min_length=1, max_length=128, description="SetIdentifier of this side's record.")
    value: str | None = Field(default=None, min_length=1, description="The record's value (CNAME target, IP...).")
    alias_target: dict[str, Any] | None = Field(
        default=None, description="An alias target {hostedZoneId, dnsName, evaluateTargetHealth} instead of value.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    health_check_id: str | None = Field(default=None, description="A Route 53 health check for this record.")

    @model_validator(mode="after")
    def _value_or_alias(self) -> Route53Record:
        if (self.value is None) == (self.alias_target is None):
            raise ValueError("set exactly one of value and aliasTarget")
        return self

    @property
    def health_checked(self) -> bool:
        """Whether Route 53 judges this record's health: a health check, or an alias evaluating its target."""
        return self.health_check_id is not None or (self.alias_target or {}).get("evaluateTargetHealth") is True


class Route53Router(Model):
    """Weighted records: one per side, same name and type, different SetIdentifier."""

    hosted_zone_id: str = Field(min_length=1)
    record_name: str = Field(min_length=1, description="e.g. app.example.com")
    record_type: str = Field(default="CNAME", pattern=r"^(A|AAAA|CNAME|TXT)$")
    ttl: int = Field(default=60, ge=0, le=2147483647, description="Seconds; each step dwells at least one TTL.")
    blue: Route53Record
    green: Route53Record
    aws: AwsAccess = Field(default_factory=AwsAccess)
    green_health_check: HealthCheckPolicy = Field(
        default=HealthCheckPolicy.REQUIRE,
        description="Require: green's record must carry healthCheckId (or an aliasTarget with "
        "evaluateTargetHealth: true), so Route 53 stops answering with green if it fails while the operator "
        "is down; Warn: accept a record without one and say so in the journal.",
    )

    @model_validator(mode="after")
    def _distinct(self) -> Route53Router:
        if self.blue.set_identifier == self.green.set_identifier:
            raise ValueError("blue.setIdentifier and green.setIdentifier must differ")
        return self

    @model_validator(mode="after")
    def _green_health_checked(self) -> Route53Router:
        if self.green_health_check == HealthCheckPolicy.REQUIRE and not self.green.health_checked:
            raise _FieldProblems([(("green", "healthCheckId"), (
                "green's record has no health check, so nothing takes green out of the answers if it fails "
                "while the operator is down; set green.healthCheckId to a Route 53 health check on green's "
                "endpoint (or use an aliasTarget with evaluateTargetHealth: true), or set greenHealthCheck: Warn"
            ))])
        return self


class ElbTarget(Model):
    id: str = Field(min_length=1, description="Instance id or IP address.")
    port: int | None = Field(default=None, ge=1, le=65535)


class ElbV2Router(Model):
    """An ALB listener or rule forwarding to weighted target groups, or one target group's targets."""

    mode: str = Field(
        default="WeightedTargetGroups", pattern=r"^(WeightedTargetGroups|TargetRegistration)$",
        description="WeightedTargetGroups: the forward action's weights; TargetRegistration: green's targets "
        "registered and blue's deregistered one at a time in one target group.",
    )
    listener_arn: str | None = Field(default=None, alias="listenerARN")
    rule_arn: str | None = Field(default=None, alias="ruleARN")
    blue_target_group_arn: str | None = Field(default=None, alias="blueTargetGroupARN")
    green_target_group_arn: str | None = Field(default=None, alias="greenTargetGroupARN")
    target_group_arn: str | None = Field(default=None, alias="targetGroupARN")
    blue_targets: list[ElbTarget] = Field(default_factory=list)
    green_targets: list[ElbTarget] = Field(default_factory=list)
    health_timeout: Duration = Field(default="5m", description="How long a registered target may take to be healthy.")
    aws: AwsAccess = Field(default_factory=AwsAccess)

    @model_validator(mode="after")
    def _mode_fields(self) -> ElbV2Router:
        if self.mode == "WeightedTargetGroups":
            if (self.listener_arn is None) == (self.rule_arn is None):
                raise ValueError("WeightedTargetGroups needs exactly one of listenerARN and ruleARN")
            if not self.blue_target_group_arn or not self.green_target_group_arn:
                raise ValueError("WeightedTargetGroups needs blueTargetGroupARN and greenTargetGroupARN")
        else:
            if not self.target_group_arn:
                raise ValueError("TargetRegistration needs targetGroupARN")
            if not self.blue_targets or not self.green_targets:
                raise ValueError("TargetRegistration needs blueTargets and greenTargets (at least one each)")
        return self


class ClusterAccess(Model):
    """Which cluster holds the routing objects: this management cluster, or one reached by a kubeconfig Secret."""

    kubeconfig_secret_ref: SecretKeyRef | None = Field(
        default=None, description="A Secret in the ClusterUpgrade's namespace with a kubeconfig (default key value).",
    )


class ObjectRef(Model):
    namespace: K8sName
    name: str = Field(min_length=1, max_length=253)


class BackendRef(Model):
    """A backendRef of an HTTPRoute rule (a Service by default)."""

    name: str = Field(min_length=1, max_length=253)
    namespace: K8sName | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    kind: str = Field(default="Service")
    group: str = Field(default="")


class GatewayAPIRouter(Model):
    """Gateway API HTTPRoute: backendRefs weights of one rule."""

    cluster: ClusterAccess = Field(default_factory=ClusterAccess)
    http_route: ObjectRef = Field(alias="httpRoute")
    rule: int = Field(default=0, ge=0, description="Index of the rule in spec.rules.")
    blue_backend: BackendRef
    green_backend: BackendRef


class EmissaryRouter(Model):
    """Emissary-ingress: the weights of blue's and green's Mappings of one prefix/host."""

    cluster: ClusterAccess = Field(default_factory=ClusterAccess)
    api_version: str = Field(default="getambassador.io/v3alpha1", alias="apiVersion")
    blue_mapping: ObjectRef
    green_mapping: ObjectRef


class IstioDestination(Model):
    host: str = Field(min_length=1)
    subset: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)


class IstioRouter(Model):
    """Istio VirtualService: route weights of one http route."""

    cluster: ClusterAccess = Field(default_factory=ClusterAccess)
    virtual_service: ObjectRef
    route: int = Field(default=0, ge=0, description="Index in spec.http.")
    blue_destination: IstioDestination
    green_destination: IstioDestination


class WebhookRouter(Model):
    """Anything else (F5, a home-made LB): POST the weights as JSON; optionally GET them back."""

    url: str = Field(pattern=HTTP_URL_PATTERN, description="Where the weights are POSTed.")
    read_url: str | None = Field(default=None, alias="readURL", pattern=HTTP_URL_PATTERN,
                                 description="GET here returns {blue, green}; without it, weights are not verified.")
    timeout: Duration = Field(default="10s")
    retries: int = Field(default=2, ge=0, le=10)
    bearer_token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding a bearer token (default key token).")
    insecure_skip_tls_verify: bool = Field(default=False, alias="insecureSkipTLSVerify")


# Router kinds, one key each in a router entry; the registry in bluegreen.traffic
# maps each key to its module. A key that is not here is a validation error.
ROUTER_KINDS: tuple[str, ...] = ("haproxy", "route53", "elbv2", "gatewayAPI", "emissary", "istio", "webhook")
_ROUTER_ATTRIBUTES = {kind: "gateway_api" if kind == "gatewayAPI" else kind for kind in ROUTER_KINDS}
# Kinds this build carries out; the others are in the API and refused by validation until they land.
IMPLEMENTED_ROUTER_KINDS: frozenset[str] = frozenset(
    {"haproxy", "route53", "elbv2", "gatewayAPI", "emissary", "istio", "webhook"}
)


def _implemented_router_kinds() -> list[str]:
    return [kind for kind in ROUTER_KINDS if kind in IMPLEMENTED_ROUTER_KINDS]


class FinalizeMode(enum.StrEnum):
    """What a router is left with once one side is retired (blue after a promotion, green after a rollback).

    Remove: the retired side's entry goes (blue's DNS record deleted, its target group or backend dropped).
    Restore: after a rollback, the router is put back exactly as it was saved before bluegreen first changed
    it; after a promotion it is the same as Remove, since nothing may route to a deleted cluster.
    """

    REMOVE = "Remove"
    RESTORE = "Restore"


# Keys of a router entry that are not router kinds.
_ROUTER_COMMON_KEYS = frozenset({"name", "onFinalize"})


class Router(Model):
    """One traffic router; exactly one kind key is set."""

    name: str | None = Field(default=None, description="Optional name used in status and events.")
    on_finalize: FinalizeMode = Field(
        default=FinalizeMode.REMOVE,
        description="Remove the retired side's entry, or Restore (after a rollback) what was saved before the upgrade.",
    )
    haproxy: HAProxyRouter | None = None
    route53: Route53Router | None = None
    elbv2: ElbV2Router | None = None
    gateway_api: GatewayAPIRouter | None = Field(default=None, alias="gatewayAPI")
    emissary: EmissaryRouter | None = None
    istio: IstioRouter | None = None
    webhook: WebhookRouter | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_kinds(cls, data: Any) -> Any:
        # Every key but `name` is a router kind; pydantic alone would call `nginx:`
        # an "extra field", which does not tell the user what a router may be.
        if isinstance(data, dict):
            unknown = [key for key in data if key not in _ROUTER_COMMON_KEYS and key not in ROUTER_KINDS]
            if unknown:
                raise _FieldProblems([
                    ((key,), f"unknown router kind {key!r}; use one of: {', '.join(_implemented_router_kinds())}")
                    for key in unknown
                ])
        return data

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Router:
        kinds = [kind for kind in ROUTER_KINDS if getattr(self, _ROUTER_ATTRIBUTES[kind]) is not None]
        if not kinds:
            raise ValueError(f"a router needs a kind; add one of: {', '.join(_implemented_router_kinds())}")
        if len(kinds) > 1:
            raise ValueError(
                f"a router has one kind, found {' and '.join(kinds)}; list each as its own router"
            )
        if kinds[0] not in IMPLEMENTED_ROUTER_KINDS:
            raise _FieldProblems([((kinds[0],), f"router kind {kinds[0]} is not available in this release; use one "
                                                f"of: {', '.join(_implemented_router_kinds())}")])
        if self.webhook is not None and self.on_finalize == FinalizeMode.RESTORE and self.webhook.read_url is None:
            raise _FieldProblems([(("onFinalize",), "Restore needs weights to restore, and a webhook router reads "
                                                    "them only through webhook.readURL: set readURL or use Remove")])
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in ROUTER_KINDS if getattr(self, _ROUTER_ATTRIBUTES[kind]) is not None)

    @property
    def config(self) -> Model:
        config = getattr(self, _ROUTER_ATTRIBUTES[self.kind])
        assert isinstance(config, Model)
        return config

    @property
    def display_name(self) -> str:
        return self.name or self.kind


class Pause(Model):
    """Wait before the next step: for a duration, or without one for a human."""

    duration: Duration | None = Field(
        default=None, description="How long to wait; without it, wait for the bluegreen.io/promote annotation."
    )


class AnalysisStep(Model):
    """An analysis gate: hold the step until the metrics passed ``count`` measurements in a row (or ``duration``).

    ``{}`` uses spec.analysis.count / spec.analysis.duration.
    """

    count: int | None = Field(default=None, ge=1, le=1000, description="Successful measurements in a row needed.")
    duration: Duration | None = Field(default=None, description="Measure for this long instead of a count.")

    @model_validator(mode="after")
    def _count_or_duration(self) -> AnalysisStep:
        if self.count is not None and self.duration is not None:
            raise ValueError("set count or duration, not both")
        return self


class Step(Model):
    """One traffic step; exactly one of setWeight, pause, analysis is set."""

    # Every field is an action, so "exactly one" is also a property count the
    # API server can check at `kubectl apply` time, before the operator sees it.
    model_config = pydantic.ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    set_weight: int | None = Field(default=None, ge=0, le=100, description="Percent of traffic to green.")
    pause: Pause | None = None
    analysis: AnalysisStep | None = Field(
        default=None, description="Hold here until spec.analysis has passed count measurements (or a duration)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        present = [name for name, value in (("setWeight", self.set_weight), ("pause", self.pause),
                                            ("analysis", self.analysis)) if value is not None]
        if not present:
            raise ValueError("a step needs one of setWeight, pause, analysis; e.g. `- setWeight: 10`")
        if len(present) > 1:
            raise ValueError(
                f"a step does one thing, found {' and '.join(present)}; split them into separate steps"
            )
        return self


class Traffic(Model):
    """Where traffic is switched and how it moves from blue to green."""

    routers: list[Router] = Field(min_length=1, description="Where weights are applied, in this order.")
    steps: list[Step] = Field(min_length=1, description="The way traffic moves to green.")

    @field_validator("steps")
    @classmethod
    def _weights_go_up_to_100(cls, steps: list[Step]) -> list[Step]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        highest, highest_index = 0, -1
        for index, step in enumerate(steps):
            if step.set_weight is None:
                continue
            if step.set_weight < highest:
                problems.append((
                    (index, "setWeight"),
                    f"{step.set_weight} is below {highest} set by steps[{highest_index}]; weights must not "
                    f"decrease (rollback is automatic): raise it to at least {highest} or remove the step",
                ))
            else:
                highest, highest_index = step.set_weight, index
        if highest != 100:
            problems.append(((), "no step sets weight 100; end the steps with `- setWeight: 100`"))
        if problems:
            raise _FieldProblems(problems)
        return steps

    @model_validator(mode="after")
    def _weights_every_router_can_reach(self) -> Traffic:
        # Routers made of whole targets reach only some shares; a step between them would
        # never verify, so it is refused here with the shares that exist.
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for router in self.routers:
            elb = router.elbv2
            if elb is None or elb.mode != "TargetRegistration" or not elb.blue_targets or not elb.green_targets:
                continue
            reachable = shares.reachable_shares(blue_targets=len(elb.blue_targets),
                                                green_targets=len(elb.green_targets))
            for index, step in enumerate(self.steps):
                if step.set_weight is not None and step.set_weight not in reachable:
                    problems.append(((
                        "steps", index, "setWeight"),
                        f"{step.set_weight} % cannot be reached by router {router.display_name} "
                        f"(TargetRegistration with {len(elb.blue_targets)} blue and {len(elb.green_targets)} green "
                        f"targets); use one of: {', '.join(map(str, reachable))}",
                    ))
        if problems:
            raise _FieldProblems(problems)
        return self


class ThresholdRange(Model):
    """The range a metric's value must stay in to pass; one bound is enough."""

    min: float | None = Field(default=None, description="Lowest passing value (inclusive).")
    max: float | None = Field(default=None, description="Highest passing value (inclusive).")

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise ValueError("set min, max or both, e.g. thresholdRange: {max: 0.01}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}; swap them")
        return self


class PrometheusQuery(Model):
    """An instant query to a Prometheus server; the result must be one number."""

    address: str = Field(pattern=HTTP_URL_PATTERN, description="e.g. http://prometheus.monitoring:9090")
    query: str = Field(
        min_length=1,
        description="PromQL. Placeholders: {{cluster}} (the side measured: green, or blue for a comparative "
        "metric), {{blue}}, {{green}}, {{namespace}}, {{name}}.",
    )
    secret_ref: SecretRef | None = Field(
        default=None,
        description="A Secret with key token (bearer token) or keys username and password (basic auth).",
    )
    insecure_skip_tls_verify: bool = Field(default=False, alias="insecureSkipTLSVerify")
    timeout: Duration = Field(default="10s", description="How long one query may take.")


class ProbeMeasure(enum.StrEnum):
    """What an HTTP probe reports: the share of good answers (0..1) or a latency in seconds."""

    SUCCESS_RATE = "successRate"
    LATENCY_P50 = "latencyP50"
    LATENCY_P95 = "latencyP95"
    LATENCY_P99 = "latencyP99"
    LATENCY_MAX = "latencyMax"


class HTTPProbe(Model):
    """Requests to one side's own endpoint (like curl -H "Host: app.example.com" http://green-lb/)."""

    url: str = Field(pattern=HTTP_URL_PATTERN, description="Placeholders as in prometheus.query, e.g. "
                     "http://{{cluster}}-ingress.example.net/healthz")
    host: str | None = Field(default=None, description="Host header to send (the public name the side serves).")
    method: str = Field(default="GET", pattern=r"^(GET|HEAD|POST)$")
    requests: int = Field(default=10, ge=1, le=1000, description="Requests per measurement.")
    timeout: Duration = Field(default="5s", description="How long one request may take; longer counts as failed.")
    success_codes: str = Field(
        default="200-399", pattern=r"^[0-9]{3}(-[0-9]{3})?(,[0-9]{3}(-[0-9]{3})?)*$",
        description="Status codes that count as success: 200-299,404",
    )
    measure: ProbeMeasure = Field(default=ProbeMeasure.SUCCESS_RATE)
    insecure_skip_tls_verify: bool = Field(default=False, alias="insecureSkipTLSVerify")


class ComparisonMode(enum.StrEnum):
    """How green's value is judged against blue's: green / blue, or green - blue."""

    RATIO = "Ratio"
    DIFFERENCE = "Difference"


class Comparison(Model):
    """Measure blue too ({{cluster}} = blue's name) and judge green against it; thresholdRange applies to the result."""

    mode: ComparisonMode = Field(default=ComparisonMode.RATIO)


class Metric(Model):
    """One measurement, judged against thresholdRange; exactly one provider (prometheus or httpProbe)."""

    name: K8sName
    threshold_range: ThresholdRange
    prometheus: PrometheusQuery | None = None
    http_probe: HTTPProbe | None = Field(default=None, alias="httpProbe")
    comparative: Comparison | None = Field(
        default=None, description="Judge green relative to blue, measured the same way at the same time."
    )
    interval: Duration | None = Field(default=None, description="Default: spec.analysis.interval.")
    failure_limit: int | None = Field(default=None, ge=1, description="Default: spec.analysis.failureLimit.")
    inconclusive_limit: int | None = Field(default=None, ge=1, description="Default: spec.analysis.inconclusiveLimit.")

    @model_validator(mode="after")
    def _one_provider(self) -> Metric:
        present = [name for name, value in (("prometheus", self.prometheus), ("httpProbe", self.http_probe))
                   if value is not None]
        if len(present) != 1:
            raise ValueError(f"a metric needs exactly one of prometheus, httpProbe (found {len(present)})")
        if self.comparative is not None:
            text = self.prometheus.query if self.prometheus else f"{self.http_probe.url} {self.http_probe.host or ''}" \
                if self.http_probe else ""
            if "{{cluster}}" not in text:
                raise ValueError("a comparative metric measures each side with the same query: put {{cluster}} in "
                                 "prometheus.query (or httpProbe.url / host) where the side's name goes")
        return self


class WebhookType(enum.StrEnum):
    """Flagger's webhook types, called at the same moments of a cluster upgrade."""

    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"
    ROLLBACK = "rollback"
    EVENT = "event"


class AnalysisWebhook(Model):
    """A Flagger-compatible webhook: POST a JSON payload; any 2xx answer passes."""

    name: K8sName
    type: WebhookType = Field(default=WebhookType.ROLLOUT)
    url: str = Field(pattern=HTTP_URL_PATTERN)
    timeout: Duration = Field(default="10s")
    retries: int = Field(default=0, ge=0, le=10, description="Extra attempts after a failed call.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Sent as the payload's metadata.")
    insecure_skip_tls_verify: bool = Field(default=False, alias="insecureSkipTLSVerify")


class Side(enum.StrEnum):
    BLUE = "blue"
    GREEN = "green"


class JobPhase(enum.StrEnum):
    """When a smoke Job runs: Verifying (green at 0 %, before any traffic) or Promoted (green at 100 %)."""

    VERIFYING = "Verifying"
    PROMOTED = "Promoted"


class HookJob(Model):
    """A Job run in one cluster (a job hook; a smoke Job is one too, at a named phase)."""

    namespace: K8sName = Field(default="default")
    template: dict[str, Any] = Field(
        description="The Job's spec (batch/v1 JobSpec: template, backoffLimit, ...).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    timeout: Duration = Field(default="10m", description="A Job not done by then has failed.")
    log_lines: int = Field(default=20, ge=0, le=200, description="Lines of the log's tail shown on failure.")

    @field_validator("template")
    @classmethod
    def _has_pod_template(cls, template: dict[str, Any]) -> dict[str, Any]:
        pod = template.get("template")
        if not isinstance(pod, dict) or not isinstance((pod.get("spec") or {}).get("containers"), list):
            raise ValueError("template is a Job spec: it needs template.spec.containers (and restartPolicy Never)")
        return template


class SmokeJob(HookJob):
    """A Kubernetes Job run in one cluster at a named phase; the upgrade goes on when it succeeds."""

    name: K8sName = Field(max_length=40)
    cluster: Side = Field(default=Side.GREEN, description="Where the Job runs: green (default) or blue.")
    at: JobPhase = Field(default=JobPhase.VERIFYING)


class Analysis(Model):
    """How green is judged while it takes traffic, and the gates around it."""

    interval: Duration = Field(default="1m", description="Time between two measurements of a metric.")
    initial_delay: Duration = Field(
        default="0s", description="After each weight change, wait this long before measuring (DNS TTL, autoscalers)."
    )
    count: int | None = Field(default=None, ge=1, le=1000,
                              description="Measurements an analysis step needs (default 1).")
    duration: Duration | None = Field(default=None, description="Instead of count: how long an analysis step lasts.")
    failure_limit: int = Field(default=1, ge=1, description="Failed measurements of one metric that roll back.")
    inconclusive_limit: int = Field(
        default=3, ge=1, description="Inconclusive measurements of one metric that hold the upgrade for a person.",
    )
    metrics: list[Metric] = Field(default_factory=list)
    webhooks: list[AnalysisWebhook] = Field(default_factory=list)
    jobs: list[SmokeJob] = Field(default_factory=list)

    @model_validator(mode="after")
    def _coherent(self) -> Analysis:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.count is not None and self.duration is not None:
            problems.append((("count",), "set count or duration, not both"))
        named: tuple[tuple[str, list[str]], ...] = (
            ("metrics", [m.name for m in self.metrics]), ("webhooks", [w.name for w in self.webhooks]),
            ("jobs", [j.name for j in self.jobs]),
        )
        for field, names in named:
            seen: dict[str, int] = {}
            for index, name in enumerate(names):
                if name in seen:
                    problems.append(((field, index, "name"), f"{name!r} is also the name of "
                                                              f"{field}[{seen[name]}]; names must be unique"))
                seen.setdefault(name, index)
        if problems:
            raise _FieldProblems(problems)
        return self

    def metric_interval(self, metric: Metric) -> str:
        return metric.interval or self.interval

    def metric_failure_limit(self, metric: Metric) -> int:
        return metric.failure_limit or self.failure_limit

    def metric_inconclusive_limit(self, metric: Metric) -> int:
        return metric.inconclusive_limit or self.inconclusive_limit

    def hooks(self, type_: WebhookType) -> list[AnalysisWebhook]:
        return [hook for hook in self.webhooks if hook.type == type_]


class RollbackMode(enum.StrEnum):
    """Immediate: blue back to 100 % at once. Gradual: down the steps already taken, one at a time."""

    IMMEDIATE = "Immediate"
    GRADUAL = "Gradual"


class GreenDeletionPolicy(enum.StrEnum):
    """After a rollback and the inspection window: Delete green, or Retain it."""

    DELETE = "Delete"
    RETAIN = "Retain"


class Rollback(Model):
    """What happens when analysis fails or a person aborts."""

    mode: RollbackMode = Field(default=RollbackMode.IMMEDIATE)
    step_interval: Duration = Field(
        default="30s", description="Gradual: time at each weight on the way down (at least one DNS TTL).",
    )
    retain_green_for: Duration = Field(
        default="24h", description="How long green is kept for inspection after a rollback (retry works meanwhile).",
    )
    green_deletion_policy: GreenDeletionPolicy = Field(
        default=GreenDeletionPolicy.DELETE, description="After the inspection window: Delete green or Retain it."
    )


class BlueDeletionPolicy(enum.StrEnum):
    """What happens to blue's cluster after the rollback window: Delete or Retain."""

    DELETE = "Delete"
    RETAIN = "Retain"


class Promotion(Model):
    """What happens once green holds all the traffic."""

    retain_blue_for: Duration = Field(
        default="24h", description="Rollback window: how long blue is kept after green holds 100 %."
    )
    blue_deletion_policy: BlueDeletionPolicy = Field(
        default=BlueDeletionPolicy.DELETE, description="Delete blue's cluster after the window, or Retain it."
    )


class DeletePolicy(enum.StrEnum):
    """What deleting the ClusterUpgrade does before it goes away (a finalizer holds it meanwhile).

    Rollback: while blue is still the reference (any phase before Retiring), traffic goes back to blue
    100 % on every router (verified), handoffs are handed back, routers are finalized for green, green's
    Kustomizations are deleted and green's cluster too when this upgrade created it (unless
    rollback.greenDeletionPolicy is Retain); a NodePools rotation's old nodes are uncordoned. Once
    Retiring has begun, and in place, nothing is undone. Leave: nothing is changed. Blue is never deleted
    because the ClusterUpgrade was.
    """

    ROLLBACK = "Rollback"
    LEAVE = "Leave"


class RemovedAPIsPolicy(enum.StrEnum):
    """What a removed-API finding does: Block (stop before anything is created) or Warn (record and go on)."""

    BLOCK = "Block"
    WARN = "Warn"


class StatefulPolicy(enum.StrEnum):
    """What a stateful workload (StatefulSet with volume claims, declared singleton) does to a BlueGreen upgrade.

    Block: stop in Blocked. Warn: list it and go on. Handoff: go on only when a spec.hooks[] handoff
    moves it (blue down, then green up), and block naming the ones no hook covers.
    """

    BLOCK = "Block"
    WARN = "Warn"
    HANDOFF = "Handoff"


class CapacityPolicy(enum.StrEnum):
    """The capacity check before provisioning: Off (default), Warn, or Block when green looks too small."""

    OFF = "Off"
    WARN = "Warn"
    BLOCK = "Block"


class SingletonKind(enum.StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFUL_SET = "StatefulSet"
    CRON_JOB = "CronJob"
    DAEMON_SET = "DaemonSet"
    JOB = "Job"


class WorkloadRef(Model):
    """A workload in a workload cluster, by kind, namespace and name."""

    kind: SingletonKind
    namespace: K8sName = Field(default="default")
    name: str = Field(min_length=1, max_length=253)


class PreflightSpec(Model):
    """What preflight checks before anything is created, and what a finding does."""

    removed_apis: RemovedAPIsPolicy = Field(
        default=RemovedAPIsPolicy.BLOCK, alias="removedAPIs",
        description="Objects (live on blue or in the Flux sources) whose API the target version no longer serves: "
                    "Block or Warn.",
    )
    scan_sources: bool = Field(
        default=True, description="Also scan the manifests Flux applies to blue (the source artifact, or the "
                                  "repository in git mode), not only the live objects.",
    )
    stateful: StatefulPolicy = Field(
        default=StatefulPolicy.WARN,
        description="StatefulSets with volume claims and declared singletons, which cannot run on both clusters: "
                    "Block, Warn or Handoff.",
    )
    singletons: list[WorkloadRef] = Field(
        default_factory=list,
        description="Workloads that must run on one cluster only (leader-elected controllers, a CronJob that "
                    "must not fire twice); CronJobs are found without being named.",
    )
    capacity: CapacityPolicy = Field(
        default=CapacityPolicy.OFF,
        description="Compare green's node capacity with blue's allocatable and requests: Off, Warn or Block.",
    )
    timeout: Duration = Field(default="2m", description="How long the scans of blue and its sources may take.")


class HookPoint(enum.StrEnum):
    """Where a hook runs in a BlueGreen upgrade."""

    BEFORE_TRAFFIC = "BeforeTraffic"  # green verified at 0 %, before the first weight change
    AFTER_PROMOTION = "AfterPromotion"  # green at 100 %, at the start of the rollback window
    BEFORE_RETIRE = "BeforeRetire"  # the rollback window is over, before blue leaves the routers


class HandoffKind(enum.StrEnum):
    STATEFUL_SET = "StatefulSet"
    DEPLOYMENT = "Deployment"
    CRON_JOB = "CronJob"


class Handoff(Model):
    """Move a workload that must not run twice: blue's copy stopped and gone, then green's started.

    Until then green's copy is held stopped (0 replicas; a CronJob suspended) by a patch on green's Flux
    Kustomizations, so it never starts early; after the handoff blue's Kustomizations hold blue's copy
    stopped, so Flux does not undo it. A CronJob is handed off once blue's has no Job left running.
    A rollback hands it back the same way (green stopped, then blue started).
    """

    kind: HandoffKind = Field(default=HandoffKind.STATEFUL_SET)
    namespace: K8sName = Field(default="default")
    name: str = Field(min_length=1, max_length=253)
    replicas: int | None = Field(
        default=None, ge=1,
        description="Green's replicas after the handoff (default: what blue ran); not for a CronJob.",
    )
    timeout: Duration = Field(
        default="10m", description="How long each side may take to scale (a CronJob: its Jobs to finish).",
    )

    @model_validator(mode="after")
    def _replicas_scale(self) -> Handoff:
        if self.kind is HandoffKind.CRON_JOB and self.replicas is not None:
            raise ValueError("replicas is for a StatefulSet or Deployment: a CronJob is suspended "
                             "and unsuspended, not scaled; remove replicas")
        return self


class Hook(Model):
    """One ordered step at a named point of the upgrade: a Job, or a handoff of a workload."""

    name: K8sName = Field(max_length=40)
    at: HookPoint
    cluster: Side = Field(default=Side.GREEN, description="Where a job hook runs: green (default) or blue.")
    job: HookJob | None = None
    handoff: Handoff | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Hook:
        if (self.job is None) == (self.handoff is None):
            raise ValueError("a hook does one thing: set job or handoff (not both)")
        return self


class InPlaceSpec(Model):
    """How an InPlace upgrade goes: one minor at a time, with these steps after each minor."""

    between_minors: list[Step] = Field(
        default_factory=list,
        description="After each minor, before the next: pause (with or without duration) and analysis steps.",
    )
    timeout: Duration = Field(default="60m", description="How long one minor's rollout may take.")

    @field_validator("between_minors")
    @classmethod
    def _no_weights(cls, steps: list[Step]) -> list[Step]:
        problems = [((index, "setWeight"), "an in-place upgrade moves no traffic: use pause or analysis steps")
                    for index, step in enumerate(steps) if step.set_weight is not None]
        if problems:
            raise _FieldProblems(problems)
        return steps


class LocalStorage(enum.StrEnum):
    """What a drain does with a pod that has an emptyDir volume."""

    EVICT = "Evict"  # evict it; the volume's data is lost (kubectl drain --delete-emptydir-data)
    BLOCK = "Block"  # stop the drain of its node, naming the pod, until a person decides


class MachineConfigChange(Model):
    """EKS Anywhere: the machine config the new worker group uses."""

    name: K8sName | None = Field(
        default=None, description="An existing machine config (same kind as the old group's) for the new group.",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Or: the old group's machine config cloned for the new group, with this JSON merge patch "
                    "(e.g. {spec: {template: /Datacenter/vm/ubuntu-2204-kube-v1.31-2}}).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    @model_validator(mode="after")
    def _one_way(self) -> MachineConfigChange:
        if self.name is not None and self.overrides:
            raise ValueError("name uses an existing machine config and overrides clones the old one: set one")
        return self


class NodePool(Model):
    """One worker pool to rotate, and what its replacement changes."""

    name: K8sName = Field(
        description="The pool: a Cluster API topology machineDeployments[].name, or an EKS Anywhere "
                    "workerNodeGroupConfigurations[].name. The two pools alternate as <name>-blue and "
                    "<name>-green; <name> itself is the pool before its first rotation.",
    )
    class_: K8sName | None = Field(
        default=None, alias="class",
        description="Cluster API: the machineDeployment class (in the ClusterClass) of the new pool; "
                    "default: the old pool's.",
    )
    machine_config: MachineConfigChange | None = Field(
        default=None, description="EKS Anywhere: the new group's machine config; default: the old group's.",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON merge patch applied to the new pool's entry (a machineDeployments[] item, or a "
                    "workerNodeGroupConfigurations[] item): variables, labels, taints, failure domain...",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    def field(self, path: str) -> str:
        """Where a message points for one of this pool's fields: ``spec.nodePools.pools[name=md-0].class``."""
        return f"spec.nodePools.pools[name={self.name}].{path}"

    @property
    def family(self) -> str:
        """The pool's name without a -blue/-green suffix."""
        for suffix in ("-blue", "-green"):
            if self.name.endswith(suffix):
                return self.name[: -len(suffix)]
        return self.name


class NodeHAProxy(Model):
    """An HAProxy backend with one server per worker node (by the node's InternalIP)."""

    runtime_api: str = Field(alias="runtimeAPI", pattern=RUNTIME_API_PATTERN,
                             description="HAProxy runtime API socket: unix:///run/haproxy.sock or tcp://host:port.")
    backend: str = Field(pattern=HAPROXY_NAME_PATTERN, description="The backend whose servers are the nodes.")
    timeout: Duration = Field(default="5s", description="How long one runtime API command may take.")


class NodeTargetGroup(Model):
    """An ELBv2 target group whose targets are the worker nodes (a NodePort service behind an NLB or ALB)."""

    target_group_arn: str = Field(alias="targetGroupARN", min_length=1)
    aws: AwsAccess = Field(default_factory=AwsAccess)


class NodeLoadBalancer(Model):
    """A load balancer that must know every new node (registered and healthy) before any pod moves."""

    haproxy: NodeHAProxy | None = None
    elbv2: NodeTargetGroup | None = None

    @model_validator(mode="after")
    def _one(self) -> NodeLoadBalancer:
        if (self.haproxy is None) == (self.elbv2 is None):
            raise ValueError("a load balancer is one of haproxy or elbv2: set exactly one")
        return self

    @property
    def name(self) -> str:
        if self.haproxy is not None:
            return f"haproxy {self.haproxy.backend}"
        assert self.elbv2 is not None
        arn = self.elbv2.target_group_arn  # arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID
        parts = arn.split("/")
        return f"target group {parts[1] if len(parts) == 3 else arn}"


class BudgetTimeoutAction(enum.StrEnum):
    WAIT = "Wait"  # keep asking, with condition NodesDrained=False reason DrainBlocked, until the budget allows
    ABORT = "Abort"  # stop the rotation as an abort would: old nodes uncordoned, nothing deleted


class DrainSpec(Model):
    """How old nodes are drained: one at a time, through the Eviction API."""

    pause_between_nodes: Duration = Field(default="0s", description="Wait after a node's pods are back, "
                                                                     "before the next node.")
    budget_timeout: Duration = Field(
        default="15m", description="How long a PodDisruptionBudget may refuse an eviction before it is reported "
                                   "(condition NodesDrained=False, reason DrainBlocked) or aborts.",
    )
    on_budget_timeout: BudgetTimeoutAction = Field(default=BudgetTimeoutAction.WAIT)
    replacement_timeout: Duration = Field(
        default="10m", description="How long evicted pods' replacements may take to be Running and Ready on new "
                                   "nodes before it is reported (the drain keeps waiting).",
    )
    local_storage: LocalStorage = Field(
        default=LocalStorage.EVICT, description="Pods with emptyDir volumes: Evict (their data is lost) or Block.",
    )
    grace_period_seconds: int | None = Field(
        default=None, ge=0, description="Override the pods' terminationGracePeriodSeconds when evicting.",
    )


class NodePoolsSpec(Model):
    """Strategy NodePools: new worker pools beside the old, pods moved over node by node, old pools scaled to 0."""

    pools: list[NodePool] = Field(min_length=1, description="The worker pools to rotate.")
    drain: DrainSpec = Field(default_factory=DrainSpec)
    load_balancers: list[NodeLoadBalancer] = Field(
        default_factory=list,
        description="Load balancers that must have every new node registered and healthy before any pod moves.",
    )
    nodes_timeout: Duration = Field(
        default="30m", description="How long the new pools' nodes may take to be Ready and known to the load "
                                   "balancers.",
    )

    @field_validator("pools")
    @classmethod
    def _unique(cls, pools: list[NodePool]) -> list[NodePool]:
        seen: dict[str, int] = {}
        problems = []
        for index, pool in enumerate(pools):
            if pool.family in seen:
                problems.append(((index, "name"), f"{pool.name!r} is the same pool as pools[{seen[pool.family]}] "
                                                  f"({pool.family}); list each pool once"))
            seen.setdefault(pool.family, index)
        if problems:
            raise _FieldProblems(problems)
        return pools


class ClusterUpgradeSpec(Model):
    """Upgrade one cluster to a new Kubernetes version the blue/green way."""

    strategy: Strategy = Field(default=Strategy.BLUE_GREEN)
    cluster: ClusterRef
    target: Target
    workloads_spec: Workloads | None = Field(
        default=None, alias="workloads", description="How Flux deploys the workloads; required but for NodePools.",
    )
    traffic_spec: Traffic | None = Field(
        default=None, alias="traffic", description="Routers and steps; required for BlueGreen and Auto.",
    )
    analysis: Analysis = Field(default_factory=Analysis)
    rollback: Rollback = Field(default_factory=Rollback)
    promotion: Promotion = Field(default_factory=Promotion)
    preflight: PreflightSpec = Field(default_factory=PreflightSpec)
    hooks: list[Hook] = Field(default_factory=list, description="Ordered Jobs and handoffs at named points.")
    in_place: InPlaceSpec = Field(default_factory=InPlaceSpec, description="Steps of an InPlace upgrade.")
    node_pools: NodePoolsSpec | None = Field(default=None, description="Strategy NodePools: the pools to rotate.")
    paused: pydantic.StrictBool = Field(default=False, description="Hold the upgrade where it is.")
    on_delete: DeletePolicy = Field(
        default=DeletePolicy.ROLLBACK,
        description="When the ClusterUpgrade is deleted: Rollback (traffic back to blue, what this upgrade "
        "created for green removed; nothing once Retiring has begun) or Leave (nothing changed). Blue is "
        "never deleted by it.",
    )

    @field_validator("strategy")
    @classmethod
    def _implemented(cls, strategy: Strategy) -> Strategy:
        if strategy not in IMPLEMENTED_STRATEGIES:
            available = ", ".join(sorted(IMPLEMENTED_STRATEGIES))
            raise ValueError(f"strategy {strategy.value} is not available in this release; use {available}")
        return strategy

    @model_validator(mode="after")
    def _coherent(self) -> ClusterUpgradeSpec:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.target.green_name is not None and self.target.green_name == self.cluster.name:
            problems.append((
                ("target", "greenName"),
                f"{self.target.green_name!r} is blue's name (spec.cluster.name); "
                "give green a name of its own or leave it unset",
            ))
        if self.workloads_spec is None and self.strategy != Strategy.NODE_POOLS:
            problems.append((("workloads",), f"required for strategy {self.strategy.value}: say how Flux deploys "
                                             "the workloads (see `kubectl explain clusterupgrade.spec.workloads`)"))
        problems.extend(self._node_pool_problems())
        if self.traffic_spec is None and self.strategy not in {Strategy.IN_PLACE, Strategy.NODE_POOLS}:
            problems.append((("traffic",), f"required for strategy {self.strategy.value}: add routers and steps "
                                           "(see `kubectl explain clusterupgrade.spec.traffic`)"))
        judged = self.analysis.metrics or self.analysis.hooks(WebhookType.ROLLOUT)
        steps = [(("traffic", "steps"), step) for step in (self.traffic_spec.steps if self.traffic_spec else [])]
        steps += [(("inPlace", "betweenMinors"), step) for step in self.in_place.between_minors]
        counters: dict[tuple[str, ...], int] = {}
        for where, step in steps:
            index = counters.get(where, 0)
            counters[where] = index + 1
            if step.analysis is not None and not judged:
                problems.append((
                    (*where, index, "analysis"),
                    "an analysis step needs something to judge: add spec.analysis.metrics or a webhook of type "
                    "rollout, or remove the step",
                ))
        problems.extend(self._hook_problems())
        if problems:
            raise _FieldProblems(problems)
        return self

    def _hook_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: dict[str, int] = {}
        for index, hook in enumerate(self.hooks):
            if hook.name in seen:
                problems.append((("hooks", index, "name"),
                                 f"{hook.name!r} is also the name of hooks[{seen[hook.name]}]; names must be unique"))
            seen.setdefault(hook.name, index)
            if self.strategy in {Strategy.IN_PLACE, Strategy.NODE_POOLS}:
                problems.append((("hooks", index), "hooks run at points of a BlueGreen upgrade; strategy "
                                 f"{self.strategy.value} has none: remove the hook or use BlueGreen or Auto"))
            elif hook.handoff is not None and self.workloads.flux.mode != FluxMode.REMOTE:
                problems.append((("hooks", index, "handoff"), "a handoff holds green's copy at 0 replicas through "
                                 "green's Flux Kustomizations, which needs spec.workloads.flux.mode remote"))
        return problems

    def _node_pool_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        if self.strategy != Strategy.NODE_POOLS:
            if self.node_pools is not None:
                return [(("nodePools",), f"used by strategy NodePools only; remove it or set strategy NodePools "
                                         f"(strategy is {self.strategy.value})")]
            return []
        if self.node_pools is None:
            return [(("nodePools",), "required for strategy NodePools: list the pools to rotate, e.g. "
                                     "nodePools: {pools: [{name: md-0}]}")]
        problems: list[tuple[tuple[str | int, ...], str]] = []
        provider = self.cluster.provider
        for index, pool in enumerate(self.node_pools.pools):
            if provider == ClusterProviderKind.EKSA and pool.class_ is not None:
                problems.append((("nodePools", "pools", index, "class"),
                                 "class is a Cluster API machineDeployment class; for EKS Anywhere set machineConfig"))
            if provider == ClusterProviderKind.CAPI and pool.machine_config is not None:
                problems.append((("nodePools", "pools", index, "machineConfig"),
                                 "machineConfig is for EKS Anywhere worker groups; for Cluster API set class "
                                 "(and variables through overrides)"))
        return problems

    @property
    def workloads(self) -> Workloads:
        """How Flux deploys the workloads; present for every strategy but NodePools (validated)."""
        if self.workloads_spec is None:
            raise ValueError("spec.workloads is not set (strategy NodePools deploys nothing)")
        return self.workloads_spec

    @property
    def pools(self) -> NodePoolsSpec:
        """The NodePools part; present whenever strategy is NodePools (validated)."""
        if self.node_pools is None:
            raise ValueError("spec.nodePools is not set (strategy is not NodePools)")
        return self.node_pools

    @property
    def traffic(self) -> Traffic:
        """Routers and steps; present whenever a BlueGreen upgrade runs (validated)."""
        if self.traffic_spec is None:
            raise ValueError("spec.traffic is not set (strategy InPlace moves no traffic)")
        return self.traffic_spec

    @property
    def routers(self) -> list[Router]:
        return self.traffic_spec.routers if self.traffic_spec is not None else []

    def hooks_at(self, point: HookPoint) -> list[Hook]:
        return [hook for hook in self.hooks if hook.at == point]


    @property
    def green_name(self) -> str:
        return self.target.green_name or default_green_name(self.cluster.name)

    @property
    def flux_namespace(self) -> str:
        if self.workloads_spec is None:
            return self.cluster.namespace
        flux = self.workloads.flux
        if flux.namespace:
            return flux.namespace
        return "flux-system" if flux.mode == FluxMode.GIT else self.cluster.namespace


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


class _FieldProblems(ValueError):
    """Raised by a validator to place each problem at the field it is about.

    A model validator's error lands on the model itself (``spec.traffic``);
    these carry paths relative to it (``steps[2].setWeight``) that
    :func:`parse_spec` appends, so every line names the field to change.
    """

    def __init__(self, problems: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = tuple(problems)


def parse_spec(raw: dict[str, Any]) -> ClusterUpgradeSpec:
    """Validate a spec as stored; raise SpecError whose lines read ``spec.a.b: what to fix``."""
    try:
        return ClusterUpgradeSpec.model_validate(_without_nulls(raw))
    except pydantic.ValidationError as exc:
        raise SpecError([line for error in exc.errors(include_url=False) for line in _describe(error)]) from None


def _without_nulls(value: Any) -> Any:
    # The API server prunes `field: null` (no field of ours is nullable) and then defaults it, so
    # a null means "unset" in what it stores; a spec read from a file must mean the same.
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _describe(error: Any) -> list[str]:
    loc: tuple[str | int, ...] = tuple(error.get("loc", ()))
    context = error.get("ctx") or {}
    cause = context.get("error")
    if isinstance(cause, _FieldProblems):
        return [f"{_path(loc + relative)}: {message}" for relative, message in cause.problems]
    return [f"{_path(loc)}: {_message(error, loc)}"]


def _path(loc: Sequence[str | int]) -> str:
    return "spec" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def _message(error: Any, loc: tuple[str | int, ...]) -> str:
    kind = error.get("type", "")
    context = error.get("ctx") or {}
    value = error.get("input")
    shown = repr(value) if isinstance(value, str) else str(value)
    if kind == "extra_forbidden":
        return _unknown_field(loc)
    if kind == "missing":
        return f"required field is missing; add `{loc[-1]}:` (see `{_explain(loc)}`)"
    if kind == "string_pattern_mismatch":
        noun, fix = _PATTERN_HINTS.get(context.get("pattern", ""), ("valid", f"match {context.get('pattern')}"))
        return f"{shown} is not {noun}; {fix}"
    if kind == "enum":
        return _not_in_enum(value, str(context.get("expected", "")))
    if kind == "string_type":
        if isinstance(value, float):
            # YAML reads `1.30` as the number 1.3: echoing the number back would mislead.
            return f"{value} is a number; put the value in quotes as written, e.g. \"1.30\" (YAML reads 1.30 as 1.3)"
        if isinstance(value, int) and not isinstance(value, bool):
            return f'{value} is a number; put it in quotes: "{value}"'
        return f"{shown} is not a string; write text"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return f"{shown} is not a whole number; write e.g. 10"
    if kind in {"bool_type", "bool_parsing"}:
        return f"{shown} is not a boolean; write true or false"
    if kind == "less_than_equal":
        return f"{shown} is above the maximum; use at most {context.get('le')}"
    if kind == "greater_than_equal":
        return f"{shown} is below the minimum; use at least {context.get('ge')}"
    if kind == "too_short":
        return f"must list at least {context.get('min_length')} item(s)"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"{shown} is too long; use at most {context.get('max_length')} characters"
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"{shown} is not a mapping; write `key: value` lines under {loc[-1] if loc else 'spec'}"
    if kind == "list_type":
        return f"{shown} is not a list; write one `- item` per line"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def _unknown_field(loc: tuple[str | int, ...]) -> str:
    known = _field_names(loc[:-1])
    if not known:
        return f"unknown field; see `{_explain(loc[:-1])}`"
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean {close[0]}?"
    return f"unknown field; the fields here are: {', '.join(known)}"


def _not_in_enum(value: Any, expected: str) -> str:
    allowed = [part.strip().strip("'") for part in expected.replace(" or ", ", ").split(",") if part.strip()]
    message = f"{value!r} is not allowed; use one of: {', '.join(allowed)}"
    same_letters = [option for option in allowed if option.lower() == str(value).lower()]
    if same_letters:
        message += f" (values are case-sensitive: {same_letters[0]})"
    return message


def _explain(loc: Sequence[str | int]) -> str:
    return "kubectl explain " + ".".join(["clusterupgrade", "spec", *(p for p in loc if isinstance(p, str))])


def _field_names(loc: Sequence[str | int]) -> list[str]:
    """The wire names of the model's fields at ``loc``, or [] where no model is there."""
    node: Any = ClusterUpgradeSpec
    for part in loc:
        node = _without_none(node)
        if isinstance(part, int):
            if typing.get_origin(node) is not list:
                return []
            node = typing.get_args(node)[0]
        elif isinstance(node, type) and issubclass(node, pydantic.BaseModel):
            node = next(
                (info.annotation for name, info in node.model_fields.items() if (info.alias or name) == part),
                None,
            )
        else:
            return []
    node = _without_none(node)
    if isinstance(node, type) and issubclass(node, pydantic.BaseModel):
        return [info.alias or name for name, info in node.model_fields.items()]
    return []


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in {types.UnionType, typing.Union}:
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(options) == 1:
            return options[0]
    return annotation


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

