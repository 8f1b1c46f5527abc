"""Answering-machine detection on an answered outbound SIP call, and what follows (the agent's `amd:`).

`screen(...)` reads the callee's first audio straight from RTP (nothing is played yet), lets
`engine.amd.AmdDetector` decide, asks the agent's STT for the words of a short greeting (a machine that
says "leave a message" briefly), records the decision on the call (`metadata.amd`, timeline `amd`), and
then, on a machine: hangs up (`hangup`), waits for the beep and speaks the message (`leave_message`), or
lets the conversation start (`continue`). A person (or no decision) always gets the conversation.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from parley.agents import Agent
from parley.calls.service import CallsService
from parley.engine.amd import AmdConfig, AmdDetector, AmdResult
from parley.engine.session import Engines
from parley.logging import get_logger
from parley.sip.call import Call as SipCall
from parley.telephony.sip_channel import SipChannel

log = get_logger(__name__)


@dataclass(frozen=True)
class Screening:
    """`talk`: start the conversation; else the call is over with `reason`."""

    talk: bool
    reason: str
    result: AmdResult


def _fill(text: str, variables: dict[str, Any]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(variables.get(m.group(1), "")), text)


async def _frames(sip: SipCall, limit_ms: float) -> Any:
    rate = sip.rtp.sample_rate
    heard = 0.0
    while heard < limit_ms and not sip.ended:
        try:
            pcm = await asyncio.wait_for(sip.rtp.read_frame(), timeout=1.0)
        except TimeoutError:
            pcm = np.zeros(rate // 50, dtype=np.int16)  # no RTP at all: silence
        if pcm is None:
            return
        heard += 1000.0 * pcm.size / rate
        yield pcm


async def screen(calls: CallsService, call_id: str, metadata: dict[str, Any], sip: SipCall, agent: Agent,
                 engines: Engines, variables: dict[str, Any]) -> Screening:
    spec = agent.spec.amd
    rate = sip.rtp.sample_rate
    detector = AmdDetector(rate, AmdConfig(max_ms=spec.max_ms, greeting_max_ms=spec.greeting_max_ms,
                                           after_greeting_ms=spec.after_greeting_ms, beep_wait_ms=spec.beep_wait_ms))
    heard: list[np.ndarray] = []
    result: AmdResult | None = None
    async for pcm in _frames(sip, spec.max_ms + 200):
        heard.append(pcm)
        result = detector.push(pcm)
        if result is not None:
            break
    if result is None:
        result = AmdResult("unknown", "the call ended or sent no audio", int(detector.t_ms))
    if result.result == "human" and heard:
        # a short greeting may still be a machine's: its words decide
        try:
            words = await asyncio.wait_for(engines.stt.transcribe(np.concatenate(heard), rate), timeout=3.0)
            by_text = detector.add_text(words.text) if words.text else None
            if by_text is not None and by_text.result == "machine":
                result = AmdResult("machine", by_text.reason, result.at_ms)
        except Exception as exc:  # noqa: BLE001 - the signal's decision stands
            log.info("amd: no transcript of the greeting", error=str(exc))
    record = {**result.to_dict(), "action": spec.action if result.result == "machine" else "talk"}
    await calls.update(call_id, meta={**metadata, "amd": record})
    await calls.add_event(call_id, "amd", record)
    log.info("answering-machine detection", **record)
    if result.result != "machine" or spec.action == "continue":
        return Screening(True, "", result)
    if spec.action == "hangup":
        await sip.hangup()
        return Screening(False, f"answering machine ({result.reason}): hung up", result)
    # leave_message: after the beep (or the end of a greeting without one)
    how = None
    async for pcm in _frames(sip, spec.beep_wait_ms):
        how = detector.beep_or_end(pcm)
        if how:
            break
    await calls.add_event(call_id, "amd.beep", {"how": how or "ended", "after_ms": int(detector.t_ms)})
    text = _fill(spec.message or agent.spec.greeting.outbound or "", variables)
    channel = SipChannel(sip)
    if text and not sip.ended:
        tts = engines.tts.for_rate(rate)
        async for chunk in tts.synthesize(text):
            await channel.write(chunk)
        await channel.drain()
        await calls.add_transcript(call_id, "agent", text, metadata={"voicemail": True})
    await channel.hangup("voicemail message left")
    return Screening(False, f"answering machine: message left after the {how or 'greeting'}", result)
