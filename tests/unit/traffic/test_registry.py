"""The router registry: every kind of the API builds, nothing else does."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.api import spec
from bluegreen.kube import config
from bluegreen.kube.client import KubeClient
from bluegreen.kube.remote import RemoteClients
from bluegreen.traffic import base, registry

# One valid entry per router kind; a kind added to the API without an example
# here fails test_every_kind_has_an_example.
EXAMPLES: dict[str, dict[str, Any]] = {
    "haproxy": {"runtimeAPI": "tcp://127.0.0.1:9999", "backend": "app", "blueServer": "blue", "greenServer": "green"},
    "route53": {"hostedZoneId": "Z1", "recordName": "app.example.com",
                "blue": {"setIdentifier": "blue", "value": "lb-blue.example.net"},
                "green": {"setIdentifier": "green", "value": "lb-green.example.net", "healthCheckId": "hc-green"}},
    "elbv2": {"listenerARN": "arn:aws:elasticloadbalancing:eu-west-1:1:listener/app/edge/1/2",
              "blueTargetGroupARN": "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/blue/1",
              "greenTargetGroupARN": "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/green/2",
              "aws": {"region": "eu-west-1"}},
    "gatewayAPI": {"httpRoute": {"namespace": "shop", "name": "app"},
                   "blueBackend": {"name": "app-blue", "port": 80}, "greenBackend": {"name": "app-green", "port": 80}},
    "emissary": {"blueMapping": {"namespace": "shop", "name": "app-blue"},
                 "greenMapping": {"namespace": "shop", "name": "app-green"}},
    "istio": {"virtualService": {"namespace": "shop", "name": "app"},
              "blueDestination": {"host": "app.blue.svc.cluster.local"},
              "greenDestination": {"host": "app.green.svc.cluster.local"}},
    "webhook": {"url": "https://lb.example/weights"},
}
# Kinds that edit Kubernetes objects cannot be built without the operator's clients.
NEEDS_CONTEXT = ("gatewayAPI", "emissary", "istio")
# Nothing connects until a router is used, so a client for a closed port is enough to build them.
_NOWHERE = KubeClient(config.Connection(server="http://127.0.0.1:9"))
CONTEXT = base.RouterContext(management=_NOWHERE, remote=RemoteClients(_NOWHERE), namespace="fleet")


def router_spec(kind: str, *, name: str | None = None, **overrides: Any) -> spec.Router:
    entry: dict[str, Any] = {kind: EXAMPLES[kind] | overrides}
    if name is not None:
        entry["name"] = name
    return spec.Router.model_validate(entry)


def test_every_kind_has_an_example_and_a_factory() -> None:
    assert set(EXAMPLES) == set(spec.IMPLEMENTED_ROUTER_KINDS)
    assert set(registry.FACTORIES) == set(spec.IMPLEMENTED_ROUTER_KINDS)


@pytest.mark.parametrize("kind", sorted(spec.IMPLEMENTED_ROUTER_KINDS))
def test_every_kind_builds_a_router_named_after_the_entry(kind: str) -> None:
    unnamed = registry.build_router(router_spec(kind), context=CONTEXT)
    named = registry.build_router(router_spec(kind, name="edge"), context=CONTEXT)

    assert unnamed.name == kind
    assert named.name == "edge"
    for method in ("set_weights", "verify", "save", "finalize"):
        assert inspect.iscoroutinefunction(getattr(named, method))


@pytest.mark.parametrize("kind", NEEDS_CONTEXT)
def test_kinds_that_edit_kubernetes_objects_need_the_context(kind: str) -> None:
    with pytest.raises(ValueError, match=f"router 'edge' \\({kind}\\) needs the operator's clients"):
        registry.build_router(router_spec(kind, name="edge"))


def test_a_kind_without_a_factory_is_an_error_not_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(registry.FACTORIES, "haproxy")

    with pytest.raises(registry.UnknownRouterKindError, match="router kind 'haproxy' has no implementation"):
        registry.build_router(router_spec("haproxy"))


def test_build_routers_keeps_the_order() -> None:
    routers = registry.build_routers(
        [router_spec("haproxy", name="edge-eu"), router_spec("haproxy", name="edge-us"), router_spec("haproxy")]
    )

    assert [router.name for router in routers] == ["edge-eu", "edge-us", "haproxy"]


def test_build_routers_refuses_two_routers_with_one_name() -> None:
    with pytest.raises(ValueError, match=r"routers\[1\] and \[0\] are both named 'haproxy'"):
        registry.build_routers([router_spec("haproxy"), router_spec("haproxy", backend="other")])


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A TCP port that accepts connections and never answers."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    await server.wait_closed()


async def test_haproxy_settings_reach_the_router(silent_server: str) -> None:
    router = registry.build_router(router_spec("haproxy", runtimeAPI=silent_server, backend="edge", timeout="150ms"))

    expected = rf"{silent_server} did not answer 'show servers state edge' within 0.15s"
    with pytest.raises(base.RouterError, match=expected):
        await router.verify()
