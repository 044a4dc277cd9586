"""drain_step against an emulated cluster: one pass cordons, evicts one pod or says why not, and reads all afresh.

Evictions go through a thin proxy in front of the emulator that answers the eviction
subresource itself (delete the pod, or 429 while a budget is set to block), so these tests
do not depend on the emulator's own Eviction API; everything else reaches the emulator.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.web
import pytest

from bluegreen.kube.client import KubeClient
from bluegreen.nodepools.drain import DrainOutcome, DrainProgress, drain_step
from bluegreen.nodepools.plan import ControllerRef, LocalStoragePolicy, PodRef
from bluegreen.nodepools.replacements import EvictedPod, replacements_ready
from bluegreen.sim.kube import KubeEmulator
from tests.unit.nodepools.pods import pod

T0 = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)
WEB = ControllerRef("ReplicaSet", "shop", "web-7d9")


class EvictionDesk:
    """The eviction subresource: deletes the pod unless ``blocked_by`` names a budget."""

    def __init__(self, cluster: KubeEmulator) -> None:
        self.cluster = cluster
        self.blocked_by: str | None = None
        self.asked: list[str] = []

    def answer(self, namespace: str, name: str, body: dict[str, Any]) -> aiohttp.web.Response:
        self.asked.append(f"{namespace}/{name}")
        if self.blocked_by:
            cause = {"reason": "DisruptionBudget",
                     "message": f"The disruption budget {self.blocked_by} needs 2 healthy pods and has 2 currently"}
            return aiohttp.web.json_response({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "TooManyRequests", "code": 429,
                "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                "details": {"causes": [cause]}}, status=429)
        found = self.cluster.get("v1/pods", namespace, name)
        if found is None:
            return aiohttp.web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
        uid = ((body.get("deleteOptions") or {}).get("preconditions") or {}).get("uid")
        if uid and uid != found["metadata"]["uid"]:
            return aiohttp.web.json_response({"kind": "Status", "code": 409, "reason": "Conflict",
                                              "message": "Precondition failed: UID in precondition"}, status=409)
        self.cluster.delete("v1/pods", namespace, name)
        return aiohttp.web.json_response({"kind": "Status", "status": "Success", "code": 201}, status=201)


@pytest.fixture
async def cluster() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="workers", kubernetes_version="1.31")
    await emulator.start()
    for name in ("old-1", "old-2", "new-1"):
        emulator.create("v1/nodes", {"metadata": {"name": name}})
    emulator.create("v1/namespaces", {"metadata": {"name": "shop"}})
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
def desk(cluster: KubeEmulator) -> EvictionDesk:
    return EvictionDesk(cluster)


@pytest.fixture
async def client(cluster: KubeEmulator, desk: EvictionDesk) -> AsyncIterator[KubeClient]:
    session = aiohttp.ClientSession()

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.read()
        parts = request.path.split("/")
        if request.method == "POST" and parts[-1] == "eviction":
            return desk.answer(parts[-4], parts[-2], json.loads(body))
        headers = {key: value for key, value in request.headers.items()
                   if key.lower() in ("content-type", "accept", "authorization")}
        async with session.request(request.method, cluster.url + request.path_qs, data=body or None,
                                   headers=headers) as upstream:
            return aiohttp.web.Response(body=await upstream.read(), status=upstream.status,
                                        content_type=upstream.content_type)

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    kubeconfig = cluster.kubeconfig()
    kubeconfig["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with KubeClient.from_kubeconfig(kubeconfig) as kube:
            yield kube
    finally:
        await runner.cleanup()
        await session.close()


def put(cluster: KubeEmulator, the_pod: dict[str, Any], *, finalizer: bool = False) -> None:
    body = {key: value for key, value in the_pod.items() if key != "status"}
    body["metadata"] = {key: value for key, value in the_pod["metadata"].items() if key != "uid"}
    if finalizer:
        body["metadata"]["finalizers"] = ["test.example/hold"]
    created = cluster.create("v1/pods", body)
    cluster.patch("v1/pods", "shop", created["metadata"]["name"], {"status": the_pod["status"]},
                  subresource="status")


def names(cluster: KubeEmulator, node: str) -> list[str]:
    return sorted(item["metadata"]["name"] for item in cluster.list("v1/pods", "shop")
                  if item["spec"].get("nodeName") == node)


def is_cordoned(cluster: KubeEmulator, node: str) -> bool:
    found = cluster.get("v1/nodes", None, node)
    assert found is not None
    return bool(found.get("spec", {}).get("unschedulable"))


async def step(client: KubeClient, journal: list[EvictedPod], *, now: datetime.datetime = T0,
               policy: LocalStoragePolicy = LocalStoragePolicy.EVICT,
               previous: DrainProgress | None = None) -> DrainProgress:
    progress = await drain_step(client, "old-1", local_storage=policy, evicted_so_far=journal, now=now,
                                previous=previous)
    if progress.evicted is not None:
        journal.append(progress.evicted)
    return progress


async def test_a_node_is_drained_one_pod_per_pass_leaving_daemonset_and_mirror_pods(
        cluster: KubeEmulator, client: KubeClient, desk: EvictionDesk) -> None:
    for the_pod in (pod("web-b"), pod("web-a"), pod("agent", owner=("DaemonSet", "agent")),
                    pod("static", mirror=True)):
        put(cluster, the_pod)
    journal: list[EvictedPod] = []

    first = await step(client, journal)
    assert (first.outcome, first.cordoned, str(first.pod), first.remaining) == (
        DrainOutcome.EVICTED, True, "shop/web-a", 1)
    assert is_cordoned(cluster, "old-1")
    second = await step(client, journal)
    assert (second.outcome, second.cordoned, str(second.pod), second.remaining) == (
        DrainOutcome.EVICTED, False, "shop/web-b", 0)
    third = await step(client, journal)
    assert third.done
    assert third.message == "node old-1 drained (2 pod(s) left: DaemonSet, mirror, finished or terminating)"
    assert desk.asked == ["shop/web-a", "shop/web-b"]
    assert names(cluster, "old-1") == ["agent", "static"]
    assert [str(entry.pod) for entry in journal] == ["shop/web-a", "shop/web-b"]
    assert first.to_status() == {"node": "old-1", "outcome": "Evicted", "message": first.message, "remaining": 1,
                                 "pod": {"namespace": "shop", "name": "web-a", "uid": journal[0].pod.uid}}


async def test_the_journal_records_ready_pods_before_and_those_on_nodes_not_draining(
        cluster: KubeEmulator, client: KubeClient) -> None:
    put(cluster, pod("web-a"))
    put(cluster, pod("web-b", node="old-2"))
    put(cluster, pod("web-c", node="new-1"))
    put(cluster, pod("web-d", node="new-1", ready=False))
    cluster.patch("v1/nodes", None, "old-2", {"spec": {"unschedulable": True}})  # another old node, cordoned

    journal: list[EvictedPod] = []
    await step(client, journal)
    [entry] = journal
    assert (entry.controller, entry.node, entry.at) == (WEB, "old-1", T0)
    assert (entry.ready_before, entry.ready_elsewhere_before) == (3, 1)
    pods_now = cluster.list("v1/pods", "shop")
    assert replacements_ready(journal, pods_now, draining_nodes={"old-1", "old-2"}) == (
        False, "ReplicaSet shop/web-7d9: 1 of 2 Ready on new nodes")


async def test_done_waits_until_the_pods_it_evicted_have_terminated(
        cluster: KubeEmulator, client: KubeClient, desk: EvictionDesk) -> None:
    put(cluster, pod("web-a"), finalizer=True)
    journal: list[EvictedPod] = []
    assert (await step(client, journal)).outcome is DrainOutcome.EVICTED

    waiting = await step(client, journal)
    assert waiting.outcome is DrainOutcome.WAITING_FOR_TERMINATION
    assert waiting.message == "waiting for 1 evicted pod(s) to terminate on old-1: shop/web-a"
    assert desk.asked == ["shop/web-a"]  # a terminating pod is not evicted again, after a restart neither

    cluster.patch("v1/pods", "shop", "web-a", {"metadata": {"finalizers": None}})
    assert (await step(client, journal)).done


async def test_a_budget_blocks_since_its_first_refusal_and_the_drain_goes_on_when_it_allows(
        cluster: KubeEmulator, client: KubeClient, desk: EvictionDesk) -> None:
    put(cluster, pod("web-a"))
    desk.blocked_by = "web-pdb"
    journal: list[EvictedPod] = []

    blocked = await step(client, journal)
    assert blocked.outcome is DrainOutcome.BLOCKED_BY_BUDGET
    assert (blocked.budget, str(blocked.pod), blocked.since, blocked.remaining) == ("web-pdb", "shop/web-a", T0, 1)
    assert blocked.message.startswith(f"eviction of shop/web-a refused by PodDisruptionBudget shop/web-pdb since "
                                      f"{T0.isoformat()}: ")
    assert "needs 2 healthy pods and has 2 currently" in blocked.message

    later = T0 + datetime.timedelta(minutes=7)
    again = await step(client, journal, now=later, previous=DrainProgress.from_status(blocked.to_status()))
    assert again.since == T0
    assert (await step(client, journal, now=later)).since == later  # without the previous pass, a new block

    desk.blocked_by = None
    evicted = await step(client, journal, now=later, previous=again)
    assert evicted.outcome is DrainOutcome.EVICTED
    assert journal[0].at == later
    assert names(cluster, "old-1") == []


@pytest.mark.parametrize(("the_pod", "policy", "words"), [
    (pod("debug", owner=None), LocalStoragePolicy.EVICT, "shop/debug has no controller"),
    (pod("cache-0", empty_dir=True), LocalStoragePolicy.BLOCK, "spec.nodePools.localStorage: Evict"),
])
async def test_a_policy_block_cordons_but_evicts_nothing(
        cluster: KubeEmulator, client: KubeClient, desk: EvictionDesk,
        the_pod: dict[str, Any], policy: LocalStoragePolicy, words: str) -> None:
    put(cluster, the_pod)
    put(cluster, pod("web-a"))
    progress = await step(client, [], policy=policy)
    assert progress.outcome is DrainOutcome.BLOCKED_BY_POLICY
    assert words in progress.message
    assert progress.pod == PodRef.of(the_pod)
    assert progress.remaining == 1
    assert is_cordoned(cluster, "old-1")
    assert desk.asked == []


async def test_local_storage_under_evict_is_evicted(cluster: KubeEmulator, client: KubeClient) -> None:
    put(cluster, pod("cache-0", empty_dir=True))
    assert (await step(client, [])).outcome is DrainOutcome.EVICTED
    assert names(cluster, "old-1") == []


async def test_a_node_that_is_gone_is_done(cluster: KubeEmulator, client: KubeClient) -> None:
    cluster.delete("v1/nodes", None, "old-1")
    progress = await step(client, [])
    assert progress.done
    assert progress.message == "node old-1 is gone: nothing left to drain"


async def test_an_empty_node_is_cordoned_and_done(cluster: KubeEmulator, client: KubeClient) -> None:
    progress = await step(client, [])
    assert (progress.outcome, progress.cordoned, progress.message) == (DrainOutcome.DONE, True, "node old-1 drained")
    assert is_cordoned(cluster, "old-1")


async def test_a_pod_terminating_that_this_drain_did_not_evict_does_not_hold_it(
        cluster: KubeEmulator, client: KubeClient, desk: EvictionDesk) -> None:
    put(cluster, pod("web-a"), finalizer=True)
    cluster.delete("v1/pods", "shop", "web-a")  # someone else deletes it; the finalizer keeps it terminating
    progress = await step(client, [])
    assert progress.done
    assert desk.asked == []


async def test_given_draining_nodes_this_node_counts_among_them(cluster: KubeEmulator, client: KubeClient) -> None:
    put(cluster, pod("web-a"))
    put(cluster, pod("web-b", node="old-2"))
    progress = await drain_step(client, "old-1", local_storage=LocalStoragePolicy.EVICT, evicted_so_far=[], now=T0,
                                draining_nodes={"old-2"})
    assert progress.evicted is not None
    assert (progress.evicted.ready_before, progress.evicted.ready_elsewhere_before) == (2, 0)
