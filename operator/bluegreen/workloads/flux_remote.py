"""Flux remote mode: green's workloads come from copies of blue's Kustomizations.

Blue's Flux ``Kustomization`` objects live on the management cluster and apply
to blue through ``spec.kubeConfig.secretRef``. Green gets one copy of each,
identical except that it applies to green: same source, path and revision, so
Flux itself makes green hold what blue holds, and parity is judged by
comparing ``status.lastAppliedRevision`` on both sides.

How a copy is made (the *next* upgrade must find green's copies the way this
one found blue's, so the copy is an ordinary Kustomization of green's):

* name: blue's with blue's cluster name replaced by green's, or ``<name>-<green>``;
* labels: blue's, with any value equal to blue's name replaced by green's (so
  ``bluegreen.io/cluster: prod-blue`` becomes ``prod-green``), plus
  ``bluegreen.io/copy-of: <blue's Kustomization>``, ``bluegreen.io/cluster:
  <green>`` and the labels the caller stamps (the owning upgrade);
* spec: blue's, with ``kubeConfig.secretRef`` pointing at green's kubeconfig,
  ``postBuild.substitute`` values equal to blue's name replaced, ``dependsOn``
  entries naming one of blue's selected Kustomizations pointed at that one's
  copy, ``suspend: false``, and in ``patches`` a hold (see :mod:`.flux_holds`)
  for every workload a ``spec.hooks[]`` handoff moves, so green never starts one
  before its handoff. Blue's own holds are never copied.

Holds are put on a copy only when it is created. Afterwards a sync keeps each
copy's holds as they are: a handoff that lifted green's hold (or a rollback
that put it back) is not undone by the next sync. A hold on a workload no hook
names any longer is dropped.

Flux reads the kubeconfig Secret from the Kustomization's own namespace. When
green's kubeconfig Secret lives elsewhere (Cluster API writes it next to the
Cluster), it is copied into the Kustomizations' namespace, labelled as
bluegreen's, and kept equal to the original on every sync.

Each call is idempotent: desired state is computed from blue, compared with
what exists, and only differences are written. A sync never deletes: a copy
whose original left blue's selection is still observed (so a person sees it)
and goes only with ``delete(side="green")``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from typing import Any

from bluegreen.api.spec import FluxMode, FluxWorkloads
from bluegreen.engine.types import KustomizationObservation, WorkloadsObservation
from bluegreen.kube import client as kubeclient
from bluegreen.kube import mergepatch, objects
from bluegreen.workloads import flux_holds
from bluegreen.workloads.base import RemoteWatch

KUSTOMIZATIONS = kubeclient.Resource("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
SECRETS = kubeclient.Resource("", "v1", "secrets")

LABEL_COPY_OF = "bluegreen.io/copy-of"
LABEL_CLUSTER = "bluegreen.io/cluster"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "bluegreen"
ANNOTATION_COPIED_FROM = "bluegreen.io/copied-from"  # on copied Secrets: "<namespace>/<name>"


class FluxSyncError(Exception):
    """Green's copies cannot be made as asked; the message names the object and the fix."""


def kustomization_labels(flux: FluxWorkloads, *, green_name: str) -> frozenset[frozenset[tuple[str, str]]]:
    """What marks the Kustomizations an upgrade reads, for its wake-ups: blue's selector; green's copies'
    cluster label (each label set is one a Kustomization must carry whole)."""
    return frozenset({frozenset(flux.selector.match_labels.items()), frozenset({(LABEL_CLUSTER, green_name)})})


def copy_name(blue_kustomization: str, *, blue_name: str, green_name: str) -> str:
    """Green's copy's name: blue's cluster name replaced by green's, else ``<name>-<green>``."""
    if blue_name in blue_kustomization:
        return blue_kustomization.replace(blue_name, green_name)
    return f"{blue_kustomization}-{green_name}"


def desired_copy(
    blue: Mapping[str, Any],
    *,
    blue_name: str,
    green_name: str,
    secret_name: str,
    secret_key: str,
    sibling_names: Mapping[str, str],
    stamp: Mapping[str, str],
    holds: Sequence[flux_holds.HoldTarget] = (),
) -> dict[str, Any]:
    """Green's Kustomization for one of blue's (see the module docstring for the rules).

    ``sibling_names`` maps each of blue's selected Kustomization names to its
    copy's name, to re-point ``dependsOn``; ``holds`` are the workloads held at 0
    on a new copy.
    """
    blue_meta = objects.metadata(blue)
    blue_ks_name = str(blue_meta.get("name", ""))
    namespace = str(blue_meta.get("namespace", ""))
    labels = objects.replace_values(objects.labels(blue), old=blue_name, new=green_name)
    labels.update(stamp)
    labels[LABEL_COPY_OF] = blue_ks_name
    labels[LABEL_CLUSTER] = green_name

    spec = copy.deepcopy(blue.get("spec") or {})
    spec["kubeConfig"] = {"secretRef": {"name": secret_name, "key": secret_key}}
    spec["suspend"] = False
    post_build = spec.get("postBuild")
    if isinstance(post_build, dict) and isinstance(post_build.get("substitute"), dict):
        post_build["substitute"] = objects.replace_values(post_build["substitute"], old=blue_name, new=green_name)
    depends_on = spec.get("dependsOn")
    if isinstance(depends_on, list):
        spec["dependsOn"] = [_repoint(entry, namespace=namespace, sibling_names=sibling_names) for entry in depends_on]
    patches = flux_holds.without_holds(flux_holds.patches_of(blue)) + [
        flux_holds.hold_patch(target) for target in holds]
    if patches:
        spec["patches"] = patches
    else:
        spec.pop("patches", None)

    return {
        "apiVersion": KUSTOMIZATIONS.api_version,
        "kind": "Kustomization",
        "metadata": {
            "name": copy_name(blue_ks_name, blue_name=blue_name, green_name=green_name),
            "namespace": namespace,
            "labels": labels,
        },
        "spec": spec,
    }


def _repoint(entry: Any, *, namespace: str, sibling_names: Mapping[str, str]) -> Any:
    if not isinstance(entry, dict) or entry.get("namespace", namespace) != namespace:
        return entry
    target = sibling_names.get(str(entry.get("name", "")))
    return {**entry, "name": target} if target else entry


def observe_kustomization(kustomization: Mapping[str, Any]) -> KustomizationObservation:
    """Ready means the generation is observed and ``Ready=True``; reason/message come from ``Ready``."""
    meta = objects.metadata(kustomization)
    status = kustomization.get("status") if isinstance(kustomization.get("status"), dict) else {}
    assert isinstance(status, dict)
    ready_condition = objects.condition(kustomization, "Ready")
    observed = objects.generation_observed(kustomization)
    ready = observed and ready_condition is not None and ready_condition.get("status") == "True"
    if ready_condition is None:
        reason, message = "Progressing", "kustomize-controller has not reported Ready yet"
    else:
        reason = str(ready_condition.get("reason") or "")
        message = str(ready_condition.get("message") or "")
    if not observed and ready_condition is not None:
        message = (
            f"generation {meta.get('generation')} not observed yet "
            f"(status is for {status.get('observedGeneration', 'none')}); {message}"
        ).rstrip("; ")
    revision = status.get("lastAppliedRevision")
    return KustomizationObservation(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        ready=ready,
        revision=str(revision) if revision else None,
        reason=reason,
        message=message,
        copy_of=objects.labels(kustomization).get(LABEL_COPY_OF),
    )


class FluxRemoteWorkloads:
    """WorkloadSync through Kustomizations on the management cluster (``workloads.flux.mode: remote``)."""

    def __init__(
        self,
        *,
        client: kubeclient.KubeClient,
        flux: FluxWorkloads,
        namespace: str,
        labels: Mapping[str, str],
        holds: Sequence[flux_holds.HoldTarget] = (),
    ) -> None:
        if flux.mode != FluxMode.REMOTE:
            raise ValueError(f"FluxRemoteWorkloads handles workloads.flux.mode remote, not {flux.mode.value}")
        if not flux.selector.match_labels:
            raise FluxSyncError(
                "spec.workloads.flux.selector.matchLabels is empty, which would select every Kustomization "
                f"in {namespace}; give the labels of blue's Kustomizations, e.g. bluegreen.io/cluster: <blue>"
            )
        self._client = client
        self._selector = dict(flux.selector.match_labels)
        self._namespace = namespace
        self._stamp = dict(labels)
        self._holds = tuple(holds)

    async def _blue(self, *, green_name: str) -> list[dict[str, Any]]:
        found = await self._client.list(KUSTOMIZATIONS, namespace=self._namespace, label_selector=self._selector)
        # A selector that also matches green's copies (e.g. a label shared by
        # both sides) must not make green a copy of itself.
        return sorted(
            (item for item in found if objects.labels(item).get(LABEL_CLUSTER) != green_name
             or LABEL_COPY_OF not in objects.labels(item)),
            key=objects.name_of,
        )

    async def _green(self, *, green_name: str) -> list[dict[str, Any]]:
        found = await self._client.list(
            KUSTOMIZATIONS, namespace=self._namespace, label_selector=f"{LABEL_CLUSTER}={green_name},{LABEL_COPY_OF}"
        )
        return sorted(found, key=objects.name_of)

    async def kustomizations(self, *, side: str, green_name: str) -> list[dict[str, Any]]:
        """Blue's selected Kustomizations (``side="blue"``) or green's copies (``"green"``), by name."""
        if side == "blue":
            return await self._blue(green_name=green_name)
        if side == "green":
            return await self._green(green_name=green_name)
        raise ValueError(f"side must be 'blue' or 'green', not {side!r}")

    async def observe(self, *, blue_name: str, green_name: str) -> WorkloadsObservation:
        blue, green = await asyncio.gather(self._blue(green_name=green_name), self._green(green_name=green_name))
        copied = {objects.labels(item).get(LABEL_COPY_OF) for item in green}
        missing = tuple(
            copy_name(objects.name_of(item), blue_name=blue_name, green_name=green_name)
            for item in blue
            if objects.name_of(item) not in copied
        )
        return WorkloadsObservation(
            blue=tuple(observe_kustomization(item) for item in blue),
            green=tuple(observe_kustomization(item) for item in green),
            green_missing=missing,
        )

    def remote_watches(self, *, blue_name: str, green_name: str) -> list[RemoteWatch]:
        return []  # everything remote mode reads is on the management cluster, watched by kopf

    async def preflight(self, *, blue_name: str, green_name: str) -> list[str]:
        # Everything remote mode needs is on the management cluster and checked as it goes
        # (the selector finding blue's Kustomizations is a preflight check of the engine).
        return []

    async def sync_green(
        self, *, blue_name: str, green_name: str, kubeconfig_secret: tuple[str, str, str]
    ) -> list[str]:
        journal: list[str] = []
        secret_namespace, secret_name, secret_key = kubeconfig_secret
        if secret_namespace != self._namespace:
            secret_name, line = await self._copy_secret(
                source_namespace=secret_namespace, name=secret_name, key=secret_key, green_name=green_name
            )
            if line:
                journal.append(line)

        blue = await self._blue(green_name=green_name)
        siblings = {
            objects.name_of(item): copy_name(objects.name_of(item), blue_name=blue_name, green_name=green_name)
            for item in blue
        }
        existing = {objects.name_of(item): item for item in await self._green(green_name=green_name)}
        for item in blue:
            desired = desired_copy(
                item,
                blue_name=blue_name,
                green_name=green_name,
                secret_name=secret_name,
                secret_key=secret_key,
                sibling_names=siblings,
                stamp=self._stamp,
                holds=self._holds,
            )
            line = await self._apply_copy(desired, existing=existing.pop(desired["metadata"]["name"], None))
            if line:
                journal.append(line)
        # Copies whose original left blue stay: deleting them here would prune
        # green's workloads, and a sync after blue's retirement would empty green.
        return journal

    async def _apply_copy(self, desired: dict[str, Any], *, existing: dict[str, Any] | None) -> str | None:
        name = desired["metadata"]["name"]
        where = f"Kustomization {self._namespace}/{name}"
        blue_ks = desired["metadata"]["labels"][LABEL_COPY_OF]
        if existing is None:
            try:
                await self._client.create(KUSTOMIZATIONS, desired, namespace=self._namespace)
            except kubeclient.ConflictError:
                current = await self._client.get(KUSTOMIZATIONS, namespace=self._namespace, name=name)
                if current is None or objects.labels(current).get(LABEL_COPY_OF) != blue_ks:
                    raise FluxSyncError(
                        f"{where} already exists and is not bluegreen's copy of {blue_ks}; rename or delete it, "
                        "or set target.greenName to a name whose copies do not collide"
                    ) from None
                existing = current
            else:
                return f"created {where} from {blue_ks}"
        desired = self._keep_holds(desired, existing=existing)
        patch: dict[str, Any] = {}
        current_labels = objects.labels(existing)
        label_changes = {
            key: value for key, value in desired["metadata"]["labels"].items() if current_labels.get(key) != value
        }
        if label_changes:
            patch["metadata"] = {"labels": label_changes}
        spec_patch = mergepatch.merge_diff(existing.get("spec") or {}, desired["spec"])
        if spec_patch:
            patch["spec"] = spec_patch
        if not patch:
            return None
        await self._client.patch(KUSTOMIZATIONS, namespace=self._namespace, name=name, body=patch)
        changed = " and ".join(part for part in ("labels", "spec") if part in patch)
        return f"updated {where}: {changed} drifted from {blue_ks}"

    def _keep_holds(self, desired: dict[str, Any], *, existing: Mapping[str, Any]) -> dict[str, Any]:
        """``desired`` with the holds ``existing`` has now (on workloads hooks still name) instead of new ones."""
        current = flux_holds.holds_in(flux_holds.patches_of(existing), self._holds)
        patches = flux_holds.without_holds(flux_holds.patches_of(desired)) + current
        spec = dict(desired["spec"])
        if patches:
            spec["patches"] = patches
        else:
            spec.pop("patches", None)
        return {**desired, "spec": spec}

    async def _copy_secret(
        self, *, source_namespace: str, name: str, key: str, green_name: str
    ) -> tuple[str, str | None]:
        source = await self._client.get(SECRETS, namespace=source_namespace, name=name)
        if source is None or key not in (source.get("data") or {}):
            raise FluxSyncError(
                f"green's kubeconfig Secret {source_namespace}/{name} (key {key}) does not exist yet"
            )
        value = source["data"][key]
        origin = f"{source_namespace}/{name}"
        desired = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": self._namespace,
                "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLUSTER: green_name, **self._stamp},
                "annotations": {ANNOTATION_COPIED_FROM: origin},
            },
            "type": "Opaque",
            "data": {key: value},
        }
        where = f"Secret {self._namespace}/{name}"
        current = await self._client.get(SECRETS, namespace=self._namespace, name=name)
        if current is None:
            try:
                await self._client.create(SECRETS, desired, namespace=self._namespace)
                return name, f"copied {origin} to {where} (Flux reads kubeconfigs from its own namespace)"
            except kubeclient.ConflictError:
                current = await self._client.get(SECRETS, namespace=self._namespace, name=name)
                if current is None:
                    raise
        if objects.labels(current).get(LABEL_MANAGED_BY) != MANAGED_BY:
            raise FluxSyncError(
                f"{where} exists and was not created by bluegreen; green's kubeconfig {origin} cannot be "
                f"copied there. Delete or rename it, or set workloads.flux.namespace to {source_namespace}"
            )
        if (current.get("data") or {}).get(key) == value:
            return name, None
        await self._client.patch(SECRETS, namespace=self._namespace, name=name, body={"data": {key: value}})
        return name, f"updated {where}: {origin} changed"

    async def delete(self, *, side: str, blue_name: str, green_name: str) -> list[str]:
        if side == "green":
            targets = [objects.name_of(item) for item in await self._green(green_name=green_name)]
        elif side == "blue":
            targets = [objects.name_of(item) for item in await self._blue(green_name=green_name)]
        else:
            raise ValueError(f"side must be 'blue' or 'green', not {side!r}")
        journal = [
            f"deleted Kustomization {self._namespace}/{name}"
            for name in targets
            if await self._client.delete(KUSTOMIZATIONS, namespace=self._namespace, name=name)
        ]
        if side == "green":
            secrets = await self._client.list(
                SECRETS,
                namespace=self._namespace,
                label_selector={LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLUSTER: green_name},
            )
            for secret in secrets:
                name = objects.name_of(secret)
                if await self._client.delete(SECRETS, namespace=self._namespace, name=name):
                    journal.append(f"deleted Secret {self._namespace}/{name} (copy of green's kubeconfig)")
        return journal
