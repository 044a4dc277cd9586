"""Job hooks through the smoke Job code, against an emulated cluster whose Jobs really run (sim.jobs)."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.analysis import job as smoke
from bluegreen.api import spec as api
from bluegreen.hooks.runner import LABEL_HOOK, HookRunner, hook_job_name
from bluegreen.kube.client import KubeClient
from bluegreen.sim import jobs
from bluegreen.sim.kube import KubeEmulator
from tests.fixtures.fleet import eventually
from tests.fixtures.handoff_fleet import OWNER, upgrade_spec

JOBS = "batch/v1/jobs"


def job_hook(script: str, *, cluster: str = "green") -> dict[str, Any]:
    return {"name": "reindex", "at": "AfterPromotion", "cluster": cluster, "job": {"timeout": "1m", "template": {
        "template": {"spec": {"containers": [{"name": "run", "image": "busybox", "command": ["sh", "-c", script]}]}}}}}


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@pytest.fixture
async def green() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="prod-green", kubernetes_version="1.31")
    await emulator.start()
    jobs.attach(emulator, backoff=0.05)
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def client(green: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(green.kubeconfig()) as client:
        yield client


def runner(spec: api.ClusterUpgradeSpec, client: KubeClient, asked: list[str]) -> HookRunner:
    async def side_client(side: str) -> KubeClient:
        asked.append(side)
        return client

    return HookRunner(spec, management=client, side_client=side_client, owner=OWNER, upgrade_namespace="fleet")


async def test_a_job_hook_runs_once_in_its_cluster_and_succeeds_with_its_job(
        green: KubeEmulator, client: KubeClient) -> None:
    spec = upgrade_spec(job_hook("echo reindexed"))
    hook, asked = spec.hooks[0], list[str]()
    hooks = runner(spec, client, asked)

    assert (await hooks.observe(hook, reverse=False, run=2, now=now())).state == "Missing"
    first = await hooks.advance(hook, reverse=False, run=2)
    second = await hooks.advance(hook, reverse=False, run=2)

    name = hook_job_name(owner=OWNER, hook="reindex", run=2)
    assert first == [f"hook reindex: created Job default/{name} in green"]
    assert second == [f"hook reindex: Job default/{name} in green already exists; left as it is"]

    async def finished() -> str | None:
        state = (await hooks.observe(hook, reverse=False, run=2, now=now())).state
        return state if state in ("Succeeded", "Failed") else None

    assert await eventually(finished, what="the hook's Job finished") == "Succeeded"
    created = green.get(JOBS, "default", name)
    assert created is not None and created["metadata"]["labels"][LABEL_HOOK] == "reindex"
    assert created["metadata"]["labels"]["bluegreen.io/upgrade"] == OWNER
    assert set(asked) == {"green"}


async def test_a_failing_job_hook_fails_with_its_log(client: KubeClient) -> None:
    spec = upgrade_spec(job_hook("echo shards red; exit 3", cluster="blue"))
    hook, asked = spec.hooks[0], list[str]()
    hooks = runner(spec, client, asked)
    await hooks.advance(hook, reverse=False, run=0)

    async def failed() -> str | None:
        seen = await hooks.observe(hook, reverse=False, run=0, now=now())
        return seen.message if seen.state == "Failed" else None

    message = await eventually(failed, what="the hook's Job failed")
    assert "exited with code 3" in message and "shards red" in message
    assert set(asked) == {"blue"}


async def test_a_job_hook_has_nothing_to_hand_back(client: KubeClient) -> None:
    spec = upgrade_spec(job_hook("true"))
    hooks = runner(spec, client, asked := list[str]())

    assert (await hooks.observe(spec.hooks[0], reverse=True, run=0, now=now())).state == "Succeeded"
    assert await hooks.advance(spec.hooks[0], reverse=True, run=0) == []
    assert asked == []


def test_a_hook_s_job_name_is_never_a_smoke_job_s() -> None:
    hook_name = hook_job_name(owner=OWNER, hook="es", run=1)

    assert hook_name.startswith("bg-hook-es-1-")
    assert hook_name != smoke.job_object_name(upgrade=OWNER, job="hook-es", run=1)
    assert hook_name != hook_job_name(owner=OWNER, hook="es", run=2)


async def test_an_unreachable_cluster_is_running_with_the_reason() -> None:
    spec = upgrade_spec(job_hook("true"))
    gone = KubeEmulator(name="gone")
    await gone.start()
    config = gone.kubeconfig()
    await gone.stop()
    async with KubeClient.from_kubeconfig(config, timeout=2) as unreachable:
        seen = await runner(spec, unreachable, []).observe(spec.hooks[0], reverse=False, run=0, now=now())

    assert seen.state == "Running" and seen.message.startswith("cannot read the hook's Job in green: ")
