"""The ELBv2 router in both modes against moto's server over HTTP, and its sequence of target moves.

What moto does with target health, which these tests rely on: a registered
target is ``healthy`` at once, whatever its id (there is no ``initial`` phase
and no health check); an EC2 instance that is stopped is ``unused``
(``Target.InvalidState``) and healthy again once started; a deregistered
target is gone at once (no ``draining``).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bluegreen.api import spec
from bluegreen.traffic import base, elbv2, registry
from tests.fixtures.aws_world import REGION, Alb, AwsRelay, AwsWorld

pytestmark = pytest.mark.routers

WRITES = ("ModifyListener", "ModifyRule", "RegisterTargets", "DeregisterTargets")


def weighted(url: str, alb: Alb, *, rule: bool = False) -> elbv2.WeightedTargetGroupsRouter:
    return elbv2.WeightedTargetGroupsRouter(
        name="alb", listener_arn=None if rule else alb.listener_arn, rule_arn=alb.rule_arn if rule else None,
        blue_target_group_arn=alb.blue_target_group_arn, green_target_group_arn=alb.green_target_group_arn,
        region=REGION, endpoint_url=url, max_attempts=1, timeout=5,
    )


@pytest.fixture
def alb(aws_world: AwsWorld) -> Alb:
    return aws_world.alb()


# --- WeightedTargetGroups ------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [False, True], ids=["listener", "rule"])
async def test_forward_weights_are_set_and_read_back(
    aws_world: AwsWorld, aws_relay: AwsRelay, alb: Alb, rule: bool
) -> None:
    router = weighted(aws_relay.url, alb, rule=rule)
    where = {"rule_arn": alb.rule_arn} if rule else {"listener_arn": alb.listener_arn}

    assert await router.verify() == base.RouterWeights(blue=100, green=0)
    change = await router.set_weights(blue=90, green=10)

    assert change.changed and "blue 1->90" in change.detail and "green absent->10" in change.detail
    assert aws_world.forward_weights(**where) == {alb.blue_target_group_arn: 90, alb.green_target_group_arn: 10}
    assert await router.verify() == base.RouterWeights(blue=90, green=10)
    assert aws_relay.writes(*WRITES) == ["ModifyRule" if rule else "ModifyListener"]
    # The other of listener and rule is not touched.
    other = {"listener_arn": alb.listener_arn} if rule else {"rule_arn": alb.rule_arn}
    assert aws_world.forward_action(**other).get("TargetGroupArn") == alb.blue_target_group_arn


async def test_same_weights_again_write_nothing(aws_relay: AwsRelay, alb: Alb) -> None:
    router = weighted(aws_relay.url, alb)
    await router.set_weights(blue=50, green=50)

    assert not (await router.set_weights(blue=50, green=50)).changed
    assert aws_relay.writes(*WRITES) == ["ModifyListener"]


async def test_stickiness_other_groups_and_other_actions_are_kept(
    aws_world: AwsWorld, aws_relay: AwsRelay, alb: Alb
) -> None:
    maintenance = aws_world.target_group(f"maint-{alb.vpc_id[-6:]}", alb.vpc_id)
    stickiness = {"Enabled": True, "DurationSeconds": 3600}
    aws_world.elbv2.modify_rule(RuleArn=alb.rule_arn, Actions=[{"Type": "forward", "ForwardConfig": {
        "TargetGroups": [{"TargetGroupArn": maintenance, "Weight": 0},
                         {"TargetGroupArn": alb.blue_target_group_arn, "Weight": 5}],
        "TargetGroupStickinessConfig": stickiness}}])
    router = weighted(aws_relay.url, alb, rule=True)

    await router.set_weights(blue=25, green=75)

    action = aws_world.forward_action(rule_arn=alb.rule_arn)
    assert action["ForwardConfig"]["TargetGroupStickinessConfig"] == stickiness
    assert action["ForwardConfig"]["TargetGroups"] == [
        {"TargetGroupArn": maintenance, "Weight": 0},
        {"TargetGroupArn": alb.blue_target_group_arn, "Weight": 25},
        {"TargetGroupArn": alb.green_target_group_arn, "Weight": 75},
    ]
    assert await router.verify() == base.RouterWeights(blue=25, green=75)


async def test_a_third_group_with_weight_is_reported(aws_world: AwsWorld, aws_relay: AwsRelay, alb: Alb) -> None:
    other = aws_world.target_group(f"other-{alb.vpc_id[-6:]}", alb.vpc_id)
    aws_world.elbv2.modify_listener(ListenerArn=alb.listener_arn, DefaultActions=[{"Type": "forward", "ForwardConfig": {
        "TargetGroups": [{"TargetGroupArn": alb.blue_target_group_arn, "Weight": 10},
                         {"TargetGroupArn": other, "Weight": 10}]}}])

    with pytest.raises(base.RouterError, match=f"also sends traffic to {other} \\(weight 10\\)"):
        await weighted(aws_relay.url, alb).verify()


async def test_a_listener_that_does_not_forward_to_blue_or_green_is_not_taken_over(
    aws_world: AwsWorld, aws_relay: AwsRelay, alb: Alb
) -> None:
    aws_world.elbv2.modify_listener(ListenerArn=alb.listener_arn, DefaultActions=[
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}])

    with pytest.raises(base.RouterError, match=r"no forward action.*fixed-response"):
        await weighted(aws_relay.url, alb).set_weights(blue=90, green=10)
    assert not aws_relay.writes(*WRITES)


async def test_a_deleted_listener_is_reported_in_aws_words(aws_world: AwsWorld, aws_relay: AwsRelay, alb: Alb) -> None:
    router = weighted(aws_relay.url, alb)
    aws_world.elbv2.delete_listener(ListenerArn=alb.listener_arn)

    with pytest.raises(base.RouterError, match="ListenerNotFound"):
        await router.set_weights(blue=90, green=10)


async def test_finalize_removes_blues_group_once_keeping_stickiness(
    aws_world: AwsWorld, aws_relay: AwsRelay, alb: Alb
) -> None:
    sticky = {"Enabled": True, "DurationSeconds": 600}
    aws_world.elbv2.modify_listener(ListenerArn=alb.listener_arn, DefaultActions=[{"Type": "forward", "ForwardConfig": {
        "TargetGroups": [{"TargetGroupArn": alb.blue_target_group_arn, "Weight": 1}],
        "TargetGroupStickinessConfig": sticky}}])
    router = weighted(aws_relay.url, alb)
    await router.set_weights(blue=0, green=100)

    first = await router.finalize(retired="blue", mode="Remove", original=None)
    second = await router.finalize(retired="blue", mode="Remove", original=None)

    assert first == f"the forward action of listener {alb.listener_arn}: removed blue's target group " \
                    f"{alb.blue_target_group_arn}"
    assert "is already removed" in second
    action = aws_world.forward_action(listener_arn=alb.listener_arn)
    assert action["ForwardConfig"] == {
        "TargetGroups": [{"TargetGroupArn": alb.green_target_group_arn, "Weight": 100}],
        "TargetGroupStickinessConfig": sticky}
    assert aws_relay.writes(*WRITES) == ["ModifyListener", "ModifyListener"]
    assert await router.verify() == base.RouterWeights(blue=0, green=100)
    assert not (await router.set_weights(blue=0, green=100)).changed
    # A rollback after retirement brings blue's group back.
    await router.set_weights(blue=100, green=0)
    assert aws_world.forward_weights(listener_arn=alb.listener_arn) == {
        alb.green_target_group_arn: 0, alb.blue_target_group_arn: 100}


async def test_finalize_refuses_while_blue_takes_traffic(aws_world: AwsWorld, aws_relay: AwsRelay, alb: Alb) -> None:
    router = weighted(aws_relay.url, alb)
    await router.set_weights(blue=10, green=90)

    with pytest.raises(base.RouterError, match=r"blue still takes traffic \(blue 10, green 90\)"):
        await router.finalize(retired="blue", mode="Remove", original=None)
    assert aws_world.forward_weights(listener_arn=alb.listener_arn)[alb.blue_target_group_arn] == 10


async def test_restore_puts_the_rule_back_as_it_was_and_leaves_its_other_actions(
    aws_world: AwsWorld, aws_relay: AwsRelay, alb: Alb
) -> None:
    fixed = {"Type": "fixed-response", "Order": 2, "FixedResponseConfig": {"StatusCode": "503"}}
    aws_world.elbv2.modify_rule(RuleArn=alb.rule_arn, Actions=[
        {"Type": "forward", "Order": 1, "TargetGroupArn": alb.blue_target_group_arn}, fixed])
    router = weighted(aws_relay.url, alb, rule=True)
    saved = await router.save()
    assert saved == {"forward": {"Type": "forward", "Order": 1, "TargetGroupArn": alb.blue_target_group_arn}}

    await router.set_weights(blue=50, green=50)
    await router.set_weights(blue=100, green=0)
    line = await router.finalize(retired="green", mode="Restore", original=saved)

    assert line == f"the forward action of rule {alb.rule_arn}: restored as saved (blue 1, green absent)"
    actions = aws_world.elbv2.describe_rules(RuleArns=[alb.rule_arn])["Rules"][0]["Actions"]
    assert actions == [saved["forward"], fixed]
    assert "as saved before the upgrade" in await router.finalize(retired="green", mode="Restore", original=saved)
    assert aws_relay.writes(*WRITES) == ["ModifyRule"] * 3


def test_authenticate_actions_keep_the_secret_aws_holds() -> None:
    action = {"Type": "authenticate-oidc", "Order": 1, "AuthenticateOidcConfig": {"ClientId": "app", "Issuer": "x"}}

    writable = elbv2._writable(action)

    assert writable["AuthenticateOidcConfig"]["UseExistingClientSecret"] is True
    assert "UseExistingClientSecret" not in action["AuthenticateOidcConfig"]


@pytest.mark.parametrize("weight, accepted", [(-1, False), (0, True), (999, True), (1000, False)])
def test_forward_weights_are_0_to_999(weight: int, accepted: bool) -> None:
    if accepted:
        elbv2.check_forward_weight(weight, target_group="tg")
    else:
        with pytest.raises(ValueError, match="0-999"):
            elbv2.check_forward_weight(weight, target_group="tg")


# --- TargetRegistration: the sequence --------------------------------------------------------------


def test_three_and_three_targets_give_the_documented_sequence() -> None:
    path = elbv2.registration_path(blue_targets=3, green_targets=3)

    assert path == [(3, 0), (3, 1), (2, 1), (2, 2), (1, 2), (1, 3), (0, 3)]
    assert [elbv2.green_share(*state) for state in path] == [0, 25, 33, 50, 66, 75, 100]


@pytest.mark.parametrize("asked, reached", [(0, 0), (1, 25), (10, 25), (29, 25), (30, 33), (41, 33), (42, 50),
                                            (58, 50), (70, 66), (71, 75), (99, 75), (100, 100)])
def test_a_percent_maps_to_the_nearest_state_strictly_between_when_asked_between(asked: int, reached: int) -> None:
    path = elbv2.registration_path(blue_targets=3, green_targets=3)

    assert elbv2.green_share(*path[elbv2.state_for(path, green_percent=asked)]) == reached


@given(blue=st.integers(1, 12), green=st.integers(1, 12))
def test_every_sequence_is_safe(blue: int, green: int) -> None:
    path = elbv2.registration_path(blue_targets=blue, green_targets=green)

    assert path[0] == (blue, 0) and path[-1] == (0, green)
    assert path[1] == (blue, 1), "the first move adds green capacity"
    shares = [elbv2.green_share(*state) for state in path]
    assert shares == sorted(shares)
    for (before_blue, before_green), (after_blue, after_green) in itertools.pairwise(path):
        assert (before_blue - after_blue, after_green - before_green) in ((0, 1), (1, 0)), "one move at a time"
    for index, (blue_count, green_count) in enumerate(path[1:-1], start=1):
        assert blue_count >= 1 and green_count >= 1, f"a side with a share lost its last target at {index}"
    for index in range(2, len(path)):
        deregistered = path[index][0] < path[index - 1][0]
        after_a_deregistration = path[index - 1][0] < path[index - 2][0]
        if deregistered and after_a_deregistration:
            assert path[index][1] == green, "two blue targets left in a row while green had some to add"
    # The last blue target goes only after every green one is in.
    assert path[-2] == (1, green)


@given(blue=st.integers(1, 12), green=st.integers(1, 12), asked=st.integers(1, 99))
def test_a_share_between_0_and_100_keeps_both_sides(blue: int, green: int, asked: int) -> None:
    path = elbv2.registration_path(blue_targets=blue, green_targets=green)

    blue_count, green_count = path[elbv2.state_for(path, green_percent=asked)]

    assert blue_count >= 1 and green_count >= 1


# --- TargetRegistration against moto ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def group(aws_world: AwsWorld, alb: Alb) -> dict[str, Any]:
    """A target group with three blue instances registered and three green instances not yet."""
    blue, green = aws_world.instances(3), aws_world.instances(3)
    target_group = alb.blue_target_group_arn
    aws_world.register(target_group, *blue)
    return {"arn": target_group, "blue": blue, "green": green}


def registration(url: str, group: dict[str, Any], *, clock: Clock | None = None,
                 health_timeout: float = 60.0) -> elbv2.TargetRegistrationRouter:
    return elbv2.TargetRegistrationRouter(
        name="ingress", target_group_arn=group["arn"],
        blue_targets=[elbv2.Target(id_) for id_ in group["blue"]],
        green_targets=[elbv2.Target(id_, 80) for id_ in group["green"]],
        health_timeout=health_timeout, poll_interval=0.25, region=REGION, endpoint_url=url, max_attempts=1,
        timeout=5, clock=clock or Clock(),
    )


async def move_until_done(router: elbv2.TargetRegistrationRouter, *, blue: int, green: int) -> tuple[
        base.RouterChange, int]:
    for calls in itertools.count(1):
        try:
            return await router.set_weights(blue=blue, green=green), calls
        except base.RouterPending:
            assert calls < 20, "no progress"
    raise AssertionError("unreachable")


async def test_one_target_moves_per_call_along_the_sequence(
    aws_world: AwsWorld, aws_relay: AwsRelay, group: dict[str, Any]
) -> None:
    router = registration(aws_relay.url, group)
    assert await router.verify() == base.RouterWeights(blue=100, green=0)

    with pytest.raises(base.RouterPending, match=f"registered green {group['green'][0]}:80") as pending:
        await router.set_weights(blue=50, green=50)
    assert pending.value.retry_after == 0.25
    assert aws_relay.writes(*WRITES) == ["RegisterTargets"]
    assert await router.verify() == base.RouterWeights(blue=75, green=25)

    with pytest.raises(base.RouterPending, match=f"deregistered blue {group['blue'][2]}"):
        await router.set_weights(blue=50, green=50)
    assert await router.verify() == base.RouterWeights(blue=67, green=33)

    with pytest.raises(base.RouterPending, match=f"registered green {group['green'][1]}:80"):
        await router.set_weights(blue=50, green=50)
    change = await router.set_weights(blue=50, green=50)

    assert change.changed
    assert change.detail.count("registered") == 3 and "green 50 % (2 blue, 2 green targets) for 50 % asked" in (
        change.detail)
    assert set(aws_world.target_health(group["arn"])) == {*group["blue"][:2], *group["green"][:2]}
    assert await router.verify() == base.RouterWeights(blue=50, green=50)
    assert not (await router.set_weights(blue=50, green=50)).changed
    assert len(aws_relay.writes(*WRITES)) == 3


async def test_going_back_walks_the_sequence_backwards(aws_world: AwsWorld, aws_relay: AwsRelay,
                                                     group: dict[str, Any]) -> None:
    router = registration(aws_relay.url, group)
    await move_until_done(router, blue=0, green=100)
    assert set(aws_world.target_health(group["arn"])) == set(group["green"])
    aws_relay.calls.clear()

    _, calls = await move_until_done(router, blue=100, green=0)

    assert calls == 7
    assert aws_relay.writes(*WRITES)[:2] == ["RegisterTargets", "DeregisterTargets"], "capacity first"
    assert set(aws_world.target_health(group["arn"])) == set(group["blue"])
    assert await router.verify() == base.RouterWeights(blue=100, green=0)


async def test_no_move_while_a_target_is_unhealthy_and_an_error_after_the_timeout(
    aws_world: AwsWorld, aws_relay: AwsRelay, group: dict[str, Any]
) -> None:
    clock = Clock()
    router = registration(aws_relay.url, group, clock=clock, health_timeout=120)
    aws_world.ec2.stop_instances(InstanceIds=[group["blue"][0]])

    with pytest.raises(base.RouterPending, match=f"blue {group['blue'][0]} is unused \\(Target.InvalidState"):
        await router.set_weights(blue=75, green=25)
    clock.now += 119
    with pytest.raises(base.RouterPending):
        await router.set_weights(blue=75, green=25)
    clock.now += 1
    with pytest.raises(base.RouterError, match="for longer than 120s"):
        await router.set_weights(blue=75, green=25)
    assert not aws_relay.writes(*WRITES)

    aws_world.ec2.start_instances(InstanceIds=[group["blue"][0]])
    change, _ = await move_until_done(router, blue=75, green=25)
    assert change.changed and await router.verify() == base.RouterWeights(blue=75, green=25)


async def test_verify_counts_healthy_targets_only(aws_world: AwsWorld, aws_relay: AwsRelay,
                                                  group: dict[str, Any]) -> None:
    router = registration(aws_relay.url, group)
    await move_until_done(router, blue=50, green=50)

    aws_world.ec2.stop_instances(InstanceIds=[group["blue"][0]])

    assert await router.verify() == base.RouterWeights(blue=34, green=66)


async def test_targets_of_neither_side_are_reported(aws_world: AwsWorld, aws_relay: AwsRelay,
                                                    group: dict[str, Any]) -> None:
    stranger = aws_world.instances(1)[0]
    aws_world.register(group["arn"], stranger)

    with pytest.raises(base.RouterError, match=f"neither blue's nor green's: {stranger}:80"):
        await registration(aws_relay.url, group).set_weights(blue=75, green=25)


async def test_finalize_refuses_while_blue_targets_are_healthy(aws_relay: AwsRelay, group: dict[str, Any]) -> None:
    router = registration(aws_relay.url, group)
    with pytest.raises(base.RouterError, match=f"refusing to retire blue from target group .*: blue still takes "
                                               f"traffic \\(blue: {group['blue'][0]} healthy"):
        await router.finalize(retired="blue", mode="Remove", original=None)

    await move_until_done(router, blue=0, green=100)
    assert await router.finalize(retired="blue", mode="Remove", original=None) == (
        f"target group {group['arn']}: blue has no target registered")
    assert await router.verify() == base.RouterWeights(blue=0, green=100)


async def test_remove_deregisters_what_the_retired_side_has_left_that_takes_no_traffic(
    aws_world: AwsWorld, aws_relay: AwsRelay, group: dict[str, Any]
) -> None:
    router = registration(aws_relay.url, group)
    await move_until_done(router, blue=100, green=0)
    straggler = group["green"][0]
    aws_world.register(group["arn"], straggler)  # registered by hand after the rollback...
    aws_world.ec2.stop_instances(InstanceIds=[straggler])  # ...and unused: no traffic
    aws_relay.calls.clear()

    line = await router.finalize(retired="green", mode="Remove", original=None)

    assert line == f"target group {group['arn']}: deregistered {straggler}:80"
    assert set(aws_world.target_health(group["arn"])) == set(group["blue"])
    assert aws_relay.writes(*WRITES) == ["DeregisterTargets"]


async def test_restore_registers_the_saved_targets_before_it_deregisters_the_others(
    aws_world: AwsWorld, aws_relay: AwsRelay, group: dict[str, Any]
) -> None:
    router = registration(aws_relay.url, group)
    saved = await router.save()
    assert saved == {"targets": sorted(({"Id": id_, "Port": 80} for id_ in group["blue"]), key=lambda t: t["Id"])}
    missing, straggler = group["blue"][1], group["green"][2]
    aws_world.elbv2.deregister_targets(TargetGroupArn=group["arn"], Targets=[{"Id": missing}])
    aws_world.register(group["arn"], straggler)
    aws_world.ec2.stop_instances(InstanceIds=[straggler])
    aws_relay.calls.clear()

    line = await router.finalize(retired="green", mode="Restore", original=saved)

    assert line == f"target group {group['arn']}: registered {missing}:80; deregistered {straggler}:80"
    assert aws_relay.writes(*WRITES) == ["RegisterTargets", "DeregisterTargets"]
    assert await router.save() == saved
    assert "as saved before the upgrade" in await router.finalize(retired="green", mode="Restore", original=saved)


async def test_a_deleted_target_group_is_reported_in_aws_words(aws_world: AwsWorld, aws_relay: AwsRelay,
                                                               group: dict[str, Any]) -> None:
    router = registration(aws_relay.url, group)
    aws_world.elbv2.delete_listener(ListenerArn=aws_world.elbv2.describe_listeners(
        LoadBalancerArn=aws_world.elbv2.describe_target_groups(TargetGroupArns=[group["arn"]])["TargetGroups"][0][
            "LoadBalancerArns"][0])["Listeners"][0]["ListenerArn"])
    aws_world.elbv2.delete_target_group(TargetGroupArn=group["arn"])

    with pytest.raises(base.RouterError, match="TargetGroupNotFound"):
        await router.set_weights(blue=75, green=25)


# --- From the spec ---------------------------------------------------------------------------------


def test_the_spec_picks_the_mode() -> None:
    weighted_spec = spec.ElbV2Router.model_validate({
        "listenerARN": "arn:l", "blueTargetGroupARN": "arn:b", "greenTargetGroupARN": "arn:g",
        "aws": {"region": REGION}})
    registration_spec = spec.ElbV2Router.model_validate({
        "mode": "TargetRegistration", "targetGroupARN": "arn:tg", "healthTimeout": "90s",
        "blueTargets": [{"id": "10.0.1.1", "port": 8080}], "greenTargets": [{"id": "10.0.2.1"}]})

    assert isinstance(elbv2.from_spec(name="a", config=weighted_spec), elbv2.WeightedTargetGroupsRouter)
    router = elbv2.from_spec(name="b", config=registration_spec)
    assert isinstance(router, elbv2.TargetRegistrationRouter)
    assert router.reachable(green_percent=10) == 50


def test_a_target_on_both_sides_is_refused() -> None:
    with pytest.raises(ValueError, match="none in both"):
        elbv2.TargetRegistrationRouter(name="x", target_group_arn="arn:tg", blue_targets=[elbv2.Target("i-1")],
                                       green_targets=[elbv2.Target("i-1")])


async def test_the_spec_reaches_the_router_through_the_registry(aws_world: AwsWorld, aws_relay: AwsRelay,
                                                                alb: Alb) -> None:
    entry = spec.Router.model_validate({"name": "alb", "elbv2": {
        "ruleARN": alb.rule_arn, "blueTargetGroupARN": alb.blue_target_group_arn,
        "greenTargetGroupARN": alb.green_target_group_arn,
        "aws": {"region": REGION, "endpointURL": aws_relay.url}}})
    router = registry.build_router(entry)

    await router.set_weights(blue=60, green=40)

    assert aws_world.forward_weights(rule_arn=alb.rule_arn) == {
        alb.blue_target_group_arn: 60, alb.green_target_group_arn: 40}
    assert aws_relay.writes(*WRITES) == ["ModifyRule"]


async def test_without_a_region_elbv2_says_where_to_set_one(aws_relay: AwsRelay, alb: Alb) -> None:
    router = elbv2.WeightedTargetGroupsRouter(
        name="alb", listener_arn=alb.listener_arn, blue_target_group_arn=alb.blue_target_group_arn,
        green_target_group_arn=alb.green_target_group_arn, endpoint_url=aws_relay.url,
    )

    with pytest.raises(base.RouterError, match=r"set aws\.region in the router, or AWS_REGION"):
        await router.verify()
