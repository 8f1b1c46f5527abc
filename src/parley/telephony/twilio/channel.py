"""`TwilioChannel`: the engine's `MediaChannel` over one Twilio Media Streams WebSocket.

Inbound: the stream handler feeds `media` (μ-law → int16 8 kHz, cut into 20 ms frames; a gap in Twilio's
`timestamp` is filled with silence, so the inbound stream stays the call's clock) and `dtmf`.
Outbound: agent audio is queued in a `PlayoutBuffer` and sent paced, one 20 ms `media` message per tick
(Twilio plays what it gets at once, so pacing keeps its buffer short and `clear` quick). Every few frames,
and when the queue runs dry, a `mark` named after the sent sample position follows; Twilio echoes it when
that audio has been played. `played_samples` is the last echoed position: what the caller really heard,
which the engine's heard-words accounting of a barge-in uses. `clear_output()` drops the local queue and
sends `clear` (Twilio drops its buffer); audio sent but never confirmed is counted as dropped.
Control: `hangup` and `transfer` go through `CallActions` (Twilio's REST API); closing the WebSocket alone
also ends a `<Connect><Stream>` call. `send_dtmf` plays the tones in-band on the stream.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

import numpy as np

from parley.engine.channel import AudioFrame, DtmfEvent, InboundItem, PlayoutBuffer
from parley.logging import get_logger
from parley.media.g711 import ulaw_decode, ulaw_encode
from parley.telephony.twilio import protocol

log = get_logger(__name__)

RATE = 8000
FRAME = 160  # 20 ms
FRAME_S = FRAME / RATE
#: A frame sent this much after its slot counts as late.
LATE_S = 0.010
#: Longest gap in Twilio's timestamps filled with silence (longer ones are a broken stream).
MAX_GAP_FRAMES = 250
#: Seconds to wait for Twilio to confirm the last mark before `drain()` gives up on it.
MARK_GRACE_S = 1.5
#: Seconds Twilio may take to reconnect the stream after playing touch-tones.
RESUME_TIMEOUT_S = 15.0

DTMF_FREQS = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}


class StreamSocket(Protocol):
    """The WebSocket side the channel needs (Starlette's `WebSocket` has it)."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class CallActions(Protocol):
    """What Twilio's REST API does for a call (`bridge.RestActions`)."""

    async def hangup(self, call_sid: str) -> None: ...

    async def transfer(self, call_sid: str, target: str) -> bool: ...

    async def play_digits(self, call_sid: str, digits: str) -> bool:
        """Play touch-tones on the call, then reconnect its stream (new TwiML); False when refused."""
        ...


def dtmf_tones(digits: str, tone_ms: int = 100, gap_ms: int = 80) -> np.ndarray:
    """Touch-tones for `digits` as int16 8 kHz audio (unknown characters skipped; `,` = half a second)."""
    parts: list[np.ndarray] = []
    t = np.arange(RATE * tone_ms // 1000) / RATE
    gap = np.zeros(RATE * gap_ms // 1000, dtype=np.int16)
    for d in digits.upper():
        if d == ",":
            parts.append(np.zeros(RATE // 2, dtype=np.int16))
        elif d in DTMF_FREQS:
            lo, hi = DTMF_FREQS[d]
            wave = 0.35 * np.sin(2 * math.pi * lo * t) + 0.35 * np.sin(2 * math.pi * hi * t)
            parts += [(wave * 32767 * 0.5).astype(np.int16), gap]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


class TwilioChannel:
    """A `MediaChannel` for one Media Streams call (`stream_sid`, `call_sid`)."""

    sample_rate = RATE

    def __init__(self, socket: StreamSocket, stream_sid: str, call_sid: str, *,
                 actions: CallActions | None = None, mark_every: int = 5) -> None:
        self.socket = socket
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.actions = actions
        self.mark_every = max(1, mark_every)
        self._in: asyncio.Queue[InboundItem | None] = asyncio.Queue()
        self._carry = np.zeros(0, dtype=np.int16)
        self._frames_in = 0
        self._next_ts: int | None = None
        self._out = PlayoutBuffer(RATE)
        self._tones: deque[np.ndarray] = deque()
        self._acked = 0  # raw sent position Twilio confirmed played
        self._skew = 0  # sent audio dropped by `clear` before Twilio confirmed it
        self._wake = asyncio.Event()
        self._confirmed = asyncio.Event()
        self._confirmed.set()
        self._end_reason: str | None = None
        self.frames_out = 0
        self.late_frames = 0
        self.marks_sent = 0
        self.first_media_at: float | None = None  # perf_counter of the first agent frame sent (benchmarks)
        self._rest: asyncio.Future[None] | None = None
        self._resume: asyncio.Future[None] | None = None  # set while Twilio plays digits and reconnects
        self._resume_started = 0.0
        self._released: dict[int, asyncio.Future[None]] = {}
        self._sending: set[asyncio.Future[None]] = set()
        self._pacer = asyncio.create_task(self._pace(), name=f"twilio-pacer-{call_sid}")

    # --- fed by the stream handler ---------------------------------------------------------------

    def feed_media(self, payload: bytes, timestamp_ms: int | None) -> None:
        """Caller audio (μ-law) as Twilio sent it; silence fills a jump in `timestamp_ms`."""
        if self.closed or not payload:
            return
        if timestamp_ms is not None and self._next_ts is not None:
            missing = (timestamp_ms - self._next_ts) // 20
            if missing > 0:
                self._push(np.zeros(min(missing, MAX_GAP_FRAMES) * FRAME, dtype=np.int16))
        pcm = ulaw_decode(payload)
        if timestamp_ms is not None:
            self._next_ts = timestamp_ms + len(payload) * 1000 // RATE
        self._push(pcm)

    def _push(self, pcm: np.ndarray) -> None:
        buf = np.concatenate([self._carry, pcm]) if self._carry.size else pcm
        whole = buf.size // FRAME * FRAME
        for start in range(0, whole, FRAME):
            self._in.put_nowait(AudioFrame(buf[start:start + FRAME].copy(), self._frames_in * FRAME_S))
            self._frames_in += 1
        self._carry = buf[whole:].copy()

    def feed_dtmf(self, digit: str) -> None:
        if not self.closed:
            self._in.put_nowait(DtmfEvent(digit, self._frames_in * FRAME_S))

    def feed_mark(self, name: str) -> None:
        """Twilio played (or cleared) the audio up to the mark `name` (`p<position>`)."""
        if not name.startswith("p"):
            return
        try:
            position = int(name[1:])
        except ValueError:
            return
        if position > self._acked:
            self._acked = min(position, self._out.played_samples)
        self._check_confirmed()

    def end(self, reason: str) -> None:
        """The stream is over (`stop`, a closed socket, a protocol error): end the call with `reason`."""
        if self._end_reason is None:
            self._end_reason = reason
        for released in self._released.values():
            if not released.done():
                released.set_result(None)
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)
        self._resume = None
        self._out.release()
        self._tones.clear()
        self._wake.set()
        self._confirmed.set()
        self._in.put_nowait(None)

    # --- inbound ---------------------------------------------------------------------------------

    async def inbound(self) -> AsyncIterator[InboundItem]:
        while True:
            item = await self._in.get()
            if item is None:
                return
            yield item

    # --- outbound --------------------------------------------------------------------------------

    async def write(self, pcm: np.ndarray) -> None:
        if self.closed or pcm.size == 0:
            return
        self._out.write(pcm)
        self._confirmed.clear()
        self._wake.set()

    def clear_output(self) -> int:
        """Barge-in: drop the local queue, tell Twilio to drop its buffer (`clear`)."""
        dropped = self._out.clear()
        unconfirmed = self._out.played_samples - self._acked
        self._skew += unconfirmed
        self._acked = self._out.played_samples
        self._tones.clear()
        self._check_confirmed()
        if not self.closed:
            task = asyncio.ensure_future(self._send(protocol.clear(self.stream_sid)))
            self._sending.add(task)  # keep a reference until it is sent
            task.add_done_callback(self._sending.discard)
        return dropped + unconfirmed

    @property
    def played_samples(self) -> int:
        return self._acked - self._skew

    @property
    def output_queued_ms(self) -> float:
        waiting = self._out.queued_samples + self._out.played_samples - self._acked
        return waiting * 1000.0 / RATE

    async def drain(self) -> None:
        """Until Twilio confirmed the last queued sample played (a grace period if its mark never comes)."""
        await self._out.drain()
        if self.closed:
            return
        grace = MARK_GRACE_S + (self._out.played_samples - self._acked) / RATE
        try:
            await asyncio.wait_for(self._confirmed.wait(), timeout=grace)
        except asyncio.TimeoutError:
            log.warning("Twilio did not confirm the last mark; counting the audio as played",
                        call_sid=self.call_sid, unconfirmed_ms=self.output_queued_ms)
            self._acked = self._out.played_samples
            self._check_confirmed()

    def _check_confirmed(self) -> None:
        if self._out.queued_samples == 0 and self._acked >= self._out.played_samples:
            self._confirmed.set()

    async def _send(self, text: str) -> None:
        try:
            await self.socket.send_text(text)
        except Exception as exc:  # noqa: BLE001 - a dead socket ends the call, not the server
            if not self.closed and self._resume is None:
                log.info("Twilio stream send failed; ending the call", call_sid=self.call_sid, error=str(exc))
                self.end("stream_closed")

    async def _pace(self) -> None:
        """One 20 ms media message per tick while there is audio; a mark every `mark_every` frames."""
        loop = asyncio.get_running_loop()
        next_t: float | None = None
        since_mark = 0
        while not self.closed:
            if self._resume is not None:
                await asyncio.wait([self._resume])
                next_t = None
                continue
            pcm: np.ndarray | None
            if self._tones:
                pcm, counted = self._tones.popleft(), False
            else:
                pcm, counted = self._out.pull(FRAME), True
            if pcm is None:
                if since_mark:
                    await self._mark()
                    since_mark = 0
                self._wake.clear()
                if not self._out.queued_samples and not self._tones and not self.closed:
                    await self._wake.wait()
                next_t = None
                continue
            now = loop.time()
            if next_t is None:
                next_t = now
            elif now - next_t > LATE_S:
                self.late_frames += 1
                if now - next_t > 0.2:
                    next_t = now  # far behind (a stalled loop): restart the clock, do not burst
            if self.first_media_at is None:
                self.first_media_at = time.perf_counter()
            await self._send(protocol.media(self.stream_sid, ulaw_encode(pcm)))
            self.frames_out += 1
            if counted:
                since_mark += 1
                if since_mark >= self.mark_every or self._out.queued_samples == 0:
                    await self._mark()
                    since_mark = 0
            next_t += FRAME_S
            await asyncio.sleep(max(0.0, next_t - loop.time()))

    async def _mark(self) -> None:
        self.marks_sent += 1
        await self._send(protocol.mark(self.stream_sid, f"p{self._out.played_samples}"))

    # --- control ---------------------------------------------------------------------------------

    async def send_dtmf(self, digits: str) -> None:
        """Touch-tones through Twilio's REST API: `<Play digits>` then the stream again (`resuming` until
        Twilio reconnects, see `attach`). Without REST actions, or when Twilio refuses, in-band tones."""
        if self.actions is not None and not self.closed and self._resume is None:
            await self.drain()
            self._resume = asyncio.get_running_loop().create_future()
            self._resume_started = time.monotonic()
            self._wake.set()
            if await self.actions.play_digits(self.call_sid, digits):
                asyncio.get_running_loop().call_later(RESUME_TIMEOUT_S, self._resume_timeout, self._resume)
                return
            self._finish_resume()
        self.send_dtmf_inband(digits)

    @property
    def resuming(self) -> bool:
        """True while Twilio plays touch-tones and the stream is to reconnect (its `stop` ends nothing)."""
        return self._resume is not None

    def attach(self, socket: StreamSocket, stream_sid: str) -> asyncio.Future[None]:
        """The reconnected stream after touch-tones: audio goes on over `socket`. The caller's silence
        meanwhile is filled in; audio sent but not confirmed on the old stream counts as dropped. Returns a
        future done when this socket is no longer used (the call ended or another reconnect)."""
        for old in self._released.values():
            if not old.done():
                old.set_result(None)
        self.socket = socket
        self.stream_sid = stream_sid
        self._skew += self._out.played_samples - self._acked
        self._acked = self._out.played_samples
        gap = int((time.monotonic() - self._resume_started) / FRAME_S)
        self._next_ts = None
        self._push(np.zeros(min(gap, MAX_GAP_FRAMES) * FRAME, dtype=np.int16))
        self._finish_resume()
        released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._released[id(socket)] = released
        return released

    def _finish_resume(self) -> None:
        resume, self._resume = self._resume, None
        if resume is not None and not resume.done():
            resume.set_result(None)
        self._check_confirmed()
        self._wake.set()

    def _resume_timeout(self, resume: asyncio.Future[None] | None) -> None:
        if resume is not None and resume is self._resume:
            log.warning("Twilio did not reconnect the stream after the touch-tones", call_sid=self.call_sid)
            self._finish_resume()
            self.end("stream_closed")

    def send_dtmf_inband(self, digits: str) -> None:
        """Touch-tones as audio on the stream, after the agent audio already queued."""
        tones = dtmf_tones(digits)
        for start in range(0, tones.size, FRAME):
            frame = np.zeros(FRAME, dtype=np.int16)
            chunk = tones[start:start + FRAME]
            frame[:chunk.size] = chunk
            self._tones.append(frame)
        self._wake.set()

    async def transfer(self, target: str) -> bool:
        if self.actions is None or self.closed:
            return False
        ok = await self.actions.transfer(self.call_sid, target)
        if ok:
            self.end("transferred")
            await self._close_socket()
        return ok

    async def hangup(self, reason: str) -> None:
        """End the call through Twilio's REST API (when configured) and close the stream. The REST request
        runs in its own task: ending the channel cancels the conversation's tasks, not this request."""
        if self.closed:
            return
        if self.actions is not None:
            self._rest = asyncio.ensure_future(self._rest_hangup())
        self.end(reason)
        try:
            if self._rest is not None:
                await asyncio.shield(self._rest)
        finally:
            await self._close_socket()

    async def _rest_hangup(self) -> None:
        assert self.actions is not None
        try:
            await self.actions.hangup(self.call_sid)
        except Exception as exc:  # noqa: BLE001 - closing the stream ends the call anyway
            log.warning("Twilio REST hang-up failed; closing the stream ends the call",
                        call_sid=self.call_sid, error=str(exc))

    async def _close_socket(self) -> None:
        try:
            await self.socket.close(1000, self._end_reason or "")
        except Exception:  # noqa: BLE001 - already closed
            pass

    async def aclose(self) -> None:
        """Stop the pacer (the stream handler calls this when the stream is over)."""
        self.end(self._end_reason or "stream_closed")
        if self._rest is not None:
            await asyncio.wait([self._rest], timeout=15)
        self._pacer.cancel()
        try:
            await self._pacer
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass

    @property
    def closed(self) -> bool:
        return self._end_reason is not None

    @property
    def end_reason(self) -> str | None:
        return self._end_reason
