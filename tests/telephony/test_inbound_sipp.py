"""A real phone call in: SIPp dials the gateway, speaks synthesised speech as RTP, and the offline agent
(Whisper base + scripted intents + piper) answers it. Also the refusals: 403, 404, 486/503."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.telephony.trunks import DispatchRule, Trunk
from tests.sip.sipp import rtp_stream, run_sipp, uac_scenario
from tests.telephony.conftest import RtpSniffer, speech_energy_seconds, ulaw_file

pytestmark = [pytest.mark.sip, pytest.mark.slow]


async def test_sipp_call_talks_to_the_offline_agent(phone_stack, webhook_receiver, speech_wav, tmp_path: Path,
                                                    free_media_port: int) -> None:
    stack = await phone_stack(warm=True, webhook_url=webhook_receiver.url)
    wav = speech_wav("I would like to book an appointment for Tuesday.", engine="piper")
    # the agent greets first (about 5 s); the caller speaks after it
    audio = ulaw_file(wav, tmp_path / "caller.ulaw", lead_silence_s=6.0, tail_silence_s=0.5)
    sniffer = RtpSniffer(free_media_port)
    try:
        scenario = uac_scenario("PCMU", actions=rtp_stream(audio, 0), pause_ms=17000)
        result = await run_sipp(scenario, f"127.0.0.1:{stack.sip_port}", tmp_path, port=_sipp_port(),
                                extra=["-mp", str(free_media_port), "-s", "+4930123456"], timeout=40)
    finally:
        sniffer.stop()
    assert result.code == 0, str(result)

    call = await stack.only_call()
    call = await stack.wait_status(call.id, {"completed"})
    assert call.direction == "inbound" and call.agent == "receptionist" and call.end_reason
    detail = await stack.calls.get(call.id)
    assert detail is not None
    caller_text = " ".join(e.text for e in detail.transcript if e.role == "caller").lower()
    agent_text = " ".join(e.text for e in detail.transcript if e.role == "agent").lower()
    assert "appointment" in caller_text and "tuesday" in caller_text, caller_text
    assert "parley dental" in agent_text  # the greeting
    assert "book" in agent_text and "tuesday" in agent_text, agent_text  # the booking intent, with its slot

    # what SIPp received: the greeting and the reply, as real speech
    heard = sniffer.audio(0)
    assert len(heard) > 8000 * 8, "less than 8 s of RTP reached SIPp"
    assert speech_energy_seconds(heard) > 4.0

    ended = await webhook_receiver.wait_for("call.ended")
    assert ended["call"]["id"] == call.id
    assert any("appointment" in t["text"].lower() for t in ended["transcript"])


def _sipp_port() -> int:
    from tests.conftest import free_port

    return free_port()


@pytest.fixture
def free_media_port() -> int:
    from tests.conftest import free_port

    return free_port() & ~1


async def _ok_call(stack, tmp_path: Path, service: str = "+4930123456") -> None:  # type: ignore[no-untyped-def]
    scenario = uac_scenario("PCMU", pause_ms=600)
    result = await run_sipp(scenario, f"127.0.0.1:{stack.sip_port}", tmp_path, port=_sipp_port(),
                            extra=["-s", service], timeout=20)
    assert result.code == 0, str(result)


async def test_refusals_are_explained_and_service_continues(phone_stack, tmp_path: Path) -> None:
    stack = await phone_stack()
    tel = stack.gateway.telephony
    # a trunk that allows another network only: loopback caller → 403
    await tel.put(Trunk.model_validate({"name": "carrier", "inbound": {"allowed_addresses": ["203.0.113.0/24"],
                                                                      "numbers": ["+4930123456"]}}))
    await stack.gateway.reload()
    refused = await run_sipp(uac_scenario("PCMU", expect=403), f"127.0.0.1:{stack.sip_port}", tmp_path,
                             port=_sipp_port(), extra=["-s", "+4930123456"], timeout=15)
    assert refused.code == 0, str(refused)
    state = stack.gateway.trunk_state["carrier"]
    assert state.last_error and "127.0.0.1" in state.last_error and "203.0.113.0/24" in state.last_error

    # allow loopback; a number the trunk does not carry → 404
    await tel.put(Trunk.model_validate({"name": "carrier", "inbound": {"allowed_addresses": ["127.0.0.0/8"],
                                                                      "numbers": ["+4930123456"]}}))
    await stack.gateway.reload()
    missing = await run_sipp(uac_scenario("PCMU", expect=404), f"127.0.0.1:{stack.sip_port}", tmp_path,
                             port=_sipp_port(), extra=["-s", "+15550000"], timeout=15)
    assert missing.code == 0, str(missing)

    # a dispatch rule for another prefix only → 404 too
    await tel.put(DispatchRule(name="berlin", prefixes=["+4930"], agent="receptionist"))
    await tel.put(Trunk.model_validate({"name": "carrier", "inbound": {"allowed_addresses": ["127.0.0.0/8"]}}))
    await stack.gateway.reload()
    no_rule = await run_sipp(uac_scenario("PCMU", expect=404), f"127.0.0.1:{stack.sip_port}", tmp_path,
                             port=_sipp_port(), extra=["-s", "+15550000"], timeout=15)
    assert no_rule.code == 0, str(no_rule)

    # and the next good call is answered
    await _ok_call(stack, tmp_path)
    calls, _ = await stack.calls.list_calls(limit=10)
    assert len(calls) == 1 and calls[0].to_number == "+4930123456"  # refused INVITEs leave no call record


async def test_digest_trunk_right_and_wrong_password(phone_stack, tmp_path: Path) -> None:
    stack = await phone_stack()
    await stack.gateway.telephony.put(Trunk.model_validate(
        {"name": "pbx", "inbound": {"username": "pbx", "password": "s3cret"}}))
    await stack.gateway.reload()
    wrong = await run_sipp(uac_scenario("PCMU", auth=True, expect=403), f"127.0.0.1:{stack.sip_port}", tmp_path,
                           port=_sipp_port(), extra=["-s", "+4930123456", "-au", "pbx", "-ap", "wrong"], timeout=15)
    assert wrong.code == 0, str(wrong)
    right = await run_sipp(uac_scenario("PCMU", auth=True, pause_ms=500), f"127.0.0.1:{stack.sip_port}", tmp_path,
                           port=_sipp_port(), extra=["-s", "+4930123456", "-au", "pbx", "-ap", "s3cret"], timeout=20)
    assert right.code == 0, str(right)
    call = await stack.only_call()
    assert call.trunk == "pbx"


async def test_over_capacity_is_busy_then_next_call_answered(phone_stack, tmp_path: Path) -> None:
    """This worker's one slot is taken: the next INVITE gets 503, which says nothing about the trunk (its
    last error stays empty; a trunk-wide cap would be the trunk's), and once the slot is free a call is
    answered."""
    stack = await phone_stack(num_agents=1)
    await stack.gateway.telephony.put(Trunk.model_validate(
        {"name": "carrier", "inbound": {"allowed_addresses": ["127.0.0.0/8"]}}))
    await stack.gateway.reload()
    first = uac_scenario("PCMU", pause_ms=4000)
    import asyncio

    long_call = asyncio.create_task(run_sipp(first, f"127.0.0.1:{stack.sip_port}", tmp_path, port=_sipp_port(),
                                             extra=["-s", "+4930123456"], timeout=20))
    first = await stack.only_call()
    await stack.wait_status(first.id, {"in_progress"})
    busy = await run_sipp(uac_scenario("PCMU", expect=503), f"127.0.0.1:{stack.sip_port}", tmp_path,
                          port=_sipp_port(), extra=["-s", "+4930123456"], timeout=15)
    assert busy.code == 0, str(busy)
    assert stack.gateway.state("carrier").last_error is None
    assert (await long_call).code == 0
    await stack.wait_status(first.id, {"completed"})  # its slot is free once its record is closed
    await _ok_call(stack, tmp_path)


async def test_incoming_call_webhook_chooses_variables_or_rejects(phone_stack, webhook_receiver,
                                                                  tmp_path: Path) -> None:
    stack = await phone_stack(incoming_call_webhook_url=webhook_receiver.url, incoming_call_webhook_timeout_s=1.0)
    webhook_receiver.answer = {"action": "reject", "code": 486, "reason": "closed today"}
    rejected = await run_sipp(uac_scenario("PCMU", expect=486), f"127.0.0.1:{stack.sip_port}", tmp_path,
                              port=_sipp_port(), extra=["-s", "+4930123456"], timeout=15)
    assert rejected.code == 0, str(rejected)
    asked = [e for e in webhook_receiver.events if e.get("type") == "call.incoming"]
    assert asked and asked[0]["to"] == "+4930123456" and asked[0]["source"] == "127.0.0.1"

    webhook_receiver.answer = {"variables": {"company_name": "Acme Clinic"}}
    await _ok_call(stack, tmp_path)
    call = await stack.wait_status((await stack.only_call()).id, {"completed"})
    assert call.variables.get("company_name") == "Acme Clinic"

    # a webhook that answers too late: the dispatch rule decides and the call is still answered
    webhook_receiver.answer = {"action": "reject"}
    webhook_receiver.delay_s = 2.0
    await _ok_call(stack, tmp_path)
