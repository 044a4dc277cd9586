"""TLS verification of the AWS routers' endpoint: on by default, a private CA only when the operator is given it.

Given moto behind a TLS endpoint whose certificate is self-signed (what a VPC
endpoint or an AWS-compatible API with a private CA looks like), when a router
calls it through ``aws.endpointURL``, then the call is refused for the
certificate, naming the endpoint, and nothing is read or written; and with the
CA given to the operator the way botocore takes one (``AWS_CA_BUNDLE``), the
same calls succeed. There is no switch that turns verification off.
"""

from __future__ import annotations

import pathlib
import ssl
import urllib.parse
from collections.abc import AsyncIterator

import pytest

from bluegreen.traffic import aws, route53
from tests.fixtures.aws_world import AwsWorld
from tests.fixtures.tls import self_signed  # noqa: F401
from tests.fixtures.tls_relay import tls_relay

pytestmark = pytest.mark.reliability

RECORD = "app.example.com"
# One read-only call of each AWS service a router uses (Route 53, and ELBv2 for ALB weights).
CALLS: dict[str, tuple[str, dict[str, str]]] = {
    "route53": ("list_hosted_zones", {}), "elbv2": ("describe_load_balancers", {}),
}


@pytest.fixture
async def tls_endpoint(moto_server: str, self_signed: ssl.SSLContext) -> AsyncIterator[str]:  # noqa: F811
    """moto's plain HTTP behind a TLS listener on 127.0.0.1 with the self-signed certificate; its https URL."""
    upstream = urllib.parse.urlsplit(moto_server)
    assert upstream.hostname is not None and upstream.port is not None
    async with tls_relay(upstream_host=upstream.hostname, upstream_port=upstream.port, context=self_signed) as port:
        yield f"https://127.0.0.1:{port}"


def ca_file(tmp_path: pathlib.Path) -> pathlib.Path:
    # Where tests.fixtures.tls.self_signed wrote the certificate (self-signed: it is its own CA).
    return tmp_path / "cert.pem"


@pytest.mark.parametrize("service", sorted(CALLS))
async def test_a_self_signed_endpoint_is_refused_until_its_ca_is_given(
        tls_endpoint: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, service: str) -> None:
    operation, params = CALLS[service]
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    refused = aws.AwsClient(service=service, region="us-east-1", endpoint_url=tls_endpoint, max_attempts=1, timeout=5)

    with pytest.raises(aws.AwsError) as raised:
        await refused.call(operation, **params)

    assert "certificate verify failed" in str(raised.value) and tls_endpoint in str(raised.value)

    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_file(tmp_path)))
    trusted = aws.AwsClient(service=service, region="us-east-1", endpoint_url=tls_endpoint, max_attempts=1, timeout=5)
    reply = await trusted.call(operation, **params)
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200


async def test_the_route53_router_reads_nothing_through_an_untrusted_endpoint_and_works_with_the_ca(
        tls_endpoint: str, aws_world: AwsWorld, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = aws_world.hosted_zone()
    aws_world.upsert(zone, *[
        {"Name": RECORD, "Type": "CNAME", "SetIdentifier": identifier, "Weight": weight, "TTL": 60,
         "ResourceRecords": [{"Value": f"{identifier}.example.net"}]}
        for identifier, weight in (("prod-blue", 100), ("prod-green", 0))
    ])

    def router() -> route53.Route53Router:
        return route53.Route53Router(
            name="dns", hosted_zone_id=zone, record_name=RECORD, record_type="CNAME", ttl=60,
            blue=route53.RecordSide(set_identifier="prod-blue", value="prod-blue.example.net"),
            green=route53.RecordSide(set_identifier="prod-green", value="prod-green.example.net"),
            endpoint_url=tls_endpoint, max_attempts=1, timeout=5,
        )

    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with pytest.raises(aws.AwsError, match="certificate verify failed"):
        await router().set_weights(blue=90, green=10)
    assert aws_world.record_weights(zone, RECORD) == {"prod-blue": 100, "prod-green": 0}, "nothing written"

    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_file(tmp_path)))
    trusted = router()
    await trusted.set_weights(blue=90, green=10)
    assert aws_world.record_weights(zone, RECORD) == {"prod-blue": 90, "prod-green": 10}
