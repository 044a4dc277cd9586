"""The webhook router against a local HTTP(S) receiver: body, token, retries, refusals, read-back, TLS."""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.api import spec
from bluegreen.sim.weight_receiver import WeightReceiver
from bluegreen.traffic import base, registry, webhook
from tests.fixtures.routing_world import UPGRADE_NAME, UPGRADE_NAMESPACE, RoutingWorld
from tests.fixtures.tls import self_signed  # noqa: F401

pytestmark = pytest.mark.routers

TOKEN = "s3cr3t-t0ken-value"
UPGRADE = {"namespace": UPGRADE_NAMESPACE, "name": UPGRADE_NAME}


@pytest.fixture
async def receiver() -> AsyncIterator[WeightReceiver]:
    started = WeightReceiver()
    await started.start()
    yield started
    await started.stop()


def make_router(url: str, *, read_url: str | None = None, **kwargs: Any) -> webhook.WebhookRouter:
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("upgrade", UPGRADE)
    return webhook.WebhookRouter(name="f5", url=url, read_url=read_url, **kwargs)


def token_secret(routing: RoutingWorld, *, name: str = "f5-token", key: str = "token", value: str = TOKEN) -> None:
    routing.management.create("v1/secrets", {
        "metadata": {"namespace": UPGRADE_NAMESPACE, "name": name},
        "data": {key: base64.b64encode(value.encode()).decode()},
    })


async def test_posts_the_weights_as_json(receiver: WeightReceiver) -> None:
    router = make_router(receiver.url)

    change = await router.set_weights(blue=90, green=10)

    assert change.changed and change.change_id == "change-1"
    assert receiver.posts == [{"blue": 90, "green": 10, "upgrade": UPGRADE, "router": "f5"}]
    assert (receiver.blue, receiver.green) == (90, 10)


async def test_without_a_read_url_every_call_posts_and_nothing_is_verified(receiver: WeightReceiver) -> None:
    router = make_router(receiver.url)
    await router.set_weights(blue=90, green=10)

    assert (await router.set_weights(blue=90, green=10)).changed
    assert len(receiver.posts) == 2
    assert await router.verify() is None


async def test_with_a_read_url_it_posts_only_on_a_difference_and_verifies(receiver: WeightReceiver) -> None:
    router = make_router(receiver.url, read_url=receiver.url)
    assert await router.verify() == base.RouterWeights(blue=100, green=0)
    assert not (await router.set_weights(blue=100, green=0)).changed

    assert (await router.set_weights(blue=70, green=30)).changed
    assert not (await router.set_weights(blue=70, green=30)).changed

    assert [(post["blue"], post["green"]) for post in receiver.posts] == [(70, 30)]
    assert await router.verify() == base.RouterWeights(blue=70, green=30)

    receiver.blue, receiver.green = 100, 0  # the load balancer was reset behind our back
    assert await router.verify() == base.RouterWeights(blue=100, green=0)
    assert (await router.set_weights(blue=70, green=30)).changed


async def test_finalize_posts_green_100_with_the_finalize_flag_until_the_receiver_says_done(
    receiver: WeightReceiver,
) -> None:
    router = make_router(receiver.url, read_url=receiver.url)
    await router.set_weights(blue=0, green=100)

    line = await router.finalize(retired="blue", mode="Restore", original={"blue": 100, "green": 0})

    assert receiver.posts[-1] == {"blue": 0, "green": 100, "finalize": True, "retired": "blue", "mode": "Remove",
                                  "upgrade": UPGRADE, "router": "f5"}, "after a promotion Restore is Remove"
    assert line == f"POST {receiver.url}: finalize, blue retired (Remove), blue 0, green 100, change change-2"
    assert receiver.finalized
    assert await router.finalize(retired="blue", mode="Remove", original=None) == (
        f"{receiver.url} reports finalized: nothing to send")
    assert len(receiver.posts) == 2


async def test_restore_after_a_rollback_posts_the_saved_weights_in_restore_mode(receiver: WeightReceiver) -> None:
    router = make_router(receiver.url, read_url=receiver.url)
    saved = await router.save()
    await router.set_weights(blue=40, green=60)
    await router.set_weights(blue=100, green=0)

    await router.finalize(retired="green", mode="Restore", original=saved)

    assert saved == {"blue": 100, "green": 0}
    assert receiver.posts[-1] == {"blue": 100, "green": 0, "finalize": True, "retired": "green", "mode": "Restore",
                                  "upgrade": UPGRADE, "router": "f5"}


async def test_finalize_refuses_while_the_receiver_reports_a_share_for_the_retired_side(
    receiver: WeightReceiver,
) -> None:
    router = make_router(receiver.url, read_url=receiver.url)
    await router.set_weights(blue=10, green=90)

    with pytest.raises(base.RouterError, match=f"refusing to retire blue from the receiver of {receiver.url}: blue "
                                               f"still takes traffic \\({receiver.url} reports blue 10, green 90\\)"):
        await router.finalize(retired="blue", mode="Remove", original=None)
    assert not receiver.finalized and len(receiver.posts) == 1


async def test_finalize_without_a_read_url_posts_every_time_and_cannot_restore(receiver: WeightReceiver) -> None:
    router = make_router(receiver.url)
    assert await router.save() == {}

    await router.finalize(retired="green", mode="Remove", original=None)
    await router.finalize(retired="green", mode="Remove", original=None)

    assert [(post["finalize"], post["retired"]) for post in receiver.posts] == [(True, "green"), (True, "green")]
    with pytest.raises(base.RouterError, match=r"router 'f5' has onFinalize: Restore, but nothing was saved .* \(a "
                                               r"webhook router without readURL cannot read its weights\); set its "
                                               r"traffic by hand, or set onFinalize: Remove"):
        await router.finalize(retired="green", mode="Restore", original={})
    assert len(receiver.posts) == 2


async def test_weights_posted_after_a_finalize_clear_the_receiver_s_finalized(receiver: WeightReceiver) -> None:
    router = make_router(receiver.url, read_url=receiver.url)
    await router.finalize(retired="green", mode="Remove", original=None)
    assert receiver.finalized

    await router.set_weights(blue=50, green=50)  # the next upgrade

    assert not receiver.finalized


async def test_the_bearer_token_comes_from_the_secret_on_every_call(routing: RoutingWorld) -> None:
    token_secret(routing, key="api-token")
    receiver = WeightReceiver(token=TOKEN)
    await receiver.start()
    try:
        token = webhook.BearerToken(client=routing.client, namespace=UPGRADE_NAMESPACE, name="f5-token",
                                    key="api-token")
        router = make_router(receiver.url, read_url=receiver.url, token=token)

        await router.set_weights(blue=50, green=50)

        assert [(seen.method, seen.authorization) for seen in receiver.requests] == [
            ("GET", f"Bearer {TOKEN}"), ("POST", f"Bearer {TOKEN}")]

        # A rotated token is used at once.
        routing.management.patch("v1/secrets", UPGRADE_NAMESPACE, "f5-token",
                                 {"data": {"api-token": base64.b64encode(b"rotated").decode()}})
        receiver.token = "rotated"
        assert await router.verify() == base.RouterWeights(blue=50, green=50)
        assert receiver.requests[-1].authorization == "Bearer rotated"
    finally:
        await receiver.stop()


async def test_a_wrong_token_is_refused_and_never_shown(routing: RoutingWorld) -> None:
    token_secret(routing)
    receiver = WeightReceiver(token="the-right-one")
    await receiver.start()
    try:
        router = make_router(receiver.url, token=webhook.BearerToken(
            client=routing.client, namespace=UPGRADE_NAMESPACE, name="f5-token"))
        with pytest.raises(base.RouterError, match="refused the request: HTTP 401: missing or wrong bearer token"):
            await router.set_weights(blue=90, green=10)

        receiver.fail_next(400, body=f"bad header: Bearer {TOKEN}")
        with pytest.raises(base.RouterError) as refused:
            await router.set_weights(blue=90, green=10)
        assert TOKEN not in str(refused.value) and TOKEN not in repr(router)
        assert "bad header: Bearer <token>" in str(refused.value)
    finally:
        await receiver.stop()


async def test_a_missing_token_secret_or_key_is_a_router_error(routing: RoutingWorld, receiver: WeightReceiver) -> None:
    router = make_router(receiver.url, token=webhook.BearerToken(
        client=routing.client, namespace=UPGRADE_NAMESPACE, name="f5-token"))
    with pytest.raises(base.RouterError, match=r"Secret fleet/f5-token .* does not exist"):
        await router.set_weights(blue=90, green=10)

    token_secret(routing, key="other")
    with pytest.raises(base.RouterError, match="has no key 'token' \\(its keys: other\\)"):
        await router.set_weights(blue=90, green=10)
    assert receiver.requests == []


async def test_5xx_is_retried(receiver: WeightReceiver) -> None:
    receiver.fail_next(500, times=2)
    router = make_router(receiver.url, retries=2)

    assert (await router.set_weights(blue=90, green=10)).changed
    assert len(receiver.requests) == 3
    assert receiver.posts[-1]["green"] == 10


async def test_5xx_beyond_the_retries_is_an_error_with_the_last_answer(receiver: WeightReceiver) -> None:
    receiver.fail_next(503, times=3, body="pool busy\ntraceback...")
    router = make_router(receiver.url, retries=2)

    with pytest.raises(base.RouterError, match=r"POST http://127.0.0.1:\d+/weights failed after 3 attempts: "
                                               r"HTTP 503: pool busy$"):
        await router.set_weights(blue=90, green=10)
    assert receiver.posts == []


async def test_4xx_is_final_with_the_first_line_of_the_body(receiver: WeightReceiver) -> None:
    receiver.fail_next(409, body="\npool is locked by change CHG-42\nsecond line")
    router = make_router(receiver.url, retries=3)

    with pytest.raises(base.RouterError, match=r"refused the request: HTTP 409: pool is locked by change CHG-42$"):
        await router.set_weights(blue=90, green=10)
    assert len(receiver.requests) == 1


async def test_a_redirect_is_not_followed(receiver: WeightReceiver) -> None:
    receiver.fail_next(302)
    router = make_router(receiver.url, retries=3)

    with pytest.raises(base.RouterError, match="HTTP 302, a redirect, which is not followed"):
        await router.set_weights(blue=90, green=10)
    assert len(receiver.requests) == 1


async def test_a_timeout_is_retried(receiver: WeightReceiver) -> None:
    receiver.stall_next(0.6)
    router = make_router(receiver.url, timeout=0.2, retries=1)

    assert (await router.set_weights(blue=90, green=10)).changed

    receiver.stall_next(0.6, times=2)
    with pytest.raises(base.RouterError, match=r"failed after 2 attempts: no answer within 0.2s"):
        await router.set_weights(blue=80, green=20)


async def test_nobody_listening_is_retried_then_an_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    router = make_router(f"http://127.0.0.1:{port}/weights", retries=1)

    with pytest.raises(base.RouterError, match="failed after 2 attempts: cannot connect"):
        await router.set_weights(blue=90, green=10)


async def test_credentials_in_urls_never_reach_a_message(receiver: WeightReceiver) -> None:
    url = receiver.url.replace("http://", "http://user:pa55word@") + "?apikey=k3y"
    receiver.fail_next(500)
    router = make_router(url, retries=0)

    with pytest.raises(base.RouterError) as failed:
        await router.set_weights(blue=90, green=10)

    message = str(failed.value)
    assert receiver.url in message
    assert "pa55word" not in message and "k3y" not in message and "pa55word" not in repr(router)


async def test_a_malformed_read_back_is_an_error(receiver: WeightReceiver) -> None:
    router = make_router(receiver.url, read_url=receiver.url)
    receiver.blue, receiver.green = 70, 20

    with pytest.raises(base.RouterError, match=r'answered \{"blue": 70, "green": 20, "finalized": false\}; '
                                               r'expected .* adding up to 100'):
        await router.verify()


async def test_tls_is_verified_unless_told_otherwise(self_signed: ssl.SSLContext) -> None:  # noqa: F811
    receiver = WeightReceiver(ssl_context=self_signed)
    await receiver.start()
    try:
        assert receiver.url.startswith("https://")
        strict = make_router(receiver.url, retries=3)
        with pytest.raises(base.RouterError, match=r"TLS certificate is not trusted .*insecureSkipTLSVerify"):
            await strict.set_weights(blue=90, green=10)
        assert receiver.requests == []  # refused at the handshake, and not retried into a request

        trusting = make_router(receiver.url, read_url=receiver.url, verify_tls=False)
        assert (await trusting.set_weights(blue=90, green=10)).changed
        assert await trusting.verify() == base.RouterWeights(blue=90, green=10)
    finally:
        await receiver.stop()


async def test_the_spec_reaches_the_router(routing: RoutingWorld) -> None:
    token_secret(routing)
    receiver = WeightReceiver(token=TOKEN)
    await receiver.start()
    try:
        entry = spec.Router.model_validate({"name": "f5", "webhook": {
            "url": receiver.url, "readURL": receiver.url, "timeout": "2s", "retries": 0,
            "bearerTokenSecretRef": {"name": "f5-token"}}})
        router = registry.build_router(entry, context=routing.context)

        assert (await router.set_weights(blue=80, green=20)).changed
        assert receiver.posts == [{"blue": 80, "green": 20, "upgrade": UPGRADE, "router": "f5"}]
        assert await router.verify() == base.RouterWeights(blue=80, green=20)
    finally:
        await receiver.stop()


def test_a_token_needs_the_operator_s_context() -> None:
    entry = spec.Router.model_validate({"webhook": {"url": "https://lb.example/weights",
                                                    "bearerTokenSecretRef": {"name": "f5-token"}}})
    with pytest.raises(ValueError, match="bearerTokenSecretRef needs the operator's context"):
        registry.build_router(entry)
