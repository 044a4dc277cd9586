"""The Eviction API of an emulated API server: ``POST .../pods/{name}/eviction``, as the apiserver answers it.

A node drain (``kubectl drain``, the NodePools strategy) removes pods through this
subresource rather than DELETE, because only the eviction consults PodDisruptionBudgets.
The rules and words are the apiserver's (checked against its eviction REST handler and the
"API-initiated Eviction" docs):

- the body is a ``policy/v1`` Eviction (``policy/v1beta1`` too while the cluster serves it);
  its ``metadata.name`` must be the pod's; ``deleteOptions`` are honoured
  (``gracePeriodSeconds``, ``preconditions``, ``dryRun``);
- a pod that is Pending, Succeeded, Failed or already terminating is deleted without
  looking at budgets; so is a pod without labels or without a budget selecting it;
- a pod selected by more than one budget is a 500;
- a budget whose status lags its generation is a 429 ("still being processed");
  ``disruptionsAllowed`` 0 is a 429 naming the budget, its desired and current healthy
  counts; a pod that is not Ready may go anyway when the budget is healthy
  (``unhealthyPodEvictionPolicy`` IfHealthyBudget, the default, or AlwaysAllow);
- an allowed eviction writes the budget's status first (``disruptionsAllowed`` - 1 and the
  pod in ``disruptedPods``), all under the store's lock, so two evictions racing for the
  last allowed disruption cannot both pass; then deletes the pod (gracefully when a
  simulated kubelet runs its node) and answers 201 with a Success Status.

The simulated disruption controller (``sim.disruption``) recomputes the status afterwards.
This module belongs to the test world: product code must not import it.
"""

from __future__ import annotations

import datetime
from typing import Any

from bluegreen.sim import kube_patch
from bluegreen.sim.kube_store import KubeApiError, Store, bad_request

POLICY_GROUP = "policy"
PDB_PLURAL = "poddisruptionbudgets"
TOO_MANY_REQUESTS = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE_BUDGETS = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"


def selector_matches(selector: Any, labels: dict[str, str], *, empty_matches_all: bool = True) -> bool:
    """A ``metav1.LabelSelector`` (matchLabels, matchExpressions) against an object's labels."""
    if not isinstance(selector, dict):
        return False  # a nil selector selects nothing
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return empty_matches_all
    if any(labels.get(key) != value for key, value in match_labels.items()):
        return False
    for expression in expressions:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(condition.get("type") == "Ready" and condition.get("status") == "True"
               for condition in (pod.get("status") or {}).get("conditions") or ())


def budgets_for(store: Store, pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The PodDisruptionBudgets of the pod's namespace that select it (policy/v1 semantics)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if not labels:
        return []
    info = store.resolve(POLICY_GROUP, "v1", PDB_PLURAL) or store.resolve(POLICY_GROUP, "v1beta1", PDB_PLURAL)
    if info is None:
        return []
    items, _ = store.list(info, meta.get("namespace"))
    # policy/v1beta1 read an empty selector as "no pods"; v1 (stored for both) as "every pod".
    return [item for item in items if selector_matches((item.get("spec") or {}).get("selector"), labels,
                                                       empty_matches_all=info.version == "v1")]


def _too_many_requests(message: str) -> KubeApiError:
    return KubeApiError(429, "TooManyRequests", TOO_MANY_REQUESTS, details={
        "causes": [{"reason": DISRUPTION_BUDGET_CAUSE, "message": message}], "retryAfterSeconds": 10})


def _denied_message(pdb: dict[str, Any]) -> str:
    name = pdb["metadata"]["name"]
    status = pdb.get("status") or {}
    desired, current = int(status.get("desiredHealthy") or 0), int(status.get("currentHealthy") or 0)
    condition = next((item for item in status.get("conditions") or () if item.get("type") == "DisruptionAllowed"),
                     None)
    failed = condition is not None and condition.get("status") == "False" and condition.get("message")
    if failed and condition is not None and condition.get("reason") == "SyncFailed":
        return (f"The disruption budget {name} does not allow evicting pods currently because it failed sync: "
                f"{condition['message']}")
    if current <= desired:
        return f"The disruption budget {name} needs {desired} healthy pods and has {current} currently"
    if failed and condition is not None:
        return (f"The disruption budget {name} does not allow evicting pods currently "
                f"({condition.get('reason')}): {condition['message']}")
    return f"The disruption budget {name} does not allow evicting pods currently"


def _ignores_budgets(pod: dict[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    return phase in ("Pending", "Succeeded", "Failed") or bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def _check_body(store: Store, name: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("Eviction must be a JSON object")
    api_version = body.get("apiVersion")
    served = {f"{POLICY_GROUP}/{version}" for version in ("v1", "v1beta1")
              if store.resolve(POLICY_GROUP, version, PDB_PLURAL) is not None}
    if body.get("kind") != "Eviction" or api_version not in served:
        raise bad_request(f"no kind \"{body.get('kind')}\" is registered for version \"{api_version}\" "
                          f"in scheme \"k8s.io/kubernetes/pkg/api/legacyscheme/scheme.go:30\"")
    if (body.get("metadata") or {}).get("name") != name:
        raise bad_request("name in URL does not match name in Eviction object")
    options = body.get("deleteOptions") or {}
    if not isinstance(options, dict):
        raise bad_request("deleteOptions must be an object")
    return options


def evict(store: Store, namespace: str, name: str, body: Any, *, dry_run: bool = False,
          manager: str | None = None) -> dict[str, Any]:
    """Evict a pod as the apiserver would; the Success Status on 201, else ``KubeApiError``."""
    options = _check_body(store, name, body)
    dry_run = dry_run or "All" in (options.get("dryRun") or ())
    grace = options.get("gracePeriodSeconds")
    pods = store.resolve("", "v1", "pods")
    assert pods is not None
    with store._lock:  # the budget check, its decrement and the delete are one step
        pod = store.get(pods, namespace, name)
        if not _ignores_budgets(pod):
            budgets = budgets_for(store, pod)
            if len(budgets) > 1:
                raise KubeApiError(500, "InternalError", MULTIPLE_BUDGETS)
            if budgets:
                _check_and_decrement(store, budgets[0], pod, dry_run=dry_run, manager=manager)
        store.delete(pods, namespace, name, preconditions=options.get("preconditions"), dry_run=dry_run,
                     grace_period=grace if isinstance(grace, int) else None)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def _check_and_decrement(store: Store, pdb: dict[str, Any], pod: dict[str, Any], *, dry_run: bool,
                         manager: str | None) -> None:
    spec = pdb.get("spec") or {}
    status = pdb.get("status") or {}
    desired, current = int(status.get("desiredHealthy") or 0), int(status.get("currentHealthy") or 0)
    if not pod_ready(pod):
        policy = spec.get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
        if policy == "AlwaysAllow" or (current >= desired > 0):
            return  # an unready pod does not count against a healthy budget
    name = pdb["metadata"]["name"]
    if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 1):
        raise _too_many_requests(f"The disruption budget {name} is still being processed by the server.")
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise KubeApiError(403, "Forbidden", f'poddisruptionbudgets.policy "{name}" is forbidden: '
                                             "pdb disruptions allowed is negative")
    if allowed == 0:
        raise _too_many_requests(_denied_message(pdb))
    if dry_run:
        return
    new_status = kube_patch.clone(status)
    new_status["disruptionsAllowed"] = allowed - 1
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new_status["disruptedPods"] = {**(status.get("disruptedPods") or {}), pod["metadata"]["name"]: now}
    if allowed - 1 == 0:
        new_status["conditions"] = with_disruption_condition(status.get("conditions") or [], allowed=False, now=now)
    info = store.resolve(POLICY_GROUP, "v1", PDB_PLURAL) or store.resolve(POLICY_GROUP, "v1beta1", PDB_PLURAL)
    assert info is not None
    store.patch(info, pdb["metadata"]["namespace"], name, {"status": new_status}, subresource="status",
                manager=manager)


def disruption_condition(*, allowed: bool, now: str) -> dict[str, Any]:
    """The ``DisruptionAllowed`` condition the disruption controller (and the eviction handler) write."""
    return {"type": "DisruptionAllowed", "status": "True" if allowed else "False",
            "reason": "SufficientPods" if allowed else "InsufficientPods", "message": "",
            "lastTransitionTime": now}


def with_disruption_condition(conditions: list[dict[str, Any]], *, allowed: bool, now: str) -> list[dict[str, Any]]:
    """``conditions`` with DisruptionAllowed set; its lastTransitionTime moves only when its status does."""
    wanted = "True" if allowed else "False"
    result = [item for item in conditions if item.get("type") != "DisruptionAllowed"]
    previous = next((item for item in conditions if item.get("type") == "DisruptionAllowed"), None)
    if previous is not None and previous.get("status") == wanted:
        result.append(previous)
    else:
        result.append(disruption_condition(allowed=allowed, now=now))
    return result
