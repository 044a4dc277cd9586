"""Real client traffic through HAProxy while the router moves weights: not one request may fail."""

from __future__ import annotations

import asyncio
import time

import pytest

from bluegreen.sim import backends, load
from bluegreen.sim import haproxy as sim_haproxy
from bluegreen.traffic import haproxy

REQUESTS_PER_STEP = 150


def router_for(process: sim_haproxy.HAProxyProcess) -> haproxy.HAProxyRouter:
    return haproxy.HAProxyRouter(
        name="edge", runtime_api=process.runtime_api, backend="app", blue_server="blue", green_server="green"
    )


async def until_requests(generator: load.LoadGenerator, count: int, *, since: float) -> None:
    """Let ``count`` requests start (and end) after ``since``."""
    async with asyncio.timeout(30):
        while True:
            done = [sample for sample in generator.samples if sample.started >= since]
            if len(done) >= count:
                return
            await asyncio.sleep(0.02)


async def test_no_request_fails_while_weights_go_up_and_back(haproxy: sim_haproxy.HAProxyProcess) -> None:
    router = router_for(haproxy)
    generator = load.LoadGenerator(url=haproxy.frontend_url, rate=400, concurrency=16, duration=60)
    await generator.start()

    # Per step: green's weight, and the time span during which it held alone
    # (from the end of its set_weights to the start of the next one).
    steps: list[tuple[int, float, float | None]] = []
    for green in (0, 10, 50, 100, 0):
        changing = time.monotonic()
        if steps:
            steps[-1] = (*steps[-1][:2], changing)
        await router.set_weights(blue=100 - green, green=green)
        settled = time.monotonic()
        steps.append((green, settled, None))
        await until_requests(generator, REQUESTS_PER_STEP, since=settled)
    await generator.stop()

    summary = generator.summary()
    assert summary["failed"] == 0, summary
    assert summary["requests"] >= 5 * REQUESTS_PER_STEP
    for green, since, until in steps:
        window = generator.summary(since=since, until=until)
        assert window["requests"] >= REQUESTS_PER_STEP
        if green in (0, 100):
            assert generator.share("green", since=since, until=until) == green / 100, (green, window)
        else:
            assert abs(generator.share("green", since=since, until=until) - green / 100) <= 0.05, (green, window)


async def test_stopping_green_at_weight_zero_fails_nothing(
    haproxy: sim_haproxy.HAProxyProcess, green_backend: backends.Backend
) -> None:
    router = router_for(haproxy)
    generator = load.LoadGenerator(url=haproxy.frontend_url, rate=400, concurrency=16, duration=60)
    await generator.start()
    await router.set_weights(blue=50, green=50)
    await until_requests(generator, 50, since=time.monotonic())
    await router.set_weights(blue=100, green=0)

    await green_backend.stop()
    await haproxy.wait_for_status("green", "DOWN")
    await until_requests(generator, REQUESTS_PER_STEP, since=time.monotonic())
    await generator.stop()

    summary = generator.summary()
    assert summary["failed"] == 0, summary
    assert summary["by_cluster"]["green"] > 0, summary


async def test_a_green_that_dies_under_traffic_costs_no_request(
    haproxy: sim_haproxy.HAProxyProcess, green_backend: backends.Backend
) -> None:
    # Health checks take a second to notice; meanwhile retries with redispatch
    # send what was meant for green to blue.
    router = router_for(haproxy)
    await router.set_weights(blue=50, green=50)
    generator = load.LoadGenerator(url=haproxy.frontend_url, rate=400, concurrency=16, duration=60)
    await generator.start()
    await until_requests(generator, 50, since=time.monotonic())

    await green_backend.stop()
    died = time.monotonic()
    await haproxy.wait_for_status("green", "DOWN")
    await until_requests(generator, REQUESTS_PER_STEP, since=time.monotonic())
    await generator.stop()

    summary = generator.summary()
    assert summary["failed"] == 0, summary
    assert generator.summary(since=died)["requests"] > REQUESTS_PER_STEP


async def test_generator_stops_by_itself_after_its_total(haproxy: sim_haproxy.HAProxyProcess) -> None:
    generator = load.LoadGenerator(url=haproxy.frontend_url, rate=500, concurrency=4, total=60)

    summary = await generator.run()

    assert summary == {"requests": 60, "failed": 0, "by_cluster": {"blue": 60}, "failures": {}}
    assert not generator.running


async def test_failures_are_counted_with_their_reason(
    haproxy: sim_haproxy.HAProxyProcess, blue_backend: backends.Backend
) -> None:
    blue_backend.error_rate = 0.25
    generator = load.LoadGenerator(url=haproxy.frontend_url, rate=500, concurrency=1, total=40)

    summary = await generator.run()

    assert summary["failed"] == 10 and summary["failures"] == {"HTTP 500": 10}, summary
    assert summary["by_cluster"] == {"blue": 40}


async def test_connection_errors_count_as_failures() -> None:
    closed = backends.Backend(cluster="nobody")  # reserved port, nothing listening
    generator = load.LoadGenerator(url=closed.url, rate=500, concurrency=2, total=5)

    summary = await generator.run()
    await closed.stop()

    assert summary["requests"] == 5 and summary["failed"] == 5, summary
    assert all(reason.startswith("ClientConnectorError") for reason in summary["failures"]), summary
    assert generator.share("blue") == 0.0


async def test_stop_ends_a_long_run_early(haproxy: sim_haproxy.HAProxyProcess) -> None:
    generator = load.LoadGenerator(url=haproxy.frontend_url, rate=20, concurrency=2, duration=3600)
    await generator.start()
    await until_requests(generator, 3, since=0.0)

    await generator.stop()

    assert not generator.running
    count = generator.summary()["requests"]
    await asyncio.sleep(0.2)
    assert generator.summary()["requests"] == count


def test_a_generator_without_bounds_is_refused() -> None:
    with pytest.raises(ValueError, match="total or a duration"):
        load.LoadGenerator(url="http://127.0.0.1:1")
