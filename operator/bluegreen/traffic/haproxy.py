"""A top-level HAProxy as a router, driven through its runtime API.

The backend holds one server for blue's ingress and one for green's; the split
is their weights. Percent maps to HAProxy weight one to one (HAProxy takes
0-256), so the share HAProxy computes, ``weight / sum of weights``, is the
percent asked for, exactly.

Invariants:

- One command per connection (the runtime API's non-interactive mode: HAProxy
  answers and closes), each bounded by the configured timeout, on asyncio
  streams only (``traffic.haproxy_runtime``, shared with the NodePools
  attachment check).
- ``set_weights`` reads the servers first and writes only on a difference.
  When both weights change, the rising side is raised before the falling side
  is lowered: in between, traffic only goes to servers that carry traffic in
  the old or the new state, and there is never a moment with both at 0 (HAProxy
  then answers 503 to everyone).
- A ``set weight`` answers nothing on success; every other reply ("No such
  server.", "Permission denied", help text for an unknown command...) is an
  error, reported with HAProxy's own words.
- ``verify`` reports what HAProxy will really do: a server that holds a weight
  but takes no new traffic (maintenance, drain, failing health checks) is an
  error, not a weight.

- ``save`` keeps both servers' weights and administrative states (ready,
  drain, maint). ``finalize`` (Remove) sets the retired server's weight to 0
  and puts it in maintenance: it stays in the configuration file, which is the
  user's, but takes no request, not even a persistent session, and is no
  longer health-checked (its cluster is about to go). It refuses while that
  server still takes traffic. Restore after a rollback sets both servers'
  weights and states back to the saved ones, each server losing traffic
  before it gains any. A server that ``set_weights`` gives weight while it
  is in maintenance or drain set at runtime (by ``finalize`` of an earlier
  upgrade, or by hand) is made ready first: sending it traffic is what the
  upgrade asks for.

- Health checks are the dead-man's switch: while traffic is split, HAProxy's
  own checks take a failing green out of the backend and the weighted blue
  server carries everything, with no operator running. So ``set_weights``
  refuses to give green's server weight while HAProxy reports it without an
  enabled check (``srv_check_state``), unless ``greenHealthCheck: Warn``, which
  shifts anyway and says so in the change's detail (the journal). Taking
  weight away from green (a rollback) is never refused.

Runtime changes live in HAProxy's memory only: a reload without a server-state
file brings back the weights of the configuration file. ``verify`` then sees a
difference and the next ``set_weights`` applies the weights again.
"""

from __future__ import annotations

import re
from typing import Any

from bluegreen.api import durations, spec
from bluegreen.traffic import base, haproxy_runtime, retiring
from bluegreen.traffic.haproxy_runtime import one_line as _one_line

# HAProxy's own name charset for proxies and servers; anything else could
# smuggle a second command into the line (";" separates commands).
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")

ServerState = haproxy_runtime.ServerState
READY, DRAIN, MAINT = haproxy_runtime.READY, haproxy_runtime.DRAIN, haproxy_runtime.MAINT


class HAProxyRouter:
    """Split traffic between two servers of one HAProxy backend through the runtime API."""

    def __init__(
        self,
        *,
        name: str,
        runtime_api: str,
        backend: str,
        blue_server: str,
        green_server: str,
        timeout: float = 5.0,
        green_health_check: spec.HealthCheckPolicy = spec.HealthCheckPolicy.REQUIRE,
    ) -> None:
        for field, value in (("backend", backend), ("blueServer", blue_server), ("greenServer", green_server)):
            if not _NAME.fullmatch(value):
                raise ValueError(
                    f"haproxy.{field} {value!r} is not an HAProxy name; use letters, digits and - _ . :"
                )
        if blue_server == green_server:
            raise ValueError(f"haproxy.blueServer and haproxy.greenServer are both {blue_server!r}")
        if timeout <= 0:
            raise ValueError(f"haproxy.timeout must be positive, got {timeout}s")
        self._name = name
        self._api = haproxy_runtime.RuntimeAPI(runtime_api, timeout=timeout)
        self._backend = backend
        self._blue_server = blue_server
        self._green_server = green_server
        self._green_health_check = green_health_check

    @classmethod
    def from_spec(cls, *, name: str, config: spec.HAProxyRouter) -> HAProxyRouter:
        return cls(
            name=name,
            runtime_api=config.runtime_api,
            backend=config.backend,
            blue_server=config.blue_server,
            green_server=config.green_server,
            timeout=durations.parse_duration(config.timeout).total_seconds(),
            green_health_check=config.green_health_check,
        )

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return (
            f"HAProxyRouter(name={self._name!r}, runtime_api={self._api.address!r}, "
            f"backend={self._backend!r}, blue={self._blue_server!r}, green={self._green_server!r})"
        )

    async def set_weights(self, *, blue: int, green: int) -> base.RouterChange:
        if not (0 <= blue <= 100 and 0 <= green <= 100 and blue + green == 100):
            raise ValueError(f"weights must be percent summing to 100, got blue={blue} green={green}")
        servers = await self.servers()
        current = {name: server.weight for name, server in servers.items()}
        desired = {self._blue_server: blue, self._green_server: green}
        changes = [server for server in desired if desired[server] != current[server]]
        if not changes:
            return base.RouterChange(changed=False, detail=self._describe(current))
        warning = self._unguarded_green(servers[self._green_server], green=green)
        # Rising side first: see the module docstring.
        changes.sort(key=lambda server: desired[server] - current[server], reverse=True)
        done: list[str] = []
        for server in changes:
            if desired[server] > 0 and servers[server].admin_state & haproxy_runtime.ADMIN_FORCED:
                await self._apply(f"set server {self._backend}/{server} state {READY}", done=done,
                                  detail=f"{self._backend}/{server} {servers[server].state}->{READY}")
            await self._apply(f"set weight {self._backend}/{server} {desired[server]}", done=done,
                              detail=f"{self._backend}/{server} {current[server]}->{desired[server]}")
        return base.RouterChange(changed=True, detail=", ".join(done) + (f" (warning: {warning})" if warning else ""))

    def _unguarded_green(self, server: ServerState, *, green: int) -> str | None:
        """None when green may get ``green`` percent; the warning to journal under Warn; RouterError under Require."""
        reason = server.why_not_health_checked() if green > 0 else None
        if reason is None:
            return None
        problem = (f"HAProxy server {self._backend}/{server.name} (green) is {reason}: if green fails while the "
                   f"operator is down, HAProxy keeps sending it {green}% of requests")
        if self._green_health_check == spec.HealthCheckPolicy.WARN:
            return problem
        raise base.RouterError(
            f"{problem}; refusing to shift. Add `check` to that server line in backend {self._backend} (with "
            f"`option httpchk` for an HTTP check) and reload HAProxy, or `enable health {self._backend}/"
            f"{server.name}` if it was disabled; or set haproxy.greenHealthCheck: Warn to shift without it"
        )

    async def verify(self) -> base.RouterWeights:
        servers = await self.servers()
        blue, green = servers[self._blue_server], servers[self._green_server]
        for server in (blue, green):
            reason = server.why_no_traffic()
            if server.weight > 0 and reason is not None:
                raise base.RouterError(
                    f"HAProxy server {self._backend}/{server.name} has weight {server.weight} "
                    f"but is {reason}: it takes no new traffic"
                )
        total = blue.weight + green.weight
        if total == 0:
            raise base.RouterError(
                f"HAProxy servers {self._backend}/{blue.name} and {self._backend}/{green.name} both have "
                "weight 0: HAProxy answers 503 to every request"
            )
        blue_percent = round(100 * blue.weight / total)
        return base.RouterWeights(blue=blue_percent, green=100 - blue_percent)

    async def save(self) -> dict[str, Any]:
        """Both servers' weights and administrative states (ready, drain, maint)."""
        servers = await self.servers()
        return {side: {"weight": servers[name].weight, "state": servers[name].state}
                for side, name in self._names.items()}

    async def finalize(self, *, retired: str, mode: str, original: dict[str, Any] | None) -> str:
        retirement = retiring.plan(router=self._name, retired=retired, mode=mode, original=original)
        servers = await self.servers()
        current = {side: (servers[name].weight, servers[name].state) for side, name in self._names.items()}
        blue, green = (servers[name] for name in self._names.values())
        serving = tuple(server.weight if server.why_no_traffic() is None else 0 for server in (blue, green))
        what = f"HAProxy backend {self._backend!r} at {self._api.address}"
        retiring.check_current(retirement, shares=(serving[0], serving[1]), what=what, state=self._state(current))
        if retirement.restoring:
            wanted = {side: self._saved_server(retiring.saved(retirement, side, router=self._name, expect=dict))
                      for side in self._names}
            retiring.check_original(
                retirement, shares=(_share(*wanted["blue"]), _share(*wanted["green"])), what=what,
                state=self._state(wanted))
        else:
            wanted = dict(current)
            wanted[retirement.retired] = (0, MAINT)
        done: list[str] = []
        for side in (retirement.kept, retirement.retired):
            server = f"{self._backend}/{self._names[side]}"
            (weight, state), (want_weight, want_state) = current[side], wanted[side]
            commands = []
            if want_weight != weight:
                commands.append((f"set weight {server} {want_weight}", f"{server} weight {weight}->{want_weight}"))
            if want_state != state:
                commands.append((f"set server {server} state {want_state}", f"{server} {state}->{want_state}"))
            # Take traffic away before giving any: a server leaving service goes out of it before its weight moves.
            if want_state != READY:
                commands.reverse()
            for command, detail in commands:
                await self._apply(command, done=done, detail=detail)
        if done:
            verb = "restored as saved" if retirement.restoring else f"{retirement.retired} retired"
            return f"{what}: {verb}: {', '.join(done)}"
        if retirement.restoring:
            return f"{what}: as saved before the upgrade ({self._state(current)})"
        return f"{what}: {retirement.retired} already at weight 0 in maintenance"

    async def servers(self) -> dict[str, ServerState]:
        """The blue and green servers as HAProxy reports them, by server name."""
        found = {server.name: server for server in await self._api.servers(self._backend)}
        missing = [name for name in (self._blue_server, self._green_server) if name not in found]
        if missing:
            raise base.RouterError(
                f"HAProxy backend {self._backend!r} at {self._api.address} has no server "
                f"{' nor '.join(repr(name) for name in missing)}; it has: {', '.join(sorted(found)) or 'none'}"
            )
        return {name: found[name] for name in (self._blue_server, self._green_server)}

    async def _apply(self, command: str, *, done: list[str], detail: str) -> None:
        """Send one ``set`` command (HAProxy answers nothing on success); add ``detail`` to ``done``."""
        try:
            reply = await self._api.command(command)
        except base.RouterError as exc:
            raise base.RouterError(f"{exc}{self._partial(done)}") from None
        if reply.strip():
            raise base.RouterError(
                f"HAProxy at {self._api.address} refused {command!r}: {_one_line(reply)}{self._partial(done)}"
            )
        done.append(detail)

    @property
    def _names(self) -> dict[str, str]:
        return {"blue": self._blue_server, "green": self._green_server}

    def _saved_server(self, saved: dict[str, Any]) -> tuple[int, str]:
        weight, state = saved.get("weight"), saved.get("state")
        if not (isinstance(weight, int) and 0 <= weight <= 256 and state in (READY, DRAIN, MAINT)):
            raise base.RouterError(
                f"router {self._name!r}: the server saved in status.routers is {saved!r}, not "
                "{weight: 0-256, state: ready|drain|maint}; set the servers by hand, or set onFinalize: Remove"
            )
        return weight, str(state)

    def _state(self, servers: dict[str, tuple[int, str]]) -> str:
        return ", ".join(f"{side} {self._backend}/{self._names[side]} weight {weight} {state}"
                         for side, (weight, state) in servers.items())

    def _describe(self, weights: dict[str, int]) -> str:
        return ", ".join(f"{self._backend}/{server} {weight}" for server, weight in weights.items())

    @staticmethod
    def _partial(done: list[str]) -> str:
        return f" (already applied: {', '.join(done)})" if done else ""


def _share(weight: int, state: str) -> int:
    """What a server with ``weight`` in ``state`` takes (health aside): drain and maint take no new requests."""
    return weight if state == READY else 0
