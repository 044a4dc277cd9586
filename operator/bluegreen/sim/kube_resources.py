"""What an emulated API server serves: resource descriptions, the built-in set, CRD translation.

A ``ResourceInfo`` is one served group/version/plural. Several versions of one CRD share
storage (as on a real server) and differ only in the ``apiVersion`` written on the way out.
The built-in set is what the operator, kopf and kubectl need: kopf refuses to start watchers
without ``v1/namespaces``, kubectl needs discovery to name resources, and simulated
controllers create Secrets, Events, Deployments and Jobs.

Some built-in group/versions are served only by some releases (``SERVED_RANGES``): an
emulator at Kubernetes 1.24 serves ``policy/v1beta1`` PodDisruptionBudgets next to
``policy/v1``, one at 1.25 no longer does, and both read the same stored objects, as the
preflight's removed-API scan meets them on real clusters. Objects read at a version carry
that version's ``apiVersion``; where a field's shape differs between versions (HPA metrics
in ``autoscaling/v1`` against ``v2``, for one) it is passed through unconverted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bluegreen.sim import kube_schema

READ_VERBS = ("get", "list", "watch")
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

_EVENT_FIELDS = frozenset({
    "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
    "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
    "reason", "reportingComponent", "source", "type",
})
_POD_FIELDS = frozenset({
    "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
    "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName",
})


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceInfo:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    singular: str = ""
    printer_columns: tuple[dict[str, Any], ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    schema: dict[str, Any] | None = dataclasses.field(default=None, compare=False, hash=False)
    crd_name: str | None = None  # the CRD that declared it; None for built-in resources
    keep_status_on_create: bool = False  # nodes accept status on create; most drop it
    field_selectors: frozenset[str] = frozenset()
    # The scale subresource as (specReplicasPath, statusReplicasPath, labelSelectorPath), JSONPath-like.
    scale: tuple[str, str, str] | None = None
    # The minors that serve this group/version, (first, last) inclusive; None is open-ended.
    served: tuple[str | None, str | None] = (None, None)

    def served_at(self, kubernetes_version: str) -> bool:
        """Whether an API server of ``kubernetes_version`` (``"1.24"``, ``"v1.24.3"``) serves this version."""
        first, last = self.served
        minor = minor_of(kubernetes_version)
        return (first is None or minor >= minor_of(first)) and (last is None or minor <= minor_of(last))

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        """``plural.group`` as in apiserver messages (``clusterupgrades.bluegreen.io``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def builtin(self) -> bool:
        return self.crd_name is None

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()


def minor_of(kubernetes_version: str) -> tuple[int, int]:
    """``"v1.24.3"`` -> ``(1, 24)``."""
    major, _, rest = kubernetes_version.lstrip("v").partition(".")
    return int(major), int(rest.partition(".")[0] or 0)


_WORKLOAD_SCALE = (".spec.replicas", ".status.replicas", ".spec.selector")
_FLOWCONTROL = "flowcontrol.apiserver.k8s.io"

# Which releases serve a built-in group/version: (first minor, last minor), inclusive, None open-ended.
# Facts from the upstream "Deprecated API Migration Guide" (also REFERENCE.md, "Removed Kubernetes APIs"):
# policy/v1 PodDisruptionBudget and batch/v1 CronJob are served from 1.21, their v1beta1 removed in 1.25;
# autoscaling/v2 HorizontalPodAutoscaler from 1.23, v2beta1 removed in 1.25, v2beta2 in 1.26, v1 always;
# flowcontrol.apiserver.k8s.io v1beta1 removed in 1.26, v1beta2 (from 1.23) in 1.29, v1beta3 (from 1.26)
# in 1.32, v1 from 1.29; networking.k8s.io/v1 Ingress from 1.19, networking.k8s.io/v1beta1 removed in 1.22.
# Versions absent from this table are served by every release the emulator plays.
SERVED_RANGES: dict[tuple[str, str, str], tuple[str | None, str | None]] = {
    ("policy", "v1", "poddisruptionbudgets"): ("1.21", None),
    ("policy", "v1beta1", "poddisruptionbudgets"): (None, "1.24"),
    ("batch", "v1", "cronjobs"): ("1.21", None),
    ("batch", "v1beta1", "cronjobs"): (None, "1.24"),
    ("autoscaling", "v2", "horizontalpodautoscalers"): ("1.23", None),
    ("autoscaling", "v2beta2", "horizontalpodautoscalers"): (None, "1.25"),
    ("autoscaling", "v2beta1", "horizontalpodautoscalers"): (None, "1.24"),
    **{(_FLOWCONTROL, version, plural): served
       for plural in ("flowschemas", "prioritylevelconfigurations")
       for version, served in (("v1", ("1.29", None)), ("v1beta3", ("1.26", "1.31")),
                               ("v1beta2", ("1.23", "1.28")), ("v1beta1", ("1.20", "1.25")))},
    ("networking.k8s.io", "v1", "ingresses"): ("1.19", None),
    ("networking.k8s.io", "v1beta1", "ingresses"): (None, "1.21"),
}


def _versions(group: str, plural: str, kind: str, versions: tuple[str, ...], **kwargs: Any) -> list[ResourceInfo]:
    """One resource at several versions sharing storage; the first listed is the storage version."""
    return [ResourceInfo(group=group, version=version, plural=plural, kind=kind,
                         served=SERVED_RANGES.get((group, version, plural), (None, None)), **kwargs)
            for version in versions]


def _core(plural: str, kind: str, **kwargs: Any) -> ResourceInfo:
    return ResourceInfo(group="", version="v1", plural=plural, kind=kind, **kwargs)


BUILTIN_RESOURCES: tuple[ResourceInfo, ...] = (
    _core("namespaces", "Namespace", namespaced=False, short_names=("ns",),
          field_selectors=frozenset({"status.phase"})),
    _core("secrets", "Secret", status_subresource=False, field_selectors=frozenset({"type"})),
    _core("configmaps", "ConfigMap", status_subresource=False, short_names=("cm",)),
    _core("events", "Event", status_subresource=False, short_names=("ev",), field_selectors=_EVENT_FIELDS),
    _core("services", "Service", short_names=("svc",), categories=("all",)),
    _core("serviceaccounts", "ServiceAccount", status_subresource=False, short_names=("sa",)),
    _core("pods", "Pod", short_names=("po",), categories=("all",), field_selectors=_POD_FIELDS),
    _core("nodes", "Node", namespaced=False, short_names=("no",), keep_status_on_create=True,
          field_selectors=frozenset({"spec.unschedulable"})),
    _core("endpoints", "Endpoints", status_subresource=False, short_names=("ep",)),
    ResourceInfo(group="events.k8s.io", version="v1", plural="events", kind="Event",
                 status_subresource=False, short_names=("ev",)),
    ResourceInfo(group="apps", version="v1", plural="deployments", kind="Deployment", scale=_WORKLOAD_SCALE,
                 short_names=("deploy",), categories=("all",)),
    ResourceInfo(group="apps", version="v1", plural="statefulsets", kind="StatefulSet", scale=_WORKLOAD_SCALE,
                 short_names=("sts",), categories=("all",)),
    ResourceInfo(group="apps", version="v1", plural="daemonsets", kind="DaemonSet",
                 short_names=("ds",), categories=("all",)),
    ResourceInfo(group="apps", version="v1", plural="replicasets", kind="ReplicaSet", scale=_WORKLOAD_SCALE,
                 short_names=("rs",), categories=("all",)),
    ResourceInfo(group="batch", version="v1", plural="jobs", kind="Job", categories=("all",)),
    *_versions("batch", "cronjobs", "CronJob", ("v1", "v1beta1"), short_names=("cj",), categories=("all",)),
    ResourceInfo(group="coordination.k8s.io", version="v1", plural="leases", kind="Lease",
                 status_subresource=False),
    *_versions("policy", "poddisruptionbudgets", "PodDisruptionBudget", ("v1", "v1beta1"), short_names=("pdb",)),
    *_versions("autoscaling", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
               ("v2", "v1", "v2beta2", "v2beta1"), short_names=("hpa",), categories=("all",)),
    *_versions("networking.k8s.io", "ingresses", "Ingress", ("v1", "v1beta1"), short_names=("ing",)),
    *_versions(_FLOWCONTROL, "flowschemas", "FlowSchema", ("v1", "v1beta3", "v1beta2", "v1beta1"),
               namespaced=False),
    *_versions(_FLOWCONTROL, "prioritylevelconfigurations", "PriorityLevelConfiguration",
               ("v1", "v1beta3", "v1beta2", "v1beta1"), namespaced=False),
    ResourceInfo(group="apiextensions.k8s.io", version="v1", plural="customresourcedefinitions",
                 kind="CustomResourceDefinition", namespaced=False, short_names=("crd", "crds"),
                 categories=("api-extensions",)),
)

CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"

# The labels the apiserver adds to a Job's pod template (the legacy pair is still written in 1.31).
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_JOB_UID_LABEL = "controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"


def prepare_job(job: dict[str, Any]) -> list[kube_schema.FieldError]:
    """What the apiserver does to a new ``batch/v1`` Job (uid and name already set): defaults, validation.

    Defaults as a 1.31 apiserver writes them: parallelism and completions 1 (when
    neither is set), backoffLimit 6, completionMode NonIndexed, suspend false,
    podReplacementPolicy, and, unless ``manualSelector``, a selector on the Job's
    uid plus the four pod template labels; a Job without labels gets its
    template's. Validation covers what a hand-written Job gets wrong: containers
    and restartPolicy. Returns the field errors (empty when the Job is valid).
    """
    meta = job["metadata"]
    spec = job.setdefault("spec", {})
    if not isinstance(spec, dict):
        return [kube_schema.FieldError("spec", "Invalid value: must be an object")]
    template = spec.setdefault("template", {})
    pod_spec = template.get("spec") if isinstance(template, dict) else None
    if not isinstance(pod_spec, dict) or not pod_spec.get("containers"):
        return [kube_schema.FieldError("spec.template.spec.containers", "Required value", reason="FieldValueRequired")]
    if pod_spec.get("restartPolicy") not in ("OnFailure", "Never"):
        return [kube_schema.FieldError("spec.template.spec.restartPolicy",
                                       'Required value: valid values: "OnFailure", "Never"',
                                       reason="FieldValueRequired")]
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    spec.setdefault("manualSelector", False)
    if not spec["manualSelector"]:
        uid, name = str(meta["uid"]), str(meta["name"])
        generated = {"matchLabels": {JOB_UID_LABEL: uid}}
        if spec.get("selector") not in (None, generated):
            return [kube_schema.FieldError("spec.selector", "Invalid value: `selector` not auto-generated")]
        spec["selector"] = generated
        template_meta = template.setdefault("metadata", {})
        template_meta["labels"] = {**(template_meta.get("labels") or {}), JOB_UID_LABEL: uid, JOB_NAME_LABEL: name,
                                   LEGACY_JOB_UID_LABEL: uid, LEGACY_JOB_NAME_LABEL: name}
    template_labels = (template.get("metadata") or {}).get("labels")
    if not meta.get("labels") and template_labels:
        meta["labels"] = dict(template_labels)
    return []


class CrdError(ValueError):
    """A CRD that the real apiserver would reject; the message names the field."""


def resources_from_crd(crd: dict[str, Any]) -> list[ResourceInfo]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    plural = names.get("plural")
    kind = names.get("kind")
    if not group:
        raise CrdError("spec.group: Required value")
    if not plural or not kind:
        raise CrdError("spec.names.plural and spec.names.kind: Required value")
    expected_name = f"{plural}.{group}"
    actual_name = (crd.get("metadata") or {}).get("name")
    if actual_name != expected_name:
        raise CrdError(f'metadata.name: Invalid value: "{actual_name}": must be spec.names.plural+"."+spec.group')
    scope = spec.get("scope", "Namespaced")
    if scope not in ("Namespaced", "Cluster"):
        raise CrdError(f'spec.scope: Unsupported value: "{scope}": supported values: "Cluster", "Namespaced"')
    versions = spec.get("versions") or []
    if not versions:
        raise CrdError("spec.versions: Invalid value: null: must have exactly one version marked as storage version")
    if sum(1 for version in versions if version.get("storage")) != 1:
        raise CrdError("spec.versions: Invalid value: must have exactly one version marked as storage version")
    infos: list[ResourceInfo] = []
    for version in versions:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        selectable = frozenset(
            str(field.get("jsonPath", "")).lstrip(".") for field in version.get("selectableFields") or ()
        )
        infos.append(ResourceInfo(
            group=group,
            version=version["name"],
            plural=plural,
            kind=kind,
            namespaced=scope == "Namespaced",
            status_subresource="status" in subresources,
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            singular=names.get("singular") or kind.lower(),
            printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            crd_name=expected_name,
            field_selectors=selectable,
            scale=_scale_paths(subresources.get("scale")),
        ))
    return infos


def _scale_paths(scale: Any) -> tuple[str, str, str] | None:
    if not isinstance(scale, dict) or not scale.get("specReplicasPath"):
        return None
    return (scale["specReplicasPath"], scale.get("statusReplicasPath", ""), scale.get("labelSelectorPath", ""))


def crd_status(crd: dict[str, Any], *, now: str) -> dict[str, Any]:
    """The status the apiextensions controllers would write once the names are accepted."""
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind')}List")
    storage = [version["name"] for version in spec.get("versions") or () if version.get("storage")]
    return {
        "acceptedNames": names,
        "storedVersions": storage,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
    }
