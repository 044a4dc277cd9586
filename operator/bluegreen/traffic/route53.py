"""Route 53 weighted records as a router.

Blue and green each own one weighted record of the same name and type, told
apart by their SetIdentifier; a resolver gets each record with probability
``weight / sum of weights``. The percent is written as the weight itself
(Route 53 takes 0-255), so the share is the percent asked for, exactly.

Invariants:

- ``set_weights`` reads the records first and writes only on a difference
  (weight, TTL, value or alias target, health check): then both records are
  UPSERTed in ONE ``ChangeResourceRecordSets`` batch, so no resolver ever sees
  one side changed and the other not. The change id goes to the journal. A
  missing record is created, except a side's at weight 0: the retired side's
  record deleted by ``finalize`` stays deleted.
- ``verify`` waits for that change: ``GetChange`` PENDING is
  :class:`~bluegreen.traffic.base.RouterPending`, not a failure. Then it reads
  the records back. The change id lives in this router only: after an operator
  restart ``verify`` reads the records straight away (they read back at once
  even while PENDING; the engine's dwell of one TTL covers the propagation).
- Weight 0 on both records is an EQUAL split, not "off": it is refused when
  writing and read back as 50/50. Other weighted records of the same name and
  type take their share of the traffic: ``verify`` refuses to report a split
  they distort. A simple (non-weighted) record of the same name and type cannot
  coexist with weighted ones: that is an error that names the fix.
- ``save`` keeps both records as listed (None for a missing one). ``finalize``
  (Remove) DELETEs the retired side's record exactly as read, because a
  weight-0 record still answers when every non-zero record is unhealthy; it
  refuses while that record still takes a share, and does nothing when it is
  already gone. Restore after a rollback puts both saved records back in one
  batch (UPSERT), and deletes green's when none was saved.

Route 53 accepts what moto (the test back end) does not check, so the limits
AWS enforces are checked here: weight 0-255, SetIdentifier 1-128 characters,
never both weights 0.

Record health (``healthCheckId``) is written but not read back: whether Route 53
currently skips an unhealthy record needs ``GetHealthCheckStatus``, which this
router does not call. That health check is the dead-man's switch: while traffic
is split, Route 53 stops answering with a green that fails its check, whether or
not the operator runs. The spec requires one on green's record (or an alias
target evaluating its target's health) unless ``greenHealthCheck: Warn``; with
Warn and none, each change that gives green weight says so in its journal line.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from bluegreen.api import spec
from bluegreen.traffic import aws, base, retiring

MAX_WEIGHT = 255
MAX_SET_IDENTIFIER = 128
# Route 53 answers at most 300 records per page; our pair sits at the start of
# the page we ask for, so a small page almost always holds it.
_PAGE_SIZE = "100"


def check_weight_pair(*, blue: int, green: int) -> None:
    """Refuse what Route 53 refuses, or treats differently from what it looks like."""
    for side, weight in (("blue", blue), ("green", green)):
        if not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"Route 53 weights are 0-{MAX_WEIGHT}; {side} weight {weight} is out of range")
    if blue == 0 and green == 0:
        raise ValueError(
            "Route 53 weights blue=0 and green=0 mean an EQUAL split, not no traffic; give one side weight"
        )


def check_set_identifier(*, side: str, set_identifier: str) -> None:
    if not 1 <= len(set_identifier) <= MAX_SET_IDENTIFIER:
        raise ValueError(
            f"route53.{side}.setIdentifier must be 1-{MAX_SET_IDENTIFIER} characters, got {len(set_identifier)}"
        )


def dns_name(text: str) -> str:
    r"""A DNS name as Route 53 compares it: case-insensitive, trailing dot optional, ``\052`` is ``*``."""
    decoded = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), text)
    return decoded.lower().rstrip(".")


@dataclasses.dataclass(frozen=True)
class RecordSide:
    """What one side's weighted record must hold (everything but the weight)."""

    set_identifier: str
    value: str | None = None
    alias_hosted_zone_id: str | None = None
    alias_dns_name: str | None = None
    evaluate_target_health: bool = False
    health_check_id: str | None = None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.alias_dns_name is None):
            raise ValueError(f"record {self.set_identifier!r} needs exactly one of a value and an alias target")
        if self.alias_dns_name is not None and not self.alias_hosted_zone_id:
            raise ValueError(f"record {self.set_identifier!r}: an alias target needs its hostedZoneId")

    @classmethod
    def from_spec(cls, record: spec.Route53Record, *, side: str) -> RecordSide:
        if record.alias_target is None:
            return cls(set_identifier=record.set_identifier, value=record.value,
                       health_check_id=record.health_check_id)
        alias = record.alias_target
        unknown = sorted(set(alias) - {"hostedZoneId", "dnsName", "evaluateTargetHealth"})
        if unknown:
            raise ValueError(
                f"route53.{side}.aliasTarget has unknown fields {', '.join(unknown)}; "
                "use hostedZoneId, dnsName and evaluateTargetHealth"
            )
        zone, name = alias.get("hostedZoneId"), alias.get("dnsName")
        evaluate = alias.get("evaluateTargetHealth", False)
        if not isinstance(zone, str) or not zone or not isinstance(name, str) or not name:
            raise ValueError(f"route53.{side}.aliasTarget needs hostedZoneId and dnsName (strings)")
        if not isinstance(evaluate, bool):
            raise ValueError(f"route53.{side}.aliasTarget.evaluateTargetHealth must be true or false")
        return cls(set_identifier=record.set_identifier, alias_hosted_zone_id=zone, alias_dns_name=name,
                   evaluate_target_health=evaluate, health_check_id=record.health_check_id)

    @property
    def health_checked(self) -> bool:
        """Whether Route 53 judges this record's health (a health check, or an alias evaluating its target)."""
        return self.health_check_id is not None or (self.alias_dns_name is not None and self.evaluate_target_health)


class Route53Router:
    """Split traffic between blue's and green's weighted records of one name and type."""

    def __init__(
        self,
        *,
        name: str,
        hosted_zone_id: str,
        record_name: str,
        record_type: str,
        ttl: int,
        blue: RecordSide,
        green: RecordSide,
        region: str | None = None,
        endpoint_url: str | None = None,
        poll_interval: float = 10.0,
        timeout: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        check_set_identifier(side="blue", set_identifier=blue.set_identifier)
        check_set_identifier(side="green", set_identifier=green.set_identifier)
        if blue.set_identifier == green.set_identifier:
            raise ValueError(f"route53.blue.setIdentifier and green.setIdentifier are both {blue.set_identifier!r}")
        if not 0 <= ttl <= 2147483647:
            raise ValueError(f"route53.ttl must be 0-2147483647 seconds, got {ttl}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}s")
        self._name = name
        self._zone = hosted_zone_id
        self._record_name = record_name
        self._record_type = record_type
        self._ttl = ttl
        self._sides = {"blue": blue, "green": green}
        self._poll_interval = poll_interval
        # Route 53 is global; its API signs in us-east-1 whatever region the operator runs in.
        self._client = aws.AwsClient(service="route53", region=region or "us-east-1", endpoint_url=endpoint_url,
                                     timeout=timeout, max_attempts=max_attempts)
        self._pending_change: str | None = None

    @classmethod
    def from_spec(cls, *, name: str, config: spec.Route53Router) -> Route53Router:
        return cls(
            name=name,
            hosted_zone_id=config.hosted_zone_id,
            record_name=config.record_name,
            record_type=config.record_type,
            ttl=config.ttl,
            blue=RecordSide.from_spec(config.blue, side="blue"),
            green=RecordSide.from_spec(config.green, side="green"),
            region=config.aws.region,
            endpoint_url=config.aws.endpoint_url,
        )

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return (
            f"Route53Router(name={self._name!r}, zone={self._zone!r}, record={self._record_name!r} "
            f"{self._record_type}, blue={self._sides['blue'].set_identifier!r}, "
            f"green={self._sides['green'].set_identifier!r})"
        )

    async def set_weights(self, *, blue: int, green: int) -> base.RouterChange:
        if not (0 <= blue <= 100 and 0 <= green <= 100 and blue + green == 100):
            raise ValueError(f"weights must be percent summing to 100, got blue={blue} green={green}")
        check_weight_pair(blue=blue, green=green)
        weights = {"blue": blue, "green": green}
        records = await self.records()
        current = {side: records.get(self._sides[side].set_identifier) for side in self._sides}
        # A side at weight 0 whose record is absent (the retired side's after finalize) takes no traffic
        # either way, and creating its record would bring back what finalize removed.
        desired = {side: self._record_set(side, weight) for side, weight in weights.items()
                   if weight > 0 or current[side] is not None}
        if all(_same_record(current[side], record) for side, record in desired.items()):
            return base.RouterChange(changed=False, detail=self._describe(weights))
        info = await self._change([{"Action": "UPSERT", "ResourceRecordSet": record} for record in desired.values()],
                                  comment=f"blue {blue}, green {green}")
        change_id = str(info.get("Id") or "") or None
        self._pending_change = change_id if info.get("Status") != "INSYNC" else None
        detail = ", ".join(
            f"{side} {_weight_text(current[side])}->{weights[side]}" for side in self._sides
        )
        if green > 0 and not self._sides["green"].health_checked:
            detail += (f" (warning: green's record {self._sides['green'].set_identifier!r} has no health check: "
                       "if green fails while the operator is down, Route 53 keeps answering with it)")
        return base.RouterChange(changed=True, detail=f"{self._record_name} {self._record_type}: {detail}",
                                 change_id=change_id)

    async def verify(self) -> base.RouterWeights:
        if self._pending_change is not None:
            reply = await self._client.call("get_change", Id=self._pending_change)
            status = (reply.get("ChangeInfo") or {}).get("Status")
            if status == "PENDING":
                raise base.RouterPending(
                    f"Route 53 change {self._pending_change} to {self._record_name} is PENDING",
                    retry_after=self._poll_interval,
                )
            if status != "INSYNC":
                raise base.RouterError(
                    f"Route 53 change {self._pending_change} has status {status!r}, neither PENDING nor INSYNC"
                )
            self._pending_change = None
        records = await self.records()
        blue = records.get(self._sides["blue"].set_identifier)
        green = records.get(self._sides["green"].set_identifier)
        ours = {self._sides["blue"].set_identifier, self._sides["green"].set_identifier}
        others = {identifier: record for identifier, record in records.items() if identifier not in ours}
        present = [record for record in (blue, green) if record is not None]
        if not present:
            raise base.RouterError(
                f"Route 53 zone {self._zone} has neither {self._sides['blue'].set_identifier!r} nor "
                f"{self._sides['green'].set_identifier!r} weighted record for {self._record_name} {self._record_type}"
            )
        blue_weight = _weight(blue) if blue is not None else 0
        green_weight = _weight(green) if green is not None else 0
        other_weights = {identifier: _weight(record) for identifier, record in others.items()}
        total = blue_weight + green_weight + sum(other_weights.values())
        # Another record takes weight/sum, or an equal share when every weight is 0.
        sharing = {identifier: weight for identifier, weight in other_weights.items() if weight > 0 or total == 0}
        if sharing:
            listing = ", ".join(f"{identifier!r} (weight {weight})" for identifier, weight in sharing.items())
            raise base.RouterError(
                f"{self._record_name} {self._record_type} has other weighted records that take a share of "
                f"the traffic: {listing}; delete them or set their weight to 0"
            )
        if total == 0:
            # All zero: Route 53 answers every record with equal probability.
            blue_percent = 50 if len(present) == 2 else (100 if blue is not None else 0)
        else:
            blue_percent = round(100 * blue_weight / total)
        return base.RouterWeights(blue=blue_percent, green=100 - blue_percent)

    async def save(self) -> dict[str, Any]:
        """Blue's and green's weighted records as Route 53 lists them (None for a missing one)."""
        return await self._pair()

    async def finalize(self, *, retired: str, mode: str, original: dict[str, Any] | None) -> str:
        retirement = retiring.plan(router=self._name, retired=retired, mode=mode, original=original)
        current = await self._pair()
        what = f"{self._record_name} {self._record_type} in zone {self._zone}"
        retiring.check_current(retirement, shares=_shares(current), what=what, state=self._state(current))
        if retirement.restoring:
            wanted = {side: retiring.saved(retirement, side, router=self._name, expect=(dict, type(None)))
                      for side in self._sides}
            retiring.check_original(retirement, shares=_shares(wanted), what=what, state=self._state(wanted))
            # DELETE must name a record exactly as it is: send back what was read. UPSERT puts the saved one back.
            changes = [
                {"Action": "DELETE", "ResourceRecordSet": current[side]} if wanted[side] is None
                else {"Action": "UPSERT", "ResourceRecordSet": wanted[side]}
                for side in self._sides if current[side] != wanted[side]
            ]
            if not changes:
                return f"{what}: as saved before the upgrade ({self._state(wanted)})"
            info = await self._change(changes, comment=f"{retirement.retired} retired, records restored")
            return f"{what}: restored as saved ({self._state(wanted)}), change {info.get('Id')}"
        record = current[retirement.retired]
        identifier = self._sides[retirement.retired].set_identifier
        if record is None:
            return f"{what}: {retirement.retired}'s record {identifier!r} is already deleted"
        info = await self._change([{"Action": "DELETE", "ResourceRecordSet": record}],
                                  comment=f"{retirement.retired} retired")
        return f"{what}: deleted {retirement.retired}'s record {identifier!r}, change {info.get('Id')}"

    async def _pair(self) -> dict[str, dict[str, Any] | None]:
        records = await self.records()
        return {side: records.get(record.set_identifier) for side, record in self._sides.items()}

    async def _change(self, changes: list[dict[str, Any]], *, comment: str) -> dict[str, Any]:
        """Send ``changes`` in one batch; Route 53's ChangeInfo (Id, Status)."""
        reply = await self._client.call(
            "change_resource_record_sets",
            HostedZoneId=self._zone,
            ChangeBatch={"Comment": f"bluegreen router {self._name}: {comment}", "Changes": changes},
        )
        info = reply.get("ChangeInfo")
        return info if isinstance(info, dict) else {}

    def _state(self, records: dict[str, dict[str, Any] | None]) -> str:
        return ", ".join(
            f"{side} {self._sides[side].set_identifier!r} "
            + ("absent" if record is None else f"weight {_weight(record)}")
            for side, record in records.items()
        )

    async def records(self) -> dict[str, dict[str, Any]]:
        """The weighted records of this name and type, by SetIdentifier, as Route 53 returns them."""
        found: dict[str, dict[str, Any]] = {}
        wanted = (dns_name(self._record_name), self._record_type)
        params: dict[str, Any] = {"HostedZoneId": self._zone, "StartRecordName": self._record_name,
                                  "StartRecordType": self._record_type, "MaxItems": _PAGE_SIZE}
        while True:
            reply = await self._client.call("list_resource_record_sets", **params)
            for record in reply.get("ResourceRecordSets") or []:
                if (dns_name(str(record.get("Name", ""))), record.get("Type")) != wanted:
                    continue
                identifier = record.get("SetIdentifier")
                if identifier is None:
                    raise base.RouterError(
                        f"{self._record_name} {self._record_type} in zone {self._zone} is a simple record; Route 53 "
                        "keeps simple and weighted records of one name and type apart: replace it with blue's "
                        f"weighted record (SetIdentifier {self._sides['blue'].set_identifier!r})"
                    )
                if "Weight" not in record:
                    raise base.RouterError(
                        f"{self._record_name} {self._record_type} record {identifier!r} in zone {self._zone} "
                        "uses another routing policy (failover, latency, geolocation...), not weights"
                    )
                found[str(identifier)] = record
            if not reply.get("IsTruncated"):
                break
            next_name, next_type = reply.get("NextRecordName"), reply.get("NextRecordType")
            if (dns_name(str(next_name or "")), next_type) != wanted:
                break
            params.update(StartRecordName=next_name, StartRecordType=next_type)
            if reply.get("NextRecordIdentifier"):
                params["StartRecordIdentifier"] = reply["NextRecordIdentifier"]
        return found

    def _record_set(self, side: str, weight: int) -> dict[str, Any]:
        record = self._sides[side]
        wire: dict[str, Any] = {
            "Name": self._record_name,
            "Type": self._record_type,
            "SetIdentifier": record.set_identifier,
            "Weight": weight,
        }
        if record.value is not None:
            wire["TTL"] = self._ttl
            wire["ResourceRecords"] = [{"Value": record.value}]
        else:
            # Alias records have no TTL of their own: resolvers use the target's.
            wire["AliasTarget"] = {
                "HostedZoneId": record.alias_hosted_zone_id,
                "DNSName": record.alias_dns_name,
                "EvaluateTargetHealth": record.evaluate_target_health,
            }
        if record.health_check_id is not None:
            wire["HealthCheckId"] = record.health_check_id
        return wire

    def _describe(self, weights: dict[str, int]) -> str:
        return f"{self._record_name} {self._record_type}: " + ", ".join(
            f"{side} {weight}" for side, weight in weights.items()
        )


def _weight(record: dict[str, Any]) -> int:
    return int(record.get("Weight", 0))


def _weight_text(record: dict[str, Any] | None) -> str:
    return "absent" if record is None else str(_weight(record))


def _shares(records: dict[str, dict[str, Any] | None]) -> tuple[int, int]:
    """(blue, green) relative shares of the pair: weights, or an equal share each present record when all are 0."""
    blue, green = records["blue"], records["green"]
    weights = (_weight(blue) if blue is not None else 0, _weight(green) if green is not None else 0)
    if sum(weights) == 0:
        return int(blue is not None), int(green is not None)
    return weights


def _same_record(current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    if current is None:
        return False
    if _weight(current) != desired["Weight"] or current.get("HealthCheckId") != desired.get("HealthCheckId"):
        return False
    if "AliasTarget" in desired:
        have, want = current.get("AliasTarget") or {}, desired["AliasTarget"]
        return (
            "ResourceRecords" not in current
            and str(have.get("HostedZoneId", "")) == want["HostedZoneId"]
            and dns_name(str(have.get("DNSName", ""))) == dns_name(want["DNSName"])
            and bool(have.get("EvaluateTargetHealth", False)) == want["EvaluateTargetHealth"]
        )
    values = [str(item.get("Value", "")) for item in current.get("ResourceRecords") or []]
    wanted = [item["Value"] for item in desired["ResourceRecords"]]
    if desired["Type"] == "CNAME":
        values, wanted = [dns_name(value) for value in values], [dns_name(value) for value in wanted]
    return "AliasTarget" not in current and current.get("TTL") == desired["TTL"] and values == wanted
