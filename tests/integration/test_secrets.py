"""Credentials never leave the places they are kept: a whole upgrade with known secret values planted.

Every credential the operator handles in one run is given a value known to the test: the workload
clusters' kubeconfig tokens (made by the world), AWS keys (the default credential chain, as on a pod
with IRSA or static keys), a webhook router's bearer token and Prometheus' bearer token (each from a
Secret). After the run, the operator's log at ``--verbose`` (debug lines included), the ClusterUpgrade
(status and all), every Event in the cluster and ``/metrics`` are searched for each value.
"""

from __future__ import annotations

import base64
import json
import pathlib
import secrets
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import yaml

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import harness
from bluegreen.sim.weight_receiver import WeightReceiver
from tests.fixtures.aws_world import AwsWorld, aws_world, moto_server  # noqa: F401
from tests.fixtures.ports import free_port
from tests.integration.conftest import Operator, apply, phase_is, upgrade_manifest, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SECRETS = Resource("", "v1", "secrets")
HEALTH_CHECK = "11111111-2222-3333-4444-555555555555"
# Planted values: long and random, so a match anywhere is the value itself and nothing else.
AWS_KEY_ID = "AKIA" + secrets.token_hex(8).upper()
AWS_SECRET = secrets.token_urlsafe(30)
AWS_SESSION = secrets.token_urlsafe(40)
WEBHOOK_TOKEN = secrets.token_urlsafe(24)
PROMETHEUS_TOKEN = secrets.token_urlsafe(24)



class VerboseOperator(Operator):
    """The operator with debug logging, AWS keys in its environment and /metrics served."""

    metrics_port = free_port()

    def start(self) -> None:
        command = ["kopf", "run", "--standalone", "--all-namespaces", "--verbose", "-m", "bluegreen.handlers"]
        self.process = harness.start_operator(self.world.kubeconfig, log_path=self.log_path, command=command, env={
            "BLUEGREEN_RETRY_BASE_SECONDS": "0.2", "BLUEGREEN_METRICS_HOST": "127.0.0.1",
            "BLUEGREEN_METRICS_PORT": str(self.metrics_port),
            "AWS_ACCESS_KEY_ID": AWS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_SESSION_TOKEN": AWS_SESSION,
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        })


@pytest.fixture
def verbose_operator(world: harness.WorldProcess, tmp_path: pathlib.Path, moto_server: str) -> Iterator[Operator]:  # noqa: F811
    running = VerboseOperator(world, tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[WeightReceiver]:
    started = WeightReceiver(token=WEBHOOK_TOKEN)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def kubeconfig_tokens(management: KubeClient) -> set[str]:
    tokens: set[str] = set()
    for secret in await management.list(SECRETS, namespace="fleet"):
        if secret["metadata"]["name"].endswith("-kubeconfig"):
            config = yaml.safe_load(base64.b64decode(secret["data"]["value"]))
            tokens.update(user["user"]["token"] for user in config["users"] if user["user"].get("token"))
    return tokens


def secret_manifest(name: str, token: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "fleet"},
            "stringData": {"token": token}}


async def test_no_credential_shows_in_logs_status_events_or_metrics(
    world: harness.WorldProcess, verbose_operator: VerboseOperator, management: KubeClient,
    receiver: WeightReceiver, aws_world: AwsWorld, moto_server: str,  # noqa: F811
) -> None:
    assert world.info.get("prometheus"), "the world runs Prometheus: its query carries a bearer token"
    # Given an upgrade through HAProxy, Route 53, a webhook router and Prometheus analysis, each credential planted
    apply(world, secret_manifest("router-token", WEBHOOK_TOKEN))
    apply(world, secret_manifest("prometheus-token", PROMETHEUS_TOKEN))
    zone = aws_world.hosted_zone()
    aws_world.upsert(zone, {"Name": "app.example.com", "Type": "CNAME", "TTL": 1, "SetIdentifier": "prod-blue",
                            "Weight": 100, "ResourceRecords": [{"Value": "lb-blue.example.net"}]})
    manifest = upgrade_manifest(world)
    spec = manifest["spec"]
    spec["traffic"]["routers"] += [
        {"name": "dns", "route53": {
            "hostedZoneId": zone, "recordName": "app.example.com", "recordType": "CNAME", "ttl": 1,
            "blue": {"setIdentifier": "prod-blue", "value": "lb-blue.example.net"},
            "green": {"setIdentifier": "prod-green", "value": "lb-green.example.net", "healthCheckId": HEALTH_CHECK},
            "aws": {"endpointURL": moto_server}}},
        {"name": "lb", "webhook": {"url": receiver.url, "readURL": receiver.url,
                                   "bearerTokenSecretRef": {"name": "router-token"}}},
    ]
    queries = [metric["prometheus"] for metric in spec["analysis"]["metrics"] if "prometheus" in metric]
    assert queries
    for query in queries:
        query["secretRef"] = {"name": "prometheus-token"}
    spec["promotion"]["retainBlueFor"] = "1s"
    planted = {"AWS access key id": AWS_KEY_ID, "AWS secret key": AWS_SECRET, "AWS session token": AWS_SESSION,
               "webhook token": WEBHOOK_TOKEN, "Prometheus token": PROMETHEUS_TOKEN}
    # When it runs to the end
    apply(world, manifest)
    await wait_for(management, manifest, phase_is("Shifting"), timeout=60, operator=verbose_operator,
                   what="Shifting")
    planted.update({f"kubeconfig token {n}": token for n, token in enumerate(await kubeconfig_tokens(management))})
    assert sum(name.startswith("kubeconfig") for name in planted) >= 2, "blue's and green's kubeconfig tokens"
    body = await wait_for(management, manifest, phase_is("Completed", "Failed", "RolledBack"), timeout=150,
                          operator=verbose_operator, what="the upgrade to finish")
    assert body["status"]["phase"] == "Completed", body["status"]
    # (each credential was really used: the receiver saw the token, the queries ran, Route 53 was changed)
    assert receiver.posts and all(seen.authorization == f"Bearer {WEBHOOK_TOKEN}" for seen in receiver.requests)
    assert aws_world.record_weights(zone, "app.example.com") == {"prod-green": 100}
    # Then none of them is in the log, the resource, any Event or the metrics
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{verbose_operator.metrics_port}/metrics") as response:
        metrics = await response.text()
    events = harness.kubectl(world.kubeconfig, "get", "events", "--all-namespaces", "-o", "json")
    shown = {"operator log": verbose_operator.log(), "ClusterUpgrade": json.dumps(body), "Events": events,
             "/metrics": metrics}
    assert "DEBUG" in shown["operator log"] and "bluegreen_upgrade_phase" in metrics
    leaks = [f"{what} in the {where}" for where, text in shown.items() for what, value in planted.items()
             if value in text]
    assert leaks == []
