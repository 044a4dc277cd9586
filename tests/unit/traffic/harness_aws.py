"""Contract-suite harnesses for the AWS routers (see test_router_contract.py), against moto's server.

The routers talk to moto through an :class:`~tests.fixtures.aws_world.AwsRelay`
that counts their writes and fails on demand; ``effective``, ``snapshot`` and
``removed`` read moto directly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bluegreen.api import shares
from bluegreen.traffic import elbv2, route53
from tests.fixtures.aws_world import REGION, Alb, AwsRelay, AwsWorld

RECORD = "app.example.com"
ELB_WRITES = ("ModifyListener", "ModifyRule", "RegisterTargets", "DeregisterTargets")


def _percent(blue: int, green: int) -> tuple[int, int]:
    blue_percent = round(100 * blue / (blue + green))
    return blue_percent, 100 - blue_percent


@dataclasses.dataclass
class _RelayedHarness:
    relay: AwsRelay
    write_operations: tuple[str, ...]

    def writes(self) -> int:
        return len(self.relay.writes(*self.write_operations))

    async def fail(self) -> None:
        self.relay.refusing = True

    async def recover(self) -> None:
        self.relay.refusing = False


@dataclasses.dataclass
class Route53Harness(_RelayedHarness):
    router: route53.Route53Router
    world: AwsWorld
    zone: str

    async def effective(self) -> tuple[int, int]:
        weights = self.world.record_weights(self.zone, RECORD)
        # A record that is absent (the retired side's after finalize) answers nothing.
        return _percent(weights.get("prod-blue", 0), weights.get("prod-green", 0))

    async def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.world.records(self.zone, RECORD)

    async def removed(self, side: str) -> bool:
        return f"prod-{side}" not in self.world.records(self.zone, RECORD)


@pytest.fixture
def route53_harness(aws_world: AwsWorld, aws_relay: AwsRelay) -> Route53Harness:
    """Blue's record at weight 10 and green's at 0: all to blue, in numbers bluegreen does not write itself."""
    zone = aws_world.hosted_zone()
    aws_world.upsert(zone, *[
        {"Name": RECORD, "Type": "CNAME", "SetIdentifier": identifier, "Weight": weight, "TTL": 60,
         "ResourceRecords": [{"Value": f"{identifier}.example.net"}]}
        for identifier, weight in (("prod-blue", 10), ("prod-green", 0))
    ])
    router = route53.Route53Router(
        name="dns", hosted_zone_id=zone, record_name=RECORD, record_type="CNAME", ttl=60,
        blue=route53.RecordSide(set_identifier="prod-blue", value="prod-blue.example.net"),
        green=route53.RecordSide(set_identifier="prod-green", value="prod-green.example.net"),
        endpoint_url=aws_relay.url, max_attempts=1, timeout=5,
    )
    return Route53Harness(relay=aws_relay, write_operations=("ChangeResourceRecordSets",), router=router,
                          world=aws_world, zone=zone)


@dataclasses.dataclass
class WeightedHarness(_RelayedHarness):
    router: elbv2.WeightedTargetGroupsRouter
    world: AwsWorld
    alb: Alb

    async def effective(self) -> tuple[int, int]:
        weights = self._weights()
        return _percent(weights.get(self.alb.blue_target_group_arn, 0),
                        weights.get(self.alb.green_target_group_arn, 0))

    async def snapshot(self) -> dict[str, Any]:
        return self.world.forward_action(listener_arn=self.alb.listener_arn)

    async def removed(self, side: str) -> bool:
        arn = self.alb.blue_target_group_arn if side == "blue" else self.alb.green_target_group_arn
        return arn not in self._weights()

    def _weights(self) -> dict[str, int]:
        action = self.world.forward_action(listener_arn=self.alb.listener_arn)
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or [
            {"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
        return {group["TargetGroupArn"]: group["Weight"] for group in groups}


@pytest.fixture
def elbv2_weighted_harness(aws_world: AwsWorld, aws_relay: AwsRelay) -> WeightedHarness:
    alb = aws_world.alb()
    router = elbv2.WeightedTargetGroupsRouter(
        name="alb", listener_arn=alb.listener_arn, blue_target_group_arn=alb.blue_target_group_arn,
        green_target_group_arn=alb.green_target_group_arn, region=REGION, endpoint_url=aws_relay.url,
        max_attempts=1, timeout=5,
    )
    return WeightedHarness(relay=aws_relay, write_operations=ELB_WRITES, router=router, world=aws_world, alb=alb)


@dataclasses.dataclass
class RegistrationHarness(_RelayedHarness):
    router: elbv2.TargetRegistrationRouter
    world: AwsWorld
    target_group: str
    blue: list[str]
    green: list[str]

    async def effective(self) -> tuple[int, int]:
        healthy = [target for target, state in self.world.target_health(self.target_group).items()
                   if state == "healthy"]
        green = sum(target in self.green for target in healthy)
        blue = sum(target in self.blue for target in healthy)
        green_percent = shares.green_share(blue, green)
        return 100 - green_percent, green_percent

    async def snapshot(self) -> list[tuple[str, int | None]]:
        reply = self.world.elbv2.describe_target_health(TargetGroupArn=self.target_group)
        return sorted((item["Target"]["Id"], item["Target"].get("Port")) for item in reply["TargetHealthDescriptions"])

    async def removed(self, side: str) -> bool:
        targets = self.blue if side == "blue" else self.green
        return not set(targets) & set(self.world.target_health(self.target_group))


@pytest.fixture
def elbv2_registration_harness(aws_world: AwsWorld, aws_relay: AwsRelay) -> RegistrationHarness:
    """Three blue and three green ingress nodes: 25, 33, 50, 66, 75 and 100 % are reachable."""
    alb = aws_world.alb()
    blue, green = aws_world.instances(3), aws_world.instances(3)
    aws_world.register(alb.blue_target_group_arn, *blue)
    router = elbv2.TargetRegistrationRouter(
        name="ingress", target_group_arn=alb.blue_target_group_arn,
        blue_targets=[elbv2.Target(id_) for id_ in blue], green_targets=[elbv2.Target(id_) for id_ in green],
        poll_interval=0.1, region=REGION, endpoint_url=aws_relay.url, max_attempts=1, timeout=5,
    )
    return RegistrationHarness(relay=aws_relay, write_operations=ELB_WRITES, router=router, world=aws_world,
                               target_group=alb.blue_target_group_arn, blue=blue, green=green)

