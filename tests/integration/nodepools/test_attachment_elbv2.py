"""Attachment to an ELBv2 target group, asked of moto's server over HTTP.

What moto reports, checked in moto 5's elbv2 model: a registered target is
``healthy`` unless it is an instance moto knows as stopped (``unused``,
``Target.InvalidState``); a deregistered or terminated target leaves the list
at once. moto runs no health checks, so it never reports ``initial`` or
``unhealthy``: those states go through the same line as ``unused``, which is
what is tested here.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest

from bluegreen.api import spec
from bluegreen.nodepools.attachment import LoadBalancerError, unattached
from tests.fixtures.aws_world import REGION, AwsRelay, AwsWorld
from tests.fixtures.node_haproxy import node

pytestmark = [pytest.mark.integration, pytest.mark.nodepools]


def balancer(target_group_arn: str, endpoint_url: str) -> spec.NodeLoadBalancer:
    return spec.NodeLoadBalancer.model_validate(
        {"elbv2": {"targetGroupARN": target_group_arn, "aws": {"region": REGION, "endpointURL": endpoint_url}}})


def target_group(world: AwsWorld, *, target_type: str) -> tuple[str, str]:
    """A target group of ``target_type`` on NodePort 30080; (its ARN, its name)."""
    vpc = world.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    name = f"nodes-{uuid.uuid4().hex[:8]}"
    arn = world.elbv2.create_target_group(Name=name, Protocol="HTTP", Port=30080, VpcId=vpc,
                                          TargetType=target_type)["TargetGroups"][0]["TargetGroupArn"]
    return str(arn), name


def worker(name: str, instance: str, ip: str) -> dict[str, Any]:
    return node(name, ip=ip, provider_id=f"aws:///{REGION}a/{instance}")


async def test_instance_targets_are_matched_by_the_instance_id_of_the_provider_id(
    aws_world: AwsWorld, aws_relay: AwsRelay,
) -> None:
    arn, name = target_group(aws_world, target_type="instance")
    first, second = aws_world.instances(2)
    aws_world.register(arn, first)
    nodes = [worker("green-1", first, "10.0.1.11"), worker("green-2", second, "10.0.1.12")]

    lines = await unattached([balancer(arn, aws_relay.url)], nodes)

    assert lines == (f"target group {name}: node green-2 ({second}) is not registered",)
    # The target type is read once for all nodes.
    assert aws_relay.calls == ["DescribeTargetGroups", "DescribeTargetHealth"]


async def test_every_registered_and_healthy_node_is_attached(aws_world: AwsWorld, moto_server: str) -> None:
    arn, _ = target_group(aws_world, target_type="instance")
    instances = aws_world.instances(3)
    aws_world.register(arn, *instances)

    nodes = [worker(f"green-{index}", instance, f"10.0.1.{index}") for index, instance in enumerate(instances)]
    assert await unattached([balancer(arn, moto_server)], nodes) == ()


async def test_a_registered_target_that_is_not_healthy_is_named_with_the_elbs_reason(
    aws_world: AwsWorld, moto_server: str,
) -> None:
    arn, name = target_group(aws_world, target_type="instance")
    (instance,) = aws_world.instances(1)
    aws_world.register(arn, instance)
    aws_world.ec2.stop_instances(InstanceIds=[instance])

    lines = await unattached([balancer(arn, moto_server)], [worker("green-1", instance, "10.0.1.11")])

    assert lines == (f"target group {name}: node green-1 ({instance}) is registered but unused "
                     "(Target.InvalidState: Target is in the stopped state)",)


async def test_ip_targets_are_matched_by_the_internal_ip(aws_world: AwsWorld, moto_server: str) -> None:
    arn, name = target_group(aws_world, target_type="ip")
    (instance,) = aws_world.instances(1)
    aws_world.register(arn, "10.0.1.11", instance)  # an instance id means nothing to an ip target group
    nodes = [worker("green-1", "i-0aaaaaaaaaaaaaaaa", "10.0.1.11"), worker("green-2", instance, "10.0.1.12")]

    lines = await unattached([balancer(arn, moto_server)], nodes)

    assert lines == (f"target group {name}: node green-2 (10.0.1.12) is not registered",)


@pytest.mark.parametrize(("provider_id", "said"), [
    (None, "node green-1 has no providerID"),
    ("vsphere://4207b6d5-6f6c-4b1c-9a1e-3f7a0c7f1c2d", "node green-1 providerID 'vsphere://"),
])
async def test_an_instance_target_group_needs_an_aws_provider_id(
    aws_world: AwsWorld, moto_server: str, provider_id: str | None, said: str,
) -> None:
    arn, name = target_group(aws_world, target_type="instance")

    lines = await unattached([balancer(arn, moto_server)], [node("green-1", ip="10.0.1.11", provider_id=provider_id)])

    assert len(lines) == 1
    assert lines[0].startswith(f"target group {name}: {said}")
    assert "aws:///<zone>/<instance-id>" in lines[0]


async def test_lines_follow_the_load_balancers_then_the_nodes(
    aws_world: AwsWorld, moto_server: str,
) -> None:
    instance_group, instance_name = target_group(aws_world, target_type="instance")
    ip_group, ip_name = target_group(aws_world, target_type="ip")
    first, second = aws_world.instances(2)
    nodes = [worker("green-1", first, "10.0.1.11"), worker("green-2", second, "10.0.1.12")]

    lines = await unattached([balancer(ip_group, moto_server), balancer(instance_group, moto_server)], nodes)

    assert lines == (
        f"target group {ip_name}: node green-1 (10.0.1.11) is not registered",
        f"target group {ip_name}: node green-2 (10.0.1.12) is not registered",
        f"target group {instance_name}: node green-1 ({first}) is not registered",
        f"target group {instance_name}: node green-2 ({second}) is not registered",
    )


async def test_a_target_group_that_cannot_hold_nodes_is_an_error(aws_world: AwsWorld, moto_server: str) -> None:
    arn = aws_world.elbv2.create_target_group(Name=f"fn-{uuid.uuid4().hex[:8]}",
                                              TargetType="lambda")["TargetGroups"][0]["TargetGroupArn"]

    with pytest.raises(LoadBalancerError, match="target type lambda; nodes are targets of an instance or ip"):
        await unattached([balancer(arn, moto_server)], [node("green-1", ip="10.0.1.11")])


async def test_a_missing_target_group_is_an_error_in_aws_words(aws_world: AwsWorld, moto_server: str) -> None:
    arn, name = target_group(aws_world, target_type="instance")
    aws_world.elbv2.delete_target_group(TargetGroupArn=arn)

    with pytest.raises(LoadBalancerError, match=rf"^target group {name}: .*TargetGroupNotFound"):
        await unattached([balancer(arn, moto_server)], [node("green-1", ip="10.0.1.11")])


async def test_an_unreachable_endpoint_is_an_error_naming_the_load_balancer(aws_world: AwsWorld) -> None:
    arn, name = target_group(aws_world, target_type="instance")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"

    with pytest.raises(LoadBalancerError, match=rf"^target group {name}: elbv2 DescribeTargetGroups failed: .*"
                                                r"Could not connect"):
        await unattached([balancer(arn, closed)], [node("green-1", ip="10.0.1.11")])
