"""Smoke Jobs against an emulated workload cluster whose Jobs really run (as local processes, sim.jobs)."""

from __future__ import annotations

import datetime
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bluegreen.analysis import job as smoke
from bluegreen.api.spec import SmokeJob
from bluegreen.engine.types import JobObservation
from bluegreen.kube.client import ApiError, InvalidError, KubeClient
from bluegreen.sim import jobs
from bluegreen.sim.kube import KubeEmulator
from tests.unit.sim.test_jobs import JOBS, finished_job, running_pod, wait_for

UPGRADE = "fleet.prod-to-1-31"
LABELS = {"bluegreen.io/upgrade": UPGRADE}
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def smoke_job(script: str, **fields: Any) -> SmokeJob:
    template = {"template": {"spec": {"containers": [
        {"name": "check", "image": "curlimages/curl:8.10.1", "command": ["sh", "-c", script]}]}}}
    return SmokeJob.model_validate({"name": "smoke", "template": template, **fields})


@pytest.fixture
async def green() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="prod-green", kubernetes_version="1.31", token="green-token")
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


async def run_to_the_end(client: KubeClient, green: KubeEmulator, job: SmokeJob, *,
                         run: int = 1) -> tuple[str, JobObservation]:
    name = smoke.job_object_name(upgrade=UPGRADE, job=job.name, run=run)
    await smoke.start_job(client, job, object_name=name, labels=LABELS)
    await finished_job(green, name)
    now = datetime.datetime.now(datetime.UTC)
    return name, await smoke.observe_job(client, job, object_name=name, now=now)


# --- names ----------------------------------------------------------------------------------------


@given(upgrade=st.text(max_size=300), job=st.text(max_size=80), run=st.integers(min_value=0, max_value=10**12))
def test_names_are_dns_labels_and_the_same_for_the_same_run(upgrade: str, job: str, run: int) -> None:
    name = smoke.job_object_name(upgrade=upgrade, job=job, run=run)
    assert len(name) <= 63 and DNS_LABEL.fullmatch(name), name
    assert name == smoke.job_object_name(upgrade=upgrade, job=job, run=run)
    assert name.endswith(f"-{run}-" + name.rsplit("-", 1)[1])


@given(job=st.from_regex(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?", fullmatch=True),
       runs=st.lists(st.integers(min_value=0, max_value=10**9), min_size=2, max_size=5, unique=True))
def test_every_run_has_its_own_name(job: str, runs: list[int]) -> None:
    names = {smoke.job_object_name(upgrade=UPGRADE, job=job, run=run) for run in runs}
    assert len(names) == len(runs)


def test_names_read_as_what_they_are_and_keep_upgrades_and_long_jobs_apart() -> None:
    name = smoke.job_object_name(upgrade=UPGRADE, job="db-check", run=3)
    assert re.fullmatch(r"bg-db-check-3-[0-9a-f]{8}", name)
    assert name != smoke.job_object_name(upgrade="fleet.other", job="db-check", run=3)
    long_a, long_b = "a" * 39 + "x", "a" * 39 + "y"  # 40 characters, the longest a spec allows
    first = smoke.job_object_name(upgrade=UPGRADE, job=long_a, run=10**11)
    second = smoke.job_object_name(upgrade=UPGRADE, job=long_b, run=10**11)
    assert first != second and len(first) == len(second) == 63
    with pytest.raises(ValueError, match="not negative"):
        smoke.job_object_name(upgrade=UPGRADE, job="x", run=-1)


# --- starting -------------------------------------------------------------------------------------


async def test_start_creates_the_job_with_smoke_test_defaults_and_labels(client: KubeClient,
                                                                         green: KubeEmulator) -> None:
    job = smoke_job("echo ok", namespace="default", timeout="90s")
    line = await smoke.start_job(client, job, object_name="bg-smoke-1-abc", labels=LABELS)
    assert line == "created Job default/bg-smoke-1-abc in green"
    created = green.get(JOBS, "default", "bg-smoke-1-abc")
    assert created is not None
    assert created["metadata"]["labels"] == {**LABELS, "bluegreen.io/smoke-job": "smoke"}
    assert created["spec"]["backoffLimit"] == 0
    assert created["spec"]["activeDeadlineSeconds"] == 90
    pod_template = created["spec"]["template"]
    assert pod_template["spec"]["restartPolicy"] == "Never"
    assert pod_template["metadata"]["labels"]["bluegreen.io/upgrade"] == UPGRADE


async def test_the_templates_own_values_win(client: KubeClient, green: KubeEmulator) -> None:
    job = smoke_job("echo ok")
    template = dict(job.template, backoffLimit=2, activeDeadlineSeconds=30)
    template["template"] = dict(template["template"], spec=dict(template["template"]["spec"],
                                                                 restartPolicy="OnFailure"))
    job = job.model_copy(update={"template": template})
    await smoke.start_job(client, job, object_name="bg-own", labels=LABELS)
    created = green.get(JOBS, "default", "bg-own")
    assert created is not None
    assert (created["spec"]["backoffLimit"], created["spec"]["activeDeadlineSeconds"]) == (2, 30)
    assert created["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"


async def test_starting_twice_changes_nothing(client: KubeClient, green: KubeEmulator) -> None:
    job = smoke_job("echo ok", cluster="blue")
    first = await smoke.start_job(client, job, object_name="bg-twice", labels=LABELS)
    before = green.get(JOBS, "default", "bg-twice")
    again = await smoke.start_job(client, job, object_name="bg-twice", labels={"other": "labels"})
    assert first == "created Job default/bg-twice in blue"
    assert again == "Job default/bg-twice in blue already exists; left as it is"
    after = green.get(JOBS, "default", "bg-twice")
    assert before is not None and after is not None
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert green.request_counts[("create", "batch", "jobs")] == 2  # the second was refused, not applied


async def test_a_template_the_cluster_refuses_raises_with_the_clusters_words(client: KubeClient) -> None:
    job = smoke_job("echo ok")
    template = dict(job.template)
    template["template"] = dict(template["template"], spec=dict(template["template"]["spec"],
                                                                 restartPolicy="Always"))
    with pytest.raises(InvalidError, match=r"spec.template.spec.restartPolicy: Required value"):
        await smoke.start_job(client, job.model_copy(update={"template": template}), object_name="bg-always",
                              labels=LABELS)


# --- observing ------------------------------------------------------------------------------------


async def test_a_job_not_started_is_missing(client: KubeClient) -> None:
    observed = await smoke.observe_job(client, smoke_job("true"), object_name="bg-nothing",
                                       now=datetime.datetime.now(datetime.UTC))
    assert observed == JobObservation(state="Missing")


async def test_echo_ok_succeeds(client: KubeClient, green: KubeEmulator) -> None:
    _, observed = await run_to_the_end(client, green, smoke_job("echo ok"))
    assert observed == JobObservation(state="Succeeded")


async def test_a_failure_says_why_how_the_container_ended_and_what_it_printed(client: KubeClient,
                                                                            green: KubeEmulator) -> None:
    name, observed = await run_to_the_end(client, green, smoke_job("echo boom; exit 3"))
    assert observed.state == "Failed"
    lines = observed.message.splitlines()
    assert lines[0] == f"Job default/{name}: BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert re.fullmatch(rf"pod {name}-[a-z0-9]{{5}}, container check: exited with code 3 \(Error\)", lines[1])
    assert lines[2:] == ["its log:", "boom"]  # all of it: shorter than logLines


async def test_only_the_last_log_lines_are_shown(client: KubeClient, green: KubeEmulator) -> None:
    script = "for i in $(seq 1 30); do echo line-$i; done; exit 1"
    _, observed = await run_to_the_end(client, green, smoke_job(script, logLines=3))
    assert observed.message.splitlines()[-4:] == ["last 3 lines of its log:", "line-28", "line-29", "line-30"]
    _, quiet = await run_to_the_end(client, green, smoke_job(script, logLines=0), run=2)
    assert "line-30" not in quiet.message and quiet.state == "Failed"


async def test_the_newest_pod_tells_the_story_after_retries(client: KubeClient, green: KubeEmulator) -> None:
    job = smoke_job('echo "attempt on $HOSTNAME"; exit 1')
    job = job.model_copy(update={"template": dict(job.template, backoffLimit=2)})
    name, observed = await run_to_the_end(client, green, job)
    pods = sorted(green.list("v1/pods", "default", label_selector=f"job-name={name}"),
                  key=lambda pod: (pod["metadata"]["creationTimestamp"], pod["status"]["startTime"]))
    assert len(pods) == 3
    shown = re.search(r"^pod (\S+),", observed.message, re.M)
    assert shown is not None
    assert observed.message.endswith(f"attempt on {shown[1]}")
    assert shown[1] in {pod["metadata"]["name"] for pod in pods
                        if pod["metadata"]["creationTimestamp"] == pods[-1]["metadata"]["creationTimestamp"]}


async def test_running_past_the_timeout_has_failed_with_its_log_so_far(client: KubeClient,
                                                                       green: KubeEmulator) -> None:
    job = smoke_job("echo still waiting for the database; exec sleep 60", timeout="10m")
    name = smoke.job_object_name(upgrade=UPGRADE, job=job.name, run=1)
    await smoke.start_job(client, job, object_name=name, labels=LABELS)
    await running_pod(green, name)
    found = green.get(JOBS, "default", name)
    assert found is not None
    started = datetime.datetime.fromisoformat(found["status"]["startTime"].replace("Z", "+00:00"))
    within = await smoke.observe_job(client, job, object_name=name, now=started + datetime.timedelta(minutes=10))
    assert within.state == "Running" and within.message == ""
    late = await smoke.observe_job(client, job, object_name=name,
                                   now=started + datetime.timedelta(minutes=10, seconds=1))
    assert late.state == "Failed"
    assert late.message.splitlines()[0] == f"Job default/{name} did not finish within 10m"
    assert ", container check: still running" in late.message
    assert late.message.endswith("still waiting for the database")


async def test_a_pod_stuck_before_starting_is_named_while_running(client: KubeClient, green: KubeEmulator) -> None:
    job = smoke_job("true")
    template = dict(job.template)
    container = dict(template["template"]["spec"]["containers"][0],
                     env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "smoke-token", "key": "t"}}}])
    template["template"] = {"spec": {"containers": [container]}}
    job = job.model_copy(update={"template": template})
    name = smoke.job_object_name(upgrade=UPGRADE, job=job.name, run=1)
    await smoke.start_job(client, job, object_name=name, labels=LABELS)
    await wait_for(green, "v1/pods", lambda pod: "CreateContainerConfigError" in str(pod.get("status")),
                   what="the pod's config error")
    observed = await smoke.observe_job(client, job, object_name=name, now=datetime.datetime.now(datetime.UTC))
    assert observed.state == "Running"
    assert observed.message.endswith('waiting: CreateContainerConfigError: secret "smoke-token" not found')


@pytest.mark.parametrize(("conditions", "state", "reason"), [
    ([{"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded",
       "message": "Job was active longer than specified deadline"}], "Failed", "DeadlineExceeded"),
    ([{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"}], "Succeeded", None),
    ([{"type": "Complete", "status": "True"}], "Succeeded", None),  # before 1.31: no reason, no interim
    ([{"type": "Failed", "status": "False"}], "Running", None),
])
async def test_conditions_decide_as_the_job_controller_writes_them(
        conditions: list[dict[str, Any]], state: str, reason: str | None) -> None:
    # A cluster with no Job controller: the status is written by hand, as the controller would.
    bare = KubeEmulator(name="bare")
    await bare.start()
    try:
        async with KubeClient.from_kubeconfig(bare.kubeconfig()) as client:
            job = smoke_job("true")
            await smoke.start_job(client, job, object_name="bg-hand", labels=LABELS)
            bare.patch(JOBS, "default", "bg-hand", {"status": {
                "startTime": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "conditions": conditions}}, subresource="status")
            observed = await smoke.observe_job(client, job, object_name="bg-hand",
                                               now=datetime.datetime.now(datetime.UTC))
    finally:
        await bare.stop()
    assert observed.state == state
    if reason is not None:
        assert reason in observed.message
        assert observed.message.endswith("no pod of it is left to show a log")


async def test_the_clients_text_get_reads_a_log_answers_none_for_no_pod_and_raises_api_errors(
        client: KubeClient, green: KubeEmulator) -> None:
    name, _ = await run_to_the_end(client, green, smoke_job("echo first; echo second"))
    [pod] = green.list("v1/pods", "default", label_selector=f"job-name={name}")
    log = await client.get_text(smoke.PODS, namespace="default", name=pod["metadata"]["name"], subresource="log",
                                params={"tailLines": "1"})
    assert log == "second\n"
    assert await client.get_text(smoke.PODS, namespace="default", name="gone", subresource="log") is None
    green.create("v1/pods", {"metadata": {"name": "two", "namespace": "default"}, "spec": {"containers": [
        {"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}})
    with pytest.raises(ApiError, match="a container name must be specified") as refused:
        await client.get_text(smoke.PODS, namespace="default", name="two", subresource="log")
    assert refused.value.status == 400
