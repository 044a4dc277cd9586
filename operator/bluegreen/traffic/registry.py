"""The one place that knows every router kind.

Each key of :data:`bluegreen.api.spec.ROUTER_KINDS` maps to a factory here, written
out by hand: a kind with no factory is an error that names the known kinds,
never a silent fallback to some default router. Router modules do not import
each other (an import-linter contract checks it); only this module sees them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bluegreen.api import spec
from bluegreen.traffic import base, elbv2, emissary, gatewayapi, haproxy, istio, route53, webhook


class UnknownRouterKindError(LookupError):
    """A router kind this build has no implementation for."""


def _haproxy(router: spec.Router, context: base.RouterContext | None) -> base.Router:
    config = router.haproxy
    if config is None:
        raise ValueError(f"router {router.display_name!r} has no haproxy settings")
    return haproxy.HAProxyRouter.from_spec(name=router.display_name, config=config)


def _context(router: spec.Router, context: base.RouterContext | None) -> base.RouterContext:
    if context is None:
        raise ValueError(f"router {router.display_name!r} ({router.kind}) needs the operator's clients to reach its "
                         "objects; pass a RouterContext")
    return context


def _gateway_api(router: spec.Router, context: base.RouterContext | None) -> base.Router:
    config = router.gateway_api
    if config is None:
        raise ValueError(f"router {router.display_name!r} has no gatewayAPI settings")
    return gatewayapi.GatewayAPIRouter.from_spec(
        name=router.display_name, config=config, context=_context(router, context))


def _emissary(router: spec.Router, context: base.RouterContext | None) -> base.Router:
    config = router.emissary
    if config is None:
        raise ValueError(f"router {router.display_name!r} has no emissary settings")
    return emissary.EmissaryRouter.from_spec(name=router.display_name, config=config, context=_context(router, context))


def _istio(router: spec.Router, context: base.RouterContext | None) -> base.Router:
    config = router.istio
    if config is None:
        raise ValueError(f"router {router.display_name!r} has no istio settings")
    return istio.IstioRouter.from_spec(name=router.display_name, config=config, context=_context(router, context))


def _webhook(router: spec.Router, context: base.RouterContext | None) -> base.Router:
    config = router.webhook
    if config is None:
        raise ValueError(f"router {router.display_name!r} has no webhook settings")
    return webhook.WebhookRouter.from_spec(name=router.display_name, config=config, context=context)


def _route53(router: spec.Router, context: base.RouterContext | None) -> base.Router:
    config = router.route53
    if config is None:
        raise ValueError(f"router {router.display_name!r} has no route53 settings")
    return route53.Route53Router.from_spec(name=router.display_name, config=config)


def _elbv2(router: spec.Router, context: base.RouterContext | None) -> base.Router:
    config = router.elbv2
    if config is None:
        raise ValueError(f"router {router.display_name!r} has no elbv2 settings")
    return elbv2.from_spec(name=router.display_name, config=config)


Factory = Callable[[spec.Router, base.RouterContext | None], base.Router]

FACTORIES: Mapping[str, Factory] = {
    "haproxy": _haproxy,
    "route53": _route53,
    "elbv2": _elbv2,
    "gatewayAPI": _gateway_api,
    "emissary": _emissary,
    "istio": _istio,
    "webhook": _webhook,
}


def build_router(router: spec.Router, *, context: base.RouterContext | None = None) -> base.Router:
    """The router an entry of ``spec.traffic.routers`` describes.

    ``context`` gives routers that need them the clients and the namespace of the
    ClusterUpgrade: the Kubernetes-object routers (Gateway API, Emissary, Istio)
    cannot be built without it, a webhook needs it for its token; routers reached
    directly (HAProxy) ignore it.
    """
    kind = router.kind
    factory = FACTORIES.get(kind)
    if factory is None:
        raise UnknownRouterKindError(
            f"router kind {kind!r} has no implementation in this build; known kinds: {', '.join(sorted(FACTORIES))}"
        )
    return factory(router, context)


def build_routers(
    routers: list[spec.Router], *, context: base.RouterContext | None = None
) -> list[base.Router]:
    """All routers of a spec, in the order given (the order weights are applied in).

    Names must be unique: status, events and the journal tell routers apart by name.
    """
    built: list[base.Router] = []
    seen: dict[str, int] = {}
    for index, router in enumerate(routers):
        name = router.display_name
        if name in seen:
            raise ValueError(
                f"spec.traffic.routers[{index}] and [{seen[name]}] are both named {name!r}; "
                "give each router a distinct `name`"
            )
        seen[name] = index
        built.append(build_router(router, context=context))
    return built
