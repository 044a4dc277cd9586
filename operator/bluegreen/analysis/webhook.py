"""Flagger-compatible analysis webhooks: POST the upgrade as JSON, judge by the status code.

Why Flagger's format: there are receivers already written for it
(flagger-loadtester's gates and load tests, Helm and Bats testers, chat
bridges), and they decode the body into Flagger's ``CanaryWebhookPayload``:
``name``, ``namespace``, ``phase``, ``checksum`` (strings) and ``metadata``
(a map of strings). bluegreen sends exactly those, so such a receiver works
unchanged, and adds its own keys, which Go's decoder ignores:

- ``name``/``namespace``: the ClusterUpgrade's (flagger-loadtester keys its
  gates by ``name.namespace``).
- ``phase``: bluegreen's phase (Verifying, Shifting, Paused, Promoted,
  RollingBack, ...), not a Flagger phase: the two lifecycles differ and a
  made-up translation would mislead more than it helps.
- ``checksum``: given by the caller; :func:`checksum` makes one that stays the
  same for one analysis run of one spec of one ClusterUpgrade and changes on
  an edited spec, a retry or a recreated object, as Flagger's changes with a
  new revision of the canary.
- ``metadata``: the hook's ``metadata`` verbatim (always present, ``{}`` when
  empty). For ``event`` hooks, ``eventMessage``, ``eventType`` (Normal or
  Warning), ``timestamp`` (Unix milliseconds, as a string) and bluegreen's
  ``eventReason`` are added and win over the hook's keys, as in Flagger.
- bluegreen's own: ``type`` (the hook's type), ``clusters: {blue, green}``
  (cluster names), ``weights: {blue, green}`` (percent) and ``step``.

Invariants:

- Any 2xx passes (Flagger itself accepts only 200-202). What a non-2xx means
  is the engine's business: a failed check, or a hold for confirm-* hooks.
- A call is bounded: each attempt by the hook's ``timeout``, and all attempts
  and pauses together by :data:`BUDGET_FACTOR` times it, so ``retries`` never
  keeps a reconcile pass waiting long. Retried: timeouts, connection errors,
  408, 429 and 5xx. Not retried: any other answer (a 403 is a closed gate;
  asking again at once changes nothing), a redirect (not followed: the
  receiver's address belongs in the spec) and an untrusted certificate.
- TLS certificates are verified unless ``insecureSkipTLSVerify``.
- URLs in messages lose their userinfo, query and fragment, where
  credentials live; bodies are quoted up to :data:`BODY_QUOTE` characters.
- Nothing here raises for what the receiver does; :func:`send_event` does not
  raise at all (cancellation aside).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from bluegreen import httptext as transport
from bluegreen.analysis.base import CheckContext
from bluegreen.api import durations
from bluegreen.api.spec import AnalysisWebhook, WebhookType
from bluegreen.api.status import CheckPhase, CheckResult

logger = logging.getLogger(__name__)

KIND = "webhook"
BUDGET_FACTOR = 3  # all attempts of one call end within this many timeouts
DEFAULT_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
BODY_QUOTE = 200  # characters of a body quoted in a message
_BODY_READ = 4096  # bytes read of a body; the rest is not needed for a quote
_RETRIED_STATUSES = frozenset({408, 429})
_USER_AGENT = "bluegreen-operator"


def checksum(*, namespace: str, name: str, uid: str, generation: int, run: int) -> str:
    """The payload's ``checksum``: one ClusterUpgrade object (uid), one spec (generation), one analysis run.

    A receiver that remembers approvals by checksum asks again after an edit,
    a retry (``bluegreen.io/retry`` starts a new run) or a delete-and-recreate.
    """
    identity = json.dumps([namespace, name, uid, generation, run])
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def payload(hook: AnalysisWebhook, *, ctx: CheckContext, checksum: str) -> dict[str, Any]:
    """The JSON body POSTed to ``hook``: Flagger's fields first, then bluegreen's."""
    return {
        "name": ctx.upgrade,
        "namespace": ctx.namespace,
        "phase": ctx.phase,
        "checksum": checksum,
        "metadata": dict(hook.metadata),
        "type": str(hook.type),
        "clusters": {"blue": ctx.blue, "green": ctx.green},
        "weights": {"blue": ctx.blue_weight, "green": ctx.green_weight},
        "step": ctx.step,
    }


def event_payload(
    hook: AnalysisWebhook, *, ctx: CheckContext, checksum: str, reason: str, message: str, event_type: str,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The body of an ``event`` hook: :func:`payload` with the Event in ``metadata``."""
    body = payload(hook, ctx=ctx, checksum=checksum)
    body["metadata"] = {
        **hook.metadata,
        "eventMessage": message,
        "eventType": event_type,
        "eventReason": reason,
        "timestamp": str(int(now.timestamp() * 1000)),
    }
    return body


async def call_webhook(
    hook: AnalysisWebhook,
    *,
    ctx: CheckContext,
    now: datetime.datetime,
    checksum: str,
    session: aiohttp.ClientSession | None = None,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
) -> CheckResult:
    """POST :func:`payload` to the hook; Successful on a 2xx, Failed otherwise, with why in the message."""
    body = payload(hook, ctx=ctx, checksum=checksum)
    answer = await _post(hook, body=body, session=session, backoff=backoff)
    return CheckResult(
        name=hook.name, kind=KIND, phase=CheckPhase.SUCCESSFUL if answer.ok else CheckPhase.FAILED,
        time=now, message=answer.message, step=ctx.step, green_weight=ctx.green_weight,
    )


async def send_event(
    hooks: Sequence[AnalysisWebhook],
    *,
    ctx: CheckContext,
    reason: str,
    message: str,
    event_type: str,
    now: datetime.datetime,
    checksum: str = "",
    session: aiohttp.ClientSession | None = None,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
) -> list[str]:
    """Send one Kubernetes Event to every ``event`` hook among ``hooks``, all at once.

    Hooks of other types are skipped, so the spec's whole list may be passed.
    Returns one line per hook that did not take it, for the log; never raises.
    """
    targets = [hook for hook in hooks if hook.type == WebhookType.EVENT]
    if not targets:
        return []
    try:
        async with _session(session) as shared:
            answers = await asyncio.gather(
                *(
                    _post(hook, session=shared, backoff=backoff, body=event_payload(
                        hook, ctx=ctx, checksum=checksum, reason=reason, message=message,
                        event_type=event_type, now=now))
                    for hook in targets
                ),
                return_exceptions=True,
            )
    except Exception as exc:  # an Event must never stop the pass that emits it
        return [f"event webhooks: {type(exc).__name__}: {exc}"]
    errors = []
    for hook, answer in zip(targets, answers, strict=True):
        if isinstance(answer, BaseException):
            errors.append(f"event webhook {hook.name}: {type(answer).__name__}: {answer}")
        elif not answer.ok:
            errors.append(f"event webhook {hook.name}: {answer.message}")
    return errors


# --- HTTP ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Answer:
    ok: bool
    message: str


class _Retry(Exception):
    """An attempt failed in a way another attempt may not."""


@contextlib.asynccontextmanager
async def _session(session: aiohttp.ClientSession | None) -> AsyncIterator[aiohttp.ClientSession]:
    """The caller's session (left open), or a new one closed on exit."""
    if session is not None:
        yield session
        return
    async with aiohttp.ClientSession(headers={"User-Agent": _USER_AGENT}) as own:
        yield own


async def _post(
    hook: AnalysisWebhook, *, body: dict[str, Any], session: aiohttp.ClientSession | None, backoff: float,
) -> _Answer:
    where = f"POST {transport.safe_url(hook.url)}"
    timeout = durations.parse_duration(hook.timeout).total_seconds()
    if timeout <= 0:
        return _Answer(False, f"{where}: timeout {hook.timeout!r} is not positive; set webhooks[].timeout")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUDGET_FACTOR * timeout
    attempts = 0
    problem = ""
    async with _session(session) as client:
        for attempt in range(hook.retries + 1):
            if attempt:
                pause = min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
                if loop.time() + pause >= deadline:
                    break
                await asyncio.sleep(pause)
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            attempts += 1
            try:
                return await _attempt(client, hook, where=where, body=body, timeout=min(timeout, remaining))
            except _Retry as exc:
                problem = str(exc)
                logger.debug("%s attempt %d/%d: %s", where, attempt + 1, hook.retries + 1, problem)
    tries = f" ({attempts} attempts)" if attempts > 1 else ""
    return _Answer(False, f"{where}: {problem}{tries}")


async def _attempt(
    client: aiohttp.ClientSession, hook: AnalysisWebhook, *, where: str, body: dict[str, Any], timeout: float,
) -> _Answer:
    """One POST: an answer to keep, or :class:`_Retry`."""
    try:
        async with client.post(
            hook.url, json=body, allow_redirects=False, ssl=not hook.insecure_skip_tls_verify,
            timeout=aiohttp.ClientTimeout(total=timeout),
            headers={"Accept": "application/json, text/plain, */*", "User-Agent": _USER_AGENT},
        ) as response:
            status = response.status
            text = await _read_start(response)
            location = response.headers.get("Location")
    except aiohttp.ClientConnectorCertificateError as exc:
        return _Answer(False, f"{where}: {transport.untrusted_certificate(exc)}")
    except aiohttp.InvalidURL:
        return _Answer(False, f"{where}: the URL is not valid")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _Retry(transport.problem(exc, timeout=timeout)) from None
    answered = f"HTTP {status}: {quote(text)}"
    if 200 <= status < 300:
        return _Answer(True, f"{where}: {answered}" if text.strip() else f"{where}: HTTP {status}")
    if status >= 500 or status in _RETRIED_STATUSES:
        raise _Retry(answered)
    if 300 <= status < 400:
        to = f" to {transport.safe_url(urllib.parse.urljoin(hook.url, location))}" if location else ""
        return _Answer(False, f"{where}: HTTP {status}, a redirect{to}, which is not followed; "
                              "set the webhook's url to the address it points to")
    return _Answer(False, f"{where}: {answered}")


async def _read_start(response: aiohttp.ClientResponse) -> str:
    start = bytearray()
    while len(start) < _BODY_READ:
        chunk = await response.content.read(_BODY_READ - len(start))
        if not chunk:
            break
        start += chunk
    return start.decode(errors="replace")


def quote(text: str) -> str:
    """A body for a message: its start, whitespace folded, at most :data:`BODY_QUOTE` characters.

    Not :func:`transport.quote` (the first line): test runners behind webhooks
    answer with several lines whose first often says nothing (TAP's ``1..3``).
    """
    folded = " ".join(text.split())
    if not folded:
        return "(empty body)"
    return folded[:BODY_QUOTE] + ("..." if len(folded) > BODY_QUOTE else "")
