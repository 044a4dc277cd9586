"""Which Kubernetes API versions stop being served, and in which release: the one table the preflight reads.

A blue/green upgrade puts blue's workloads onto a cluster of the target version.
Whatever blue runs or Flux applies through a group/version that is gone there
fails on green: Flux's apply is refused, a CronJob or a PodDisruptionBudget
silently never exists. So before provisioning, the preflight asks which
removals fall between blue's minor (exclusive) and the target's (inclusive).

The table follows REFERENCE.md ("Removed Kubernetes APIs") from 1.16 to 1.32.
Where a row there lists several old group/versions and several kinds together
(1.16's workload controllers), every combination is kept: one that never
existed matches nothing live, and in a manifest it would fail anyway.
Pure data and lookups, no I/O, so the engine's rules may use it.
"""

from __future__ import annotations

import dataclasses

from bluegreen.api.versions import KubeVersion, parse_version

__all__ = ["REMOVALS", "Removal", "find", "removals_up_to"]


@dataclasses.dataclass(frozen=True)
class Removal:
    """``group/version`` ``kind`` is not served from ``removed_in`` (``"1.25"``) on; use ``replacement``."""

    group: str
    version: str
    kind: str
    removed_in: str
    replacement: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def removed_in_version(self) -> KubeVersion:
        return parse_version(self.removed_in)


def _rows(removed_in: str, api_versions: tuple[str, ...], kinds: tuple[str, ...], replacement: str) -> list[Removal]:
    return [
        Removal(group=api_version.rpartition("/")[0], version=api_version.rpartition("/")[2],
                kind=kind, removed_in=removed_in, replacement=replacement)
        for api_version in api_versions
        for kind in kinds
    ]


_FLOWCONTROL = "flowcontrol.apiserver.k8s.io"
_FLOWCONTROL_KINDS = ("FlowSchema", "PriorityLevelConfiguration")
_REVIEWS_AUTHZ = ("SubjectAccessReview", "LocalSubjectAccessReview", "SelfSubjectAccessReview",
                  "SelfSubjectRulesReview")

REMOVALS: tuple[Removal, ...] = tuple([
    # 1.16
    *_rows("1.16", ("extensions/v1beta1", "apps/v1beta1", "apps/v1beta2"),
           ("Deployment", "DaemonSet", "ReplicaSet", "StatefulSet"), "apps/v1"),
    *_rows("1.16", ("extensions/v1beta1",), ("NetworkPolicy",), "networking.k8s.io/v1"),
    *_rows("1.16", ("extensions/v1beta1",), ("PodSecurityPolicy",), "policy/v1beta1"),
    # 1.22
    *_rows("1.22", ("extensions/v1beta1", "networking.k8s.io/v1beta1"), ("Ingress",), "networking.k8s.io/v1"),
    *_rows("1.22", ("networking.k8s.io/v1beta1",), ("IngressClass",), "networking.k8s.io/v1"),
    *_rows("1.22", ("apiextensions.k8s.io/v1beta1",), ("CustomResourceDefinition",), "apiextensions.k8s.io/v1"),
    *_rows("1.22", ("admissionregistration.k8s.io/v1beta1",),
           ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"), "admissionregistration.k8s.io/v1"),
    *_rows("1.22", ("apiregistration.k8s.io/v1beta1",), ("APIService",), "apiregistration.k8s.io/v1"),
    *_rows("1.22", ("rbac.authorization.k8s.io/v1beta1",),
           ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"), "rbac.authorization.k8s.io/v1"),
    *_rows("1.22", ("certificates.k8s.io/v1beta1",), ("CertificateSigningRequest",), "certificates.k8s.io/v1"),
    *_rows("1.22", ("coordination.k8s.io/v1beta1",), ("Lease",), "coordination.k8s.io/v1"),
    *_rows("1.22", ("scheduling.k8s.io/v1beta1",), ("PriorityClass",), "scheduling.k8s.io/v1"),
    *_rows("1.22", ("storage.k8s.io/v1beta1",),
           ("CSIDriver", "CSINode", "StorageClass", "VolumeAttachment"), "storage.k8s.io/v1"),
    *_rows("1.22", ("authentication.k8s.io/v1beta1",), ("TokenReview",), "authentication.k8s.io/v1"),
    *_rows("1.22", ("authorization.k8s.io/v1beta1",), _REVIEWS_AUTHZ, "authorization.k8s.io/v1"),
    # 1.25
    *_rows("1.25", ("batch/v1beta1",), ("CronJob",), "batch/v1"),
    *_rows("1.25", ("discovery.k8s.io/v1beta1",), ("EndpointSlice",), "discovery.k8s.io/v1"),
    *_rows("1.25", ("events.k8s.io/v1beta1",), ("Event",), "events.k8s.io/v1"),
    *_rows("1.25", ("autoscaling/v2beta1",), ("HorizontalPodAutoscaler",), "autoscaling/v2"),
    *_rows("1.25", ("policy/v1beta1",), ("PodDisruptionBudget",), "policy/v1"),
    *_rows("1.25", ("policy/v1beta1",), ("PodSecurityPolicy",), "none (use Pod Security Admission)"),
    *_rows("1.25", ("node.k8s.io/v1beta1",), ("RuntimeClass",), "node.k8s.io/v1"),
    # 1.26
    *_rows("1.26", ("autoscaling/v2beta2",), ("HorizontalPodAutoscaler",), "autoscaling/v2"),
    *_rows("1.26", (f"{_FLOWCONTROL}/v1beta1",), _FLOWCONTROL_KINDS, f"{_FLOWCONTROL}/v1beta3"),
    # 1.27
    *_rows("1.27", ("storage.k8s.io/v1beta1",), ("CSIStorageCapacity",), "storage.k8s.io/v1"),
    # 1.29
    *_rows("1.29", (f"{_FLOWCONTROL}/v1beta2",), _FLOWCONTROL_KINDS, f"{_FLOWCONTROL}/v1"),
    # 1.32
    *_rows("1.32", (f"{_FLOWCONTROL}/v1beta3",), _FLOWCONTROL_KINDS, f"{_FLOWCONTROL}/v1"),
])


def removals_up_to(*, current: str, target: str) -> list[Removal]:
    """Removals in the minors after ``current`` up to and including ``target``; none when target <= current."""
    low = parse_version(current).minor_key
    high = parse_version(target).minor_key
    return [removal for removal in REMOVALS if low < removal.removed_in_version.minor_key <= high]


def find(api_version: str, kind: str, *, current: str, target: str) -> Removal | None:
    """The removal that hits ``api_version`` ``kind`` on the way from ``current`` to ``target``, if any."""
    for removal in removals_up_to(current=current, target=target):
        if removal.api_version == api_version and removal.kind == kind:
            return removal
    return None
