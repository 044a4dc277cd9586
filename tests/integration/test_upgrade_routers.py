"""Whole upgrades through several routers at once, with the operator as a real process.

HAProxy carries the real requests; Route 53 and ELBv2 are moto's real HTTP
server, which the operator reaches through ``aws.endpointURL``. Given both
routers in one upgrade, each step is applied to both (in order when moving to
green, in reverse when moving back), verified on both, journaled for both, and
at retirement every router stops routing to blue.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from bluegreen.kube.client import KubeClient
from bluegreen.sim import harness
from tests.fixtures.aws_world import AwsWorld, aws_world, moto_server  # noqa: F401
from tests.integration.conftest import Operator, apply, phase_is, upgrade_manifest, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.routers, pytest.mark.without_prometheus]

# Green's record carries a health check (the spec requires one): moto stores the id without evaluating health.
HEALTH_CHECK = "11111111-2222-3333-4444-555555555555"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE":
           "/nonexistent"}


class AwsOperator(Operator):
    def start(self) -> None:
        self.process = harness.start_operator(self.world.kubeconfig, log_path=self.log_path,
                                              env={"BLUEGREEN_RETRY_BASE_SECONDS": "0.2", **AWS_ENV})


@pytest.fixture
def aws_operator(world: harness.WorldProcess, tmp_path: pathlib.Path, moto_server: str) -> Iterator[Operator]:  # noqa: F811
    running = AwsOperator(world, tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def journal(body: dict[str, Any], router: str) -> list[int]:
    return [entry["weights"]["green"] for entry in body["status"]["journal"]
            if entry["target"] == router and entry["action"] == "setWeights"]


async def test_route53_and_haproxy_together(
    world: harness.WorldProcess, aws_operator: Operator, management: KubeClient,
    aws_world: AwsWorld, moto_server: str,  # noqa: F811
) -> None:
    # Given weighted records for app.example.com, all on blue, and HAProxy in front of both clusters
    zone = aws_world.hosted_zone()
    record = {"Name": "app.example.com", "Type": "CNAME", "TTL": 1}
    aws_world.upsert(zone, {**record, "SetIdentifier": "prod-blue", "Weight": 100,
                            "ResourceRecords": [{"Value": "lb-blue.example.net"}]})
    manifest = upgrade_manifest(world)
    manifest["spec"]["traffic"]["routers"].append({"name": "dns", "route53": {
        "hostedZoneId": zone, "recordName": "app.example.com", "recordType": "CNAME", "ttl": 1,
        "blue": {"setIdentifier": "prod-blue", "value": "lb-blue.example.net"},
        "green": {"setIdentifier": "prod-green", "value": "lb-green.example.net", "healthCheckId": HEALTH_CHECK},
        "aws": {"endpointURL": moto_server},
    }})
    manifest["spec"]["traffic"]["steps"] = [{"setWeight": 10}, {"pause": {"duration": "1s"}}, {"setWeight": 50},
                                            {"setWeight": 100}]
    manifest["spec"]["promotion"]["retainBlueFor"] = "1s"
    # When the upgrade runs
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Completed", "Failed", "RolledBack"), timeout=120,
                          operator=aws_operator, what="the upgrade through HAProxy and Route 53")
    # Then both routers went through every weight, and Route 53 no longer answers with blue
    assert body["status"]["phase"] == "Completed", body["status"]
    assert journal(body, "edge") == [10, 50, 100]
    assert journal(body, "dns") == [10, 50, 100]
    dns_changes = [e for e in body["status"]["journal"] if e["target"] == "dns" and e["action"] == "setWeights"]
    assert all(e.get("changeId") for e in dns_changes), "each Route 53 change is journaled with its change id"
    finalized = [e["target"] for e in body["status"]["journal"] if e["action"] == "finalize"]
    assert finalized == ["dns", "edge"], "finalized in reverse order"
    assert aws_world.record_weights(zone, "app.example.com") == {"prod-green": 100}
    assert (await world.control("GET", "/traffic"))["failed"] == 0


async def test_elbv2_target_registration_one_target_at_a_time(
    world: harness.WorldProcess, aws_operator: Operator, management: KubeClient,
    aws_world: AwsWorld, moto_server: str,  # noqa: F811
) -> None:
    # Given one target group with blue's three ingress instances registered (TheFork's way)
    alb = aws_world.alb()
    blue_targets, green_targets = aws_world.instances(3), aws_world.instances(3)
    group = alb.blue_target_group_arn
    aws_world.register(group, *blue_targets)
    manifest = upgrade_manifest(world)
    manifest["spec"]["traffic"]["routers"].append({"name": "alb", "elbv2": {
        "mode": "TargetRegistration", "targetGroupARN": group,
        "blueTargets": [{"id": target} for target in blue_targets],
        "greenTargets": [{"id": target} for target in green_targets],
        "aws": {"region": "eu-west-1", "endpointURL": moto_server},
    }})
    # Only shares one target move at a time can reach: 3 and 3 give 25, 33, 50, 66, 75, 100 %
    manifest["spec"]["traffic"]["steps"] = [{"setWeight": 25}, {"setWeight": 50}, {"setWeight": 75},
                                            {"setWeight": 100}]
    manifest["spec"]["promotion"]["retainBlueFor"] = "1s"
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Completed", "Failed", "RolledBack"), timeout=120,
                          operator=aws_operator, what="the upgrade through target registration")
    assert body["status"]["phase"] == "Completed", body["status"]
    assert journal(body, "alb") == [25, 50, 75, 100]
    registered = aws_world.target_health(group)
    assert set(registered) == set(green_targets), f"only green's targets remain: {registered}"
    assert (await world.control("GET", "/traffic"))["failed"] == 0


async def test_after_a_rollback_green_is_retired_and_routers_restored_or_removed_as_the_spec_says(
    world: harness.WorldProcess, aws_operator: Operator, management: KubeClient,
    aws_world: AwsWorld, moto_server: str,  # noqa: F811
) -> None:
    # Given blue's weighted record as a person left it (TTL 300), a Route 53 router that restores
    # what it took over, and HAProxy that removes the retired side
    zone = aws_world.hosted_zone()
    original = {"Name": "app.example.com", "Type": "CNAME", "TTL": 300, "SetIdentifier": "prod-blue", "Weight": 100,
                "ResourceRecords": [{"Value": "lb-blue.example.net"}]}
    aws_world.upsert(zone, original)
    manifest = upgrade_manifest(world)
    manifest["spec"]["traffic"]["routers"].append({"name": "dns", "onFinalize": "Restore", "route53": {
        "hostedZoneId": zone, "recordName": "app.example.com", "recordType": "CNAME", "ttl": 1,
        "blue": {"setIdentifier": "prod-blue", "value": "lb-blue.example.net"},
        "green": {"setIdentifier": "prod-green", "value": "lb-green.example.net", "healthCheckId": HEALTH_CHECK},
        "aws": {"endpointURL": moto_server},
    }})
    manifest["spec"]["traffic"]["steps"] = [{"setWeight": 10}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    manifest["spec"]["rollback"] = {"retainGreenFor": "2s"}
    apply(world, manifest)
    await wait_for(management, manifest, phase_is("Paused"), timeout=120, operator=aws_operator,
                   what="the human pause at 50 %")
    assert aws_world.record_weights(zone, "app.example.com") == {"prod-blue": 50, "prod-green": 50}
    # When a person aborts, and green's inspection window passes
    harness.kubectl(world.kubeconfig, "annotate", "clusterupgrade", "demo", "-n", "fleet", "bluegreen.io/abort=true")
    body = await wait_for(management, manifest, lambda b: bool((b.get("status") or {}).get("greenRetired")),
                          timeout=120, operator=aws_operator, what="green retired after the inspection window")
    # Then the DNS is exactly as it was before the upgrade (green's record gone, blue's TTL back)...
    assert body["status"]["phase"] == "RolledBack"
    records = aws_world.records(zone, "app.example.com")
    assert list(records) == ["prod-blue"], records
    assert records["prod-blue"] == {**original, "Name": "app.example.com."}, "as listed: the name fully qualified"
    # ...HAProxy no longer sends anything to green, finalized after DNS (reverse order)...
    finalized = [(e["target"], e["detail"]) for e in body["status"]["journal"] if e["action"] == "finalize"]
    assert [target for target, _ in finalized] == ["dns", "edge"]
    assert "prod-green" in finalized[1][1] and "maint" in finalized[1][1], finalized
    # ...and green's cluster was deleted, blue's kept serving every request
    names = {c["name"] for c in (await world.control("GET", "/clusters"))["clusters"]}
    assert "prod-green" not in names and "prod-blue" in names
    assert (await world.control("GET", "/traffic"))["failed"] == 0
