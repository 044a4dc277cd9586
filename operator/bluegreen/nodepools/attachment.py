"""Are the new worker nodes attached to the load balancers in front of the cluster?

A NodePools rotation must not move a single pod before every new node takes
traffic from the load balancers the spec names (``spec.nodePools.loadBalancers``):
an old node drained while the balancer still knows only old nodes sends requests
to nodes that are going away. Whoever registers nodes (the AWS Load Balancer
Controller, a CAPI infrastructure provider, a script) does so on its own time;
this module only looks, it never registers anything.

What "attached" means, per kind:

- **HAProxy** (``show servers state <backend>`` over the runtime API): some
  server of the backend has the node's InternalIP as its address, is UP
  (``srv_op_state`` 2) and is neither in maintenance nor draining. The port is
  not compared: it is the NodePort's, the same on every node.
- **ELBv2** (``DescribeTargetGroups`` once per call for the target type, then
  ``DescribeTargetHealth``): an ``instance`` target group knows a node by the
  instance id at the end of its ``spec.providerID`` (``aws:///<zone>/<id>``), an
  ``ip`` target group by its InternalIP; the node is attached when one of its
  registrations is ``healthy``.

What a load balancer does not know yet is returned as lines, one per node and
load balancer, in the spec's order then the nodes' order: the caller waits
(and shows them) until there are none. A load balancer that cannot be asked
(refused connection, timeout, AWS error, an answer in no known format, a
target group that cannot hold nodes) is a :class:`LoadBalancerError` naming it:
that is a failure of the world, for the caller's retry with backoff, not a
node to wait for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from bluegreen.api import durations, spec
from bluegreen.traffic import aws, base, haproxy_runtime

# Node ids an instance target group can hold; the rest (lambda, alb) are no nodes.
_NODE_TARGET_TYPES = ("instance", "ip")

# One botocore client per (region, endpoint), kept between calls: building one is slow and blocking.
_aws_clients: dict[tuple[str | None, str | None], aws.AwsClient] = {}


class LoadBalancerError(Exception):
    """A load balancer could not be asked whether it knows the nodes; the message names it and the cause."""

    def __init__(self, message: str, *, load_balancer: str) -> None:
        super().__init__(message)
        self.load_balancer = load_balancer


@dataclasses.dataclass(frozen=True)
class _Node:
    name: str
    internal_ip: str | None
    provider_id: str | None

    @classmethod
    def of(cls, node: Mapping[str, Any]) -> _Node:
        addresses = (node.get("status") or {}).get("addresses") or ()
        internal = next((str(address["address"]) for address in addresses
                         if address.get("type") == "InternalIP" and address.get("address")), None)
        provider_id = (node.get("spec") or {}).get("providerID")
        return cls(name=str((node.get("metadata") or {}).get("name")), internal_ip=internal,
                   provider_id=str(provider_id) if provider_id else None)

    def described(self, key: str) -> str:
        return f"node {self.name} ({key})"


async def unattached(load_balancers: Sequence[spec.NodeLoadBalancer],
                     nodes: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """One line per node that a load balancer does not know yet (load balancer, node, why); () when none.

    ``nodes`` are Node objects of the workload cluster (``status.addresses``, ``spec.providerID``).
    Raises :class:`LoadBalancerError` when a load balancer cannot be asked.
    """
    found = [_Node.of(node) for node in nodes]
    lines: list[str] = []
    for balancer in load_balancers:
        try:
            if balancer.haproxy is not None:
                lines.extend(await _haproxy(balancer.haproxy, name=balancer.name, nodes=found))
            else:
                assert balancer.elbv2 is not None  # the model holds exactly one
                lines.extend(await _elbv2(balancer.elbv2, name=balancer.name, nodes=found))
        except (base.RouterError, ValueError) as exc:
            raise LoadBalancerError(f"{balancer.name}: {exc}", load_balancer=balancer.name) from None
    return tuple(lines)


# --- HAProxy ----------------------------------------------------------------------------------


async def _haproxy(config: spec.NodeHAProxy, *, name: str, nodes: list[_Node]) -> list[str]:
    api = haproxy_runtime.RuntimeAPI(config.runtime_api,
                                     timeout=durations.parse_duration(config.timeout).total_seconds())
    known = await api.servers(config.backend)
    lines = []
    for node in nodes:
        if node.internal_ip is None:
            lines.append(f"{name}: node {node.name} has no InternalIP in status.addresses, "
                         "which HAProxy servers are matched by")
            continue
        matching = [server for server in known if server.address == node.internal_ip]
        if any(server.why_not_up() is None for server in matching):
            continue
        if not matching:
            lines.append(f"{name}: {node.described(node.internal_ip)} is not a server of backend {config.backend}")
            continue
        states = "; ".join(f"server {config.backend}/{server.name} is {server.why_not_up()}"
                           for server in matching)
        lines.append(f"{name}: {node.described(node.internal_ip)}: {states}")
    return lines


# --- ELBv2 ------------------------------------------------------------------------------------


def instance_id(provider_id: str) -> str | None:
    """The EC2 instance id of an AWS providerID (``aws:///us-west-2a/i-0abc...``), or None if it is not one."""
    if not provider_id.startswith("aws://"):
        return None
    last = provider_id.rstrip("/").rsplit("/", 1)[-1]
    return last if last.startswith("i-") else None


def _client(access: spec.AwsAccess) -> aws.AwsClient:
    key = (access.region, access.endpoint_url)
    client = _aws_clients.get(key)
    if client is None:
        client = _aws_clients[key] = aws.AwsClient(service="elbv2", region=access.region,
                                                   endpoint_url=access.endpoint_url)
    return client


async def _elbv2(config: spec.NodeTargetGroup, *, name: str, nodes: list[_Node]) -> list[str]:
    client = _client(config.aws)
    arn = config.target_group_arn
    groups = (await client.call("describe_target_groups", TargetGroupArns=[arn])).get("TargetGroups") or []
    if not groups:
        raise base.RouterError(f"ELBv2 has no target group {arn}")
    target_type = str(groups[0].get("TargetType") or "instance")
    if target_type not in _NODE_TARGET_TYPES:
        raise base.RouterError(
            f"target group {arn} has target type {target_type}; nodes are targets of an instance or ip target group"
        )
    reply = await client.call("describe_target_health", TargetGroupArn=arn)
    health: dict[str, list[tuple[str, str]]] = {}
    for description in reply.get("TargetHealthDescriptions") or ():
        target_id = str((description.get("Target") or {}).get("Id"))
        target_health = description.get("TargetHealth") or {}
        reason = ": ".join(str(target_health[part]) for part in ("Reason", "Description") if target_health.get(part))
        health.setdefault(target_id, []).append((str(target_health.get("State", "unavailable")), reason))
    lines = []
    for node in nodes:
        if target_type == "ip":
            key = node.internal_ip
            if key is None:
                lines.append(f"{name}: node {node.name} has no InternalIP in status.addresses, "
                             "which an ip target group's targets are")
                continue
        else:
            key = instance_id(node.provider_id) if node.provider_id else None
            if key is None:
                what = f"providerID {node.provider_id!r} is not" if node.provider_id else "has no providerID, nor"
                lines.append(f"{name}: node {node.name} {what} an EC2 instance (aws:///<zone>/<instance-id>), "
                             "which an instance target group's targets are")
                continue
        states = health.get(key, [])
        if any(state == "healthy" for state, _ in states):
            continue
        if not states:
            lines.append(f"{name}: {node.described(key)} is not registered")
            continue
        lines.append(f"{name}: {node.described(key)} is registered but "
                     + "; ".join(f"{state} ({reason})" if reason else state for state, reason in states))
    return lines
