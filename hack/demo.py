"""`make demo`: one whole blue/green upgrade in the emulated world, shown live.

What runs: the world (`bluegreen-sim up`: emulated Kubernetes API servers, simulated
Cluster API and Flux controllers, a REAL HAProxy in front of two REAL HTTP
backends, a REAL Prometheus scraping HAProxy every second, and a load generator
sending real requests through HAProxy), and the operator as a real process
(`kopf run -m bluegreen.handlers`). The demo applies the CRDs and
`examples/clusterupgrade-demo.yaml` with kubectl, then watches: the upgrade's
phase and steps, the traffic each cluster really served, and every analysis
check as the operator records it (value against threshold, passed or failed).

It ends with ONE line of JSON and exits 0 only when the upgrade Completed with
no failed request.

`make demo DEMO=nodepools` runs the NodePools strategy instead: a world whose
cluster has 3 simulated worker nodes (machines, kubelets, a scheduler, the
Eviction API) behind a REAL HAProxy backend of node slots, a 6-replica
Deployment under a PodDisruptionBudget of minAvailable 5, and
`examples/clusterupgrade-nodepools-capi.yaml`. It shows the rotation stage by
stage, each eviction, the pod a budget holds, and the fewest Ready pods seen
(through a watch on the cluster); it exits 0 only when the rotation Completed
and the Deployment never went below its budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import shutil
import sys
import time
from typing import Any

import yaml

from bluegreen.api import spec as api
from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import harness, workload

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLUSTER_UPGRADES = Resource(api.GROUP, api.VERSION, api.PLURAL)
FINAL_PHASES = {"Completed", "Failed", "RolledBack"}


def render(status: dict[str, Any], *, steps: list[dict[str, Any]], share: dict[str, Any], elapsed: float) -> list[str]:
    weights = status.get("weights") or {}
    index = int((status.get("step") or {}).get("index", 0))
    lines = [
        f"[{elapsed:5.1f}s] phase {status.get('phase', 'Pending'):<12} "
        f"weights blue {weights.get('blue', 100):>3}% / green {weights.get('green', 0):>3}%   "
        f"measured (last 2s): {share.get('text', '-')}",
    ]
    marks = []
    for position, step in enumerate(steps):
        text = (f"setWeight {step['setWeight']}" if "setWeight" in step else
                f"pause {step['pause'].get('duration', 'until promoted')}" if "pause" in step else
                "analysis " + " ".join(f"{key} {value}" for key, value in step["analysis"].items()))
        marker = ">" if position == index and status.get("phase") in {"Shifting", "Paused"} else \
            "x" if position < index else " "
        marks.append(f"[{marker}] {text}")
    lines.append("    steps: " + "  ".join(marks))
    conditions = status.get("conditions") or []
    lines.append("    conditions: " + ", ".join(f"{c['type']}={c['status']}" for c in conditions))
    if status.get("message"):
        lines.append(f"    {status['message']}")
    return lines


def render_preflight(preflight: dict[str, Any]) -> str:
    """What preflight found and the strategy it runs with, once, as `kubectl bluegreen plan NAME` shows it."""
    strategy = preflight["strategy"]
    lines = [f"    preflight: {preflight.get('findingsTotal', 0)} object(s) using removed APIs (live on blue and in "
             f"its Flux source), {preflight.get('statefulTotal', 0)} stateful workload(s), "
             f"{len(preflight.get('problems') or [])} problem(s); strategy {strategy['chosen']}: "
             + "; ".join(strategy.get("reasons") or [])]
    lines += [f"      {finding['kind']} {finding['name']} {finding['apiVersion']} ({finding['where']})"
              for finding in (preflight.get("findings") or [])[:5]]
    return "\n".join(lines)


def threshold_text(threshold: dict[str, Any]) -> str:
    bounds = [f"{key} {threshold[key]:g}" for key in ("min", "max") if threshold.get(key) is not None]
    return " and ".join(bounds)


def render_check(result: dict[str, Any], *, thresholds: dict[str, str]) -> str:
    """One analysis result as the operator recorded it: value against threshold, and the verdict."""
    value = result.get("value")
    shown = "no value" if value is None else f"{value:.4g}"
    if result.get("blueValue") is not None:
        shown += f" (green {result.get('greenValue', float('nan')):.4g} / blue {result['blueValue']:.4g})"
    against = thresholds.get(result["name"], "")
    verdict = {"Successful": "ok", "Failed": "FAILED", "Inconclusive": "inconclusive"}.get(result["phase"],
                                                                                     result["phase"])
    where = f"green at {result['greenWeight']}%" if result.get("greenWeight") is not None else ""
    text = f"    check {result['kind']} {result['name']}: {shown}"
    if against:
        text += f" (wants {against})"
    text += f" -> {verdict}"
    if where:
        text += f", {where}"
    if result.get("message") and result["phase"] != "Successful":
        text += f": {result['message']}"
    return text


async def measured_share(world: harness.WorldProcess, *, since: float) -> dict[str, Any]:
    summary = await world.control("GET", f"/traffic?since={since}")
    by_cluster = summary.get("by_cluster") or {}
    answered = sum(by_cluster.values())
    if not answered:
        return {"text": "no traffic"}
    parts = [f"{name} {100 * count / answered:.0f}%" for name, count in sorted(by_cluster.items())]
    return {"text": ", ".join(parts) + f" of {answered} req, {summary.get('failed', 0)} failed"}


async def watch(world: harness.WorldProcess, *, name: str, namespace: str, spec: dict[str, Any],
                deadline: float, started: float, promote_after: float) -> dict[str, Any]:
    client = KubeClient.from_kubeconfig(str(world.kubeconfig))
    steps = spec["traffic"]["steps"]
    thresholds = {metric["name"]: threshold_text(metric["thresholdRange"])
                  for metric in (spec.get("analysis") or {}).get("metrics") or []}
    last_text: list[str] = []
    seen_checks: set[tuple[str, str, str]] = set()
    preflight_shown = False
    status: dict[str, Any] = {}
    paused_since: float | None = None
    try:
        while time.monotonic() < deadline:
            body = await client.get(CLUSTER_UPGRADES, namespace=namespace, name=name) or {}
            status = body.get("status") or {}
            if status.get("phase") == "Paused":
                paused_since = paused_since or time.monotonic()
                if time.monotonic() - paused_since >= promote_after:
                    # What the person watching would do once satisfied with green at this weight.
                    command = ["annotate", "clusterupgrade", name, "-n", namespace, "bluegreen.io/promote=step"]
                    print(f"    $ kubectl {' '.join(command)}", flush=True)
                    harness.kubectl(world.kubeconfig, *command)
                    paused_since = None
            else:
                paused_since = None
            share = await measured_share(world, since=time.time() - 2)
            lines = render(status, steps=steps, share=share, elapsed=time.monotonic() - started)
            # Print when something other than the clock and the measurement changed.
            key = [*lines[1:], lines[0].split("]", 1)[1].split("measured")[0]]
            if key != last_text:
                print("\n".join(lines), flush=True)
                last_text = key
            preflight = status.get("preflight") or {}
            if preflight.get("strategy") and not preflight_shown:
                print(render_preflight(preflight), flush=True)
                preflight_shown = True
            for result in (status.get("analysis") or {}).get("results") or []:
                identity = (result["kind"], result["name"], result["time"])
                if identity not in seen_checks:
                    seen_checks.add(identity)
                    print(render_check(result, thresholds=thresholds), flush=True)
            if status.get("phase") in FINAL_PHASES:
                break
            await asyncio.sleep(0.5)
    finally:
        await client.close()
    return status


async def cluster_exists(world: harness.WorldProcess, *, namespace: str, name: str) -> bool:
    clusters = await world.control("GET", "/clusters")
    return any(c["name"] == name and c["namespace"] == namespace and c["exists"] for c in clusters["clusters"])


def demo_manifest(provider: str, world: dict[str, Any]) -> dict[str, Any]:
    """The example to run, with what only the emulated world knows filled in (and said so)."""
    if provider == "capi":
        manifest: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "clusterupgrade-demo.yaml").read_text())
        changes: list[str] = []
    else:
        # The complete EKS-A example, as committed, with the world's addresses and demo timings.
        manifest = yaml.safe_load((ROOT / "examples" / "clusterupgrade-eksa.yaml").read_text())
        spec = manifest["spec"]
        git = spec["workloads"]["flux"]["git"]
        git["url"] = world["git"]["http_url"]
        git["secretRef"]["name"] = world["git"]["secret"]
        for step in spec["traffic"]["steps"]:
            if "pause" in step and step["pause"].get("duration"):
                step["pause"]["duration"] = "3s"
        spec["promotion"]["retainBlueFor"] = "5s"
        changes = [f"workloads.flux.git.url -> {git['url']} (the world's git server, HTTP with basic auth)",
                   "traffic.steps: pauses of 10m -> 3s (the pause without duration stays: the demo promotes it)",
                   "promotion.retainBlueFor: 24h -> 5s"]
    changes.extend(harness.localize(manifest, world))
    print("the demo changes in the example: " + "; ".join(changes), flush=True)
    return manifest


def fresh_state_dir() -> pathlib.Path:
    """The demo's own directory (world state, logs), emptied: every run starts from nothing."""
    state_dir = ROOT / ".demo"
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    return state_dir


async def main_async(args: argparse.Namespace) -> int:
    started_wall, started = time.time(), time.monotonic()
    state_dir = fresh_state_dir()
    print("starting the emulated world (Kubernetes API emulators, Cluster API and Flux simulators, "
          "real HAProxy, real backends, real Prometheus, load generator)...", flush=True)
    world = harness.start_world(state_dir / "world", args=("--provider", args.provider))
    operator = harness.start_operator(world.kubeconfig, log_path=state_dir / "operator.log",
                                      env={"BLUEGREEN_RETRY_BASE_SECONDS": "0.5"})
    try:
        print(f"world ready: HAProxy at {world.info['haproxy']['frontend_url']}, "
              f"Prometheus at {world.prometheus_url}, management API at {world.info['management_url']}", flush=True)
        print(harness.kubectl(world.kubeconfig, "apply", "-k", str(ROOT / "crds")).strip(), flush=True)
        manifest = demo_manifest(args.provider, world.info)
        print(harness.kubectl(world.kubeconfig, "apply", "-f", "-", input_text=yaml.safe_dump(manifest)).strip(),
              flush=True)
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        status = await watch(world, name=name, namespace=namespace, spec=manifest["spec"],
                             deadline=started + args.timeout, started=started, promote_after=3.0)
        print(harness.kubectl(world.kubeconfig, "get", "clusterupgrades", "-A").rstrip(), flush=True)
        summary = await world.control("POST", "/load/stop")
        end = time.time()
        by_step = []
        for green_weight, since, until in harness.weight_windows(status.get("journal") or [], end=end):
            window = await world.control("GET", f"/traffic?since={since}&until={until}")
            answered = sum((window.get("by_cluster") or {}).values())
            blue_name = manifest["spec"]["cluster"]["name"]
            blue = (window.get("by_cluster") or {}).get(blue_name, 0)
            by_step.append({"green_weight": green_weight,
                            "blue_share": round(100 * blue / answered, 1) if answered else None,
                            "requests": answered})
        blue_deleted = not await cluster_exists(world, namespace=manifest["spec"]["cluster"]["namespace"],
                                                name=manifest["spec"]["cluster"]["name"])
        result = {
            "phase": status.get("phase"),
            "requests": summary["requests"],
            "failed": summary["failed"],
            "blue_share_by_step": by_step,
            "analysis": {state["name"]: {"successes": state.get("successes", 0), "failures": state.get("failures", 0),
                                         "inconclusive": state.get("inconclusive", 0),
                                         "last_value": state.get("lastValue")}
                         for state in (status.get("analysis") or {}).get("metrics") or []},
            "green_cluster": (status.get("green") or {}).get("name"),
            "blue_deleted": blue_deleted,
            "seconds": round(time.time() - started_wall, 1),
        }
    except Exception:
        print(f"the demo failed; operator log: {state_dir / 'operator.log'}, world log: "
              f"{state_dir / 'world' / 'world.log'}", file=sys.stderr, flush=True)
        raise
    finally:
        operator.stop()
        world.stop()
    print(json.dumps(result), flush=True)
    return 0 if result["phase"] == "Completed" and result["failed"] == 0 else 1


NODEPOOLS_REPLICAS, NODEPOOLS_MIN_AVAILABLE = 6, 5


def nodepools_manifest(world: dict[str, Any]) -> dict[str, Any]:
    """The CAPI NodePools example, with the world's HAProxy as its one load balancer (and said so)."""
    manifest: dict[str, Any] = yaml.safe_load(
        (ROOT / "examples" / "clusterupgrade-nodepools-capi.yaml").read_text())
    node_pools = manifest["spec"]["nodePools"]
    node_pools["loadBalancers"] = [{"haproxy": {"runtimeAPI": world["haproxy"]["runtime_api"],
                                                "backend": world["haproxy"]["nodes_backend"]}}]
    node_pools["drain"]["pauseBetweenNodes"] = "2s"
    print("the demo changes in the example: loadBalancers -> the world's HAProxy backend "
          f"{world['haproxy']['nodes_backend']} at {world['haproxy']['runtime_api']} (no ELBv2 in this world); "
          "drain.pauseBetweenNodes: 2m -> 2s", flush=True)
    return manifest


def render_rotation(status: dict[str, Any], *, elapsed: float, ready: int | None) -> list[str]:
    rotation = status.get("nodePools") or {}
    lines = [f"[{elapsed:5.1f}s] phase {status.get('phase', 'Pending'):<10} stage {rotation.get('stage', '-'):<22} "
             f"nodes drained {rotation.get('nodesDrained', 0)}/{rotation.get('nodesTotal', '?')}   "
             f"web pods Ready {'-' if ready is None else ready}/{NODEPOOLS_REPLICAS} "
             f"(budget minAvailable {NODEPOOLS_MIN_AVAILABLE})"]
    if rotation.get("blockingPod"):
        lines.append(f"    blocking: {rotation['blockingPod']}")
    if status.get("message"):
        lines.append(f"    {status['message']}")
    return lines


async def run_nodepools(args: argparse.Namespace) -> int:
    started_wall, started = time.time(), time.monotonic()
    state_dir = fresh_state_dir()
    print("starting the emulated world with 3 worker nodes (Kubernetes API emulators, Cluster API machines, "
          "kubelets and a scheduler, real HAProxy with a backend of node slots)...", flush=True)
    world = harness.start_world(state_dir / "world", args=("--nodes", "3", "--no-prometheus"))
    operator = harness.start_operator(world.kubeconfig, log_path=state_dir / "operator.log",
                                      env={"BLUEGREEN_RETRY_BASE_SECONDS": "0.5"})
    management = KubeClient.from_kubeconfig(str(world.kubeconfig))
    cluster: KubeClient | None = None
    try:
        print(harness.kubectl(world.kubeconfig, "apply", "-k", str(ROOT / "crds")).strip(), flush=True)
        manifest = nodepools_manifest(world.info)
        pool = manifest["spec"]["nodePools"]["pools"][0]
        await workload.add_worker_class(management, pool["class"])
        print(f"added class {pool['class']} to ClusterClass fleet/quick-start (what a platform team does first)",
              flush=True)
        cluster = await workload.cluster_client(management, namespace="fleet", name=world.info["blue"])
        await workload.deploy_web(cluster, replicas=NODEPOOLS_REPLICAS, min_available=NODEPOOLS_MIN_AVAILABLE)
        print(f"deployed shop/web ({NODEPOOLS_REPLICAS} replicas, PodDisruptionBudget minAvailable "
              f"{NODEPOOLS_MIN_AVAILABLE}) and DaemonSet shop/node-exporter on {world.info['blue']}", flush=True)
        print(harness.kubectl(world.kubeconfig, "apply", "-f", "-", input_text=yaml.safe_dump(manifest)).strip(),
              flush=True)
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        ready: dict[str, dict[str, Any]] = {}
        lowest: list[int] = []

        async def follow_pods() -> None:
            assert cluster is not None
            async for event_type, pod in cluster.watch(workload.PODS, namespace="shop"):
                if event_type == "DELETED":
                    ready.pop(pod["metadata"]["name"], None)
                else:
                    ready[pod["metadata"]["name"]] = pod
                lowest.append(len(workload.ready_pods(list(ready.values()))))

        follower = asyncio.create_task(follow_pods())
        await asyncio.sleep(0.5)
        lowest.clear()  # the watch's first events replay the pods one by one
        status: dict[str, Any] = {}
        last: list[str] = []
        seen: set[tuple[str, str]] = set()
        deadline = started + args.timeout
        while time.monotonic() < deadline:
            body = await management.get(CLUSTER_UPGRADES, namespace=namespace, name=name) or {}
            status = body.get("status") or {}
            now_ready = len(workload.ready_pods(list(ready.values())))
            lines = render_rotation(status, elapsed=time.monotonic() - started, ready=now_ready)
            key = [*lines[1:], lines[0].split("]", 1)[1]]  # what changed, the clock aside
            if key != last:
                print("\n".join(lines), flush=True)
                last = key
            for entry in (status.get("nodePools") or {}).get("evictions") or []:
                key = (entry["pod"]["name"], entry["at"])
                if key not in seen:
                    seen.add(key)
                    print(f"    evicted {entry['pod']['namespace']}/{entry['pod']['name']} from {entry['node']}",
                          flush=True)
            if status.get("phase") in FINAL_PHASES:
                break
            await asyncio.sleep(0.3)
        follower.cancel()
        print(harness.kubectl(world.kubeconfig, "get", "clusterupgrades", "-A", "-o", "wide").rstrip(), flush=True)
        rotation = status.get("nodePools") or {}
        result = {
            "phase": status.get("phase"),
            "pools": [f"{item['old']} -> {item['new']}" for item in rotation.get("pools") or []],
            "nodes_drained": rotation.get("nodesDrained"),
            "evictions": rotation.get("evictionsTotal"),
            "fewest_ready": min(lowest) if lowest else None,
            "min_available": NODEPOOLS_MIN_AVAILABLE,
            "seconds": round(time.time() - started_wall, 1),
        }
    except Exception:
        print(f"the demo failed; operator log: {state_dir / 'operator.log'}, world log: "
              f"{state_dir / 'world' / 'world.log'}", file=sys.stderr, flush=True)
        raise
    finally:
        if cluster is not None:
            await cluster.close()
        await management.close()
        operator.stop()
        world.stop()
    print(json.dumps(result), flush=True)
    fewest = result["fewest_ready"]
    return 0 if result["phase"] == "Completed" and fewest is not None and fewest >= NODEPOOLS_MIN_AVAILABLE else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=170.0, help="give up after this many seconds")
    parser.add_argument("--provider", choices=["capi", "eksa", "nodepools"], default="capi",
                        help="capi: examples/clusterupgrade-demo.yaml; eksa: examples/clusterupgrade-eksa.yaml; "
                             "nodepools: examples/clusterupgrade-nodepools-capi.yaml")
    args = parser.parse_args()
    return asyncio.run(run_nodepools(args) if args.provider == "nodepools" else main_async(args))


if __name__ == "__main__":
    sys.exit(main())
