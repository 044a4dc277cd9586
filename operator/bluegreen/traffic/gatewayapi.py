"""Gateway API as a router: the weights of blue's and green's backendRefs in one rule of an HTTPRoute.

Blue and green are whatever backends the user names in the rule, typically a
selector-less Service per cluster with a managed EndpointSlice pointing at
that cluster's ingress. Gateway API weights are relative (0-1,000,000, a
missing weight is 1, the share is ``weight / sum``), so writing the percent
itself gives exactly the split asked for.

Invariants:

- Only blue's and green's backendRefs in rule ``rule`` are touched, and only
  their ``weight``; every other ref, field, rule, filter and match is written
  back as it was read. Refs are found by name, namespace (default: the
  route's), port (when the spec names one), kind and group.
- ``set_weights`` reads the route and compares the split in effect (exact
  proportion, so ``1:1`` already is 50/50) with the one asked for; it writes
  only on a difference, in one merge patch of ``spec.rules`` guarded by the
  ``resourceVersion`` it read (see :mod:`bluegreen.traffic.kubeobjects`).
- Green's ref is appended to the rule when missing (a rule holds at most 16).
  A missing ref counts as weight 0: the retired side's is gone after
  ``finalize``; blue's is never added back (it names the user's existing
  backend), so asking blue for traffic without its ref is an error.
- ``verify`` reads the weights back and, when the Gateway controller reports
  on the route (``status.parents``), waits until it has seen the current
  generation (:class:`~bluegreen.traffic.base.RouterPending`) and refuses a
  route it did not accept or whose refs it could not resolve: Gateway
  implementations answer 500 for the share of an unresolved ref. The
  ResolvedRefs condition covers the whole route and does not say which ref
  failed, so a broken ref in another rule stops the upgrade too, with the
  controller's message: better than shifting traffic onto a green backend
  that answers 500.
- ``save`` keeps the rule's backendRefs as read. ``finalize`` (Remove) drops
  the retired side's backendRef and keeps every other ref; it refuses while
  that ref still takes a share, or when the kept side's ref would carry
  nothing. Restore after a rollback writes the saved backendRefs back as they
  were (so green's ref, added by bluegreen, is gone again). A route that no
  longer exists routes to nobody: finalize has nothing to do.
"""

from __future__ import annotations

import copy
from typing import Any

from bluegreen.api import spec
from bluegreen.kube import client as kubeclient
from bluegreen.traffic import base, kubeobjects, retiring

HTTPROUTES = kubeclient.Resource("gateway.networking.k8s.io", "v1", "httproutes")
MAX_BACKEND_REFS = 16
MAX_WEIGHT = 1_000_000
DEFAULT_WEIGHT = 1
# How long to wait before looking again while the Gateway controller catches up with a change.
CONTROLLER_RETRY_SECONDS = 2.0


class GatewayAPIRouter:
    """Split traffic between two backendRefs of one HTTPRoute rule."""

    def __init__(
        self,
        *,
        name: str,
        cluster: kubeobjects.Cluster,
        namespace: str,
        route: str,
        rule: int,
        blue: spec.BackendRef,
        green: spec.BackendRef,
    ) -> None:
        if rule < 0:
            raise ValueError(f"gatewayAPI.rule must be 0 or more, got {rule}")
        if _same_backend(blue, green, route_namespace=namespace):
            raise ValueError(f"gatewayAPI.blueBackend and gatewayAPI.greenBackend both name {_label(blue)}")
        self._name = name
        self._cluster = cluster
        self._namespace = namespace
        self._route = route
        self._rule = rule
        self._blue = blue
        self._green = green
        self._entries = kubeobjects.EntryList(
            field="rules", position=rule, key="backendRefs", noun="backend", index=self._index,
            weight=lambda refs, index: self._weight(refs[index]), label=lambda side: _label(self._backend(side)),
        )

    @classmethod
    def from_spec(
        cls, *, name: str, config: spec.GatewayAPIRouter, context: base.RouterContext
    ) -> GatewayAPIRouter:
        return cls(
            name=name,
            cluster=kubeobjects.Cluster.from_access(config.cluster, context=context),
            namespace=config.http_route.namespace,
            route=config.http_route.name,
            rule=config.rule,
            blue=config.blue_backend,
            green=config.green_backend,
        )

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return (
            f"GatewayAPIRouter(name={self._name!r}, route={self._what!r}, rule={self._rule}, "
            f"blue={_label(self._blue)!r}, green={_label(self._green)!r}, cluster={str(self._cluster)!r})"
        )

    @property
    def _what(self) -> str:
        return f"HTTPRoute {self._namespace}/{self._route}"

    async def set_weights(self, *, blue: int, green: int) -> base.RouterChange:
        kubeobjects.check_percent(blue=blue, green=green)
        client = await self._cluster.client()
        route = await self._read(client)
        rules, refs = self._rule_refs(route)
        blue_index, green_index = self._index(refs, "blue"), self._index(refs, "green")
        current_blue, current_green = self._entries.shares(refs)
        if kubeobjects.same_split(current=(current_blue, current_green), desired=(blue, green)):
            return base.RouterChange(changed=False,
                                     detail=f"{self._what} rules[{self._rule}]: {self._entries.state(refs)}")
        if blue_index is None and blue > 0:
            raise self._missing(refs, self._blue, side="blue")

        new_refs = copy.deepcopy(refs)
        if blue_index is not None:
            new_refs[blue_index]["weight"] = blue
        if green_index is None:
            if len(refs) >= MAX_BACKEND_REFS:
                raise base.RouterError(
                    f"{self._what} rules[{self._rule}] already has {len(refs)} backendRefs, the most Gateway API "
                    f"allows; remove one so green's backend {_label(self._green)} can be added"
                )
            new_refs.append(self._new_ref(self._green, weight=green))
        else:
            new_refs[green_index]["weight"] = green
        new_rules = copy.deepcopy(rules)
        new_rules[self._rule]["backendRefs"] = new_refs
        written = await kubeobjects.write(client, HTTPROUTES, read_back=route, spec_patch={"rules": new_rules},
                                          what=self._what, cluster=self._cluster)
        added = " (added)" if green_index is None else ""
        detail = (
            f"{self._what} rules[{self._rule}]: {_label(self._blue)} {current_blue}->{blue}, "
            f"{_label(self._green)} {current_green}->{green}{added}"
        )
        return base.RouterChange(changed=True, detail=detail, change_id=kubeobjects.resource_version(written))

    async def verify(self) -> base.RouterWeights:
        client = await self._cluster.client()
        route = await self._read(client)
        _, refs = self._rule_refs(route)
        if self._index(refs, "blue") is None and self._index(refs, "green") is None:
            raise self._missing(refs, self._blue, side="blue")
        blue_weight, green_weight = self._entries.shares(refs)
        if blue_weight + green_weight == 0:
            raise base.RouterError(
                f"{self._what} rules[{self._rule}] gives blue's and green's backends weight 0: "
                "neither takes traffic"
            )
        self._check_controller(route)
        return kubeobjects.percent(blue_weight=blue_weight, green_weight=green_weight)

    async def save(self) -> dict[str, Any]:
        """The rule's backendRefs as read."""
        _, refs = self._rule_refs(await self._read(await self._cluster.client()))
        return {"backendRefs": refs}

    async def finalize(self, *, retired: str, mode: str, original: dict[str, Any] | None) -> str:
        retirement = retiring.plan(router=self._name, retired=retired, mode=mode, original=original)
        client = await self._cluster.client()
        route = await kubeobjects.get(client, HTTPROUTES, namespace=self._namespace, name=self._route,
                                      what=self._what, cluster=self._cluster)
        if route is None:
            return f"{self._what} does not exist on {self._cluster}: nothing routes through it"
        _, refs = self._rule_refs(route)
        return await self._entries.finalize(retirement, client=client, resource=HTTPROUTES, obj=route, entries=refs,
                                            router=self._name, what=self._what, cluster=self._cluster)

    # --- reading the route -------------------------------------------------------------------------

    async def _read(self, client: kubeclient.KubeClient) -> dict[str, Any]:
        return await kubeobjects.read(
            client, HTTPROUTES, namespace=self._namespace, name=self._route, what=self._what, cluster=self._cluster
        )

    def _rule_refs(self, route: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rules = (route.get("spec") or {}).get("rules")
        if not isinstance(rules, list) or self._rule >= len(rules):
            count = len(rules) if isinstance(rules, list) else 0
            raise base.RouterError(
                f"{self._what} has {count} rule{'s' if count != 1 else ''}, so gatewayAPI.rule {self._rule} "
                f"names none; rules are counted from 0"
            )
        refs = rules[self._rule].get("backendRefs") or []
        if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
            raise base.RouterError(f"{self._what} rules[{self._rule}].backendRefs is not a list of objects")
        return rules, refs

    def _find(self, refs: list[dict[str, Any]], backend: spec.BackendRef, *, side: str) -> int | None:
        found = [index for index, ref in enumerate(refs) if _matches(ref, backend, route_namespace=self._namespace)]
        if len(found) > 1:
            raise base.RouterError(
                f"{self._what} rules[{self._rule}] has {len(found)} backendRefs matching {side}'s backend "
                f"{_label(backend)} (refs {', '.join(str(index) for index in found)}); "
                f"set gatewayAPI.{side}Backend.port to tell them apart"
            )
        return found[0] if found else None

    def _backend(self, side: str) -> spec.BackendRef:
        return self._blue if side == "blue" else self._green

    def _index(self, refs: list[dict[str, Any]], side: str) -> int | None:
        return self._find(refs, self._backend(side), side=side)

    def _missing(self, refs: list[dict[str, Any]], backend: spec.BackendRef, *, side: str) -> base.RouterError:
        present = ", ".join(_ref_label(ref) for ref in refs) or "none"
        return base.RouterError(
            f"{self._what} rules[{self._rule}] has no backendRef for {side}'s backend {_label(backend)}; "
            f"its backendRefs: {present}. bluegreen adds green's ref when missing, never blue's: "
            f"gatewayAPI.{side}Backend must name the ref that serves traffic today"
        )

    def _weight(self, ref: dict[str, Any]) -> int:
        weight = ref.get("weight", DEFAULT_WEIGHT)
        if not kubeobjects.is_weight(weight, maximum=MAX_WEIGHT):
            raise base.RouterError(
                f"{self._what} rules[{self._rule}] backendRef {_ref_label(ref)} has weight {weight!r}, "
                f"not an integer from 0 to {MAX_WEIGHT}"
            )
        return int(weight)

    def _new_ref(self, backend: spec.BackendRef, *, weight: int) -> dict[str, Any]:
        if backend.port is None and backend.kind == "Service" and backend.group == "":
            raise base.RouterError(
                f"{self._what} rules[{self._rule}] has no backendRef for green's Service {backend.name} yet, and "
                "Gateway API needs a port to add one; set gatewayAPI.greenBackend.port"
            )
        ref: dict[str, Any] = {"name": backend.name}
        if backend.group != "":
            ref["group"] = backend.group
        if backend.kind != "Service":
            ref["kind"] = backend.kind
        if backend.namespace is not None:
            ref["namespace"] = backend.namespace
        if backend.port is not None:
            ref["port"] = backend.port
        ref["weight"] = weight
        return ref

    def _check_controller(self, route: dict[str, Any]) -> None:
        generation = (route.get("metadata") or {}).get("generation")
        parents = (route.get("status") or {}).get("parents") or []
        for parent in parents:
            if not isinstance(parent, dict):
                continue
            parent_name = (parent.get("parentRef") or {}).get("name", "?")
            for condition in parent.get("conditions") or []:
                if not isinstance(condition, dict) or condition.get("type") not in ("Accepted", "ResolvedRefs"):
                    continue
                observed = condition.get("observedGeneration")
                if generation is not None and observed is not None and int(observed) < int(generation):
                    raise base.RouterPending(
                        f"the Gateway controller of parent {parent_name} has not seen {self._what} "
                        f"generation {generation} yet (its {condition['type']} condition is for {observed})",
                        retry_after=CONTROLLER_RETRY_SECONDS,
                    )
                if condition.get("status") == "False":
                    raise base.RouterError(
                        f"parent {parent_name} reports {self._what} {condition['type']}=False "
                        f"({condition.get('reason', '')}: {condition.get('message', '')}); requests for a "
                        "backend it cannot resolve get 500"
                    )


def _matches(ref: dict[str, Any], backend: spec.BackendRef, *, route_namespace: str) -> bool:
    return (
        ref.get("name") == backend.name
        and (ref.get("namespace") or route_namespace) == (backend.namespace or route_namespace)
        and (ref.get("kind") or "Service") == backend.kind
        and (ref.get("group") or "") == backend.group
        and (backend.port is None or ref.get("port") == backend.port)
    )


def _same_backend(blue: spec.BackendRef, green: spec.BackendRef, *, route_namespace: str) -> bool:
    return (
        blue.name == green.name
        and (blue.namespace or route_namespace) == (green.namespace or route_namespace)
        and (blue.kind, blue.group) == (green.kind, green.group)
        and (blue.port is None or green.port is None or blue.port == green.port)
    )


def _label(backend: spec.BackendRef) -> str:
    kind = "" if (backend.kind, backend.group) == ("Service", "") else f"{backend.kind}."
    where = f"{backend.namespace}/" if backend.namespace else ""
    port = f":{backend.port}" if backend.port is not None else ""
    return f"{kind}{where}{backend.name}{port}"


def _ref_label(ref: dict[str, Any]) -> str:
    kind = ref.get("kind") or "Service"
    prefix = "" if (kind, ref.get("group") or "") == ("Service", "") else f"{kind}."
    where = f"{ref['namespace']}/" if ref.get("namespace") else ""
    port = f":{ref['port']}" if ref.get("port") is not None else ""
    return f"{prefix}{where}{ref.get('name', '?')}{port}"
