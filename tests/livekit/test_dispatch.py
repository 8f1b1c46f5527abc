"""Agent choice for a room session and who the caller is: pure decisions, each with its reason in words."""

from __future__ import annotations

import json

from parley.telephony.admission import Refusal
from parley.telephony.livekit.dispatch import KIND_AGENT, KIND_SIP, Choice, Participant, choose_agent, pick_caller
from parley.telephony.livekit.outbound import from_user, is_livekit
from parley.telephony.trunks import DispatchRule

AGENTS = ["receptionist", "sales", "support"]
RULES = [DispatchRule(name="de", prefixes=["+49"], agent="sales", variables={"lang": "de"}),
         DispatchRule(name="hotline", numbers=["+4930123456"], agent="support")]
SIP = {"sip.callID": "SCL_1", "sip.trunkPhoneNumber": "+4930123456", "sip.phoneNumber": "+4917600000"}


def choose(room: str = "room", room_meta: str = "", p: Participant | None = None,
           rules: list[DispatchRule] | None = None) -> Choice | Refusal:
    return choose_agent(room, room_meta, p or Participant("web"), rules=RULES if rules is None else rules,
                        agents=AGENTS, default_agent="receptionist")


def test_the_order_of_choice() -> None:
    attr = Participant("x", KIND_SIP, json.dumps({"agent": "sales"}), {**SIP, "parley.agent": "support"})
    assert choose(p=attr) == Choice("support", {}, "participant attribute parley.agent")
    meta = Participant("x", 0, json.dumps({"agent": "sales", "variables": {"name": "Ada"}}))
    assert choose(room_meta=json.dumps({"agent": "support", "variables": {"name": "Bob", "plan": "pro"}}),
                  p=meta) == Choice("sales", {"name": "Ada", "plan": "pro"}, "participant metadata agent")
    assert choose(room_meta=json.dumps({"agent": "support"})).reason == "room metadata agent"
    sip = Participant("sip_1", KIND_SIP, "", SIP)
    assert choose(p=sip) == Choice("support", {}, "dispatch rule 'hotline' for called number +4930123456")
    assert choose(room="parley-sales-abc").reason == "room name prefix parley-sales-"
    assert choose(room="lobby") == Choice("receptionist", {}, "default agent")
    assert choose_agent("lobby", "", Participant("web"), rules=RULES, agents=AGENTS, default_agent=None) is None


def test_unknown_agents_and_unmatched_numbers_are_refused_in_words() -> None:
    refused = choose(room_meta=json.dumps({"agent": "nobody"}))
    assert isinstance(refused, Refusal) and "room metadata agent asks for agent 'nobody'" in refused.reason
    lone = choose(p=Participant("s", KIND_SIP, "", {**SIP, "sip.trunkPhoneNumber": "+15550000"}),
                  rules=[RULES[1]])
    assert isinstance(lone, Refusal) and "no dispatch rule matches number '+15550000'" in lone.reason


def test_metadata_that_is_not_a_json_object_is_ignored() -> None:
    assert choose(room_meta="not json", p=Participant("w", 0, "[1, 2]")) == Choice("receptionist", {},
                                                                                  "default agent")


def test_the_caller_is_the_sip_participant_else_the_first_non_agent() -> None:
    web, sip = Participant("web"), Participant("sip_1", KIND_SIP, "", SIP)
    bot, ours = Participant("other-bot", KIND_AGENT), Participant("parley-agent-room")
    assert pick_caller([bot, ours, web, sip]) == sip
    assert pick_caller([bot, web]) == web
    assert pick_caller([bot, ours]) is None
    assert pick_caller([web, sip], "web") == web and pick_caller([web], "ghost") is None


def test_outbound_from_user() -> None:
    meta = json.dumps({"managed_by": "parley", "caller_id": "+4930123456"})
    assert from_user(["acme-user"], meta, "+4930999") == "acme-user"  # the carrier wants the username
    assert from_user(["+4930123456"], meta, "+4930999") == "+4930999"  # number From: the call's own number
    assert from_user(["+4930123456"], meta, None) == "+4930123456"
    assert is_livekit("livekit:carrier") and not is_livekit("carrier") and not is_livekit(None)
