"""``bluegreen-sim up --state-dir DIR``: run the emulated world in the foreground.

Writes ``DIR/management.kubeconfig`` and ``DIR/world.json``, prints ``ready``,
and runs until interrupted. Point the operator (or kubectl) at the kubeconfig
exactly as at a real management cluster; world.json has the other addresses
(HAProxy, Prometheus, the control API).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import pathlib
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from bluegreen.sim import world


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bluegreen-sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the world and run until interrupted")
    defaults = world.WorldConfig()
    up.add_argument("--state-dir", type=pathlib.Path, required=True, help="where kubeconfig and world.json go")
    up.add_argument("--provider", default=defaults.provider, choices=["capi", "eksa"],
                    help="capi: Cluster API with Flux remote mode; eksa: EKS Anywhere, Flux in each cluster (git)")
    up.add_argument("--namespace", default=None,
                    help="where the Cluster objects live (capi: fleet, eksa: eksa-clusters)")
    up.add_argument("--blue", default=defaults.blue, help="name of the blue cluster")
    up.add_argument("--blue-version", default=None, help="blue's version (capi: v1.30.4, eksa: 1.30)")
    up.add_argument("--capi-version", default=defaults.capi_version, choices=["v1beta1", "v1beta2"])
    up.add_argument("--provision-delay", type=float, default=defaults.provision_delay,
                    help="seconds a new cluster takes to become ready")
    up.add_argument("--flux-delay", type=float, default=defaults.flux_delay,
                    help="seconds a Kustomization takes to reconcile")
    up.add_argument("--green", default=None,
                    help="the name green is expected to get (names HAProxy's green server); "
                         "default: the operator's default green name for --blue")
    up.add_argument("--prometheus", action=argparse.BooleanOptionalAction, default=defaults.prometheus,
                    help="run a real Prometheus scraping HAProxy and the backends (for analysis)")
    up.add_argument("--scrape-interval", default=defaults.scrape_interval, help="Prometheus' scrape interval")
    up.add_argument("--prometheus-spare", type=pathlib.Path, default=None,
                    help="a Prometheus already running for this world, as sim.prometheus_spares describes it in "
                         "this file: the world listens where it scrapes instead of starting its own")
    up.add_argument("--rate", type=float, default=defaults.rate, help="requests per second through HAProxy")
    up.add_argument("--load-duration", type=float, default=defaults.load_duration,
                    help="the load generator stops by itself after this many seconds")
    up.add_argument("--nodes", type=int, default=defaults.nodes,
                    help="simulate worker nodes (machines, kubelets, a scheduler, evictions): blue's pool md-0 "
                         "gets this many; 0 (default) simulates workloads without nodes")
    up.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    eksa = args.provider == "eksa"
    config = world.WorldConfig(
        provider=args.provider,
        namespace=args.namespace or ("eksa-clusters" if eksa else defaults.namespace),
        blue=args.blue,
        green=args.green,
        blue_version=args.blue_version or ("1.30" if eksa else defaults.blue_version),
        capi_version=args.capi_version,
        provision_delay=args.provision_delay, flux_delay=args.flux_delay, rate=args.rate,
        load_duration=args.load_duration, prometheus=args.prometheus, scrape_interval=args.scrape_interval,
        prometheus_spare=args.prometheus_spare,
        nodes=args.nodes,
    )
    return until_signalled(world.serve(config, state_dir=args.state_dir))


def until_signalled(serving: Coroutine[Any, Any, None]) -> int:
    """Run a world in the foreground until Ctrl-C or SIGTERM, which cancel it (its cleanup runs)."""
    return asyncio.run(_until_signalled(serving))


async def _until_signalled(serving: Coroutine[Any, Any, None]) -> int:
    task = asyncio.ensure_future(serving)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


if __name__ == "__main__":
    sys.exit(main())
