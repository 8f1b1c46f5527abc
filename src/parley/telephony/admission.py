"""Inbound admission: is this INVITE from a trunk we know, and which agent answers it?

Every refusal carries a SIP status and a reason in words naming the source address, the called
number and the closest trunk or rule — "no trunk found" alone is what users of other gateways hate.
Order: trunk authentication (address, else digest) → numbers the trunk carries → dispatch rule → the
incoming-call webhook's answer → capacity (per trunk, per agent, NUM_AGENTS) → load (the worker's event
loop, `check_load`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from parley.calls.slots import Claim
from parley.support.loop_load import LoadReading
from parley.telephony.trunks import DispatchRule, Trunk


@dataclass(frozen=True)
class Refusal:
    """A SIP status to answer and why, in words for the log and the timeline."""

    code: int
    reason: str
    trunk: str | None = None


@dataclass(frozen=True)
class TrunkMatch:
    """Trunk authentication outcome: the trunk, or the trunks whose credentials must be challenged."""

    trunk: Trunk | None = None
    challenge: list[Trunk] = field(default_factory=list)


@dataclass(frozen=True)
class Route:
    """Where an admitted call goes."""

    agent: str
    rule: str | None
    variables: dict[str, Any] = field(default_factory=dict)


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def match_trunk(trunks: list[Trunk], source_ip: str, *, loopback_fallback: bool) -> TrunkMatch | Refusal:
    """Authenticate the sender by address, or name the trunks whose digest credentials must be checked."""
    inbound = [t for t in trunks if t.inbound is not None]
    if not inbound:
        if loopback_fallback and is_loopback(source_ip):
            return TrunkMatch(trunk=None)
        return Refusal(
            403,
            f"call from {source_ip} refused: no inbound trunk is configured, so only loopback callers are "
            "accepted; add one with `parley trunk ensure` (allowed_addresses or username/password)",
        )
    for trunk in inbound:
        assert trunk.inbound is not None
        if trunk.inbound.address_allowed(source_ip):
            return TrunkMatch(trunk=trunk)
    with_credentials = [t for t in inbound if t.inbound and t.inbound.username]
    if with_credentials:
        return TrunkMatch(challenge=with_credentials)
    closest = inbound[0]
    assert closest.inbound is not None
    allowed = ", ".join(closest.inbound.allowed_addresses)
    return Refusal(
        403,
        f"call from {source_ip} refused: no inbound trunk allows this address "
        f"(closest: trunk {closest.name!r} allows {allowed}); add the address to allowed_addresses "
        "or give the trunk credentials",
        trunk=closest.name,
    )


def check_number(trunk: Trunk | None, called: str) -> Refusal | None:
    """404 when the authenticated trunk does not carry the called number."""
    if trunk is None or trunk.inbound is None or trunk.inbound.carries(called):
        return None
    return Refusal(
        404,
        f"number {called!r} is not carried by trunk {trunk.name!r} "
        f"(it carries {', '.join(trunk.inbound.numbers)}); add it to the trunk's numbers",
        trunk=trunk.name,
    )


def route(rules: list[DispatchRule], called: str, trunk: str | None, default_agent: str) -> Route | Refusal:
    """The best dispatch rule for the call; with no rules at all, the default agent answers."""
    if not rules:
        return Route(agent=default_agent, rule=None)
    scored = [(r.score(called, trunk), -r.priority, r.name, r) for r in rules]
    matching = [s for s in scored if s[0] is not None]
    if not matching:
        names = ", ".join(
            f"{r.name!r} ({'/'.join(r.numbers + [p + '…' for p in r.prefixes]) or 'any number'}"
            f"{' on ' + '/'.join(r.trunks) if r.trunks else ''})"
            for r in rules[:5]
        )
        return Refusal(
            404,
            f"no dispatch rule matches number {called!r} on trunk {trunk or '(loopback)'}: rules are {names}; "
            "add a rule for it or a catch-all rule (no numbers/prefixes)",
            trunk=trunk,
        )
    best = max(matching, key=lambda s: (s[0], -s[1]))[3]
    return Route(agent=best.agent, rule=best.name, variables=dict(best.variables))


def apply_webhook_answer(answer: object, decision: Route, trunk: str | None) -> Route | Refusal:
    """The incoming-call webhook's JSON answer over the rule's `decision`: `{"action": "reject", "code",
    "reason"}` refuses (code 400–699, else 603); `agent` / `variables` change the route; anything else
    leaves the rule's decision."""
    if not isinstance(answer, dict):
        return decision
    if answer.get("action") == "reject":
        code = answer.get("code", 603)
        code = code if isinstance(code, int) and 400 <= code <= 699 else 603
        return Refusal(code, f"rejected by the incoming-call webhook: {answer.get('reason', 'no reason')}", trunk)
    variables = {**decision.variables, **(answer.get("variables") or {})}
    return Route(agent=str(answer.get("agent") or decision.agent), rule="webhook", variables=variables)


def check_capacity(trunk: Trunk | None, agent: str, agent_cap: int | None,
                   live: Sequence[tuple[str | None, str]], slots: int) -> Refusal | None:
    """Room for one more call? `live` holds (trunk, agent) of every call running now, `slots` is NUM_AGENTS.
    A full trunk or agent answers 486, no free slot 503."""
    if trunk and trunk.inbound and trunk.inbound.max_concurrent_calls is not None:
        if sum(1 for t, _ in live if t == trunk.name) >= trunk.inbound.max_concurrent_calls:
            return Refusal(486, f"trunk {trunk.name!r} is at its cap of "
                                f"{trunk.inbound.max_concurrent_calls} concurrent calls", trunk.name)
    if agent_cap is not None and sum(1 for _, a in live if a == agent) >= agent_cap:
        return Refusal(486, f"agent {agent!r} is at its cap of {agent_cap} concurrent calls")
    if len(live) >= slots:
        return Refusal(503, f"all {slots} conversation slots are busy (NUM_AGENTS)")
    return None


def check_load(load: LoadReading, *, max_busy: float, max_wait: float) -> Refusal | None:
    """Room on this worker's event loop for one more call? Over MAX_LOOP_BUSY with it (the share of a core the
    loop used over the window, per call, projected onto the calls up now and one more) or over MAX_LOOP_WAIT
    (the share of the window the loop waited for a CPU: the machine is short of cores) while the loop carries
    at least half of MAX_LOOP_BUSY (of 0.8 when that is off: a few calls waiting on speech engines' threads for
    a core now and then are not late); a limit of 0 is off.
    Over either: 503 (Kamailio tries the next worker; a trunk retries after Retry-After) — admitted, the call
    would make every call's audio late."""
    if max_busy and load.with_next_call >= max_busy:
        return Refusal(503, f"this worker is overloaded: its event loop used {load.busy:.0%} of a core over "
                            f"the last {load.window_s:g} s with {load.calls_mean:.0f} calls up on average; with "
                            f"{load.calls} up now and one more it would be ~{load.with_next_call:.0%} "
                            f"(MAX_LOOP_BUSY {max_busy:.0%}): every call's audio would be late")
    if max_wait and load.waiting >= max_wait and load.with_next_call >= (max_busy or 0.8) / 2:
        return Refusal(503, f"this worker is short of CPU: its event loop waited for a core "
                            f"{load.waiting:.0%} of the last {load.window_s:g} s (MAX_LOOP_WAIT {max_wait:.0%}); "
                            "other threads or processes take the machine's cores")
    return None


def capacity_claims(trunk: Trunk | None, agent: str, agent_cap: int | None, cluster_cap: int | None,
                    *, direction: str = "inbound") -> list[Claim]:
    """The caps a call counts against beside its worker's own (NUM_AGENTS, always in `CallSlots`):
    the cluster-wide `MAX_CONCURRENT_CALLS` (503), the trunk's cap for this direction and the agent's cap
    (486). They are reserved together, atomically, by `CallSlots` (cluster-wide when Redis is set)."""
    claims: list[Claim] = []
    if trunk is not None:
        side = trunk.inbound if direction == "inbound" else trunk.outbound
        cap = side.max_concurrent_calls if side is not None else None
        if cap is not None:
            claims.append(Claim(f"trunk:{direction}:{trunk.name}", cap, 486,
                                f"trunk {trunk.name!r} is at its cap of {cap} concurrent {direction} calls"))
    if agent_cap is not None:
        claims.append(Claim(f"agent:{agent}", agent_cap, 486,
                            f"agent {agent!r} is at its cap of {agent_cap} concurrent calls"))
    if cluster_cap:
        claims.append(Claim("cluster", cluster_cap, 503,
                            f"all {cluster_cap} conversation slots of the cluster are busy (MAX_CONCURRENT_CALLS)"))
    return claims
