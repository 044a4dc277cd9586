"""A preflight pass against an API server failing for now, and against one refusing for good.

Given blue (or the management cluster) answering 5xx, 429, nothing at all, or
holding a request past the client's timeout, when the preflight runs, then the
pass raises ``ScanInterrupted`` naming the scan, the cluster and the error, so
the loop retries it rather than blocking the upgrade for a person; and once
the server answers again, the same pass reports normally. A refusal that
waiting does not change (401, 403, 404) stays a problem, as before.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.api import spec as api
from bluegreen.kube.client import KubeClient
from bluegreen.preflight.run import run_preflight
from bluegreen.preflight.transient import ScanInterrupted
from bluegreen.sim import flux
from bluegreen.sim.kube import KubeEmulator
from tests.unit.preflight.test_run import GREEN, NOW, Sizes, add_statefulset, make_spec

pytestmark = pytest.mark.reliability


@pytest.fixture
async def blue() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="prod-blue", kubernetes_version="1.24")
    emulator.add_resource(group="batch", version="v1beta1", plural="cronjobs", kind="CronJob")
    await emulator.start()
    emulator.create("v1/namespaces", {"metadata": {"name": "data"}})
    emulator.create("v1/namespaces", {"metadata": {"name": "fleet"}})
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def client(blue: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(blue.kubeconfig()) as client:
        yield client


async def preflight_of(spec: api.ClusterUpgradeSpec, client: KubeClient, tmp_path: pathlib.Path) -> Any:
    # One emulator is both blue and the management cluster: a fault names its scan by the resource it hits.
    return await run_preflight(spec, management=client, blue=client, blue_name="prod-blue", blue_version="1.24",
                               green_capacity=Sizes(GREEN), workdir=tmp_path, now=NOW)


@pytest.mark.parametrize(("resource", "status", "expected"), [
    ("poddisruptionbudgets", 500, "the live scan of prod-blue for removed APIs could not read prod-blue: "
                                  "InternalError (500): injected fault 1: list poddisruptionbudgets answered 500 "
                                  "InternalError (GET /apis/policy/v1/poddisruptionbudgets)"),
    ("statefulsets", 503, "the scan of prod-blue for stateful workloads could not read prod-blue: "
                          "ServiceUnavailable (503): injected fault 1: list statefulsets answered 503 "
                          "ServiceUnavailable (GET /apis/apps/v1/statefulsets)"),
    ("statefulsets", 429, "the scan of prod-blue for stateful workloads could not read prod-blue: "
                          "TooManyRequests (429): injected fault 1: list statefulsets answered 429 "
                          "TooManyRequests (GET /apis/apps/v1/statefulsets)"),
])
async def test_an_api_error_that_passes_interrupts_the_pass_and_the_next_pass_reports(
        blue: KubeEmulator, client: KubeClient, tmp_path: pathlib.Path,
        resource: str, status: int, expected: str) -> None:
    add_statefulset(blue, "data", "postgres")
    blue.injected.add(verb="list", resource=resource, status=status, count=1)
    spec = make_spec(preflight={"capacity": "Off"})

    with pytest.raises(ScanInterrupted) as raised:
        await preflight_of(spec, client, tmp_path)

    assert str(raised.value) == expected
    assert blue.injected.served[0]["status"] == status  # the fault was met, and it is used up now
    report = await preflight_of(spec, client, tmp_path)
    assert report.problems == []
    assert [workload.name for workload in report.stateful_workloads] == ["postgres"]


async def test_blue_not_answering_interrupts_the_pass_naming_every_scan_that_could_not_read(
        blue: KubeEmulator, client: KubeClient, tmp_path: pathlib.Path) -> None:
    address = blue.url.split("://")[1]
    await blue.stop()

    with pytest.raises(ScanInterrupted) as raised:
        await preflight_of(make_spec(preflight={"capacity": "Off"}), client, tmp_path)

    lines = str(raised.value).split("; ")
    assert [line.split(": ")[0] for line in lines] == [
        "the live scan of prod-blue for removed APIs could not read prod-blue",
        "the scan of prod-blue for stateful workloads could not read prod-blue",
    ]
    assert all(address in line for line in lines)


async def test_a_request_held_past_the_clients_timeout_interrupts_the_pass(
        blue: KubeEmulator, tmp_path: pathlib.Path) -> None:
    blue.injected.add(verb="list", resource="statefulsets", stall=2.0, count=1)
    async with KubeClient.from_kubeconfig(blue.kubeconfig(), timeout=0.3) as impatient:
        with pytest.raises(ScanInterrupted) as raised:
            await preflight_of(make_spec(preflight={"capacity": "Off"}), impatient, tmp_path)

    # The client's own words for a timeout name the request that was held.
    assert str(raised.value).startswith("the scan of prod-blue for stateful workloads could not read prod-blue: GET ")
    assert "/apis/apps/v1/statefulsets" in str(raised.value)


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_refusal_stays_a_problem_a_person_must_fix(
        blue: KubeEmulator, client: KubeClient, tmp_path: pathlib.Path, status: int) -> None:
    blue.injected.add(verb="list", resource="statefulsets", status=status, count=1)

    report = await preflight_of(make_spec(preflight={"capacity": "Off"}), client, tmp_path)

    assert len(report.problems) == 1
    assert report.problems[0].startswith("the scan of prod-blue for stateful workloads failed: ")
    assert f"({status}): injected fault" in report.problems[0]
    assert report.problems[0].endswith("; fix that, then retry")


async def test_a_transient_error_anywhere_retries_the_whole_pass_even_beside_a_refusal(
        blue: KubeEmulator, client: KubeClient, tmp_path: pathlib.Path) -> None:
    blue.injected.add(verb="list", resource="poddisruptionbudgets", status=403, count=1)
    blue.injected.add(verb="list", resource="statefulsets", status=503, count=1)

    with pytest.raises(ScanInterrupted) as raised:
        await preflight_of(make_spec(preflight={"capacity": "Off"}), client, tmp_path)

    # Only what is retried is named; the refusal is reported by the pass that can read everything else.
    assert str(raised.value).startswith("the scan of prod-blue for stateful workloads could not read prod-blue: ")
    assert "Forbidden" not in str(raised.value)


@pytest.mark.parametrize(("status", "interrupted"), [(503, True), (500, True), (403, False)])
async def test_the_sources_scan_retries_when_the_management_cluster_fails_for_now(
        blue: KubeEmulator, client: KubeClient, tmp_path: pathlib.Path, status: int, interrupted: bool) -> None:
    flux.install(blue)
    blue.injected.add(verb="list", resource="kustomizations", status=status, count=1)
    spec = make_spec(preflight={"scanSources": True, "capacity": "Off"})

    if interrupted:
        with pytest.raises(ScanInterrupted) as raised:
            await preflight_of(spec, client, tmp_path)
        assert str(raised.value).startswith("the scan of prod-blue's Flux sources for removed APIs could not read "
                                            "the management cluster: ")
        assert f"({status}): injected fault 1: list kustomizations" in str(raised.value)
    else:
        report = await preflight_of(spec, client, tmp_path)
        assert [line.split(": ")[0] for line in report.problems] == [
            "cannot read blue's Kustomizations and their sources in fleet on the management cluster"]


async def test_git_mode_retries_when_the_credentials_secret_cannot_be_read_for_now(
        blue: KubeEmulator, client: KubeClient, tmp_path: pathlib.Path) -> None:
    spec = api.parse_spec({
        "cluster": {"provider": "capi", "name": "prod-blue", "namespace": "fleet"},
        "target": {"kubernetesVersion": "1.25"},
        "workloads": {"flux": {"mode": "git", "git": {"url": "https://git.example.invalid/fleet.git",
                                                      "secretRef": {"name": "git-creds"}}}},
        "traffic": {"routers": [{"haproxy": {"runtimeAPI": "tcp://127.0.0.1:9999", "backend": "app",
                                             "blueServer": "blue", "greenServer": "green"}}],
                    "steps": [{"setWeight": 100}]},
        "preflight": {"scanSources": True, "capacity": "Off"},
    })
    blue.injected.add(verb="get", resource="secrets", name="git-creds", status=503, count=1)

    with pytest.raises(ScanInterrupted) as raised:
        await preflight_of(spec, client, tmp_path)

    assert str(raised.value).startswith("the scan of prod-blue's Flux sources for removed APIs could not read the "
                                        "management cluster: ServiceUnavailable (503)")
