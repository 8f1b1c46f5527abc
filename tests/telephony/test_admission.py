"""Inbound admission and dispatch: the right answer, and the reason in words when refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from parley.telephony.admission import Refusal, Route, TrunkMatch, check_number, match_trunk, route
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
