"""Patch-to-watch-event latency and CPU cost of the emulated Kubernetes API server.

The emulator runs in a child process (as in the test world), so its CPU time is measured on
its own from /proc. The parent creates N objects, opens one measuring watch stream, then
merge-patches objects over HTTP at a fixed rate and measures, for each patch, the time from
sending it to seeing its MODIFIED event on that stream. Optional extra watch streams that
receive every event (fan-out) are read by a second child process, so that reading them does
not slow down the measuring parent.

    .venv/bin/python bench/emulator_bench.py --objects 100 --rate 20 --seconds 30 --watchers 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

import aiohttp

PLURAL_PATH = "/api/v1/namespaces/default/configmaps"


async def serve() -> None:
    from bluegreen.sim.kube import KubeEmulator

    emulator = KubeEmulator(name="bench")
    await emulator.start()
    print(emulator.url, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await emulator.stop()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drain(base: str, count: int) -> None:
    url = f"{PLURAL_PATH}?watch=true&labelSelector=bench%3Dyes"

    async def one(session: aiohttp.ClientSession) -> None:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            async for _ in response.content:
                pass

    async with aiohttp.ClientSession(base_url=base, connector=aiohttp.TCPConnector(limit=0)) as session:
        streams = [asyncio.create_task(one(session)) for _ in range(count)]
        print("connected", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdin is not None
    base = (await child.stdout.readline()).decode().strip()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(base_url=base, connector=connector) as session:
        for index in range(args.objects):
            body = {"metadata": {"name": f"obj-{index}", "labels": {"bench": "yes"}}, "data": {"n": "0"}}
            async with session.post(PLURAL_PATH, json=body) as response:
                assert response.status == 201, await response.text()
        async with session.get(PLURAL_PATH) as response:
            rv = (await response.json())["metadata"]["resourceVersion"]

        drainer = None
        if args.watchers:
            drainer = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--drain", str(args.watchers), base,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
            assert drainer.stdout is not None
            await drainer.stdout.readline()
        sent: dict[str, float] = {}
        latencies: list[float] = []
        everything_seen = asyncio.Event()

        async def measure() -> None:
            url = f"{PLURAL_PATH}?watch=true&resourceVersion={rv}"
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
                async for line in response.content:
                    event = json.loads(line)
                    marker = (event["object"].get("data") or {}).get("marker")
                    if marker in sent:
                        latencies.append(time.perf_counter() - sent.pop(marker))
                        if not sent:
                            everything_seen.set()

        measurer = asyncio.create_task(measure())
        await asyncio.sleep(0.5)  # let the streams connect

        cpu_before, wall_before = cpu_seconds(child.pid), time.perf_counter()
        interval = 1.0 / args.rate
        total = int(args.rate * args.seconds)
        next_at = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()

        async def patch(index: int) -> None:
            marker = f"m{index}"
            name = f"obj-{index % args.objects}"
            sent[marker] = time.perf_counter()
            async with session.patch(f"{PLURAL_PATH}/{name}", data=json.dumps({"data": {"marker": marker}}),
                                     headers={"Content-Type": "application/merge-patch+json"}) as response:
                assert response.status == 200, await response.text()

        for index in range(total):
            task = asyncio.create_task(patch(index))
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await asyncio.gather(*pending)
        everything_seen.clear()
        if sent:
            await asyncio.wait_for(everything_seen.wait(), 30)
        cpu_after, wall_after = cpu_seconds(child.pid), time.perf_counter()
        measurer.cancel()
        await asyncio.gather(measurer, return_exceptions=True)
        if drainer is not None:
            assert drainer.stdin is not None
            drainer.stdin.close()
            await drainer.wait()

    child.stdin.close()
    await child.wait()
    latencies.sort()
    return {
        "objects": args.objects, "rate_per_s": args.rate, "seconds": args.seconds,
        "extra_watchers": args.watchers, "patches": total, "events_measured": len(latencies),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "latency_p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2),
        "emulator_cpu_percent": round(100 * (cpu_after - cpu_before) / (wall_after - wall_before), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="patches per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--watchers", type=int, default=0, help="extra watch streams receiving every event")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--drain", nargs=2, metavar=("COUNT", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    if args.drain:
        asyncio.run(drain(args.drain[1], int(args.drain[0])))
        return
    print(json.dumps(asyncio.run(bench(args)), indent=2))


if __name__ == "__main__":
    main()
