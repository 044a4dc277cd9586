"""The simulated Job controller and kubelet, and the emulator's Job and pod-log API, as clients see them."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pathlib
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import yaml

from bluegreen.sim import jobs
from bluegreen.sim.kube import KubeEmulator
from bluegreen.sim.kube_logs import LogOptions

JOBS = "batch/v1/jobs"
PODS = "v1/pods"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
WAIT = 30.0  # generous: a bound on waiting for a process, never a speed assertion


def job_body(name: str, script: str, *, restart: str = "Never", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": {"spec": {"restartPolicy": restart, "containers": [
            {"name": "smoke", "image": "busybox:1.36", "command": ["sh", "-c", script]}]}}, **spec},
    }


async def wait_for(emulator: KubeEmulator, resource: str, check: Callable[[dict[str, Any]], bool], *,
                   what: str) -> dict[str, Any]:
    """The first object of ``resource`` for which ``check`` holds, now or when it next changes."""
    watch = emulator.watch(resource)
    try:
        async with asyncio.timeout(WAIT):
            for obj in emulator.list(resource):
                if check(obj):
                    return obj
            async for _, obj in watch:
                if check(obj):
                    return obj
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {WAIT}s") from None
    finally:
        await watch.aclose()  # type: ignore[attr-defined]
    raise AssertionError(f"the watch ended before {what}")


def condition_types(job: dict[str, Any]) -> list[str]:
    return [c["type"] for c in (job.get("status") or {}).get("conditions") or () if c["status"] == "True"]


def named(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: obj["metadata"]["name"] == name


async def finished_job(emulator: KubeEmulator, name: str) -> dict[str, Any]:
    return await wait_for(emulator, JOBS, lambda job: named(name)(job) and bool(
        {"Complete", "Failed"} & set(condition_types(job))), what=f"Job {name} finishing")


def directory_exists(path: str) -> bool:
    return pathlib.Path(path).exists()


def pods_of(emulator: KubeEmulator, job: str) -> list[dict[str, Any]]:
    return emulator.list(PODS, "default", label_selector=f"batch.kubernetes.io/job-name={job}")


async def running_pod(emulator: KubeEmulator, job: str) -> dict[str, Any]:
    return await wait_for(emulator, PODS, lambda pod: pod["metadata"].get("labels", {}).get("job-name") == job and (
        pod.get("status") or {}).get("phase") == "Running", what=f"a pod of {job} running")


@pytest.fixture
async def cluster() -> AsyncIterator[KubeEmulator]:
    """A 1.31 workload cluster whose Jobs run (replacement pods after 50 ms instead of 10 s)."""
    emulator = KubeEmulator(name="green", kubernetes_version="v1.31.2")
    await emulator.start()
    jobs.attach(emulator, backoff=0.05)
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def http(cluster: KubeEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=cluster.url) as session:
        yield session


# --- what the API server does to a Job ------------------------------------------------------------


async def test_a_job_without_restart_policy_is_refused_as_the_apiserver_does(http: aiohttp.ClientSession) -> None:
    body = job_body("no-policy", "true")
    del body["spec"]["template"]["spec"]["restartPolicy"]
    async with http.post("/apis/batch/v1/namespaces/default/jobs", json=body) as response:
        assert response.status == 422
        status = await response.json()
    assert status["message"] == ('Job.batch "no-policy" is invalid: spec.template.spec.restartPolicy: '
                                 'Required value: valid values: "OnFailure", "Never"')


async def test_a_created_job_gets_the_apiservers_defaults_selector_and_pod_labels(cluster: KubeEmulator) -> None:
    created = cluster.create(JOBS, job_body("defaults", "true"))
    uid = created["metadata"]["uid"]
    spec = created["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert (spec["completionMode"], spec["suspend"]) == ("NonIndexed", False)
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    expected = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "defaults",
                "controller-uid": uid, "job-name": "defaults"}
    assert spec["template"]["metadata"]["labels"] == expected
    assert created["metadata"]["labels"] == expected  # a Job without labels takes its template's
    labelled = job_body("labelled", "true")
    labelled["metadata"]["labels"] = {"team": "payments"}
    assert cluster.create(JOBS, labelled)["metadata"]["labels"] == {"team": "payments"}


# --- the Job controller ---------------------------------------------------------------------------


async def test_a_succeeding_job_is_complete_with_the_conditions_and_counts_of_1_31(cluster: KubeEmulator) -> None:
    cluster.create(JOBS, job_body("ok", "echo ok"))
    job = await finished_job(cluster, "ok")
    status = job["status"]
    assert condition_types(job) == ["SuccessCriteriaMet", "Complete"]
    complete = status["conditions"][1]
    assert (complete["reason"], complete["message"]) == ("CompletionsReached",
                                                         "Reached expected number of succeeded pods")
    assert status["succeeded"] == 1 and "failed" not in status and "active" not in status
    assert status["uncountedTerminatedPods"] == {} and status["ready"] == 0 and status["terminating"] == 0
    assert status["startTime"] <= status["completionTime"]
    [pod] = pods_of(cluster, "ok")
    assert pod["metadata"]["generateName"] == "ok-" and pod["metadata"]["name"].startswith("ok-")
    assert pod["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "ok",
                                                   "uid": job["metadata"]["uid"], "controller": True,
                                                   "blockOwnerDeletion": True}]
    assert "finalizers" not in pod["metadata"]  # job-tracking is removed once the pod is counted
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    reasons = [(e["reason"], e["message"]) for e in cluster.list("v1/events", "default")
               if e["involvedObject"]["name"] == "ok"]
    assert ("SuccessfulCreate", f"Created pod: {pod['metadata']['name']}") in reasons
    assert ("Completed", "Job completed") in reasons


async def test_a_failing_job_is_retried_up_to_its_backoff_limit_then_failed(cluster: KubeEmulator) -> None:
    cluster.create(JOBS, job_body("boom", "echo boom; exit 3", backoffLimit=2))
    job = await finished_job(cluster, "boom")
    assert condition_types(job) == ["FailureTarget", "Failed"]
    failed = job["status"]["conditions"][1]
    assert (failed["reason"], failed["message"]) == ("BackoffLimitExceeded",
                                                     "Job has reached the specified backoff limit")
    assert job["status"]["failed"] == 3 and "succeeded" not in job["status"]
    pods = pods_of(cluster, "boom")
    assert len(pods) == 3
    assert {pod["status"]["phase"] for pod in pods} == {"Failed"}
    assert {pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for pod in pods} == {3}
    warnings = [e for e in cluster.list("v1/events", "default") if e["type"] == "Warning"]
    assert [(e["involvedObject"]["name"], e["reason"]) for e in warnings] == [("boom", "BackoffLimitExceeded")]


async def test_before_1_31_there_are_no_interim_conditions_and_complete_has_no_reason() -> None:
    emulator = KubeEmulator(name="blue", kubernetes_version="1.30")
    await emulator.start()
    jobs.attach(emulator, backoff=0.05)
    try:
        emulator.create(JOBS, job_body("ok", "true"))
        emulator.create(JOBS, job_body("bad", "false", backoffLimit=0))
        ok, bad = await finished_job(emulator, "ok"), await finished_job(emulator, "bad")
    finally:
        await emulator.stop()
    assert condition_types(ok) == ["Complete"] and "reason" not in ok["status"]["conditions"][0]
    assert condition_types(bad) == ["Failed"]
    assert bad["status"]["conditions"][0]["reason"] == "BackoffLimitExceeded"


async def test_active_deadline_fails_the_job_and_stops_its_pod(cluster: KubeEmulator) -> None:
    cluster.create(JOBS, job_body("slow", "echo waiting; exec sleep 60", activeDeadlineSeconds=1))
    pod = await running_pod(cluster, "slow")
    job = await finished_job(cluster, "slow")
    assert job["status"]["conditions"][-1]["reason"] == "DeadlineExceeded"
    assert job["status"]["conditions"][-1]["message"] == "Job was active longer than specified deadline"
    assert job["status"]["failed"] == 1
    assert cluster.get(PODS, "default", pod["metadata"]["name"]) is None  # running pods are deleted
    deleted = [e["message"] for e in cluster.list("v1/events", "default") if e["reason"] == "SuccessfulDelete"]
    assert deleted == [f"Deleted pod: {pod['metadata']['name']}"]


async def test_a_distant_deadline_does_not_hold_back_retries(cluster: KubeEmulator) -> None:
    cluster.create(JOBS, job_body("retried", "exit 1", backoffLimit=1, activeDeadlineSeconds=600))
    job = await finished_job(cluster, "retried")
    assert job["status"]["failed"] == 2 and job["status"]["conditions"][-1]["reason"] == "BackoffLimitExceeded"


async def test_parallel_completions_run_several_pods(cluster: KubeEmulator) -> None:
    cluster.create(JOBS, job_body("many", "echo done", completions=3, parallelism=2))
    job = await finished_job(cluster, "many")
    assert job["status"]["succeeded"] == 3 and "Complete" in condition_types(job)
    assert len(pods_of(cluster, "many")) == 3


async def test_deleting_a_job_takes_its_running_pod_and_process_with_it(cluster: KubeEmulator) -> None:
    cluster.create(JOBS, job_body("doomed", "echo up; exec sleep 60"))
    pod = await running_pod(cluster, "doomed")
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].rsplit("/", 1)[1])
    cluster.delete(JOBS, "default", "doomed")
    await wait_for(cluster, PODS, lambda _: not pods_of(cluster, "doomed"), what="the pod going away")
    async with asyncio.timeout(WAIT):
        await jobs.attach(cluster).idle()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_stopping_the_emulator_stops_the_controller_and_its_processes() -> None:
    emulator = KubeEmulator(name="short-lived")
    await emulator.start()
    controller = jobs.attach(emulator, backoff=0.05)
    assert jobs.attach(emulator) is controller  # one controller per emulator
    emulator.create(JOBS, job_body("forever", "exec sleep 60"))
    pod = await running_pod(emulator, "forever")
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].rsplit("/", 1)[1])
    await emulator.stop()
    await controller.stop()
    assert controller.done
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_pods_not_owned_by_a_job_are_not_run(cluster: KubeEmulator) -> None:
    cluster.create(PODS, {"metadata": {"name": "bare", "namespace": "default"}, "spec": {"containers": [
        {"name": "c", "image": "busybox", "command": ["sh", "-c", "echo hi"]}]}})
    cluster.create(JOBS, job_body("after", "true"))
    await finished_job(cluster, "after")  # the controller has been busy meanwhile
    assert "status" not in (cluster.get(PODS, "default", "bare") or {})


# --- the kubelet ----------------------------------------------------------------------------------


async def test_environment_values_references_and_expansion(cluster: KubeEmulator) -> None:
    cluster.create("v1/secrets", {"metadata": {"name": "creds", "namespace": "default"},
                                  "data": {"token": base64.b64encode(b"s3cret").decode()}})
    cluster.create("v1/configmaps", {"metadata": {"name": "settings", "namespace": "default"},
                                     "data": {"url": "http://app"}})
    body = job_body("env", 'echo "$GREETING $TOKEN $URL $POD $HOSTNAME"; pwd', backoffLimit=0)
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [
        {"name": "WHO", "value": "green"},
        {"name": "GREETING", "value": "hello-$(WHO)-$(UNSET)-$$(WHO)"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "URL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "url"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    cluster.create(JOBS, body)
    await finished_job(cluster, "env")
    [pod] = pods_of(cluster, "env")
    name = pod["metadata"]["name"]
    log = cluster.logs.read(uid=pod["metadata"]["uid"], container="smoke",
                            options=LogOptions()).decode().splitlines()
    assert log[0] == f"hello-green-$(UNSET)-$(WHO) s3cret http://app {name} {name}"
    assert pathlib.PurePath(log[1]).name.startswith(f"sim-pod-{name}-")  # a fresh directory per pod
    assert not directory_exists(log[1])  # and removed with it


async def test_a_missing_secret_keeps_the_container_waiting(cluster: KubeEmulator) -> None:
    body = job_body("nosecret", "true")
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "token"}}}]
    cluster.create(JOBS, body)
    pod = await wait_for(cluster, PODS, lambda pod: bool((pod.get("status") or {}).get("containerStatuses")) and (
        "CreateContainerConfigError" in json.dumps(pod["status"])), what="the config error")
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting == {"reason": "CreateContainerConfigError", "message": 'secret "nope" not found'}
    assert pod["status"]["phase"] == "Pending"


@pytest.mark.parametrize(("container", "message"), [
    ({"name": "smoke", "image": "ghcr.io/example/tests:1"}, "cannot know the entrypoint of image"),
    ({"name": "smoke", "image": "x", "command": ["no-such-command-anywhere"]}, "no-such-command-anywhere"),
])
async def test_a_container_that_cannot_start_fails_with_start_error(cluster: KubeEmulator, container: dict[str, Any],
                                                                    message: str) -> None:
    body = job_body("nostart", "")
    body["spec"]["backoffLimit"] = 0
    body["spec"]["template"]["spec"]["containers"] = [container]
    cluster.create(JOBS, body)
    job = await finished_job(cluster, "nostart")
    assert "Failed" in condition_types(job)
    [pod] = pods_of(cluster, "nostart")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (128, "StartError")
    assert message in terminated["message"]


async def test_on_failure_restarts_the_container_in_place_keeping_the_previous_log(
        cluster: KubeEmulator, http: aiohttp.ClientSession) -> None:
    # The pod's directory survives a restart, as a container's writable layer does.
    script = "if [ -f ran ]; then echo second; else touch ran; echo first; exit 1; fi"
    cluster.create(JOBS, job_body("flaky", script, restart="OnFailure", backoffLimit=6))
    job = await finished_job(cluster, "flaky")
    assert "Complete" in condition_types(job)
    [pod] = pods_of(cluster, "flaky")
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1 and status["lastState"]["terminated"]["exitCode"] == 1
    path = f"/api/v1/namespaces/default/pods/{pod['metadata']['name']}/log"
    async with http.get(path) as response:
        assert await response.text() == "second\n"
    async with http.get(path, params={"previous": "true"}) as response:
        assert await response.text() == "first\n"


async def test_on_failure_fails_the_job_when_restarts_reach_the_backoff_limit(cluster: KubeEmulator) -> None:
    cluster.create(JOBS, job_body("crashloop", "exit 1", restart="OnFailure", backoffLimit=1))
    job = await finished_job(cluster, "crashloop")
    assert job["status"]["conditions"][-1]["reason"] == "BackoffLimitExceeded"
    assert pods_of(cluster, "crashloop") == []  # the restarting pod was deleted


# --- pods/{name}/log ------------------------------------------------------------------------------


async def test_pod_log_serves_text_with_tail_lines_limit_bytes_and_timestamps(
        cluster: KubeEmulator, http: aiohttp.ClientSession) -> None:
    cluster.create(JOBS, job_body("counter", 'for i in 1 2 3 4 5; do echo "line $i"; done; printf tail'))
    await finished_job(cluster, "counter")
    [pod] = pods_of(cluster, "counter")
    path = f"/api/v1/namespaces/default/pods/{pod['metadata']['name']}/log"
    async with http.get(path) as response:
        assert response.status == 200 and response.content_type == "text/plain"
        assert await response.text() == "line 1\nline 2\nline 3\nline 4\nline 5\ntail\n"
    async with http.get(path, params={"tailLines": "2"}) as response:
        assert await response.text() == "line 5\ntail\n"
    async with http.get(path, params={"tailLines": "0"}) as response:
        assert await response.text() == ""
    async with http.get(path, params={"limitBytes": "9"}) as response:
        assert await response.text() == "line 1\nli"
    async with http.get(path, params={"tailLines": "1", "timestamps": "true"}) as response:
        stamp, text = (await response.text()).split(" ", 1)
    assert text == "tail\n" and stamp.endswith("Z") and len(stamp) == len("2024-01-01T00:00:00.000000000Z")
    async with http.get(path, params={"container": "smoke"}) as response:
        assert response.status == 200
    assert cluster.request_counts[("get", "", "pods/log")] == 6


async def test_pod_log_errors_are_the_apiservers(cluster: KubeEmulator, http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/namespaces/default/pods/nothere/log") as response:
        assert response.status == 404
        assert (await response.json())["message"] == 'pods "nothere" not found'
    cluster.create(PODS, {"metadata": {"name": "two", "namespace": "default"}, "spec": {"containers": [
        {"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}})
    for params, message in [
        ({}, "a container name must be specified for pod two, choose one of: [a b]"),
        ({"container": "c"}, "container c is not valid for pod two"),
        ({"container": "a"}, 'container "a" in pod "two" is waiting to start: ContainerCreating'),
        ({"container": "a", "previous": "true"}, 'previous terminated container "a" in pod "two" not found'),
    ]:
        async with http.get("/api/v1/namespaces/default/pods/two/log", params=params) as response:
            assert response.status == 400, params
            assert (await response.json())["message"] == message
    async with http.get("/api/v1/namespaces/default/pods/two/log",
                        params={"container": "a", "tailLines": "-1"}) as response:
        assert response.status == 422
    async with http.get("/api/v1/namespaces/default/configmaps/x/log") as response:
        assert response.status == 404  # only pods have a log


async def test_pod_log_follow_streams_until_the_container_ends(cluster: KubeEmulator,
                                                               http: aiohttp.ClientSession) -> None:
    cluster.create(JOBS, job_body("talker", "echo one; sleep 0.3; echo two"))
    pod = await running_pod(cluster, "talker")
    path = f"/api/v1/namespaces/default/pods/{pod['metadata']['name']}/log"
    async with asyncio.timeout(WAIT), http.get(path, params={"follow": "true"}) as response:
        assert await response.text() == "one\ntwo\n"


async def test_discovery_lists_the_log_subresource(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1") as response:
        resources = {r["name"]: r for r in (await response.json())["resources"]}
    assert resources["pods/log"]["verbs"] == ["get"]
    async with http.get("/apis/batch/v1") as response:
        names = {r["name"] for r in (await response.json())["resources"]}
    assert {"jobs", "jobs/status"} <= names


# --- kubectl --------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed (expected at /usr/bin/kubectl)")
async def test_kubectl_gets_jobs_and_pods_reads_logs_and_describes_a_failure(
        cluster: KubeEmulator, tmp_path: pathlib.Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(cluster.kubeconfig()))
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), KUBECACHEDIR=str(tmp_path / "cache"))

    async def kubectl(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(KUBECTL, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        assert process.returncode == 0, f"kubectl {' '.join(args)} failed: {err.decode()}"
        return out.decode()

    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(yaml.safe_dump_all([job_body("hello", "echo hello from green"),
                                            job_body("broken", "echo boom; exit 3", backoffLimit=0)]))
    assert "job.batch/hello created" in await kubectl("apply", "-f", str(manifest))
    await finished_job(cluster, "hello")
    await finished_job(cluster, "broken")

    table = [line.split() for line in (await kubectl("get", "jobs")).splitlines()]
    assert table[0] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    rows = {row[0]: row[1:3] for row in table[1:]}
    assert rows == {"hello": ["Complete", "1/1"], "broken": ["Failed", "0/1"]}
    pods = [line.split() for line in (await kubectl("get", "pods", "-l", "job-name=broken")).splitlines()]
    assert pods[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert pods[1][1:4] == ["0/1", "Error", "0"]

    assert await kubectl("logs", "job/hello") == "hello from green\n"
    assert await kubectl("logs", pods[1][0], "--tail=1") == "boom\n"
    described = await kubectl("describe", "job", "broken")
    assert "BackoffLimitExceeded" in described and "Job has reached the specified backoff limit" in described
    assert "1 Failed" in described  # Pods Statuses
