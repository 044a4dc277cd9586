"""A simulated load-balancer controller: the workload cluster's Ready nodes become servers of an HAProxy backend.

On a real cluster something outside bluegreen attaches new worker nodes to the
load balancer in front of their NodePort: the AWS Load Balancer Controller
(TargetGroupBinding), a Cluster API infrastructure provider, a script. It does
so on its own time, which is why a NodePools rotation waits for it. This
controller plays that part against a real HAProxy started with node slots
(``sim.haproxy.HAProxyProcess(node_slots=N)``):

- every Ready Node of the emulator that has an InternalIP and is not being
  deleted is given a slot of the backend (``set server <backend>/<slot> addr
  <ip> port <port>``, then ``state ready``) once ``register_delay`` seconds
  have passed since this controller first saw it Ready; a slot that last held
  the same address is reused, otherwise any slot in maintenance;
- a slot whose address belongs to no such node any more (the Node was deleted
  or is terminating) is put back in maintenance; a node that turns NotReady
  keeps its slot, as a target stays registered when its health checks fail;
- while ``paused`` nothing is registered (removals go on), so a test can show a
  rotation waiting for attachment; clearing ``paused`` registers at once.

HAProxy is the memory: each pass reads ``show servers state`` and changes only
what differs, so a restarted controller (or HAProxy) converges again. When no
slot is free, the node waits and ``unplaced`` names it. This module belongs to
the test world: product code must not import it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from bluegreen.sim.controllers import WatchingController
from bluegreen.sim.kube import KubeEmulator
from bluegreen.traffic import haproxy_runtime

NODES = "v1/nodes"
_KEY = "nodes"  # one reconcile key: every pass looks at all nodes and all slots

logger = logging.getLogger(__name__)

_attached: dict[int, NodeLoadBalancer] = {}


def attach(emulator: KubeEmulator, *, runtime_api: str, backend: str = "nodes", port: int = 30080,
           register_delay: float = 0.0, timeout: float = 5.0) -> NodeLoadBalancer:
    """Keep ``emulator``'s Ready nodes registered in HAProxy's ``backend`` from now until it stops."""
    controller = _attached.get(id(emulator))
    if controller is None or controller.emulator is not emulator or controller.done:
        controller = NodeLoadBalancer(emulator, runtime_api=runtime_api, backend=backend, port=port,
                                      register_delay=register_delay, timeout=timeout)
        _attached[id(emulator)] = controller
        controller.start()
        emulator.on_stop(controller.stop)
    return controller


def _ready(node: Mapping[str, Any]) -> bool:
    return any(condition.get("type") == "Ready" and condition.get("status") == "True"
               for condition in (node.get("status") or {}).get("conditions") or ())


def _internal_ip(node: Mapping[str, Any]) -> str | None:
    return next((str(address["address"]) for address in (node.get("status") or {}).get("addresses") or ()
                 if address.get("type") == "InternalIP" and address.get("address")), None)


class NodeLoadBalancer(WatchingController[str]):
    """Registers one emulator's Ready nodes in an HAProxy backend of node slots."""

    def __init__(self, emulator: KubeEmulator, *, runtime_api: str, backend: str, port: int,
                 register_delay: float, timeout: float) -> None:
        super().__init__(emulator, name="node-lb", watched=(NODES,), registry=_attached)
        self.backend = backend
        self.port = port
        self.register_delay = register_delay
        self.unplaced: tuple[str, ...] = ()  # Ready nodes waiting for a free slot, by name
        self._api = haproxy_runtime.RuntimeAPI(runtime_api, timeout=timeout)
        self._paused = False
        self._ready_since: dict[str, float] = {}  # node uid -> when this controller first saw it Ready

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = value
        if not value and not self.done:
            self._workers.enqueue(_KEY)

    def keys_of(self, resource: str, event_type: str, obj: Mapping[str, Any]) -> Iterable[str]:
        return (_KEY,)

    async def _sync(self, _: str) -> None:
        now = time.monotonic()
        wanted: dict[str, str] = {}  # InternalIP -> node name, for nodes that belong in the backend
        due: dict[str, float] = {}  # InternalIP -> when it may be registered
        for node in self.emulator.list(NODES):
            ip = _internal_ip(node)
            uid = str(node["metadata"]["uid"])
            if ip is None or node["metadata"].get("deletionTimestamp") or not _ready(node):
                continue
            wanted[ip] = str(node["metadata"]["name"])
            due[ip] = self._ready_since.setdefault(uid, now) + self.register_delay
        live = {str(node["metadata"]["uid"]) for node in self.emulator.list(NODES)}
        self._ready_since = {uid: since for uid, since in self._ready_since.items() if uid in live}

        slots = await self._api.servers(self.backend)
        serving = {slot.address for slot in slots if slot.why_not_up() is None}
        for slot in slots:
            if slot.why_not_up() is None and slot.address not in wanted:
                await self._set(f"set server {self.backend}/{slot.name} state maint")
        unplaced = []
        later = [when - now for ip, when in due.items() if ip not in serving and when > now]
        if not self._paused:
            free = [slot for slot in slots if slot.why_not_up() is not None or slot.address not in wanted]
            for ip, name in wanted.items():
                if ip in serving or due[ip] > now:
                    continue
                if not free:
                    unplaced.append(name)
                    continue
                # The slot that held this address before, else one that held no wanted node's.
                slot = min(free, key=lambda slot: (slot.address != ip, slot.address in wanted))
                free.remove(slot)
                if slot.address != ip or slot.port != str(self.port):
                    await self._set(f"set server {self.backend}/{slot.name} addr {ip} port {self.port}")
                await self._set(f"set server {self.backend}/{slot.name} state ready")
        if unplaced:
            logger.warning("%s: no free slot in backend %s for %s", self._name, self.backend, ", ".join(unplaced))
        self.unplaced = tuple(unplaced)
        if later:
            self._workers.enqueue_later(_KEY, max(min(later), 0.001))

    async def _set(self, command: str) -> None:
        reply = await self._api.command(command)
        # `set server ... addr` reports what it changed, "... by 'stats socket command'"; other successes are silent.
        if reply.strip() and not reply.strip().endswith("by 'stats socket command'"):
            raise RuntimeError(f"HAProxy at {self._api.address} refused {command!r}: {reply.strip()}")
