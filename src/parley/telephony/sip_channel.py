"""`SipChannel`: the engine's `MediaChannel` over a SIP call and its RTP session.

Inbound frames come from `RtpSession.read_frame()` (paced, continuous, silence-filled), so the media
clock is the RTP clock; DTMF from RFC 4733 and SIP INFO is merged in between frames. Outbound audio is
queued on the RTP session, whose pacer sends one frame per ptime; `played_samples` is derived from
what was written, dropped (barge-in) and is still queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from parley.engine.channel import AudioFrame, DtmfEvent, InboundItem, PlayoutBuffer
from parley.logging import get_logger
from parley.sip.call import Call
from parley.telephony.recording import Recorder

log = get_logger(__name__)

#: How SIP end reasons read in call records.
END_REASONS = {"remote_bye": "caller_hangup", "local_bye": "agent_hangup", "ack_timeout": "ack_timeout"}


class SipChannel:
    """A `MediaChannel` for one established SIP call."""

    def __init__(self, call: Call, recorder: Recorder | None = None) -> None:
        self.call = call
        self.rtp = call.rtp
        self.sample_rate = self.rtp.sample_rate
        self._frame = self.rtp.frame_samples
        self._written = 0
        self._dropped = 0
        self._hangup_reason: str | None = None
        self._dtmf: asyncio.Queue[str] = asyncio.Queue()
        self._recorder = recorder
        # Mirror of the RTP output queue, only to hand the recorder exactly the samples played.
        self._mirror = PlayoutBuffer(self.sample_rate) if recorder else None
        # digits pressed before this channel existed are still in the call's queue: consume it from the start
        self._dtmf_task = asyncio.create_task(self._collect_dtmf(), name=f"dtmf-{call.call_id}")

    async def _collect_dtmf(self) -> None:
        async for digit in self.call.dtmf_events():
            self._dtmf.put_nowait(digit)

    # --- inbound ---------------------------------------------------------------------------
    async def inbound(self) -> AsyncIterator[InboundItem]:
        """Caller frames (one per ptime) and DTMF digits, until the call ends."""
        period = self._frame / self.sample_rate
        n = 0
        while not self.call.ended:
            pcm = await self.rtp.read_frame()
            if pcm is None or self.call.ended:
                break
            t = n * period
            n += 1
            while not self._dtmf.empty():
                yield DtmfEvent(self._dtmf.get_nowait(), t)
            if self._recorder is not None:
                self._record(pcm)
            yield AudioFrame(pcm, t)

    def _record(self, caller: np.ndarray) -> None:
        assert self._recorder is not None and self._mirror is not None
        behind = self.played_samples - self._mirror.played_samples
        agent = self._mirror.pull(min(behind, caller.size)) if behind > 0 else None
        self._recorder.add(caller, agent)

    # --- outbound --------------------------------------------------------------------------
    async def write(self, pcm: np.ndarray) -> None:
        """Queue agent audio on the RTP sender."""
        if self.call.ended or pcm.size == 0:
            return
        self.rtp.write(pcm)
        self._written += pcm.size
        if self._mirror is not None:
            self._mirror.write(pcm)

    def clear_output(self) -> int:
        """Barge-in: drop everything not yet sent."""
        dropped = self.rtp.clear_output()
        self._dropped += dropped
        if self._mirror is not None:
            self._mirror.clear()
        return dropped

    @property
    def _queued_samples(self) -> int:
        return round(self.rtp.output_queued_ms * self.sample_rate / 1000)

    @property
    def played_samples(self) -> int:
        return self._written - self._dropped - self._queued_samples

    @property
    def output_queued_ms(self) -> float:
        return self.rtp.output_queued_ms

    async def drain(self) -> None:
        """Wait until the last queued frame has been sent (or the call ended)."""
        while self.rtp.output_queued_ms > 0 and not self.call.ended:
            await asyncio.sleep(self._frame / self.sample_rate)
        if not self.call.ended:
            await asyncio.sleep(self._frame / self.sample_rate)  # the last packet's own duration

    # --- control ---------------------------------------------------------------------------
    async def send_dtmf(self, digits: str) -> None:
        await self.call.send_dtmf(digits)

    async def transfer(self, target: str) -> bool:
        ok = await self.call.transfer(target)
        if ok:
            self._hangup_reason = "transferred"
            await self.call.hangup()
        return ok

    async def hangup(self, reason: str) -> None:
        if self._hangup_reason is None and not self.call.ended:
            self._hangup_reason = reason
        await self.call.hangup()

    @property
    def closed(self) -> bool:
        return self.call.ended

    @property
    def end_reason(self) -> str | None:
        if not self.call.ended:
            return None
        if self._hangup_reason is not None:
            return self._hangup_reason
        reason = self.call.end_reason or "ended"
        return END_REASONS.get(reason, reason)
