"""Secrets a spec names, checked before the first external action.

A router's bearer token, a router cluster's kubeconfig and Prometheus' credentials
are read only when they are first used: the first weight change, the first
measurement. Without this check a missing Secret would surface with green
already built and traffic about to move; with it, the upgrade is Blocked in
preflight, the message names the field that refers to the Secret, and nothing has
been created. The git repository's Secret is left to the git-mode preflight
(:mod:`bluegreen.workloads.flux_git`), which also knows which keys each URL
scheme needs.

Every reference is to a Secret in the ClusterUpgrade's own namespace (the API
says so for every ``secretRef``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from bluegreen.api import spec as api
from bluegreen.kube.client import KubeClient, Resource

SECRETS = Resource("", "v1", "secrets")


@dataclasses.dataclass(frozen=True)
class SecretReference:
    """One place in the spec that names a Secret: ``keys`` are alternatives, any one of them will do."""

    field: str  # e.g. spec.traffic.routers[0].webhook.bearerTokenSecretRef
    name: str
    keys: tuple[tuple[str, ...], ...] = ()  # each inner tuple: keys that must all be there; () = any content

    def problem(self, *, namespace: str, data_keys: Sequence[str] | None) -> str | None:
        """What is wrong with the Secret as found (``data_keys`` None: no such Secret), or None."""
        if data_keys is None:
            return (f"{self.field}: Secret {namespace}/{self.name} does not exist; create it in namespace "
                    f"{namespace} or name another Secret there")
        if not self.keys or any(all(key in data_keys for key in option) for option in self.keys):
            return None
        wanted = " or ".join(" and ".join(option) for option in self.keys)
        return (f"{self.field}: Secret {namespace}/{self.name} has no key {wanted} (it has: "
                f"{', '.join(sorted(data_keys)) or 'no keys'}); add the key or set {self.field}.key")


def secret_references(spec: api.ClusterUpgradeSpec) -> list[SecretReference]:
    """Every Secret the spec names, with the keys its user will read, in spec order."""
    references: list[SecretReference] = []
    for index, router in enumerate(spec.routers):
        where = f"spec.traffic.routers[{index}]"
        if router.webhook is not None and router.webhook.bearer_token_secret_ref is not None:
            ref = router.webhook.bearer_token_secret_ref
            references.append(SecretReference(field=f"{where}.webhook.bearerTokenSecretRef", name=ref.name,
                                              keys=((ref.key or "token",),)))
        for kind, config in (("gatewayAPI", router.gateway_api), ("emissary", router.emissary),
                             ("istio", router.istio)):
            access = getattr(config, "cluster", None)
            if isinstance(access, api.ClusterAccess) and access.kubeconfig_secret_ref is not None:
                ref = access.kubeconfig_secret_ref
                references.append(SecretReference(field=f"{where}.{kind}.cluster.kubeconfigSecretRef",
                                                  name=ref.name, keys=((ref.key or "value",),)))
    for index, metric in enumerate(spec.analysis.metrics):
        if metric.prometheus is not None and metric.prometheus.secret_ref is not None:
            references.append(SecretReference(
                field=f"spec.analysis.metrics[{index}].prometheus.secretRef", name=metric.prometheus.secret_ref.name,
                keys=(("token",), ("username", "password"))))
    return references


def problems(references: Sequence[SecretReference], *, namespace: str,
             found: dict[str, Sequence[str] | None]) -> list[str]:
    """One line per reference whose Secret is missing or lacks its key; ``found``: data keys by Secret name."""
    lines = (reference.problem(namespace=namespace, data_keys=found.get(reference.name))
             for reference in references)
    return [line for line in lines if line is not None]


async def missing_secrets(client: KubeClient, *, namespace: str, spec: api.ClusterUpgradeSpec) -> list[str]:
    """Read each named Secret once (only to list its keys) and say what is missing; [] when all is there."""
    references = secret_references(spec)
    found: dict[str, Sequence[str] | None] = {}
    for name in dict.fromkeys(reference.name for reference in references):
        secret = await client.get(SECRETS, namespace=namespace, name=name)
        found[name] = None if secret is None else [*(secret.get("data") or {}), *(secret.get("stringData") or {})]
    return problems(references, namespace=namespace, found=found)
