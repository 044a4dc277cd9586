"""The routing APIs the Kubernetes-object routers edit, as CRDs for the emulated API servers.

Gateway API ``HTTPRoute``, Emissary ``Mapping`` and Istio ``VirtualService``
are installed as real CustomResourceDefinitions, so the emulator validates,
prunes and defaults them as a real API server would with the upstream CRDs.
The schemas are the upstream ones cut down to what a router touches, with
the upstream limits and defaults that matter for weights: an HTTPRoute holds
at most 16 rules and 16 backendRefs per rule, a backendRef's weight is
0-1,000,000 and defaults to 1 (kind defaults to Service, group to ""). The
rest of each object is kept as written (``x-kubernetes-preserve-unknown-fields``)
so tests can check that a router leaves it alone.

Also here: small builders for the objects, and a simulated Gateway controller
that writes ``status.parents`` the way implementations do (Accepted,
ResolvedRefs with ``observedGeneration``; ResolvedRefs=False when a Service a
backendRef names does not exist). This module belongs to the test world:
product code must not import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from bluegreen.sim import kube_store
from bluegreen.sim.controllers import KeyedWorkers
from bluegreen.sim.kube import KubeEmulator

logger = logging.getLogger(__name__)

GATEWAY_GROUP = "gateway.networking.k8s.io"
EMISSARY_GROUP = "getambassador.io"
ISTIO_GROUP = "networking.istio.io"
HTTPROUTES = f"{GATEWAY_GROUP}/v1/httproutes"
GATEWAY_CONTROLLER_NAME = "sim.bluegreen.io/gateway-controller"

_PRESERVE: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_PRESERVE_LIST: dict[str, Any] = {"type": "array", "items": _PRESERVE}
_STATUS: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _crd(*, group: str, plural: str, kind: str, versions: tuple[str, ...], spec_schema: dict[str, Any],
         short_names: tuple[str, ...] = (), categories: tuple[str, ...] = ()) -> dict[str, Any]:
    if not versions:
        raise ValueError("a CRD needs at least one version")
    schema = {"openAPIV3Schema": {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": _STATUS,
        },
    }}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List",
                      "shortNames": list(short_names), "categories": list(categories)},
            "versions": [
                # The first version given is the storage version, as the upstream CRDs have one.
                {"name": version, "served": True, "storage": index == 0, "schema": schema,
                 "subresources": {"status": {}}}
                for index, version in enumerate(versions)
            ],
        },
    }


_BACKEND_REF: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "group": {"type": "string", "default": "", "maxLength": 253},
        "kind": {"type": "string", "default": "Service", "minLength": 1, "maxLength": 63},
        "name": {"type": "string", "minLength": 1, "maxLength": 253},
        "namespace": {"type": "string", "minLength": 1, "maxLength": 63},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "weight": {"type": "integer", "default": 1, "minimum": 0, "maximum": 1000000},
        "filters": _PRESERVE_LIST,
    },
}

HTTPROUTE_SPEC: dict[str, Any] = {
    "type": "object",
    "properties": {
        "parentRefs": {"type": "array", "maxItems": 32, "items": {
            "type": "object", "required": ["name"], "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"name": {"type": "string", "minLength": 1}},
        }},
        "hostnames": {"type": "array", "maxItems": 16, "items": {"type": "string"}},
        "rules": {"type": "array", "maxItems": 16, "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "matches": _PRESERVE_LIST,
                "filters": _PRESERVE_LIST,
                "timeouts": _PRESERVE,
                "retry": _PRESERVE,
                "sessionPersistence": _PRESERVE,
                "backendRefs": {"type": "array", "maxItems": 16, "items": _BACKEND_REF},
            },
        }},
    },
}

MAPPING_SPEC: dict[str, Any] = {
    "type": "object",
    "required": ["prefix", "service"],
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "prefix": {"type": "string"},
        "hostname": {"type": "string"},
        "host": {"type": "string"},
        "service": {"type": "string"},
        "weight": {"type": "integer"},
    },
}

VIRTUALSERVICE_SPEC: dict[str, Any] = {
    "type": "object",
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "hosts": {"type": "array", "items": {"type": "string"}},
        "gateways": {"type": "array", "items": {"type": "string"}},
        "http": {"type": "array", "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "name": {"type": "string"},
                "route": {"type": "array", "items": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "required": ["destination"],
                    "properties": {
                        "destination": {
                            "type": "object",
                            "required": ["host"],
                            "properties": {
                                "host": {"type": "string"},
                                "subset": {"type": "string"},
                                "port": {"type": "object", "properties": {
                                    "number": {"type": "integer", "minimum": 0, "maximum": 4294967295}}},
                            },
                        },
                        "weight": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647},
                    },
                }},
            },
        }},
    },
}


def httproute_crd(*, versions: tuple[str, ...] = ("v1", "v1beta1")) -> dict[str, Any]:
    return _crd(group=GATEWAY_GROUP, plural="httproutes", kind="HTTPRoute", versions=versions,
                spec_schema=HTTPROUTE_SPEC, categories=("gateway-api",))


def mapping_crd(*, versions: tuple[str, ...] = ("v3alpha1", "v2")) -> dict[str, Any]:
    return _crd(group=EMISSARY_GROUP, plural="mappings", kind="Mapping", versions=versions,
                spec_schema=MAPPING_SPEC, categories=("ambassador-crds",))


def virtualservice_crd(*, versions: tuple[str, ...] = ("v1", "v1beta1", "v1alpha3")) -> dict[str, Any]:
    return _crd(group=ISTIO_GROUP, plural="virtualservices", kind="VirtualService", versions=versions,
                spec_schema=VIRTUALSERVICE_SPEC, short_names=("vs",), categories=("istio-io", "networking-istio-io"))


def install_gateway_api(emulator: KubeEmulator, *, versions: tuple[str, ...] = ("v1", "v1beta1")) -> None:
    emulator.install_crd(httproute_crd(versions=versions))


def install_emissary(emulator: KubeEmulator, *, versions: tuple[str, ...] = ("v3alpha1", "v2")) -> None:
    emulator.install_crd(mapping_crd(versions=versions))


def install_istio(emulator: KubeEmulator, *, versions: tuple[str, ...] = ("v1", "v1beta1", "v1alpha3")) -> None:
    emulator.install_crd(virtualservice_crd(versions=versions))


def install_all(emulator: KubeEmulator) -> None:
    """HTTPRoute, Mapping and VirtualService at their upstream versions."""
    install_gateway_api(emulator)
    install_emissary(emulator)
    install_istio(emulator)


# --- objects -----------------------------------------------------------------------------------------


def http_route(*, namespace: str, name: str, rules: list[dict[str, Any]], gateway: str = "edge",
               hostnames: tuple[str, ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": [{"name": gateway}], "rules": rules}
    if hostnames:
        spec["hostnames"] = list(hostnames)
    return {"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "HTTPRoute",
            "metadata": {"namespace": namespace, "name": name}, "spec": spec}


def mapping(*, namespace: str, name: str, prefix: str, service: str, weight: int | None = None,
            hostname: str | None = None, api_version: str = f"{EMISSARY_GROUP}/v3alpha1",
            **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"prefix": prefix, "service": service, **extra}
    if hostname is not None:
        spec["hostname"] = hostname
    if weight is not None:
        spec["weight"] = weight
    return {"apiVersion": api_version, "kind": "Mapping", "metadata": {"namespace": namespace, "name": name},
            "spec": spec}


def virtual_service(*, namespace: str, name: str, hosts: tuple[str, ...], http: list[dict[str, Any]],
                    api_version: str = f"{ISTIO_GROUP}/v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "VirtualService",
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"hosts": list(hosts), "http": http}}


# --- a Gateway controller ----------------------------------------------------------------------------


class GatewayController:
    """Writes ``status.parents`` on HTTPRoutes as a Gateway implementation does, one reconcile per route.

    Every parentRef gets Accepted=True and a ResolvedRefs condition: True when
    every backendRef of kind Service names an existing Service, else False with
    reason BackendNotFound. Both carry the route's generation as
    ``observedGeneration``. ``paused`` holds reconciles back, to show a route
    whose status lags its spec.
    """

    def __init__(self, emulator: KubeEmulator) -> None:
        self.emulator = emulator
        self.paused = False
        self._workers: KeyedWorkers[tuple[str, str]] = KeyedWorkers(self._reconcile, name="sim-gateway")
        self._task: asyncio.Task[None] | None = None
        self._pending: set[tuple[str, str]] = set()

    async def start(self) -> None:
        watch = self.emulator.watch(HTTPROUTES)
        self._task = asyncio.get_running_loop().create_task(self._watch(watch), name="sim-gateway-watch")
        for route in self.emulator.list(HTTPROUTES):
            self._workers.enqueue((route["metadata"]["namespace"], route["metadata"]["name"]))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._workers.close()

    def resume(self) -> None:
        """Stop holding reconciles back and catch up with every route seen meanwhile."""
        self.paused = False
        pending, self._pending = self._pending, set()
        for key in pending:
            self._workers.enqueue(key)

    async def idle(self) -> None:
        await asyncio.sleep(0)
        await self._workers.idle()

    async def _watch(self, watch: Any) -> None:
        async for _type, route in watch:
            meta = route.get("metadata") or {}
            self._workers.enqueue((str(meta.get("namespace")), str(meta.get("name"))))

    async def _reconcile(self, key: tuple[str, str]) -> None:
        namespace, name = key
        if self.paused:
            self._pending.add(key)
            return
        route = self.emulator.get(HTTPROUTES, namespace, name)
        if route is None:
            return
        generation = route["metadata"].get("generation")
        missing = [
            f"{ref.get('namespace') or namespace}/{ref['name']}"
            for rule in (route.get("spec") or {}).get("rules") or []
            for ref in rule.get("backendRefs") or []
            if (ref.get("kind") or "Service") == "Service" and (ref.get("group") or "") == ""
            and self.emulator.get("v1/services", ref.get("namespace") or namespace, ref["name"]) is None
        ]
        resolved = {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "",
                    "observedGeneration": generation}
        if missing:
            resolved.update(status="False", reason="BackendNotFound",
                            message=f"Service(s) {', '.join(missing)} not found")
        parents = [
            {"parentRef": parent, "controllerName": GATEWAY_CONTROLLER_NAME, "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                 "observedGeneration": generation},
                resolved,
            ]}
            for parent in (route.get("spec") or {}).get("parentRefs") or []
        ]
        if (route.get("status") or {}).get("parents") == parents:
            return
        try:
            self.emulator.patch(HTTPROUTES, namespace, name, {"status": {"parents": parents}}, subresource="status")
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise
