"""Analysis, gates and rollback through the real operator process, measured by a real Prometheus.

The world runs HAProxy in front of blue's and green's ingress, a load
generator sending requests through it, and Prometheus scraping HAProxy's
exporter (and each ingress's own metrics) every second. Faults are switched
on green's ingress through the world's control API; the operator sees them
only as Prometheus sees them. Gates are webhook receivers of the world whose
answer a test sets.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml

from bluegreen.kube.client import KubeClient
from bluegreen.sim import harness
from tests.integration.conftest import Operator, apply, phase_is, upgrade_manifest, wait_for

# Traffic shares, latencies or timings are measured: run with the machine to itself (conftest), except the
# smoke Job tests, which judge a Job's exit and check only that green never took a request.
pytestmark = [pytest.mark.integration, pytest.mark.analysis]

# Green's (or blue's) mean time to answer over the last 5 s, from the ingress's own counters.
MEAN_LATENCY = (
    'sum(rate(ingress_request_duration_seconds_sum{cluster="{{cluster}}"}[5s]))'
    ' / sum(rate(ingress_request_duration_seconds_count{cluster="{{cluster}}"}[5s]))'
)
FINAL = ("Completed", "Failed", "RolledBack")
PLUGIN = pathlib.Path(sys.executable).parent / "kubectl-bluegreen"


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    for found in (body.get("status") or {}).get("conditions") or []:
        if found["type"] == type_:
            return dict(found)
    return {}


def results(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in ((body.get("status") or {}).get("analysis") or {}).get("results") or [] if r["name"] == name]


def analysed_upgrade(world: harness.WorldProcess, *, steps: list[dict[str, Any]],
                     metrics: list[dict[str, Any]] | None = None, webhooks: list[dict[str, Any]] | None = None,
                     **analysis: Any) -> dict[str, Any]:
    """The demo example at the world's addresses, with its analysis narrowed to what a test looks at."""
    manifest = upgrade_manifest(world)
    spec = manifest["spec"]
    example_metrics = {metric["name"]: metric for metric in spec["analysis"]["metrics"]}
    spec["traffic"]["steps"] = steps
    spec["analysis"] = {
        "interval": "1s", "initialDelay": "2s",
        "metrics": metrics if metrics is not None else [example_metrics["error-rate"]],
        "webhooks": webhooks or [], **analysis,
    }
    spec["rollback"] = {"retainGreenFor": "10m"}  # green stays up for the test to look at
    harness.localize(manifest, world.info)
    return manifest


async def gate_calls(world: harness.WorldProcess, name: str, *, at_least: int, within: float) -> list[dict[str, Any]]:
    """The gate's calls once it has had ``at_least`` (or all it had after ``within`` seconds)."""
    deadline = time.monotonic() + within
    calls = await world.gate_calls(name)
    for _ in range(int(within / 0.5)):
        if len(calls) >= at_least or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
        calls = await world.gate_calls(name)
    return calls


def latency_metric(name: str, *, max_value: float, comparative: bool) -> dict[str, Any]:
    metric: dict[str, Any] = {"name": name, "thresholdRange": {"max": max_value},
                              "prometheus": {"address": "http://prometheus.invalid:9090", "query": MEAN_LATENCY}}
    if comparative:
        metric["comparative"] = {"mode": "Ratio"}
    return metric


@pytest.mark.alone
async def test_green_answering_5xx_fails_the_error_rate_and_rolls_back_to_blue(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    # Given green's ingress answers 500 to one request in five
    await world.set_fault("prod-green", error_rate=0.2)
    # and an upgrade whose analysis watches green's 5xx share in Prometheus (the demo's metric)
    manifest = analysed_upgrade(world, steps=[{"setWeight": 10}, {"analysis": {"count": 5}}, {"setWeight": 100}])
    # When it is applied
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is(*FINAL), timeout=120, operator=operator,
                          what="the upgrade to end")
    # Then the error rate failed while green took 10 %, and traffic went back to blue, verified
    status = body["status"]
    assert status["phase"] == "RolledBack", status
    assert status["weights"] == {"blue": 100, "green": 0, "verified": True}
    failed = [r for r in results(body, "error-rate") if r["phase"] == "Failed"]
    assert failed, status["analysis"]
    assert failed[0]["greenWeight"] == 10
    assert 0.05 < failed[0]["value"] <= 0.5, f"Prometheus measured green's 5xx share at {failed[0]['value']}"
    analysis_passing = condition(body, "AnalysisPassing")
    assert analysis_passing["status"] == "False" and "error-rate" in analysis_passing["message"], analysis_passing
    # and the clients that saw failures saw them from green only, before the rollback
    rolled_back = harness.parse_time(status["rolledBackAt"])
    before = await world.traffic(until=rolled_back, samples=True)
    assert before["failed"] > 0, "green's errors reached clients while it had traffic"
    assert {s["cluster"] for s in before["samples"] if s["failure"]} == {"prod-green"}
    # and once blue serves everything again, no client sees a failure
    await asyncio.sleep(3)
    after = await world.traffic(since=rolled_back + 0.25, samples=True)
    assert after["requests"] >= 50, after
    assert after["failed"] == 0, [s for s in after["samples"] if s["failure"]][:5]
    assert set(after["by_cluster"]) == {"prod-blue"}
    clusters = {c["name"] for c in (await world.control("GET", "/clusters"))["clusters"]}
    assert clusters >= {"prod-blue", "prod-green"}, "green is kept for inspection"


@pytest.mark.alone
async def test_healthy_green_passes_every_check_and_completes(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    # Given the demo's analysis as committed: green's 5xx share in Prometheus, and a probe of green's ingress
    manifest = upgrade_manifest(world)
    spec = manifest["spec"]
    spec["traffic"]["steps"] = [{"setWeight": 10}, {"analysis": {"count": 2}}, {"setWeight": 50},
                                {"analysis": {"count": 2}}, {"setWeight": 100}]
    spec["analysis"]["interval"] = "1s"
    spec["promotion"]["retainBlueFor"] = "1s"  # blue's retirement is not what is tested here
    # When it is applied to a healthy green
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is(*FINAL), timeout=150, operator=operator,
                          what="the upgrade to end")
    # Then it completed, and every measurement passed
    status = body["status"]
    assert status["phase"] == "Completed", status
    states = {state["name"]: state for state in status["analysis"]["metrics"]}
    assert set(states) == {"error-rate", "green-answers"}
    for name, state in states.items():
        assert state.get("failures", 0) == 0 and state.get("inconclusive", 0) == 0, state
        assert state["successes"] >= 4, f"{name}: two in a row at each analysis step"
    error_rates = results(body, "error-rate")
    assert error_rates and all(r["phase"] == "Successful" and r["value"] == 0 for r in error_rates), error_rates
    assert {10, 50} <= {r["greenWeight"] for r in error_rates}, "measured at each analysis step's weight"
    probes = results(body, "green-answers")
    assert probes and all(r["phase"] == "Successful" and r["value"] == 1 for r in probes), probes
    assert condition(body, "AnalysisPassing").get("status") != "False"
    assert (await world.traffic())["failed"] == 0


@pytest.mark.alone
async def test_confirm_promotion_answering_500_holds_below_100_until_it_answers_200(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    # Given a confirm-promotion gate that says no
    await world.set_gate("promotion", status=500)
    manifest = analysed_upgrade(
        world, steps=[{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}],
        webhooks=[{"name": "promotion", "type": "confirm-promotion", "url": world.gate_url("promotion")}],
    )
    manifest["spec"]["promotion"]["retainBlueFor"] = "1s"  # blue's retirement is not what is tested here
    apply(world, manifest)
    # Then the upgrade goes to 50 % and asks the gate before going to 100 %
    await wait_for(management, manifest, lambda b: (b.get("status") or {}).get("weights", {}).get("green") == 50,
                   timeout=90, operator=operator, what="green at 50%")
    calls = await gate_calls(world, "promotion", at_least=3, within=30)
    assert len(calls) >= 3, "the gate is asked again while it says no"
    assert calls[0]["method"] == "POST"
    assert (calls[0]["payload"]["name"], calls[0]["payload"]["namespace"]) == ("demo", "fleet")
    # and holds there: not a failure, not a rollback, analysis not failing
    body = await wait_for(management, manifest, lambda b: True, timeout=5)
    status = body["status"]
    assert status["phase"] in {"Shifting", "Paused"}, status
    assert status["weights"]["green"] == 50
    assert condition(body, "AnalysisPassing").get("status") != "False", condition(body, "AnalysisPassing")
    assert "confirm-promotion" in status.get("message", ""), status.get("message")
    # When the gate says yes
    await world.set_gate("promotion", status=200)
    # Then the upgrade completes
    body = await wait_for(management, manifest, phase_is(*FINAL), timeout=60, operator=operator,
                          what="completion once the gate opened")
    assert body["status"]["phase"] == "Completed", body["status"]
    assert (await world.traffic())["failed"] == 0


@pytest.mark.alone
async def test_comparative_latency_catches_green_three_times_slower_where_an_absolute_threshold_passes(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    # Given blue answers in 20 ms and green in 60 ms
    await world.set_fault("prod-blue", latency=0.02)
    await world.set_fault("prod-green", latency=0.06)
    # and two latency metrics: an absolute one (green under 0.5 s) and green relative to blue (at most 1.5x)
    manifest = analysed_upgrade(
        world, steps=[{"setWeight": 10}, {"analysis": {"count": 3}}, {"setWeight": 100}],
        metrics=[latency_metric("latency", max_value=0.5, comparative=False),
                 latency_metric("latency-vs-blue", max_value=1.5, comparative=True)],
    )
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is(*FINAL), timeout=120, operator=operator,
                          what="the upgrade to end")
    # Then the absolute metric passed, the comparative one failed, and the upgrade rolled back
    status = body["status"]
    assert status["phase"] == "RolledBack", status
    assert status["weights"] == {"blue": 100, "green": 0, "verified": True}
    absolute = results(body, "latency")
    assert absolute and all(r["phase"] == "Successful" for r in absolute), absolute
    assert all(r["value"] >= 0.06 for r in absolute), "green's own mean latency: 60 ms and a little more"
    relative = [r for r in results(body, "latency-vs-blue") if r["phase"] == "Failed"]
    assert relative, results(body, "latency-vs-blue")
    failed = relative[0]
    assert failed["greenValue"] >= 0.055 and failed["blueValue"] >= 0.018, failed  # timer granularity
    assert failed["value"] == pytest.approx(failed["greenValue"] / failed["blueValue"]), "Ratio: green / blue"
    assert failed["value"] > 1.5, failed
    assert "latency-vs-blue" in condition(body, "AnalysisPassing").get("message", "")


def plugin(world: harness.WorldProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``kubectl bluegreen ...`` as a person runs it, against the world's management cluster."""
    return subprocess.run([str(PLUGIN), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KUBECONFIG": str(world.kubeconfig)})


def planned_weights(plan_text: str) -> list[int]:
    return [int(match) for match in re.findall(r"setWeight (\d+) on router", plan_text)]


@pytest.mark.alone
@pytest.mark.skipif(not PLUGIN.exists(), reason=f"kubectl-bluegreen is not installed at {PLUGIN} (pip install -e .)")
async def test_the_kubectl_plugin_promotes_a_pause_and_plan_foretells_the_weights(
    world: harness.WorldProcess, operator: Operator, management: KubeClient, tmp_path: pathlib.Path
) -> None:
    # Given an analysed upgrade that waits for a person at 25 %, and its plan
    manifest = analysed_upgrade(world, steps=[{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}])
    spec_file = tmp_path / "upgrade.yaml"
    spec_file.write_text(yaml.safe_dump(manifest))
    plan = plugin(world, "plan", "-f", str(spec_file))
    assert plan.returncode == 0, plan.stderr
    assert "pause until promoted" in plan.stdout and "error-rate" in plan.stdout
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Paused"), timeout=90, operator=operator,
                          what="the pause for a person")
    assert body["status"]["weights"]["green"] == 25
    # (analysis goes on while a person looks)
    await wait_for(management, manifest, lambda b: any(r["greenWeight"] == 25 and r["phase"] == "Successful"
                                                       for r in results(b, "error-rate")),
                   timeout=30, operator=operator, what="an error-rate measurement at 25% during the pause")
    # When the person promotes it with the plugin
    promoted = plugin(world, "promote", "demo", "-n", "fleet")
    assert promoted.returncode == 0, promoted.stderr
    # Then the upgrade goes on and completes, analysed all the way
    body = await wait_for(management, manifest, phase_is(*FINAL), timeout=60, operator=operator,
                          what="completion after promote")
    status = body["status"]
    assert status["phase"] == "Completed", status
    assert all(r["phase"] == "Successful" for r in results(body, "error-rate"))
    assert 100 in {r["greenWeight"] for r in results(body, "error-rate")}
    # and it moved traffic exactly as the plan said it would
    done = [entry["weights"]["green"] for entry in status["journal"] if entry["action"] == "setWeights"]
    assert [weight for weight in done if weight] == planned_weights(plan.stdout) == [25, 100]
    assert (await world.traffic())["failed"] == 0


@pytest.mark.alone
@pytest.mark.skipif(not PLUGIN.exists(), reason=f"kubectl-bluegreen is not installed at {PLUGIN} (pip install -e .)")
async def test_the_kubectl_plugin_aborts_and_blue_takes_everything_back(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    manifest = analysed_upgrade(world, steps=[{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}])
    apply(world, manifest)
    await wait_for(management, manifest, phase_is("Paused"), timeout=90, operator=operator, what="green at 50%")
    # When a person aborts with the plugin
    aborted = plugin(world, "abort", "demo", "-n", "fleet")
    assert aborted.returncode == 0, aborted.stderr
    # Then the upgrade rolls back: blue 100 %, verified, and clients are served by blue without failure
    body = await wait_for(management, manifest, phase_is("RolledBack"), timeout=30, operator=operator,
                          what="the rollback")
    assert body["status"]["weights"] == {"blue": 100, "green": 0, "verified": True}
    assert condition(body, "AnalysisPassing").get("status") != "False", "an abort is not an analysis failure"
    rolled_back = harness.parse_time(body["status"]["rolledBackAt"])
    await asyncio.sleep(2)
    after = await world.traffic(since=rolled_back + 0.25)
    assert after["failed"] == 0 and set(after["by_cluster"]) == {"prod-blue"}, after
    assert (await world.traffic())["failed"] == 0


def smoke_job(name: str, script: str, *, at: str = "Verifying") -> dict[str, Any]:
    """A smoke Job; the world's simulated kubelet runs its command as a local process."""
    return {"name": name, "cluster": "green", "at": at, "timeout": "1m",
            "template": {"template": {"spec": {"containers": [
                {"name": "check", "image": "busybox:1.36", "command": ["sh", "-c", script]}]}}}}


async def test_a_failing_smoke_job_rolls_back_before_any_traffic_with_its_log_in_the_condition(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    manifest = analysed_upgrade(world, steps=[{"setWeight": 10}, {"setWeight": 100}],
                                jobs=[smoke_job("checkout", "echo 'PASS add-to-cart'; echo 'FAIL pay: 503'; exit 3")])
    since = time.time()
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is(*FINAL), timeout=120, operator=operator,
                          what="the upgrade to end")
    assert body["status"]["phase"] == "RolledBack", body["status"]
    passing = condition(body, "AnalysisPassing")
    assert passing["status"] == "False" and "smoke Job checkout in green failed" in passing["message"], passing
    assert "FAIL pay: 503" in passing["message"], "the end of the Job's log is in the condition"
    traffic = await world.traffic(since=since)
    assert "prod-green" not in traffic["by_cluster"], "green never took a request"
    started = [e for e in body["status"]["journal"] if e["target"] == "job/checkout"]
    assert len(started) == 1, body["status"]["journal"]


async def test_passing_smoke_jobs_at_verifying_and_at_promoted_let_the_upgrade_complete(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    manifest = analysed_upgrade(world, steps=[{"setWeight": 50}, {"setWeight": 100}],
                                jobs=[smoke_job("before", "echo ok"), smoke_job("after", "echo ok", at="Promoted")])
    manifest["spec"]["promotion"]["retainBlueFor"] = "1s"
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is(*FINAL), timeout=120, operator=operator,
                          what="the upgrade to end")
    assert body["status"]["phase"] == "Completed", body["status"]
    started = [e["target"] for e in body["status"]["journal"] if e["target"].startswith("job/")]
    assert started == ["job/before", "job/after"], body["status"]["journal"]
