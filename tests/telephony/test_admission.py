"""Inbound admission and dispatch: the right answer, and the reason in words when refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from parley.support.loop_load import LoadReading
from parley.telephony.admission import (
    Refusal,
    Route,
    TrunkMatch,
    apply_webhook_answer,
    check_capacity,
    check_load,
    check_number,
    match_trunk,
    route,
)
from parley.telephony.trunks import DispatchRule, Trunk

TWILIO = Trunk.model_validate({
    "name": "twilio",
    "inbound": {"allowed_addresses": ["54.172.60.0/30", "10.1.2.3"], "numbers": ["+4930123456"]},
    "outbound": {"host": "example.pstn.twilio.com", "username": "u", "password": "p", "caller_id": "+4930123456"},
})
PBX = Trunk.model_validate({"name": "pbx", "inbound": {"username": "pbx", "password": "s3cret"}})


def test_address_match_and_refusal_names_closest_trunk() -> None:
    assert match_trunk([TWILIO], "54.172.60.2", loopback_fallback=True) == TrunkMatch(trunk=TWILIO)
    refused = match_trunk([TWILIO], "203.0.113.9", loopback_fallback=True)
    assert isinstance(refused, Refusal) and refused.code == 403
    assert "203.0.113.9" in refused.reason and "'twilio'" in refused.reason and "54.172.60.0/30" in refused.reason


def test_credential_trunks_are_challenged() -> None:
    match = match_trunk([TWILIO, PBX], "198.51.100.7", loopback_fallback=False)
    assert isinstance(match, TrunkMatch) and match.challenge == [PBX]


def test_no_trunk_accepts_loopback_only() -> None:
    assert match_trunk([], "127.0.0.1", loopback_fallback=True) == TrunkMatch(trunk=None)
    refused = match_trunk([], "192.0.2.1", loopback_fallback=True)
    assert isinstance(refused, Refusal) and refused.code == 403 and "loopback" in refused.reason


def test_number_not_carried_is_404() -> None:
    assert check_number(TWILIO, "+49 30 123456") is None
    refused = check_number(TWILIO, "+15550001")
    assert refused and refused.code == 404 and "+15550001" in refused.reason and "+4930123456" in refused.reason


def test_dispatch_most_specific_rule_wins() -> None:
    rules = [
        DispatchRule(name="catch-all", agent="receptionist"),
        DispatchRule(name="berlin", prefixes=["+4930"], agent="german"),
        DispatchRule(name="hotline", numbers=["+4930123456"], agent="support"),
    ]
    assert route(rules, "+4930123456", "twilio", "default") == Route("support", "hotline")
    assert route(rules, "+4930999", "twilio", "default").agent == "german"  # type: ignore[union-attr]
    assert route(rules, "+1555", None, "default").agent == "receptionist"  # type: ignore[union-attr]
    assert route([], "+1555", None, "default") == Route("default", None)


def test_dispatch_no_match_names_rules() -> None:
    rules = [DispatchRule(name="berlin", prefixes=["+4930"], trunks=["twilio"], agent="german")]
    refused = route(rules, "+1555", "pbx", "default")
    assert isinstance(refused, Refusal) and refused.code == 404
    assert "'berlin'" in refused.reason and "+1555" in refused.reason and "pbx" in refused.reason


def test_trunk_validation_errors_are_specific() -> None:
    with pytest.raises(ValidationError, match="not an IP address or CIDR"):
        Trunk.model_validate({"name": "x", "inbound": {"allowed_addresses": ["nonsense"]}})
    with pytest.raises(ValidationError, match="nobody can call"):
        Trunk.model_validate({"name": "x", "inbound": {}})
    with pytest.raises(ValidationError, match="E.164"):
        Trunk.model_validate({"name": "x", "outbound": {"host": "h", "caller_id": "12"}})
    with pytest.raises(ValidationError, match="from_user is 'username'"):
        Trunk.model_validate({"name": "x", "outbound": {"host": "h", "from_user": "username"}})


def test_outbound_from_user_and_uri() -> None:
    out = TWILIO.outbound
    assert out is not None
    assert out.from_user_part() == "+4930123456"
    assert out.model_copy(update={"from_user": "username"}).from_user_part() == "u"
    assert out.uri_for("+1 (555) 000-1") == "sip:+15550001@example.pstn.twilio.com"
    assert TWILIO.public_dict()["outbound"]["password"] == "********"


def test_incoming_call_webhook_answer_over_the_rule() -> None:
    rule = Route(agent="receptionist", rule="main", variables={"lang": "en"})
    assert apply_webhook_answer("not a dict", rule, "pbx") == rule
    assert apply_webhook_answer({}, rule, "pbx") == Route("receptionist", "webhook", {"lang": "en"})
    chosen = apply_webhook_answer({"agent": "german_assistant", "variables": {"vip": True}}, rule, "pbx")
    assert chosen == Route("german_assistant", "webhook", {"lang": "en", "vip": True})
    assert apply_webhook_answer({"action": "reject", "code": 486, "reason": "closed"}, rule, "pbx") == Refusal(
        486, "rejected by the incoming-call webhook: closed", "pbx")
    bad_code = apply_webhook_answer({"action": "reject", "code": 200}, rule, None)
    assert isinstance(bad_code, Refusal) and bad_code.code == 603


def test_capacity_per_trunk_per_agent_and_overall() -> None:
    capped = Trunk.model_validate({"name": "pbx", "inbound": {"allowed_addresses": ["10.0.0.1"],
                                                              "max_concurrent_calls": 1}})
    assert check_capacity(capped, "receptionist", None, [], slots=4) is None
    full_trunk = check_capacity(capped, "receptionist", None, [("pbx", "other")], slots=4)
    assert full_trunk is not None and full_trunk.code == 486 and "trunk 'pbx' is at its cap of 1" in full_trunk.reason
    full_agent = check_capacity(None, "receptionist", 2, [(None, "receptionist")] * 2, slots=4)
    assert full_agent is not None and full_agent.code == 486 and "agent 'receptionist'" in full_agent.reason
    no_slot = check_capacity(None, "receptionist", None, [(None, "a"), ("x", "b")], slots=2)
    assert no_slot == Refusal(503, "all 2 conversation slots are busy (NUM_AGENTS)")


def test_an_overloaded_event_loop_refuses_new_calls_saying_why() -> None:
    def reading(busy: float, calls_mean: float, calls: int, waiting: float = 0.01) -> LoadReading:
        return LoadReading(busy, waiting, calls_mean, calls, 5.0)

    limits = {"max_busy": 0.8, "max_wait": 0.05}
    assert check_load(reading(0.60, 100, 100), **limits) is None
    busy = check_load(reading(0.91, 120, 120), **limits)
    assert busy is not None and busy.code == 503
    assert "overloaded" in busy.reason and "91%" in busy.reason and "MAX_LOOP_BUSY 80%" in busy.reason
    # a ramp: the window saw 60 % with 80 calls on average, but 120 are up now - ~91 % with the next one
    ramp = check_load(reading(0.60, 80, 120), **limits)
    assert ramp is not None and "120 up now" in ramp.reason and "~91%" in ramp.reason
    starved = check_load(reading(0.40, 50, 50, waiting=0.11), **limits)
    assert starved is not None and starved.code == 503
    assert "short of CPU" in starved.reason and "11%" in starved.reason
    assert "MAX_LOOP_WAIT 5%" in starved.reason
    # a laptop's few calls: the loop waits on the speech engines' threads now and then, and keeps up
    assert check_load(reading(0.05, 2, 2, waiting=0.30), **limits) is None
    assert check_load(reading(0.99, 200, 200, 0.5), max_busy=0.0, max_wait=0.0) is None, "0 turns a limit off"
    assert check_load(reading(0.50, 100, 100, 0.2), max_busy=0.0, max_wait=0.05) is not None, "the wait alone"
    assert check_load(reading(0.05, 2, 2, 0.3), max_busy=0.0, max_wait=0.05) is None
    assert check_load(reading(0.30, 0.2, 3), **limits) is None, "an idle worker's own chores are not per call"
