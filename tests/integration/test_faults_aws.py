"""The AWS routers while AWS errs, throttles or does not answer in time.

Given Route 53 and ELBv2 (moto's real HTTP server) behind a fault-injecting
proxy that answers AWS's own error shapes or holds requests, then:

- what boto3's standard retry mode absorbs (throttling, PriorRequestNotComplete,
  5xx, for fewer requests than its 3 attempts) never reaches the operator: the
  change is made once;
- what outlasts those attempts is a RouterError that names the service, the
  operation, AWS's code and message (the reconcile loop puts it in
  ``Progressing=False RetryingAfterError`` and the journal, and retries with
  its own backoff); nothing is written meanwhile, and the next attempt writes
  the change once;
- a write whose reply never came in time but that AWS made anyway is not made
  again by the operator: the router reads first and finds the weights there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bluegreen.sim.fault_proxy import FaultProxy
from bluegreen.traffic import base, elbv2, route53
from tests.fixtures.aws_world import REGION, AwsWorld, aws_world, moto_server  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.routers]

RECORD = "app.example.com"
CHANGE = "ChangeResourceRecordSets"
ATTEMPTS = 3  # what the operator builds every AWS client with (traffic.aws.AwsClient's default)


@pytest.fixture
async def proxy(moto_server: str) -> AsyncIterator[FaultProxy]:  # noqa: F811
    running = FaultProxy(moto_server)
    await running.start()
    yield running
    await running.stop()


def dns_router(aws_world: AwsWorld, proxy: FaultProxy, *, timeout: float = 5.0) -> tuple[route53.Route53Router, str]:  # noqa: F811
    """Blue's and green's weighted records, all on blue, and a router reaching Route 53 through the proxy."""
    zone = aws_world.hosted_zone()
    aws_world.upsert(zone, *[
        {"Name": RECORD, "Type": "CNAME", "SetIdentifier": identifier, "Weight": weight, "TTL": 60,
         "ResourceRecords": [{"Value": f"{identifier}.example.net"}]}
        for identifier, weight in (("prod-blue", 100), ("prod-green", 0))
    ])
    router = route53.Route53Router(
        name="dns", hosted_zone_id=zone, record_name=RECORD, record_type="CNAME", ttl=60,
        blue=route53.RecordSide(set_identifier="prod-blue", value="prod-blue.example.net"),
        green=route53.RecordSide(set_identifier="prod-green", value="prod-green.example.net"),
        endpoint_url=proxy.url, max_attempts=ATTEMPTS, timeout=timeout,
    )
    return router, zone


@pytest.mark.parametrize(("status", "code"), [
    (400, "Throttling"), (400, "PriorRequestNotComplete"), (500, "InternalError"), (503, "ServiceUnavailable"),
])
async def test_route53_faults_within_boto3_s_attempts_change_the_records_once(
    aws_world: AwsWorld, proxy: FaultProxy, status: int, code: str,  # noqa: F811
) -> None:
    router, zone = dns_router(aws_world, proxy)
    # Given Route 53 answers the next two change batches with an error boto3 retries
    proxy.fail_next(status, code, times=ATTEMPTS - 1, operation=CHANGE)
    # When the router moves 10 % to green
    change = await router.set_weights(blue=90, green=10)
    # Then the change went through on boto3's last attempt, once
    assert change.changed
    assert [operation for operation, _, _ in proxy.injected] == [CHANGE] * (ATTEMPTS - 1)
    assert proxy.relayed.count(CHANGE) == 1
    assert aws_world.record_weights(zone, RECORD) == {"prod-blue": 90, "prod-green": 10}
    assert await router.verify() == base.RouterWeights(blue=90, green=10)


async def test_route53_errors_outlasting_boto3_s_attempts_are_named_and_the_change_is_made_once_later(
    aws_world: AwsWorld, proxy: FaultProxy,  # noqa: F811
) -> None:
    router, zone = dns_router(aws_world, proxy)
    # Given Route 53 throttles every attempt of one pass
    proxy.throttle_next(times=ATTEMPTS, operation=CHANGE)
    # When the router is asked for 10 %, it fails with AWS's code and message, having written nothing
    with pytest.raises(base.RouterError) as failed:
        await router.set_weights(blue=90, green=10)
    assert "route53 ChangeResourceRecordSets refused: Throttling: Rate exceeded" in str(failed.value)
    assert proxy.relayed.count(CHANGE) == 0
    assert aws_world.record_weights(zone, RECORD) == {"prod-blue": 100, "prod-green": 0}
    # Then the operator's next pass makes the change, once, and the one after finds nothing to do
    assert (await router.set_weights(blue=90, green=10)).changed
    assert not (await router.set_weights(blue=90, green=10)).changed
    assert proxy.relayed.count(CHANGE) == 1
    assert aws_world.record_weights(zone, RECORD) == {"prod-blue": 90, "prod-green": 10}


async def test_route53_unreachable_is_named_with_the_endpoint(
    aws_world: AwsWorld, proxy: FaultProxy,  # noqa: F811
) -> None:
    router, zone = dns_router(aws_world, proxy)
    await proxy.stop()
    with pytest.raises(base.RouterError) as failed:
        await router.set_weights(blue=90, green=10)
    assert "route53 ListResourceRecordSets failed" in str(failed.value)
    assert proxy.url.removeprefix("http://") in str(failed.value), str(failed.value)
    assert aws_world.record_weights(zone, RECORD) == {"prod-blue": 100, "prod-green": 0}


async def test_a_change_route53_made_after_the_call_timed_out_is_not_made_again(
    aws_world: AwsWorld, proxy: FaultProxy,  # noqa: F811
) -> None:
    router, zone = dns_router(aws_world, proxy, timeout=0.5)
    # Given every attempt of a change batch gets no answer in time, but reaches Route 53 afterwards
    proxy.stall_next(1.5, times=ATTEMPTS, operation=CHANGE)
    with pytest.raises(base.RouterError) as failed:
        await router.set_weights(blue=75, green=25)
    assert "timeout" in str(failed.value).lower(), str(failed.value)
    for _ in range(100):  # the held batches reach moto once their hold is over
        if proxy.relayed.count(CHANGE) == ATTEMPTS:
            break
        await asyncio.sleep(0.05)
    assert proxy.relayed.count(CHANGE) == ATTEMPTS, "boto3 sent the same batch once per attempt"
    # When the operator tries again, it reads first, finds the weights already there, and writes nothing
    change = await router.set_weights(blue=75, green=25)
    assert not change.changed
    assert proxy.relayed.count(CHANGE) == ATTEMPTS
    assert aws_world.record_weights(zone, RECORD) == {"prod-blue": 75, "prod-green": 25}


async def test_elbv2_throttling_outlasting_boto3_s_attempts_then_one_write(
    aws_world: AwsWorld, proxy: FaultProxy,  # noqa: F811
) -> None:
    alb = aws_world.alb()
    router = elbv2.WeightedTargetGroupsRouter(
        name="alb", listener_arn=alb.listener_arn, blue_target_group_arn=alb.blue_target_group_arn,
        green_target_group_arn=alb.green_target_group_arn, region=REGION, endpoint_url=proxy.url,
        max_attempts=ATTEMPTS, timeout=5,
    )
    # Given ELBv2 answers 500 to one read (boto3 retries it) and throttles every attempt of the write
    proxy.fail_next(500, "InternalFailure", times=1, operation="DescribeListeners")
    proxy.throttle_next(times=ATTEMPTS, operation="ModifyListener")
    with pytest.raises(base.RouterError) as failed:
        await router.set_weights(blue=50, green=50)
    assert "elbv2 ModifyListener refused: Throttling: Rate exceeded" in str(failed.value)
    assert "ModifyListener" not in proxy.relayed
    # Then the next pass writes the split once
    assert (await router.set_weights(blue=50, green=50)).changed
    assert not (await router.set_weights(blue=50, green=50)).changed
    assert proxy.relayed.count("ModifyListener") == 1
    assert aws_world.forward_weights(listener_arn=alb.listener_arn) == {
        alb.blue_target_group_arn: 50, alb.green_target_group_arn: 50}
    assert await router.verify() == base.RouterWeights(blue=50, green=50)

