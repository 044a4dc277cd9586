"""How fast the test world's real Prometheus answers analysis: start-up, freshness of a new series, query latency.

Starts :class:`bluegreen.sim.prometheus.PrometheusServer` (Debian's binary) scraping a small exporter
every ``--scrape`` (1s by default), then measures:

- start: from ``start()`` called to returned (ready, and every target scraped once);
- freshness: ``--series`` times, at a random moment of the scrape cycle, a new series is added to the
  exporter and the bench polls an instant query every 10 ms until the series is there; the time from
  adding it to seeing it;
- latency: ``--queries`` instant queries through :class:`bluegreen.analysis.prometheus.PrometheusProvider`
  (a new HTTP session each, as the operator makes them), one at a time.

    .venv/bin/python bench/prometheus_bench.py --series 20 --queries 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import random
import statistics
import sys
import tempfile
import time

from aiohttp import web

from bluegreen.analysis.placeholders import Placeholders
from bluegreen.analysis.prometheus import PrometheusProvider
from bluegreen.api import durations
from bluegreen.sim.prometheus import PrometheusServer, ScrapeTarget


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "min": round(ordered[0], 4),
        "p50": round(statistics.median(ordered), 4),
        "p95": round(ordered[max(0, int(0.95 * len(ordered)) - 1)], 4),
        "max": round(ordered[-1], 4),
    }


async def bench(*, series: int, queries: int, scrape: str) -> dict[str, object]:
    exposed: list[str] = []
    interval = durations.parse_duration(scrape).total_seconds()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="".join(f"bench_series{{n=\"{n}\"}} 1\n" for n in exposed) or "# none\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    address = f"127.0.0.1:{runner.addresses[0][1]}"
    with tempfile.TemporaryDirectory(prefix="bg-prom-bench-") as state:
        server = PrometheusServer(state_dir=pathlib.Path(state), targets=[ScrapeTarget(job="bench", address=address)],
                                  scrape_interval=scrape)
        started = time.monotonic()
        await server.start()
        start_seconds = time.monotonic() - started
        try:
            placeholders = Placeholders(blue="b", green="g", namespace="n", name="u")
            freshness = []
            for n in range(series):
                query = PrometheusProvider(address=server.url, query=f'bench_series{{n="{n}"}}',
                                           placeholders=placeholders)
                # A random moment within the scrape cycle, or each series would be added right after the scrape
                # that revealed the previous one and always wait a full interval.
                await asyncio.sleep(random.uniform(0, interval))
                exposed.append(str(n))
                added = time.monotonic()
                while await query.value(cluster="g") is None:  # noqa: ASYNC110 (polling is what is measured)
                    await asyncio.sleep(0.01)
                freshness.append(time.monotonic() - added)
            latency = []
            query = PrometheusProvider(address=server.url, query='sum(up{job="bench"})', placeholders=placeholders)
            for _ in range(queries):
                sent = time.monotonic()
                await query.value(cluster="g")
                latency.append(time.monotonic() - sent)
        finally:
            await server.stop()
            await runner.cleanup()
    return {"scrape_interval": scrape, "start_seconds": round(start_seconds, 3),
            "new_series_visible_seconds": summary(freshness), "query_seconds": summary(latency)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--scrape", default="1s")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(bench(series=args.series, queries=args.queries, scrape=args.scrape)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
