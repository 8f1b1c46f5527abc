"""`parley livekit sip ensure | list | status | delete`: Parley's trunks and dispatch rules in LiveKit SIP.

Each Parley trunk becomes a LiveKit inbound trunk (its inbound side) and/or outbound trunk (its outbound
side), each dispatch rule a LiveKit dispatch rule, all with the same `name` and `metadata` marking them as
Parley's (`{"managed_by": "parley", ...}`). `desired()` computes what LiveKit should hold, `plan()` compares it
with what LiveKit holds and says every difference in words, `apply()` makes the changes (create, replace,
and with `prune` delete what Parley no longer has). Running it twice changes nothing the second time.

The outbound `From`: LiveKit puts the trunk's number (or CreateSIPParticipant's `sip_number`) in the From
user part. For a carrier that wants the SIP username there (`from_user: username`, the seed's 403), the
LiveKit trunk's number is the username, the From host is the carrier's domain, and the caller-ID number
travels in P-Asserted-Identity. The auth username is always the trunk's username.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from parley.telephony.trunks import DispatchRule, OutboundSide, TelephonyConfig, Trunk

if TYPE_CHECKING:
    from livekit import api as lkapi
    from livekit.protocol import sip as lksip

MANAGED_BY = "parley"
Kind = Literal["inbound trunk", "outbound trunk", "dispatch rule"]

#: How each compared field reads in a difference.
LABELS = {
    "numbers": "numbers", "allowed_addresses": "allowed source addresses", "auth_username": "auth username",
    "auth_password": "auth password", "address": "address", "transport": "transport",
    "from_user": "From user (the trunk's number LiveKit puts in From)", "from_host": "From host",
    "headers": "extra SIP headers", "metadata": "metadata", "trunks": "trunks", "called_numbers": "called numbers",
    "room_prefix": "room prefix", "attributes": "participant attributes",
}
SECRET_FIELDS = {"auth_password"}


@dataclass(frozen=True)
class Item:
    """One LiveKit object in comparable form: `fields` are plain values; `id` is LiveKit's (empty if desired)."""

    kind: Kind
    name: str
    fields: dict[str, Any]
    id: str = ""
    managed: bool = True


@dataclass
class Change:
    """What `ensure` does (or `status` would do) for one object, with the differences in words."""

    kind: Kind
    name: str
    action: Literal["create", "update", "delete", "unchanged", "conflict", "stale"]
    differences: list[str] = field(default_factory=list)
    desired: Item | None = None
    current: Item | None = None

    def describe(self) -> str:
        what = f"{self.kind} {self.name!r}"
        if self.action == "create":
            return f"{what}: missing in LiveKit, will be created"
        if self.action == "update":
            return f"{what}: " + "; ".join(self.differences)
        if self.action == "delete":
            return f"{what}: in LiveKit but no longer in Parley's config, will be deleted"
        if self.action == "stale":
            return f"{what}: in LiveKit but no longer in Parley's config (delete it with --prune)"
        if self.action == "conflict":
            return (f"{what}: LiveKit has one with this name that Parley does not manage; rename the Parley "
                    "one or delete the LiveKit one")
        return f"{what}: in sync"


@dataclass
class Desired:
    """What LiveKit should hold for a Parley config, and what could not be expressed there."""

    items: list[Item]
    notes: list[str]


def _meta(**extra: Any) -> str:
    return json.dumps({"managed_by": MANAGED_BY, **extra}, sort_keys=True)


def _auth_digest(username: str | None, password: str | None) -> str | None:
    """A short digest of the credentials, kept in metadata: a server that does not list passwords back still
    shows a changed password as drift (the password itself is never compared in words)."""
    if not password:
        return None
    return hashlib.sha256(f"{username or ''}:{password}".encode()).hexdigest()[:16]


def _is_managed(metadata: str) -> bool:
    try:
        return bool(json.loads(metadata or "{}").get("managed_by") == MANAGED_BY)
    except (ValueError, AttributeError):
        return False


def outbound_from(out: OutboundSide) -> tuple[str, str, dict[str, str]]:
    """(From user, From host, extra headers) for a LiveKit outbound trunk, the way the carrier needs."""
    headers = dict(out.headers)
    if out.from_user == "username" and out.username:
        if out.caller_id and not any(h.lower() == "p-asserted-identity" for h in headers):
            headers["P-Asserted-Identity"] = f"<sip:{out.caller_id}@{out.host}>"
        return out.username, out.host, headers
    return out.caller_id or out.username or "", "", headers


def desired(config: TelephonyConfig) -> Desired:
    """The LiveKit objects for `config`'s trunks and rules (rules refer to trunks by name here)."""
    items: list[Item] = []
    notes: list[str] = []
    inbound_names = {t.name for t in config.trunks if t.inbound}
    for trunk in config.trunks:
        items.extend(_trunk_items(trunk))
    for rule in config.dispatch_rules:
        item, note = _rule_item(rule, inbound_names)
        if note:
            notes.append(note)
        if item is not None:
            items.append(item)
    return Desired(items, notes)


def _trunk_items(trunk: Trunk) -> list[Item]:
    out: list[Item] = []
    if trunk.inbound:
        i = trunk.inbound
        out.append(Item("inbound trunk", trunk.name, {
            "numbers": sorted(i.numbers), "allowed_addresses": sorted(i.allowed_addresses),
            "auth_username": i.username or "", "auth_password": i.password.get_secret_value() if i.password else "",
            "metadata": _meta(trunk=trunk.name, auth=_auth_digest(i.username, i.password.get_secret_value()
                                                                  if i.password else None)),
        }))
    if trunk.outbound:
        o = trunk.outbound
        from_user, from_host, headers = outbound_from(o)
        address = o.host if o.port == 5060 else f"{o.host}:{o.port}"
        out.append(Item("outbound trunk", trunk.name, {
            "address": address, "transport": o.transport, "from_user": from_user, "from_host": from_host,
            "auth_username": o.username or "", "auth_password": o.password.get_secret_value() if o.password else "",
            "headers": dict(sorted(headers.items())),
            "metadata": _meta(trunk=trunk.name, caller_id=o.caller_id, from_user=o.from_user,
                              auth=_auth_digest(o.username, o.password.get_secret_value() if o.password else None)),
        }))
    return out


def _rule_item(rule: DispatchRule, inbound: set[str]) -> tuple[Item | None, str | None]:
    note = None
    trunks = sorted(rule.trunks)
    missing = [t for t in trunks if t not in inbound]
    if missing:
        return None, (f"dispatch rule {rule.name!r} is not pushed: trunk(s) {', '.join(missing)} have no inbound "
                      "side, so LiveKit has no inbound trunk to attach it to")
    if rule.prefixes:
        note = (f"dispatch rule {rule.name!r}: number prefixes ({', '.join(rule.prefixes)}) cannot be expressed in "
                "a LiveKit dispatch rule (exact numbers only); "
                + ("its exact numbers are pushed" if rule.numbers else "it is pushed as a catch-all for its trunks"))
    return Item("dispatch rule", rule.name, {
        "trunks": trunks, "called_numbers": sorted(rule.numbers), "room_prefix": f"parley-{rule.agent}-",
        "attributes": {"parley.agent": rule.agent},
        "metadata": _meta(agent=rule.agent, variables=rule.variables),
    }), note


# --- reading LiveKit --------------------------------------------------------------------------------

def current_items(inbound: list[lksip.SIPInboundTrunkInfo], outbound: list[lksip.SIPOutboundTrunkInfo],
                  rules: list[lksip.SIPDispatchRuleInfo]) -> list[Item]:
    """LiveKit's trunks and rules in the same comparable form (rules name their inbound trunks by name)."""
    from livekit.protocol import sip as lksip

    names = {t.sip_trunk_id: t.name for t in inbound}
    items: list[Item] = []
    for t in inbound:
        items.append(Item("inbound trunk", t.name, {
            "numbers": sorted(t.numbers), "allowed_addresses": sorted(t.allowed_addresses),
            "auth_username": t.auth_username, "auth_password": t.auth_password, "metadata": t.metadata,
        }, t.sip_trunk_id, _is_managed(t.metadata)))
    transports = {lksip.SIP_TRANSPORT_UDP: "udp", lksip.SIP_TRANSPORT_TCP: "tcp", lksip.SIP_TRANSPORT_TLS: "tls",
                  lksip.SIP_TRANSPORT_AUTO: "auto"}
    for o in outbound:
        items.append(Item("outbound trunk", o.name, {
            "address": o.address, "transport": transports.get(o.transport, str(o.transport)),
            "from_user": o.numbers[0] if o.numbers else "", "from_host": o.from_host,
            "auth_username": o.auth_username, "auth_password": o.auth_password,
            "headers": dict(sorted(o.headers.items())), "metadata": o.metadata,
        }, o.sip_trunk_id, _is_managed(o.metadata)))
    for r in rules:
        which = r.rule.WhichOneof("rule")
        prefix = r.rule.dispatch_rule_individual.room_prefix if which == "dispatch_rule_individual" else f"<{which}>"
        items.append(Item("dispatch rule", r.name, {
            "trunks": sorted(names.get(tid, tid) for tid in r.trunk_ids), "called_numbers": sorted(r.numbers),
            "room_prefix": prefix, "attributes": dict(sorted(r.attributes.items())), "metadata": r.metadata,
        }, r.sip_dispatch_rule_id, _is_managed(r.metadata)))
    return items


# --- comparing --------------------------------------------------------------------------------------

def _difference(name: str, old: Any, new: Any) -> str:
    label = LABELS.get(name, name)
    if name in SECRET_FIELDS:
        return f"{label} differs"
    if name == "metadata":
        try:
            was, want = json.loads(old or "{}"), json.loads(new or "{}")
        except ValueError:
            return "Parley's metadata is not JSON in LiveKit"
        keys = sorted(k for k in set(was) | set(want) if was.get(k) != want.get(k))
        words = {"auth": "credentials (by digest)", "agent": "agent", "variables": "variables",
                 "caller_id": "caller ID", "from_user": "From mode", "trunk": "trunk name"}
        return "Parley's record of " + ", ".join(words.get(k, k) for k in keys) + " differs"
    if isinstance(new, list) and isinstance(old, list):
        added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
        parts = ([f"add {', '.join(map(str, added))}"] if added else []) + \
                ([f"remove {', '.join(map(str, removed))}"] if removed else [])
        return f"{label}: " + "; ".join(parts)
    old_s = repr(old) if old not in ("", {}, None) else "not set"
    new_s = repr(new) if new not in ("", {}, None) else "not set"
    return f"{label} is {old_s} in LiveKit, Parley's config says {new_s}"


def plan(want: Desired, have: list[Item], *, only: set[str] | None = None, prune: bool = False) -> list[Change]:
    """Every create/update/unchanged/conflict for `want`, and stale (or, with `prune`, delete) for managed
    LiveKit objects Parley no longer has. `only` limits it to those names."""
    changes: list[Change] = []
    index = {(i.kind, i.name): i for i in have}
    wanted = {(i.kind, i.name) for i in want.items}
    for item in want.items:
        if only and item.name not in only:
            continue
        cur = index.get((item.kind, item.name))
        if cur is None:
            changes.append(Change(item.kind, item.name, "create", desired=item))
        elif not cur.managed:
            changes.append(Change(item.kind, item.name, "conflict", desired=item, current=cur))
        else:
            diffs = [_difference(k, cur.fields.get(k), v) for k, v in item.fields.items()
                     if cur.fields.get(k) != v and not (k in SECRET_FIELDS and not cur.fields.get(k))]
            changes.append(Change(item.kind, item.name, "update" if diffs else "unchanged", diffs, item, cur))
    for cur in have:
        if cur.managed and (cur.kind, cur.name) not in wanted and (not only or cur.name in only):
            changes.append(Change(cur.kind, cur.name, "delete" if prune else "stale", current=cur))
    return changes


# --- talking to LiveKit -----------------------------------------------------------------------------

async def read(client: lkapi.LiveKitAPI) -> tuple[list[Item], dict[str, Any]]:
    """LiveKit's trunks and rules (comparable), and the raw objects by id."""
    from livekit.protocol import sip as lksip

    inbound = list((await client.sip.list_inbound_trunk(lksip.ListSIPInboundTrunkRequest())).items)
    outbound = list((await client.sip.list_outbound_trunk(lksip.ListSIPOutboundTrunkRequest())).items)
    rules = list((await client.sip.list_dispatch_rule(lksip.ListSIPDispatchRuleRequest())).items)
    raw: dict[str, Any] = {t.sip_trunk_id: t for t in inbound}
    raw.update({t.sip_trunk_id: t for t in outbound})
    raw.update({r.sip_dispatch_rule_id: r for r in rules})
    return current_items(inbound, outbound, rules), raw


def _inbound_info(item: Item) -> lksip.SIPInboundTrunkInfo:
    from livekit.protocol import sip as lksip

    f = item.fields
    return lksip.SIPInboundTrunkInfo(name=item.name, metadata=f["metadata"], numbers=f["numbers"],
                                     allowed_addresses=f["allowed_addresses"], auth_username=f["auth_username"],
                                     auth_password=f["auth_password"])


def _outbound_info(item: Item) -> lksip.SIPOutboundTrunkInfo:
    from livekit.protocol import sip as lksip

    f = item.fields
    transport = {"udp": lksip.SIP_TRANSPORT_UDP, "tcp": lksip.SIP_TRANSPORT_TCP,
                 "tls": lksip.SIP_TRANSPORT_TLS}[f["transport"]]
    return lksip.SIPOutboundTrunkInfo(
        name=item.name, metadata=f["metadata"], address=f["address"], transport=transport,
        numbers=[f["from_user"]] if f["from_user"] else [], from_host=f["from_host"],
        auth_username=f["auth_username"], auth_password=f["auth_password"], headers=f["headers"])


def _rule_info(item: Item, trunk_ids: dict[str, str]) -> lksip.SIPDispatchRuleInfo:
    from livekit.protocol import sip as lksip

    f = item.fields
    return lksip.SIPDispatchRuleInfo(
        name=item.name, metadata=f["metadata"], trunk_ids=[trunk_ids[n] for n in f["trunks"]],
        numbers=f["called_numbers"], attributes=f["attributes"],
        rule=lksip.SIPDispatchRule(dispatch_rule_individual=lksip.SIPDispatchRuleIndividual(
            room_prefix=f["room_prefix"])))


async def apply(client: lkapi.LiveKitAPI, changes: list[Change]) -> None:
    """Make `changes` in LiveKit: trunks first (rules need their ids), then rules; deletions rules first."""
    from livekit.protocol import sip as lksip

    items, _ = await read(client)
    trunk_ids = {i.name: i.id for i in items if i.kind == "inbound trunk"}
    for ch in [c for c in changes if c.action == "delete" and c.kind == "dispatch rule"]:
        assert ch.current is not None
        await client.sip.delete_dispatch_rule(lksip.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=ch.current.id))
    for ch in [c for c in changes if c.action == "delete" and c.kind != "dispatch rule"]:
        assert ch.current is not None
        await client.sip.delete_trunk(lksip.DeleteSIPTrunkRequest(sip_trunk_id=ch.current.id))
    for ch in changes:
        if ch.action not in ("create", "update") or ch.desired is None or ch.kind == "dispatch rule":
            continue
        if ch.kind == "inbound trunk":
            info = _inbound_info(ch.desired)
            if ch.action == "create":
                made = await client.sip.create_inbound_trunk(lksip.CreateSIPInboundTrunkRequest(trunk=info))
            else:
                assert ch.current is not None
                made = await client.sip.update_inbound_trunk(ch.current.id, info)
            trunk_ids[ch.name] = made.sip_trunk_id
        else:
            out = _outbound_info(ch.desired)
            if ch.action == "create":
                await client.sip.create_outbound_trunk(lksip.CreateSIPOutboundTrunkRequest(trunk=out))
            else:
                assert ch.current is not None
                await client.sip.update_outbound_trunk(ch.current.id, out)
    for ch in changes:
        if ch.kind != "dispatch rule" or ch.action not in ("create", "update") or ch.desired is None:
            continue
        rule = _rule_info(ch.desired, trunk_ids)
        if ch.action == "create":
            await client.sip.create_dispatch_rule(lksip.CreateSIPDispatchRuleRequest(dispatch_rule=rule))
        else:
            assert ch.current is not None
            await client.sip.update_dispatch_rule(ch.current.id, rule)


async def delete(client: lkapi.LiveKitAPI, names: set[str] | None) -> list[Change]:
    """Delete Parley-managed trunks and rules from LiveKit (all, or those named); never others'."""
    have, _ = await read(client)
    doomed = [Change(i.kind, i.name, "delete", current=i) for i in have
              if i.managed and (not names or i.name in names)]
    await apply(client, doomed)
    return doomed
