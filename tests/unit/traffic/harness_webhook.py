"""Contract-suite harness for the webhook router (see test_router_contract.py), against a local receiver.

The router is built from a spec entry through the registry, with a readURL
(without one it cannot tell that nothing needs changing) and a bearer token
from a Secret on the emulated management cluster. ``effective``,
``snapshot`` and ``writes`` are what the receiver holds and received; a side
is ``removed`` once the receiver was told it is retired (what it does with
its pool is its own); ``fail`` makes it answer 503 to everything, which the
router retries and then reports.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator

import pytest

from bluegreen.api import spec
from bluegreen.sim.weight_receiver import WeightReceiver
from bluegreen.traffic import base, registry
from tests.fixtures.routing_world import UPGRADE_NAMESPACE, RoutingWorld

TOKEN = "contract-token"


@dataclasses.dataclass
class WebhookHarness:
    router: base.Router
    receiver: WeightReceiver

    async def effective(self) -> tuple[int, int]:
        return self.receiver.blue, self.receiver.green

    async def snapshot(self) -> tuple[int, int]:
        return self.receiver.blue, self.receiver.green

    async def removed(self, side: str) -> bool:
        return self.receiver.finalized and self.receiver.posts[-1].get("retired") == side

    def writes(self) -> int:
        return len(self.receiver.posts)

    async def fail(self) -> None:
        self.receiver.unavailable = True

    async def recover(self) -> None:
        self.receiver.unavailable = False


@pytest.fixture
async def webhook_harness(routing: RoutingWorld) -> AsyncIterator[WebhookHarness]:
    routing.management.create("v1/secrets", {"metadata": {"namespace": UPGRADE_NAMESPACE, "name": "lb-token"},
                                             "data": {"token": base64.b64encode(TOKEN.encode()).decode()}})
    receiver = WeightReceiver(token=TOKEN)
    await receiver.start()
    entry = spec.Router.model_validate({"name": "f5", "webhook": {
        "url": receiver.url, "readURL": receiver.url, "timeout": "5s", "retries": 1,
        "bearerTokenSecretRef": {"name": "lb-token"}}})
    yield WebhookHarness(router=registry.build_router(entry, context=routing.context), receiver=receiver)
    await receiver.stop()
