"""Analysis webhooks against local receivers over real HTTP(S): payload, answers, retries, timeouts, TLS, gates.

Most tests talk to :class:`~bluegreen.sim.flagger_tester.FlaggerTester`,
which serves flagger-loadtester's gate API and decodes payloads as Flagger's
Go types would; answers the loadtester never gives (204, a redirect) come
from a small scripted server.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.web
import pytest

from bluegreen.analysis import webhook
from bluegreen.analysis.base import CheckContext
from bluegreen.api.spec import AnalysisWebhook
from bluegreen.api.status import CheckPhase
from bluegreen.kube import config as kubeconfig
from bluegreen.kube.client import KubeClient
from bluegreen.sim.flagger_tester import FlaggerTester

# The traffic tests' fixture: a server context with a fresh self-signed certificate for 127.0.0.1.
from tests.fixtures.tls import self_signed  # noqa: F401

pytestmark = pytest.mark.analysis

NOW = datetime.datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=datetime.UTC)
CHECKSUM = webhook.checksum(namespace="fleet", name="prod-to-1-31", uid="0f3c", generation=3, run=1)
BACKOFF = 0.01


def context(*, name: str = "prod-to-1-31", phase: str = "Shifting") -> CheckContext:
    # The webhooks never read Secrets; a client that reaches nothing proves it.
    management = KubeClient(kubeconfig.Connection(server="http://127.0.0.1:9"))
    return CheckContext(upgrade=name, namespace="fleet", phase=phase, blue="prod-blue", green="prod-green",
                        blue_weight=75, green_weight=25, step=2, management=management)


def hook(url: str, **fields: Any) -> AnalysisWebhook:
    return AnalysisWebhook.model_validate({"name": "gate", "url": url, **fields})


async def call(entry: AnalysisWebhook, *, ctx: CheckContext | None = None) -> Any:
    return await webhook.call_webhook(entry, ctx=ctx or context(), now=NOW, checksum=CHECKSUM, backoff=BACKOFF)


@pytest.fixture
async def tester() -> AsyncIterator[FlaggerTester]:
    started = FlaggerTester()
    await started.start()
    yield started
    await started.stop()


class Scripted:
    """Answers POST /hook with the next scripted (status, body, headers), then 200."""

    def __init__(self) -> None:
        self.script: list[tuple[int, str, dict[str, str]]] = []
        self.bodies: list[Any] = []
        self.url = ""
        self._runner: aiohttp.web.AppRunner | None = None

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.router.add_post("/hook", self._answer)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.bodies.append(await request.json())
        status, text, headers = self.script.pop(0) if self.script else (200, "", {})
        return aiohttp.web.Response(status=status, text=text, headers=headers)


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    server = Scripted()
    await server.start()
    yield server
    await server.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- payload ---------------------------------------------------------------------------------------


async def test_the_payload_has_flaggers_fields_then_bluegreens(tester: FlaggerTester) -> None:
    entry = hook(tester.url("/"), name="load-test", type="rollout",
                 metadata={"type": "cmd", "cmd": "hey -z 1m -q 10 -c 2 http://shop.example/"})

    result = await call(entry)

    assert result.phase == CheckPhase.SUCCESSFUL
    assert (result.name, result.kind, result.time, result.step, result.green_weight) == (
        "load-test", "webhook", NOW, 2, 25)
    assert tester.tasks == ["hey -z 1m -q 10 -c 2 http://shop.example/"]  # the loadtester took it as a task
    [seen] = tester.requests
    assert seen.content_type == "application/json"
    assert seen.body == {
        "name": "prod-to-1-31", "namespace": "fleet", "phase": "Shifting", "checksum": CHECKSUM,
        "metadata": {"type": "cmd", "cmd": "hey -z 1m -q 10 -c 2 http://shop.example/"},
        "type": "rollout", "clusters": {"blue": "prod-blue", "green": "prod-green"},
        "weights": {"blue": 75, "green": 25}, "step": 2,
    }
    assert seen.body == webhook.payload(entry, ctx=context(), checksum=CHECKSUM)


def test_the_checksum_is_stable_for_one_run_of_one_spec() -> None:
    def checksum(**changes: Any) -> str:
        fields: dict[str, Any] = {"namespace": "fleet", "name": "prod-to-1-31", "uid": "0f3c", "generation": 3,
                                  "run": 1, **changes}
        return webhook.checksum(**fields)

    assert checksum() == checksum() == CHECKSUM
    changed = [checksum(generation=4), checksum(run=2), checksum(uid="77aa"), checksum(name="other")]
    assert len({CHECKSUM, *changed}) == 5


# --- answers ---------------------------------------------------------------------------------------


async def test_a_loadtester_answer_it_refuses_is_a_failure_with_its_body(tester: FlaggerTester) -> None:
    result = await call(hook(tester.url("/"), retries=2))  # no metadata: nothing to run

    assert result.phase == CheckPhase.FAILED
    assert result.message == f"POST {tester.url('/')}: HTTP 400: metadata not found in payload"
    assert len(tester.requests) == 1  # a 4xx is the receiver's answer: not retried


async def test_403_is_an_answer_and_not_retried(tester: FlaggerTester) -> None:
    result = await call(hook(tester.url("/gate/halt"), type="confirm-promotion", retries=3))

    assert result.phase == CheckPhase.FAILED
    assert result.message.endswith("HTTP 403: Forbidden")
    assert len(tester.requests) == 1


async def test_5xx_is_retried_until_it_passes(tester: FlaggerTester) -> None:
    tester.fail_next(500, times=2, body="try later")

    result = await call(hook(tester.url("/gate/approve"), retries=2))

    assert result.phase == CheckPhase.SUCCESSFUL
    assert result.message == f"POST {tester.url('/gate/approve')}: HTTP 200: OK"
    assert len(tester.requests) == 3


async def test_5xx_after_every_retry_fails_quoting_the_body(tester: FlaggerTester) -> None:
    tester.fail_next(503, times=5, body="upstream  down\n" + "x" * 300)

    result = await call(hook(tester.url("/gate/approve"), retries=2))

    assert result.phase == CheckPhase.FAILED
    assert result.message == (
        f"POST {tester.url('/gate/approve')}: HTTP 503: upstream down {'x' * 186}... (3 attempts)"
    )
    assert len(tester.requests) == 3


async def test_without_retries_a_5xx_fails_at_once(tester: FlaggerTester) -> None:
    tester.fail_next(500, times=2)

    result = await call(hook(tester.url("/gate/approve")))

    assert result.phase == CheckPhase.FAILED and "HTTP 500" in result.message
    assert len(tester.requests) == 1


async def test_any_2xx_passes(scripted: Scripted) -> None:
    scripted.script = [(204, "", {})]

    result = await call(hook(scripted.url))

    assert result.phase == CheckPhase.SUCCESSFUL
    assert result.message == f"POST {scripted.url}: HTTP 204"


async def test_a_redirect_is_not_followed(scripted: Scripted) -> None:
    scripted.script = [(307, "", {"Location": "/elsewhere?token=abc"})]

    result = await call(hook(scripted.url, retries=2))

    assert result.phase == CheckPhase.FAILED
    elsewhere = scripted.url.replace("/hook", "/elsewhere")
    assert result.message == (f"POST {scripted.url}: HTTP 307, a redirect to {elsewhere}, which is not followed; "
                              "set the webhook's url to the address it points to")
    assert len(scripted.bodies) == 1


# --- transport -------------------------------------------------------------------------------------


async def test_a_timeout_fails_naming_the_url(tester: FlaggerTester) -> None:
    tester.stall_next(0.3)

    result = await call(hook(tester.url("/gate/approve"), timeout="50ms"))

    assert result.phase == CheckPhase.FAILED
    assert result.message == f"POST {tester.url('/gate/approve')}: no answer within 0.05s"


async def test_retries_stay_within_a_few_timeouts(tester: FlaggerTester) -> None:
    tester.stall_next(0.5, times=11)

    result = await call(hook(tester.url("/gate/approve"), timeout="100ms", retries=10))

    assert result.phase == CheckPhase.FAILED
    assert "no answer within" in result.message
    assert 1 < len(tester.requests) <= webhook.BUDGET_FACTOR + 1  # not the 11 attempts retries allows


async def test_a_connection_error_names_the_url_without_credentials() -> None:
    port = closed_port()

    result = await call(hook(f"http://hooks:s3cr3t@127.0.0.1:{port}/gate/check?token=abc#frag", retries=1))

    assert result.phase == CheckPhase.FAILED
    assert result.message.startswith(f"POST http://127.0.0.1:{port}/gate/check: cannot connect: ")
    assert result.message.endswith("(2 attempts)")
    assert "s3cr3t" not in result.message and "abc" not in result.message


async def test_tls_is_verified_unless_the_hook_says_otherwise(self_signed: Any) -> None:  # noqa: F811
    tester = FlaggerTester(ssl_context=self_signed)
    await tester.start()
    try:
        assert tester.base_url.startswith("https://")
        strict = await call(hook(tester.url("/gate/approve"), retries=3))
        assert strict.phase == CheckPhase.FAILED
        assert "TLS certificate is not trusted" in strict.message
        assert "insecureSkipTLSVerify: true" in strict.message
        assert tester.requests == []  # refused at the handshake, and not retried

        trusting = await call(hook(tester.url("/gate/approve"), insecureSkipTLSVerify=True))
        assert trusting.phase == CheckPhase.SUCCESSFUL
        assert len(tester.requests) == 1
    finally:
        await tester.stop()


async def test_a_callers_session_is_used_and_left_open(tester: FlaggerTester) -> None:
    async with aiohttp.ClientSession() as session:
        first = await webhook.call_webhook(hook(tester.url("/gate/approve")), ctx=context(), now=NOW,
                                           checksum=CHECKSUM, session=session)
        second = await webhook.call_webhook(hook(tester.url("/gate/halt")), ctx=context(), now=NOW,
                                            checksum=CHECKSUM, session=session)
        assert not session.closed
    assert (first.phase, second.phase) == (CheckPhase.SUCCESSFUL, CheckPhase.FAILED)


# --- flagger-loadtester gates ----------------------------------------------------------------------


async def test_a_loadtester_gate_holds_until_approved_and_again_once_closed(tester: FlaggerTester) -> None:
    gate = hook(tester.url("/gate/check"), name="promotion-gate", type="confirm-promotion")
    person = {"name": "prod-to-1-31", "namespace": "fleet"}  # what `curl -d ... /gate/open` sends

    closed = await call(gate)
    assert closed.phase == CheckPhase.FAILED
    assert closed.message == f"POST {tester.url('/gate/check')}: HTTP 403: Forbidden"

    async with aiohttp.ClientSession() as session:
        async with session.post(tester.url("/gate/open"), json=person) as response:
            assert response.status == 202
        assert tester.gate_is_open(name="prod-to-1-31", namespace="fleet")
        opened = await call(gate)
        other_upgrade = await call(gate, ctx=context(name="staging-to-1-31"))
        async with session.post(tester.url("/gate/close"), json=person) as response:
            assert response.status == 202
    closed_again = await call(gate)

    assert opened.phase == CheckPhase.SUCCESSFUL
    assert opened.message == f"POST {tester.url('/gate/check')}: HTTP 200: Approved"
    assert other_upgrade.phase == CheckPhase.FAILED  # gates are per name.namespace
    assert closed_again.phase == CheckPhase.FAILED


# --- events ----------------------------------------------------------------------------------------


async def test_events_reach_every_event_hook_with_the_event_in_metadata(tester: FlaggerTester) -> None:
    hooks = [
        hook(tester.url("/events"), name="slack", type="event",
             metadata={"channel": "#upgrades", "eventType": "overridden by the event"}),
        hook(tester.url("/gate/approve"), name="gate", type="confirm-rollout"),  # not an event hook
        hook(tester.url("/events"), name="audit", type="event"),
    ]

    errors = await webhook.send_event(hooks, ctx=context(phase="RollingBack"), reason="RollbackStarted",
                                      message="error-rate failed 2 times; traffic returns to blue",
                                      event_type="Warning", now=NOW, checksum=CHECKSUM, backoff=BACKOFF)

    assert errors == []
    assert tester.posted_to("/gate/approve") == []
    bodies = tester.posted_to("/events")
    assert len(bodies) == 2
    event = {"eventMessage": "error-rate failed 2 times; traffic returns to blue", "eventType": "Warning",
             "eventReason": "RollbackStarted", "timestamp": "1740830400250"}
    assert {"channel": "#upgrades", **event} in [body["metadata"] for body in bodies if body]
    assert event in [body["metadata"] for body in bodies if body]
    for body in bodies:
        assert body is not None
        assert (body["name"], body["namespace"], body["phase"], body["checksum"], body["type"]) == (
            "prod-to-1-31", "fleet", "RollingBack", CHECKSUM, "event")


async def test_an_unreachable_event_hook_is_a_line_for_the_log_not_an_error(tester: FlaggerTester) -> None:
    port = closed_port()
    hooks = [hook(f"http://127.0.0.1:{port}/slack?key=abc", name="slack", type="event"),
             hook(tester.url("/events"), name="audit", type="event")]

    errors = await webhook.send_event(hooks, ctx=context(), reason="Shifting", message="green at 25 %",
                                      event_type="Normal", now=NOW)

    assert len(errors) == 1
    assert errors[0].startswith(f"event webhook slack: POST http://127.0.0.1:{port}/slack: cannot connect")
    assert len(tester.posted_to("/events")) == 1  # the other hook got it


async def test_without_event_hooks_nothing_is_sent(tester: FlaggerTester) -> None:
    errors = await webhook.send_event([hook(tester.url("/gate/approve"), type="rollout")], ctx=context(),
                                      reason="Shifting", message="green at 25 %", event_type="Normal", now=NOW)

    assert errors == []
    assert tester.requests == []
