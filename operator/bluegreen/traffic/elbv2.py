"""An AWS load balancer (ALB) as a router, in one of two modes.

**WeightedTargetGroups.** A listener's default action, or one rule's action,
``forward``s to blue's and green's target groups with weights
(``ForwardConfig.TargetGroups``, 0-999 each); the share is ``weight / sum``.
The percent is written as the weight itself, so the share is exact. Only the
two weights change: the action's ``TargetGroupStickinessConfig``, other target
groups' entries and the other actions of the listener or rule (authentication
before the forward...) are sent back as they were read. The listener or rule
is read first and modified (``ModifyListener`` / ``ModifyRule``) only on a
difference. ``save`` keeps the forward action as described. ``finalize``
(Remove) drops the retired side's target group from it, keeping stickiness,
the other groups and the kept side's weight; Restore after a rollback writes
the saved forward action back in place of the current one (so green's group,
absent before the upgrade, is gone again).

**TargetRegistration** (the way TheFork moved clusters). One target group; blue's
and green's ingress nodes are its targets, and the share is the number of
green's targets over all targets. The reachable states are those of one fixed
sequence of moves that alternates "register one green target" and
"deregister one blue target", starting with a registration and keeping the
last blue target until every green one is registered. Three and three give::

    blue  3  3  2  2  1  1  0
    green 0  1  1  2  2  3  3
    %     0 25 33 50 66 75 100

(the percent of green, rounded down). A requested percent maps to the nearest
state of that sequence; a percent strictly between 0 and 100 maps to a state
strictly between (asking for 10 % means "some traffic to green", which 0 %
would not honour), and a tie goes to the state with less green. Why this
sequence: capacity never drops before it was added (each deregistration follows
a registration), and each side keeps a target for as long as it has a share.

Each call of ``set_weights`` makes at most ONE move and raises
:class:`~bluegreen.traffic.base.RouterPending` until the target state is reached
with every registered target healthy; the next call continues. Before a move,
every registered target of blue and green must be healthy (so a side never
loses its last healthy target while it carries traffic); a target that stays
unhealthy beyond ``health_timeout`` (counted from when this router first saw
it so) is an error. Moving back towards blue walks the same sequence backwards
(register one blue, deregister one green). When the registrations are off the
sequence (changed by hand), moves register what is missing before they
deregister anything, until the sequence is reached.

``verify`` returns the share implied by the *healthy* registered targets: that is
where the load balancer sends requests. With no healthy target at all the
load balancer fails open to every registered target, which ``verify`` reports as
an error. Deregistered targets drain (``deregistration_delay``) without new
requests, so a deregistration is in effect at once and is not waited for.

``save`` keeps the registered targets (id and port) as described. At the end
of the sequence the retired side has no target registered any more, so
``finalize`` (Remove) has, as a rule, nothing left to do: it deregisters what
the retired side still has registered that takes no traffic (unhealthy,
unused), and refuses while one of its targets is healthy. Restore after a
rollback registers the saved targets that are missing and then deregisters
those that were not saved.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from bluegreen.api import durations, spec
from bluegreen.api.shares import green_share, registration_path
from bluegreen.traffic import aws, base, retiring

MAX_FORWARD_WEIGHT = 999
MAX_FORWARD_TARGET_GROUPS = 5
FIRST_LOOK_SECONDS = 1.0  # after moving a target, when to look at its health first


def check_forward_weight(weight: int, *, target_group: str) -> None:
    """ALB takes forward weights 0-999; moto does not check, AWS does."""
    if not 0 <= weight <= MAX_FORWARD_WEIGHT:
        raise ValueError(f"forward weights are 0-{MAX_FORWARD_WEIGHT}; {target_group} weight {weight} is out of range")


def _check_percent(*, blue: int, green: int) -> None:
    if not (0 <= blue <= 100 and 0 <= green <= 100 and blue + green == 100):
        raise ValueError(f"weights must be percent summing to 100, got blue={blue} green={green}")


def _clients(region: str | None, endpoint_url: str | None, timeout: float, max_attempts: int) -> aws.AwsClient:
    return aws.AwsClient(service="elbv2", region=region, endpoint_url=endpoint_url, timeout=timeout,
                         max_attempts=max_attempts)


# --- WeightedTargetGroups ---------------------------------------------------------------------


class WeightedTargetGroupsRouter:
    """Weights of blue's and green's target groups in one listener's or rule's forward action."""

    def __init__(
        self,
        *,
        name: str,
        blue_target_group_arn: str,
        green_target_group_arn: str,
        listener_arn: str | None = None,
        rule_arn: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        if (listener_arn is None) == (rule_arn is None):
            raise ValueError("elbv2 WeightedTargetGroups needs exactly one of listenerARN and ruleARN")
        if blue_target_group_arn == green_target_group_arn:
            raise ValueError(f"elbv2 blueTargetGroupARN and greenTargetGroupARN are both {blue_target_group_arn!r}")
        self._name = name
        self._listener_arn = listener_arn
        self._rule_arn = rule_arn
        self._blue = blue_target_group_arn
        self._green = green_target_group_arn
        self._client = _clients(region, endpoint_url, timeout, max_attempts)

    @property
    def name(self) -> str:
        return self._name

    @property
    def _where(self) -> str:
        return f"listener {self._listener_arn}" if self._listener_arn else f"rule {self._rule_arn}"

    def __repr__(self) -> str:
        return (f"WeightedTargetGroupsRouter(name={self._name!r}, {self._where}, "
                f"blue={self._blue!r}, green={self._green!r})")

    async def set_weights(self, *, blue: int, green: int) -> base.RouterChange:
        _check_percent(blue=blue, green=green)
        for arn, weight in ((self._blue, blue), (self._green, green)):
            check_forward_weight(weight, target_group=arn)
        actions = await self.actions()
        index, weights = self._forward(actions)
        current = (weights.get(self._blue, 0), weights.get(self._green, 0))
        # A side's group removed by finalize routes as weight 0 does: it is not added back for a 0.
        if current == (blue, green) and all(arn in weights or weight == 0
                                            for arn, weight in ((self._blue, blue), (self._green, green))):
            return base.RouterChange(changed=False, detail=f"{self._where}: {self._state(weights)}")
        desired = dict(weights)
        desired[self._blue], desired[self._green] = blue, green
        if len(desired) > MAX_FORWARD_TARGET_GROUPS:
            raise base.RouterError(
                f"the forward action of {self._where} would hold {len(desired)} target groups; an ALB takes at most "
                f"{MAX_FORWARD_TARGET_GROUPS}: remove the ones that are neither blue's nor green's"
            )
        await self._write(actions, index, desired)
        return base.RouterChange(
            changed=True,
            detail=f"{self._where}: blue {_text(weights.get(self._blue))}->{blue}, "
                   f"green {_text(weights.get(self._green))}->{green}",
        )

    async def verify(self) -> base.RouterWeights:
        _, weights = self._forward(await self.actions())
        blue, green = weights.get(self._blue, 0), weights.get(self._green, 0)
        sharing = {arn: weight for arn, weight in weights.items() if arn not in (self._blue, self._green) and weight}
        if sharing:
            listing = ", ".join(f"{arn} (weight {weight})" for arn, weight in sharing.items())
            raise base.RouterError(
                f"the forward action of {self._where} also sends traffic to {listing}; set their weight to 0"
            )
        if blue + green == 0:
            raise base.RouterError(f"the forward action of {self._where} gives blue and green weight 0")
        blue_percent = round(100 * blue / (blue + green))
        return base.RouterWeights(blue=blue_percent, green=100 - blue_percent)

    async def save(self) -> dict[str, Any]:
        """The forward action as ELBv2 describes it: target groups with weights, stickiness, order."""
        actions = await self.actions()
        index, _ = self._forward(actions)
        return {"forward": actions[index]}

    async def finalize(self, *, retired: str, mode: str, original: dict[str, Any] | None) -> str:
        retirement = retiring.plan(router=self._name, retired=retired, mode=mode, original=original)
        actions = await self.actions()
        index, weights = self._forward(actions)
        what = f"the forward action of {self._where}"
        retiring.check_current(retirement, shares=self._shares(weights), what=what, state=self._state(weights))
        if retirement.restoring:
            forward = retiring.saved(retirement, "forward", router=self._name, expect=dict)
            saved_weights = _forward_weights(forward)
            retiring.check_original(retirement, shares=self._shares(saved_weights), what=what,
                                    state=self._state(saved_weights))
            if actions[index] == forward:
                return f"{what}: as saved before the upgrade ({self._state(saved_weights)})"
            await self._modify([*actions[:index], forward, *actions[index + 1:]])
            return f"{what}: restored as saved ({self._state(saved_weights)})"
        arn = self._blue if retirement.retired == "blue" else self._green
        if arn not in weights:
            return f"{what}: {retirement.retired}'s target group {arn} is already removed"
        # Only the entry goes: stickiness, the other groups and the kept side's weight stay as they are.
        await self._write(actions, index, {group: weight for group, weight in weights.items() if group != arn})
        return f"{what}: removed {retirement.retired}'s target group {arn}"

    async def actions(self) -> list[dict[str, Any]]:
        """The listener's default actions or the rule's actions, as ELBv2 returns them."""
        if self._listener_arn is not None:
            reply = await self._client.call("describe_listeners", ListenerArns=[self._listener_arn])
            listeners = reply.get("Listeners") or []
            if not listeners:
                raise base.RouterError(f"ELBv2 has no listener {self._listener_arn}")
            return list(listeners[0].get("DefaultActions") or [])
        reply = await self._client.call("describe_rules", RuleArns=[self._rule_arn])
        rules = reply.get("Rules") or []
        if not rules:
            raise base.RouterError(f"ELBv2 has no rule {self._rule_arn}")
        return list(rules[0].get("Actions") or [])

    def _forward(self, actions: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
        """Index of the forward action and its weights by target group, in the action's order."""
        forwards = [index for index, action in enumerate(actions) if action.get("Type") == "forward"]
        if not forwards:
            kinds = ", ".join(str(action.get("Type")) for action in actions) or "none"
            raise base.RouterError(
                f"{self._where} has no forward action (its actions: {kinds}); it must forward to blue's target group"
            )
        index = forwards[0]
        weights = _forward_weights(actions[index])
        if self._blue not in weights and self._green not in weights:
            raise base.RouterError(
                f"the forward action of {self._where} sends to {', '.join(weights) or 'no target group'}, neither "
                f"blue's {self._blue} nor green's {self._green}: point it at blue's target group first"
            )
        return index, weights

    async def _write(self, actions: list[dict[str, Any]], index: int, weights: dict[str, int]) -> None:
        forward = copy.deepcopy(actions[index])
        config = dict(forward.get("ForwardConfig") or {})
        config["TargetGroups"] = [{"TargetGroupArn": arn, "Weight": weight} for arn, weight in weights.items()]
        forward["ForwardConfig"] = config
        # With several groups the short form must go: AWS refuses a TargetGroupArn that differs from ForwardConfig.
        forward.pop("TargetGroupArn", None)
        await self._modify([*actions[:index], forward, *actions[index + 1:]])

    async def _modify(self, actions: list[dict[str, Any]]) -> None:
        """Write the listener's or rule's actions: ``actions`` as read, but for the one changed."""
        writable = [_writable(action) for action in actions]
        if self._listener_arn is not None:
            await self._client.call("modify_listener", ListenerArn=self._listener_arn, DefaultActions=writable)
        else:
            await self._client.call("modify_rule", RuleArn=self._rule_arn, Actions=writable)

    def _shares(self, weights: dict[str, int]) -> tuple[int, int]:
        return weights.get(self._blue, 0), weights.get(self._green, 0)

    def _state(self, weights: dict[str, int]) -> str:
        return f"blue {_text(weights.get(self._blue))}, green {_text(weights.get(self._green))}"


def _forward_weights(action: dict[str, Any]) -> dict[str, int]:
    """A forward action's weights by target group, in the action's order."""
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
    if groups:
        return {str(group["TargetGroupArn"]): int(group.get("Weight", 1)) for group in groups}
    if action.get("TargetGroupArn"):
        # The short form: one target group, all the traffic.
        return {str(action["TargetGroupArn"]): 1}
    return {}


def _writable(action: dict[str, Any]) -> dict[str, Any]:
    """An action as read, made fit to send back unchanged."""
    action = copy.deepcopy(action)
    oidc = action.get("AuthenticateOidcConfig")
    if isinstance(oidc, dict) and "ClientSecret" not in oidc:
        # Describe never returns the client secret; this keeps the one AWS holds.
        oidc["UseExistingClientSecret"] = True
    return action


def _text(weight: int | None) -> str:
    return "absent" if weight is None else str(weight)


# --- TargetRegistration -----------------------------------------------------------------------


def state_for(path: list[tuple[int, int]], *, green_percent: int) -> int:
    """Index in ``path`` of the state a requested green percent maps to (see the module docstring)."""
    if green_percent <= 0:
        return 0
    if green_percent >= 100:
        return len(path) - 1
    interior = range(1, len(path) - 1)
    return min(interior, key=lambda index: (abs(Fraction(100 * path[index][1], sum(path[index])) - green_percent),
                                            index))


@dataclasses.dataclass(frozen=True)
class Target:
    """A target of the group: an instance id or an IP, on a port (None: the target group's)."""

    id: str
    port: int | None = None

    def wire(self) -> dict[str, Any]:
        return {"Id": self.id} if self.port is None else {"Id": self.id, "Port": self.port}

    def __str__(self) -> str:
        return self.id if self.port is None else f"{self.id}:{self.port}"


@dataclasses.dataclass(frozen=True)
class TargetHealth:
    state: str  # initial, healthy, unhealthy, unused, draining, unavailable
    reason: str = ""

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"


def _serving(registered: dict[str, dict[Target, TargetHealth]]) -> tuple[int, int]:
    """(blue, green) targets that take requests: the healthy ones, or all registered when none is (fail open)."""
    healthy = tuple(sum(health.healthy for health in registered[side].values()) for side in ("blue", "green"))
    if sum(healthy) == 0:
        return len(registered["blue"]), len(registered["green"])
    return healthy[0], healthy[1]


def _health_text(registered: dict[str, dict[Target, TargetHealth]]) -> str:
    return "; ".join(
        f"{side}: " + (", ".join(f"{target} {health.state}" for target, health in targets.items()) or "none registered")
        for side, targets in registered.items()
    )


class TargetRegistrationRouter:
    """Move traffic by registering green's targets and deregistering blue's in one target group."""

    def __init__(
        self,
        *,
        name: str,
        target_group_arn: str,
        blue_targets: list[Target],
        green_targets: list[Target],
        health_timeout: float = 300.0,
        poll_interval: float = 5.0,
        region: str | None = None,
        endpoint_url: str | None = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        path = registration_path(blue_targets=len(blue_targets), green_targets=len(green_targets))
        shared = set(blue_targets) & set(green_targets)
        if shared or len(set(blue_targets)) != len(blue_targets) or len(set(green_targets)) != len(green_targets):
            raise ValueError("elbv2 blueTargets and greenTargets must each list distinct targets, none in both")
        if health_timeout <= 0 or poll_interval <= 0:
            raise ValueError("health_timeout and poll_interval must be positive")
        self._name = name
        self._target_group = target_group_arn
        self._targets = {"blue": list(blue_targets), "green": list(green_targets)}
        self._path = path
        self._health_timeout = health_timeout
        self._poll_interval = poll_interval
        self._clock = clock
        self._client = _clients(region, endpoint_url, timeout, max_attempts)
        self._unhealthy_since: dict[Target, float] = {}
        self._moves: list[str] = []  # moves made since set_weights last returned, for its detail

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return (f"TargetRegistrationRouter(name={self._name!r}, target_group={self._target_group!r}, "
                f"blue={len(self._targets['blue'])} targets, green={len(self._targets['green'])} targets)")

    def reachable(self, *, green_percent: int) -> int:
        """The green percent that a request for ``green_percent`` reaches."""
        blue, green = self._path[state_for(self._path, green_percent=green_percent)]
        return green_share(blue, green)

    async def set_weights(self, *, blue: int, green: int) -> base.RouterChange:
        _check_percent(blue=blue, green=green)
        goal_index = state_for(self._path, green_percent=green)
        goal = self._path[goal_index]
        registered = await self.registered()
        self._wait_for_health(registered)
        counts = (len(registered["blue"]), len(registered["green"]))
        goal_text = f"green {green_share(*goal)} % ({goal[0]} blue, {goal[1]} green targets) for {green} % asked"
        if counts == goal:
            moves, self._moves = self._moves, []
            detail = "; ".join([*moves, goal_text]) if moves else goal_text
            return base.RouterChange(changed=bool(moves), detail=f"{self._target_group}: {detail}")
        side, register = self._next_move(counts, goal_index)
        targets = self._targets[side]
        if register:
            target = next(target for target in targets if target not in registered[side])
            await self._client.call("register_targets", TargetGroupArn=self._target_group, Targets=[target.wire()])
            self._moves.append(f"registered {side} {target}")
        else:
            target = next(target for target in reversed(targets) if target in registered[side])
            await self._client.call("deregister_targets", TargetGroupArn=self._target_group, Targets=[target.wire()])
            self._moves.append(f"deregistered {side} {target}")
        # The first look after a move comes soon (a target may be healthy at once, e.g. after a quick
        # health check); while it is not, _wait_for_health polls every poll_interval.
        raise base.RouterPending(
            f"{self._moves[-1]} in {self._target_group}, moving towards {goal_text}",
            retry_after=min(self._poll_interval, FIRST_LOOK_SECONDS),
        )

    async def verify(self) -> base.RouterWeights:
        registered = await self.registered()
        settling = [f"{side} {target}" for side in registered for target, health in registered[side].items()
                     if health.state == "initial"]
        if settling:
            raise base.RouterPending(f"targets still registering in {self._target_group}: {', '.join(settling)}",
                                     retry_after=self._poll_interval)
        healthy = {side: sum(health.healthy for health in registered[side].values()) for side in registered}
        if healthy["blue"] + healthy["green"] == 0:
            raise base.RouterError(
                f"no healthy target of blue or green in {self._target_group}: the load balancer fails open "
                "and spreads requests over every registered target"
            )
        green_percent = green_share(healthy["blue"], healthy["green"])
        return base.RouterWeights(blue=100 - green_percent, green=green_percent)

    async def save(self) -> dict[str, Any]:
        """Every registered target of the group (id and port), as ELBv2 describes them."""
        _, found = await self._registrations()
        return {"targets": [target.wire() for target in sorted(found, key=str)]}

    async def finalize(self, *, retired: str, mode: str, original: dict[str, Any] | None) -> str:
        retirement = retiring.plan(router=self._name, retired=retired, mode=mode, original=original)
        default_port, found = await self._registrations()
        registered = self._by_side(found, default_port=default_port)
        what = f"target group {self._target_group}"
        retiring.check_current(retirement, shares=_serving(registered), what=what, state=_health_text(registered))
        if retirement.restoring:
            wanted = self._saved_targets(retiring.saved(retirement, "targets", router=self._name, expect=list))
            known = self._sides(default_port)
            saved_sides = [known[target][0] for target in wanted if target in known]
            blue, green = saved_sides.count("blue"), saved_sides.count("green")
            retiring.check_original(retirement, shares=(blue, green), what=what,
                                    state=f"blue {blue}, green {green} targets registered")
            register = sorted(wanted - set(found), key=str)
            deregister = sorted(set(found) - wanted, key=str)
        else:
            # What is left of the retired side takes no traffic (check_current): unhealthy or unused targets.
            register, deregister = [], list(registered[retirement.retired])
        done = []
        # Capacity first: what comes back is registered before anything leaves.
        for operation, verb, targets in (("register_targets", "registered", register),
                                         ("deregister_targets", "deregistered", deregister)):
            if targets:
                await self._client.call(operation, TargetGroupArn=self._target_group,
                                        Targets=[target.wire() for target in targets])
                done.append(f"{verb} {', '.join(map(str, targets))}")
        if done:
            return f"{what}: {'; '.join(done)}"
        if retirement.restoring:
            return f"{what}: as saved before the upgrade"
        return f"{what}: {retirement.retired} has no target registered"

    async def registered(self) -> dict[str, dict[Target, TargetHealth]]:
        """Blue's and green's registered targets with their health; refuses targets of neither side."""
        default_port, found = await self._registrations()
        return self._by_side(found, default_port=default_port)

    async def _registrations(self) -> tuple[int | None, dict[Target, TargetHealth]]:
        """The group's port, and every registered target with its port filled in (draining ones are leaving)."""
        group = await self._client.call("describe_target_groups", TargetGroupArns=[self._target_group])
        groups = group.get("TargetGroups") or []
        if not groups:
            raise base.RouterError(f"ELBv2 has no target group {self._target_group}")
        default_port = groups[0].get("Port")
        reply = await self._client.call("describe_target_health", TargetGroupArn=self._target_group)
        found: dict[Target, TargetHealth] = {}
        for description in reply.get("TargetHealthDescriptions") or []:
            wire = description.get("Target") or {}
            health = description.get("TargetHealth") or {}
            state = str(health.get("State", "unavailable"))
            if state == "draining":
                continue  # deregistered: takes no new requests
            reason = " ".join(str(health[part]) for part in ("Reason", "Description") if health.get(part))
            found[Target(str(wire.get("Id")), wire.get("Port", default_port))] = TargetHealth(state, reason)
        return default_port, found

    def _sides(self, default_port: int | None) -> dict[Target, tuple[str, Target]]:
        """Targets as the group reports them (the port filled in) -> (side, the target as the spec names it)."""
        return {Target(target.id, default_port if target.port is None else target.port): (side, target)
                for side, targets in self._targets.items() for target in targets}

    def _by_side(self, found: dict[Target, TargetHealth], *, default_port: int | None
                 ) -> dict[str, dict[Target, TargetHealth]]:
        known = self._sides(default_port)
        strangers = [str(key) for key in found if key not in known]
        if strangers:
            raise base.RouterError(
                f"target group {self._target_group} holds targets that are neither blue's nor green's: "
                f"{', '.join(strangers)}; they would take a share: deregister them or list them"
            )
        sides: dict[str, dict[Target, TargetHealth]] = {"blue": {}, "green": {}}
        for key, health in found.items():
            side, target = known[key]
            sides[side][target] = health
        return sides

    def _saved_targets(self, saved: list[Any]) -> set[Target]:
        try:
            return {Target(str(item["Id"]), int(item["Port"]) if item.get("Port") is not None else None)
                    for item in saved}
        except (TypeError, KeyError, ValueError, AttributeError):
            raise base.RouterError(
                f"router {self._name!r}: the targets saved in status.routers are not {{Id, Port}} objects; "
                "set the targets by hand, or set onFinalize: Remove"
            ) from None

    def _wait_for_health(self, registered: dict[str, dict[Target, TargetHealth]]) -> None:
        now = self._clock()
        waiting: list[str] = []
        overdue: list[str] = []
        seen: set[Target] = set()
        for side, targets in registered.items():
            for target, health in targets.items():
                if health.healthy:
                    continue
                seen.add(target)
                since = self._unhealthy_since.setdefault(target, now)
                text = f"{side} {target} is {health.state}" + (f" ({health.reason})" if health.reason else "")
                (overdue if now - since >= self._health_timeout else waiting).append(text)
        self._unhealthy_since = {target: since for target, since in self._unhealthy_since.items() if target in seen}
        if overdue:
            raise base.RouterError(
                f"in {self._target_group}: {'; '.join(overdue)} for longer than {self._health_timeout:g}s; "
                "no target is moved until every registered target is healthy"
            )
        if waiting:
            raise base.RouterPending(f"waiting for healthy targets in {self._target_group}: {'; '.join(waiting)}",
                                     retry_after=self._poll_interval)

    def _next_move(self, counts: tuple[int, int], goal_index: int) -> tuple[str, bool]:
        """(side, register?) of the one move from ``counts`` towards the goal state."""
        if counts in self._path:
            here = self._path.index(counts)
            step = 1 if goal_index > here else -1
            after = self._path[here + step]
            if after[0] != counts[0]:
                return "blue", after[0] > counts[0]
            return "green", after[1] > counts[1]
        # Off the sequence: add what is missing before removing anything.
        goal = self._path[goal_index]
        if counts[1] < goal[1]:
            return "green", True
        if counts[0] < goal[0]:
            return "blue", True
        if counts[1] > goal[1]:
            return "green", False
        return "blue", False


# --- From the spec ----------------------------------------------------------------------------


def from_spec(*, name: str, config: spec.ElbV2Router) -> WeightedTargetGroupsRouter | TargetRegistrationRouter:
    """The router an ``elbv2`` entry describes, in its mode."""
    if config.mode == "WeightedTargetGroups":
        assert config.blue_target_group_arn and config.green_target_group_arn  # the spec validated it
        return WeightedTargetGroupsRouter(
            name=name,
            listener_arn=config.listener_arn,
            rule_arn=config.rule_arn,
            blue_target_group_arn=config.blue_target_group_arn,
            green_target_group_arn=config.green_target_group_arn,
            region=config.aws.region,
            endpoint_url=config.aws.endpoint_url,
        )
    assert config.target_group_arn
    return TargetRegistrationRouter(
        name=name,
        target_group_arn=config.target_group_arn,
        blue_targets=[Target(target.id, target.port) for target in config.blue_targets],
        green_targets=[Target(target.id, target.port) for target in config.green_targets],
        health_timeout=durations.parse_duration(config.health_timeout).total_seconds(),
        region=config.aws.region,
        endpoint_url=config.aws.endpoint_url,
    )
