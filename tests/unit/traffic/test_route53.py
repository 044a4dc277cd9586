"""The Route 53 router against moto's server over HTTP, and the limits AWS enforces that moto does not."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from bluegreen.api import spec
from bluegreen.traffic import base, registry, route53
from tests.fixtures.aws_world import AwsRelay, AwsWorld

pytestmark = pytest.mark.routers

NAME = "app.example.com"
BLUE = route53.RecordSide(set_identifier="prod-blue", value="lb-blue.example.net")
GREEN = route53.RecordSide(set_identifier="prod-green", value="lb-green.example.net")


def record(identifier: str, weight: int, value: str, *, ttl: int = 60, type_: str = "CNAME") -> dict[str, Any]:
    return {"Name": NAME, "Type": type_, "SetIdentifier": identifier, "Weight": weight, "TTL": ttl,
            "ResourceRecords": [{"Value": value}]}


def make_router(url: str, zone: str, *, blue: route53.RecordSide = BLUE, green: route53.RecordSide = GREEN,
                ttl: int = 60, record_type: str = "CNAME") -> route53.Route53Router:
    return route53.Route53Router(
        name="dns", hosted_zone_id=zone, record_name=NAME, record_type=record_type, ttl=ttl, blue=blue, green=green,
        endpoint_url=url, poll_interval=0.5, max_attempts=1, timeout=5,
    )


@pytest.fixture
def zone(aws_world: AwsWorld) -> str:
    """A zone where blue's weighted record takes everything and green's exists at 0."""
    zone = aws_world.hosted_zone()
    aws_world.upsert(zone, record("prod-blue", 100, "lb-blue.example.net"),
                     record("prod-green", 0, "lb-green.example.net"))
    return zone


async def test_both_records_change_in_one_batch_and_read_back(
    aws_world: AwsWorld, aws_relay: AwsRelay, zone: str
) -> None:
    router = make_router(aws_relay.url, zone)

    change = await router.set_weights(blue=90, green=10)

    assert change.changed and change.change_id
    assert "blue 100->90" in change.detail and "green 0->10" in change.detail
    assert aws_relay.writes("ChangeResourceRecordSets") == ["ChangeResourceRecordSets"]
    assert aws_world.record_weights(zone, NAME) == {"prod-blue": 90, "prod-green": 10}
    assert await router.verify() == base.RouterWeights(blue=90, green=10)


async def test_same_weights_again_write_nothing(aws_relay: AwsRelay, zone: str) -> None:
    router = make_router(aws_relay.url, zone)
    await router.set_weights(blue=50, green=50)

    change = await router.set_weights(blue=50, green=50)

    assert not change.changed and change.change_id is None
    assert len(aws_relay.writes("ChangeResourceRecordSets")) == 1


async def test_missing_records_are_created_with_value_and_ttl(aws_world: AwsWorld, aws_relay: AwsRelay) -> None:
    zone = aws_world.hosted_zone()
    router = make_router(aws_relay.url, zone, ttl=30)

    assert (await router.set_weights(blue=100, green=0)).changed
    # Weight 0 and no record route alike: green's record waits for its first share.
    assert set(aws_world.records(zone, NAME)) == {"prod-blue"}
    assert await router.verify() == base.RouterWeights(blue=100, green=0)

    assert (await router.set_weights(blue=90, green=10)).changed
    records = aws_world.records(zone, NAME)
    assert records["prod-green"]["ResourceRecords"] == [{"Value": "lb-green.example.net"}]
    assert (records["prod-blue"]["TTL"], records["prod-green"]["TTL"]) == (30, 30)
    assert await router.verify() == base.RouterWeights(blue=90, green=10)


async def test_a_changed_value_or_ttl_is_put_back_even_at_the_same_weights(
    aws_world: AwsWorld, aws_relay: AwsRelay, zone: str
) -> None:
    aws_world.upsert(zone, record("prod-green", 0, "somewhere-else.example.net", ttl=300))
    router = make_router(aws_relay.url, zone)

    assert (await router.set_weights(blue=100, green=0)).changed

    green = aws_world.records(zone, NAME)["prod-green"]
    assert (green["TTL"], green["ResourceRecords"]) == (60, [{"Value": "lb-green.example.net"}])


async def test_alias_targets_and_health_checks(aws_world: AwsWorld, aws_relay: AwsRelay) -> None:
    zone = aws_world.hosted_zone()
    blue = route53.RecordSide(set_identifier="blue", alias_hosted_zone_id="Z32O12XQLNTSW2",
                              alias_dns_name="blue-lb.eu-west-1.elb.amazonaws.com", evaluate_target_health=True,
                              health_check_id="hc-blue")
    green = route53.RecordSide(set_identifier="green", alias_hosted_zone_id="Z32O12XQLNTSW2",
                               alias_dns_name="green-lb.eu-west-1.elb.amazonaws.com")
    router = make_router(aws_relay.url, zone, blue=blue, green=green, record_type="A")

    await router.set_weights(blue=70, green=30)

    records = aws_world.records(zone, NAME, "A")
    assert records["blue"]["AliasTarget"]["DNSName"].rstrip(".") == "blue-lb.eu-west-1.elb.amazonaws.com"
    assert records["blue"]["AliasTarget"]["EvaluateTargetHealth"] is True
    assert records["blue"]["HealthCheckId"] == "hc-blue"
    assert "TTL" not in records["green"] and "HealthCheckId" not in records["green"]
    assert await router.verify() == base.RouterWeights(blue=70, green=30)
    assert not (await router.set_weights(blue=70, green=30)).changed


async def test_verify_waits_while_the_change_is_pending(aws_relay: AwsRelay, zone: str) -> None:
    router = make_router(aws_relay.url, zone)
    aws_relay.changes_pending = True
    change = await router.set_weights(blue=80, green=20)

    with pytest.raises(base.RouterPending, match=f"{change.change_id}.*PENDING") as pending:
        await router.verify()
    assert pending.value.retry_after == 0.5
    assert aws_relay.calls.count("GetChange") == 1

    aws_relay.changes_pending = False
    assert await router.verify() == base.RouterWeights(blue=80, green=20)
    # INSYNC is remembered: no more GetChange.
    await router.verify()
    assert aws_relay.calls.count("GetChange") == 2


async def test_all_zero_reads_back_as_an_equal_split(aws_world: AwsWorld, aws_relay: AwsRelay, zone: str) -> None:
    aws_world.upsert(zone, record("prod-blue", 0, "lb-blue.example.net"))

    assert await make_router(aws_relay.url, zone).verify() == base.RouterWeights(blue=50, green=50)


async def test_other_weighted_records_that_take_a_share_are_an_error(
    aws_world: AwsWorld, aws_relay: AwsRelay, zone: str
) -> None:
    aws_world.upsert(zone, record("canary", 5, "canary.example.net"))
    router = make_router(aws_relay.url, zone)

    with pytest.raises(base.RouterError, match=r"other weighted records.*'canary' \(weight 5\)"):
        await router.verify()

    aws_world.upsert(zone, record("canary", 0, "canary.example.net"))
    assert await router.verify() == base.RouterWeights(blue=100, green=0)


async def test_a_simple_record_of_the_same_name_names_the_fix(aws_world: AwsWorld, aws_relay: AwsRelay) -> None:
    zone = aws_world.hosted_zone()
    aws_world.upsert(zone, {"Name": NAME, "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": "lb.example"}]})

    with pytest.raises(base.RouterError, match=r"simple record.*replace it with blue's weighted record"):
        await make_router(aws_relay.url, zone).set_weights(blue=100, green=0)
    assert not aws_relay.writes("ChangeResourceRecordSets")


async def test_records_of_other_names_and_types_are_ignored(
    aws_world: AwsWorld, aws_relay: AwsRelay, zone: str
) -> None:
    aws_world.upsert(zone, {"Name": "app.example.com", "Type": "TXT", "TTL": 60, "ResourceRecords": [{"Value": '"x"'}]},
                     {"Name": "api.example.com", "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": "x"}]})

    assert await make_router(aws_relay.url, zone).verify() == base.RouterWeights(blue=100, green=0)


async def test_finalize_deletes_blues_record_once(aws_world: AwsWorld, aws_relay: AwsRelay, zone: str) -> None:
    router = make_router(aws_relay.url, zone)
    await router.set_weights(blue=0, green=100)

    first = await router.finalize(retired="blue", mode="Remove", original=None)
    second = await router.finalize(retired="blue", mode="Remove", original=None)

    assert "deleted blue's record 'prod-blue'" in first
    assert "already deleted" in second
    assert set(aws_world.records(zone, NAME)) == {"prod-green"}
    assert len(aws_relay.writes("ChangeResourceRecordSets")) == 2  # the weights, then one DELETE
    assert await router.verify() == base.RouterWeights(blue=0, green=100)
    # Asking again for green 100 does not bring blue's record back...
    assert not (await router.set_weights(blue=0, green=100)).changed
    assert set(aws_world.records(zone, NAME)) == {"prod-green"}
    # ...a rollback does.
    await router.set_weights(blue=100, green=0)
    assert aws_world.record_weights(zone, NAME) == {"prod-blue": 100, "prod-green": 0}


@pytest.mark.parametrize("weights", [(100, 0), (50, 50)])
async def test_finalize_refuses_while_blue_takes_traffic(
    aws_world: AwsWorld, aws_relay: AwsRelay, zone: str, weights: tuple[int, int]
) -> None:
    router = make_router(aws_relay.url, zone)
    await router.set_weights(blue=weights[0], green=weights[1])

    with pytest.raises(base.RouterError, match=f"refusing to retire blue from {NAME} CNAME in zone .*: blue still "
                                               f"takes traffic \\(blue 'prod-blue' weight {weights[0]}, green "
                                               f"'prod-green' weight {weights[1]}\\); it is retired only once green "
                                               "holds 100 %"):
        await router.finalize(retired="blue", mode="Remove", original=None)
    assert set(aws_world.records(zone, NAME)) == {"prod-blue", "prod-green"}


async def test_both_weights_0_is_an_equal_split_so_neither_record_is_deleted(
    aws_world: AwsWorld, aws_relay: AwsRelay, zone: str
) -> None:
    aws_world.upsert(zone, record("prod-blue", 0, "lb-blue.example.net"))

    with pytest.raises(base.RouterError, match="green still takes traffic"):
        await make_router(aws_relay.url, zone).finalize(retired="green", mode="Remove", original=None)
    assert set(aws_world.records(zone, NAME)) == {"prod-blue", "prod-green"}


async def test_restore_after_a_rollback_deletes_a_green_record_that_was_not_there(
    aws_world: AwsWorld, aws_relay: AwsRelay
) -> None:
    zone = aws_world.hosted_zone()
    aws_world.upsert(zone, record("prod-blue", 7, "lb-blue.example.net", ttl=300))
    router = make_router(aws_relay.url, zone)
    before = aws_world.records(zone, NAME)
    saved = await router.save()
    assert saved == {"blue": before["prod-blue"], "green": None}

    await router.set_weights(blue=50, green=50)  # creates green's record, rewrites blue's TTL
    await router.set_weights(blue=100, green=0)
    line = await router.finalize(retired="green", mode="Restore", original=saved)

    assert "restored as saved (blue 'prod-blue' weight 7, green 'prod-green' absent)" in line
    assert aws_world.records(zone, NAME) == before
    assert aws_relay.writes("ChangeResourceRecordSets") == ["ChangeResourceRecordSets"] * 3  # one batch for both
    assert await router.verify() == base.RouterWeights(blue=100, green=0)


async def test_restore_refuses_an_original_that_sends_green_traffic(
    aws_world: AwsWorld, aws_relay: AwsRelay, zone: str
) -> None:
    aws_world.upsert(zone, record("prod-green", 5, "lb-green.example.net"))
    router = make_router(aws_relay.url, zone)
    saved = await router.save()
    await router.set_weights(blue=100, green=0)

    with pytest.raises(base.RouterError, match=r"refusing to restore .* \(blue 'prod-blue' weight 100, green "
                                               r"'prod-green' weight 5\): that would send traffic to green"):
        await router.finalize(retired="green", mode="Restore", original=saved)
    assert aws_world.record_weights(zone, NAME) == {"prod-blue": 100, "prod-green": 0}


async def test_a_deleted_zone_is_reported_in_aws_words(aws_world: AwsWorld, aws_relay: AwsRelay) -> None:
    router = make_router(aws_relay.url, "/hostedzone/ZNOSUCHZONE")

    with pytest.raises(base.RouterError, match="NoSuchHostedZone"):
        await router.set_weights(blue=90, green=10)
    with pytest.raises(base.RouterError, match="NoSuchHostedZone"):
        await router.verify()


async def test_an_unreachable_endpoint_is_a_router_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    router = make_router(f"http://127.0.0.1:{port}", "/hostedzone/Z1")

    with pytest.raises(base.RouterError, match=f"route53 ListResourceRecordSets failed:.*127.0.0.1:{port}"):
        await router.verify()


# --- What AWS validates and moto does not --------------------------------------------------------


@pytest.mark.parametrize("blue, green", [(256, 0), (-1, 5), (0, 300)])
def test_weights_outside_0_255_are_refused(blue: int, green: int) -> None:
    with pytest.raises(ValueError, match="0-255"):
        route53.check_weight_pair(blue=blue, green=green)


def test_an_all_zero_pair_is_refused_as_an_equal_split() -> None:
    with pytest.raises(ValueError, match="EQUAL split"):
        route53.check_weight_pair(blue=0, green=0)
    route53.check_weight_pair(blue=0, green=255)
    route53.check_weight_pair(blue=255, green=0)


@pytest.mark.parametrize("length, accepted", [(0, False), (1, True), (128, True), (129, False)])
def test_set_identifier_length(length: int, accepted: bool) -> None:
    side = route53.RecordSide(set_identifier="x" * length, value="lb.example")
    build = lambda: make_router("http://127.0.0.1:1", "Z1", blue=side)  # noqa: E731
    if accepted:
        build()
    else:
        with pytest.raises(ValueError, match="setIdentifier must be 1-128 characters"):
            build()


async def test_weights_must_be_percent_summing_to_100() -> None:
    router = make_router("http://127.0.0.1:1", "Z1")
    for blue, green in [(90, 20), (-10, 110), (0, 0)]:
        with pytest.raises(ValueError, match="summing to 100"):
            await router.set_weights(blue=blue, green=green)


def test_a_record_needs_a_value_or_an_alias_target() -> None:
    with pytest.raises(ValueError, match="exactly one of a value and an alias target"):
        route53.RecordSide(set_identifier="blue")
    with pytest.raises(ValueError, match="needs its hostedZoneId"):
        route53.RecordSide(set_identifier="blue", alias_dns_name="lb.example", alias_hosted_zone_id="")


def test_alias_targets_from_the_spec_are_checked() -> None:
    def record_spec(alias: dict[str, Any]) -> spec.Route53Record:
        return spec.Route53Record.model_validate({"setIdentifier": "blue", "aliasTarget": alias})

    side = route53.RecordSide.from_spec(record_spec({"hostedZoneId": "Z1", "dnsName": "lb.example"}), side="blue")
    assert (side.alias_hosted_zone_id, side.alias_dns_name, side.evaluate_target_health) == ("Z1", "lb.example", False)
    with pytest.raises(ValueError, match=r"route53.blue.aliasTarget has unknown fields DNSName"):
        route53.RecordSide.from_spec(record_spec({"hostedZoneId": "Z1", "DNSName": "lb"}), side="blue")
    with pytest.raises(ValueError, match="needs hostedZoneId and dnsName"):
        route53.RecordSide.from_spec(record_spec({"hostedZoneId": "Z1"}), side="blue")
    with pytest.raises(ValueError, match="evaluateTargetHealth must be true or false"):
        route53.RecordSide.from_spec(
            record_spec({"hostedZoneId": "Z1", "dnsName": "lb", "evaluateTargetHealth": "yes"}), side="blue")


@pytest.mark.parametrize(
    "text, name", [("App.Example.com.", "app.example.com"), ("\\052.example.com", "*.example.com")]
)
def test_dns_names_compare_as_route53_does(text: str, name: str) -> None:
    assert route53.dns_name(text) == name


async def test_the_spec_reaches_the_router_through_the_registry(aws_world: AwsWorld, aws_relay: AwsRelay,
                                                                zone: str) -> None:
    entry = spec.Router.model_validate({"name": "dns", "route53": {
        "hostedZoneId": zone, "recordName": NAME, "ttl": 120,
        "blue": {"setIdentifier": "prod-blue", "value": "lb-blue.example.net"},
        "green": {"setIdentifier": "prod-green", "value": "lb-green.example.net", "healthCheckId": "hc-green"},
        "aws": {"endpointURL": aws_relay.url}}})
    router = registry.build_router(entry)

    await router.set_weights(blue=60, green=40)

    green = aws_world.records(zone, NAME)["prod-green"]
    assert (green["Weight"], green["TTL"], green["HealthCheckId"]) == (40, 120, "hc-green")
    assert aws_relay.writes("ChangeResourceRecordSets") == ["ChangeResourceRecordSets"]
