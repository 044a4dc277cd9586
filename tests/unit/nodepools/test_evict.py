"""evict against a small stand-in for the API server's eviction subresource, answering as the apiserver does.

The stand-in keeps these tests independent of the emulator's own Eviction API: it answers
201, 404, 409 (uid precondition), 429 (a Status with ``details.causes`` of reason
DisruptionBudget, with or without Retry-After) and 500 (a pod under two budgets).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import pytest

from bluegreen.kube.client import ApiError, KubeClient
from bluegreen.nodepools.drain import EvictionResult, evict
from bluegreen.nodepools.plan import PodRef
from tests.unit.nodepools.pods import pod

TOO_MANY = "Cannot evict pod as it would violate the pod's disruption budget."


def status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


ANSWERS: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = {
    "web-1": (201, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}, {}),
    "gone": (404, status(404, "NotFound", 'pods "gone" not found', name="gone", kind="pods"), {}),
    "replaced": (409, status(409, "Conflict", "Operation cannot be fulfilled on Pod \"replaced\": Precondition "
                                              "failed: UID in precondition: old, UID in object meta: new"), {}),
    "guarded": (429, status(429, "TooManyRequests", TOO_MANY, retryAfterSeconds=10, causes=[
        {"reason": "DisruptionBudget", "message": "The disruption budget web-pdb needs 3 healthy pods and has 3 "
                                                  "currently"}]), {"Retry-After": "10"}),
    "guarded-quietly": (429, status(429, "TooManyRequests", TOO_MANY, causes=[
        {"reason": "DisruptionBudget", "message": "The disruption budget db-pdb needs 2 healthy pods and has 2 "
                                                  "currently"}]), {}),
    "processing": (429, status(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption "
                                                       "budget. The disruption budget web-pdb is still being "
                                                       "processed by the server.", retryAfterSeconds=10), {}),
    "two-budgets": (500, status(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the "
                                                      "eviction subresource does not support."), {}),
}


class StandIn:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.requests.append({"method": request.method, "path": request.path,
                              "content_type": request.content_type, "body": json.loads(await request.text())})
        code, body, headers = ANSWERS[request.match_info["name"]]
        return aiohttp.web.json_response(body, status=code, headers=headers)


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, KubeClient]]:
    server = StandIn()
    app = aiohttp.web.Application()
    app.router.add_post("/api/v1/namespaces/{namespace}/pods/{name}/eviction", server.handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig = {"clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                  "users": [{"name": "u", "user": {"token": "t"}}],
                  "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "current-context": "c"}
    try:
        async with KubeClient.from_kubeconfig(kubeconfig) as client:
            yield server, client
    finally:
        await runner.cleanup()


async def test_an_accepted_eviction_posts_a_policy_v1_eviction_with_the_uid(
        stand_in: tuple[StandIn, KubeClient]) -> None:
    server, client = stand_in
    result = await evict(client, pod("web-1"))
    assert result.result is EvictionResult.EVICTED
    assert result.pod == PodRef("shop", "web-1")
    [request] = server.requests
    assert request["path"] == "/api/v1/namespaces/shop/pods/web-1/eviction"
    assert request["content_type"] == "application/json"
    assert request["body"] == {"apiVersion": "policy/v1", "kind": "Eviction",
                               "metadata": {"name": "web-1", "namespace": "shop"},
                               "deleteOptions": {"preconditions": {"uid": "uid-shop-web-1"}}}


async def test_a_grace_period_is_passed_and_a_ref_without_uid_sends_no_precondition(
        stand_in: tuple[StandIn, KubeClient]) -> None:
    server, client = stand_in
    await evict(client, PodRef("shop", "web-1"), grace_period_seconds=5)
    assert server.requests[0]["body"]["deleteOptions"] == {"gracePeriodSeconds": 5}
    await evict(client, PodRef("shop", "web-1"))
    assert "deleteOptions" not in server.requests[1]["body"]


@pytest.mark.parametrize("name", ["gone", "replaced"])
async def test_a_pod_already_gone_or_replaced_is_gone_not_an_error(
        stand_in: tuple[StandIn, KubeClient], name: str) -> None:
    _, client = stand_in
    result = await evict(client, pod(name))
    assert result.result is EvictionResult.GONE
    assert result.message == ANSWERS[name][1]["message"]


async def test_a_409_without_our_uid_precondition_is_an_error(stand_in: tuple[StandIn, KubeClient]) -> None:
    _, client = stand_in
    with pytest.raises(ApiError) as raised:
        await evict(client, PodRef("shop", "replaced"))
    assert raised.value.status == 409


async def test_a_budget_refusal_carries_the_budget_its_words_and_the_retry_after(
        stand_in: tuple[StandIn, KubeClient]) -> None:
    _, client = stand_in
    result = await evict(client, pod("guarded"))
    assert result.result is EvictionResult.BLOCKED_BY_BUDGET
    assert result.budget == "web-pdb"
    assert result.message == f"{TOO_MANY} The disruption budget web-pdb needs 3 healthy pods and has 3 currently"
    assert result.retry_after == 10.0
    assert result.to_status() == {"pod": "shop/guarded", "result": "BlockedByBudget", "message": result.message,
                                  "budget": "web-pdb", "retryAfterSeconds": 10.0}


async def test_a_refusal_without_retry_after_has_none(stand_in: tuple[StandIn, KubeClient]) -> None:
    _, client = stand_in
    result = await evict(client, pod("guarded-quietly"))
    assert (result.result, result.budget, result.retry_after) == (EvictionResult.BLOCKED_BY_BUDGET, "db-pdb", None)


async def test_a_budget_still_being_processed_blocks_without_a_name(stand_in: tuple[StandIn, KubeClient]) -> None:
    _, client = stand_in
    result = await evict(client, pod("processing"))
    assert result.result is EvictionResult.BLOCKED_BY_BUDGET
    assert result.budget is None
    assert result.retry_after == 10.0
    assert "still being processed" in result.message


async def test_anything_else_is_raised_as_the_clients_error(stand_in: tuple[StandIn, KubeClient]) -> None:
    _, client = stand_in
    with pytest.raises(ApiError) as raised:
        await evict(client, pod("two-budgets"))
    assert raised.value.status == 500
    assert "more than one PodDisruptionBudget" in raised.value.message
    assert raised.value.path == "/api/v1/namespaces/shop/pods/two-budgets/eviction"
