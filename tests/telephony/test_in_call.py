"""In-call behaviour over SIP: DTMF from the caller reaches the conversation, the call is recorded (caller
left, agent right, one WAV), and the agent's maximum duration ends the call with our BYE."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml

from parley.agents import AgentRegistry
from tests.conftest import ROOT, free_port
from tests.sip.sipp import play_pcap, run_sipp, uac_scenario
from tests.telephony.conftest import speech_energy_seconds

pytestmark = [pytest.mark.sip, pytest.mark.slow]


@pytest.fixture
def short_recorded_agent(tmp_path: Path) -> AgentRegistry:
    agents = tmp_path / "agents"
    agents.mkdir()
    spec = yaml.safe_load((ROOT / "agents" / "receptionist.yaml").read_text())
    spec.update({"recording": True, "max_duration_s": 10,
                 "components": {**spec["components"], "stt": {"provider": "pocketsphinx"},
                                "tts": {"provider": "espeak"}}})
    (agents / "receptionist.yaml").write_text(yaml.safe_dump(spec))
    return AgentRegistry.load(agents, ROOT / "prompts")


async def test_dtmf_recording_and_max_duration(phone_stack, short_recorded_agent, tmp_path: Path) -> None:
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    stack = await phone_stack()
    stack.gateway.agents = short_recorded_agent
    # SIPp presses "1" (RFC 4733 capture) after the greeting starts, then waits for OUR BYE
    scenario = uac_scenario("PCMU", actions=play_pcap("dtmf_2833_1.pcap"), pause_ms=0, bye="remote")
    result = await run_sipp(scenario, f"127.0.0.1:{stack.sip_port}", tmp_path, port=free_port(), timeout=30)
    assert result.code == 0, str(result)  # SIPp received our BYE and answered it

    call = await stack.wait_status((await stack.only_call()).id, {"completed"})
    assert call.end_reason == "max_duration"
    duration = (call.ended_at - call.answered_at).total_seconds()
    assert 9.0 <= duration <= 14.0, duration
    detail = await stack.calls.get(call.id)
    assert detail is not None
    assert any(e.type == "dtmf" and e.data.get("digit") == "1" for e in detail.timeline), \
        [e.type for e in detail.timeline]

    assert call.recording_path
    with wave.open(call.recording_path) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 8000
        seconds = w.getnframes() / 8000
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert 9.0 <= seconds <= 12.0, seconds
    assert speech_energy_seconds(stereo[:, 1].copy()) > 2.0  # the agent's greeting, on the right channel
    assert speech_energy_seconds(stereo[:, 0].copy()) < 1.0  # the caller said nothing (DTMF is not audio)


async def test_llm_failover_is_on_the_call_timeline(phone_stack, speech_wav, tmp_path: Path) -> None:
    """The agent's LLM server is down: the scripted fallback answers the same turn, and the call's
    timeline says which provider failed and why."""
    from tests.sip.sipp import rtp_stream
    from tests.telephony.conftest import ulaw_file

    agents = tmp_path / "agents"
    agents.mkdir()
    spec = yaml.safe_load((ROOT / "agents" / "receptionist.yaml").read_text())
    spec["components"]["llm"] = {"provider": "openai", "model": "llama3.2",
                                 "base_url": f"http://127.0.0.1:{free_port(kind=1)}/v1",
                                 "fallbacks": [{"provider": "scripted"}]}
    spec["greeting"] = {"inbound": "Hello.", "outbound": "Hello."}
    (agents / "receptionist.yaml").write_text(yaml.safe_dump(spec))
    stack = await phone_stack()
    stack.gateway.agents = AgentRegistry.load(agents, ROOT / "prompts")
    await stack.gateway.warm()
    audio = ulaw_file(speech_wav("What are your opening hours?", engine="piper"), tmp_path / "q.ulaw",
                      lead_silence_s=1.5)
    scenario = uac_scenario("PCMU", actions=rtp_stream(audio, 0), pause_ms=10000)
    result = await run_sipp(scenario, f"127.0.0.1:{stack.sip_port}", tmp_path, port=free_port(), timeout=30)
    assert result.code == 0, str(result)
    call = await stack.wait_status((await stack.only_call()).id, {"completed"})
    detail = await stack.calls.get(call.id)
    assert detail is not None
    failovers = [e.data for e in detail.timeline if e.type == "provider_failover"]
    assert failovers and failovers[0]["failed"].startswith("openai") and failovers[0]["next"] == "scripted", \
        [(e.type, e.data) for e in detail.timeline]
    replies = " ".join(t.text for t in detail.transcript if t.role == "agent").lower()
    assert "monday to friday" in replies, replies
