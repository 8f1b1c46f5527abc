"""`WebRtcChannel`: the engine's `MediaChannel` over one aiortc peer connection (a browser call).

Audio runs at 48 kHz mono, Opus's own rate, so the transport resamples nothing: aiortc decodes the
browser's Opus to 48 kHz (stereo, averaged here to mono) and encodes our 48 kHz mono frames; the engine
converts with soxr between this rate and its STT/VAD/TTS rates as it does for an 8 kHz phone line.

* Inbound: a task reads decoded frames from the browser's track into a FIFO; `inbound()` hands out one
  20 ms frame as soon as it is there, and silence when a frame is more than `JITTER_S` late (a lost
  packet, a muted or DTX-silent microphone), so the stream is continuous and keeps the call's clock.
  A backlog beyond `MAX_BACKLOG_FRAMES` (a burst after a stall) is dropped, oldest first.
* Outbound: `AgentTrack` is the audio track we send. aiortc's sender calls `recv()` for each frame; it
  paces itself to one 20 ms frame per 20 ms of wall clock and pulls the agent's audio from a
  `PlayoutBuffer` (silence when it is empty), so `clear_output()` (barge-in) silences the browser within
  one frame and `played_samples` counts what was handed to the encoder.
* The call ends when the browser's track ends (it closed the connection or sent RTCP BYE), when the
  connection fails, or on `hangup()`; `end_reason` says which.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError

from parley.engine.channel import AudioFrame, InboundItem, PlayoutBuffer
from parley.logging import get_logger
from parley.telephony.recording import Recorder

log = get_logger(__name__)

RATE = 48000
FRAME = 960  # 20 ms
FRAME_S = FRAME / RATE
JITTER_S = 0.06  # a frame this late is replaced by silence
MAX_BACKLOG_FRAMES = 5  # more queued inbound audio than this (100 ms) is dropped
_SILENCE = np.zeros(FRAME, dtype=np.int16)


def shorten_jitter_buffer(receiver: RTCRtpReceiver) -> bool:
    """Make aiortc hand each audio frame on as soon as it is complete (one packet of delay, not five).

    aiortc's audio jitter buffer waits for 4 more frames before releasing one (~80-100 ms added to every
    turn's voice-to-voice, measured on loopback); `WebRtcChannel.inbound()` already absorbs `JITTER_S`
    of lateness itself. Reaches into aiortc's private receiver state: when that is not there (another
    aiortc version) it changes nothing and returns False."""
    attr = "_RTCRtpReceiver__jitter_buffer"
    current = getattr(receiver, attr, None)
    if not isinstance(current, JitterBuffer):
        log.info("aiortc's audio jitter buffer not found; keeping its default delay")
        return False
    setattr(receiver, attr, JitterBuffer(capacity=current.capacity, prefetch=0))
    return True


def to_mono_int16(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame as mono int16 (channels averaged; planar or packed layouts)."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if arr.dtype != np.int16:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(arr * 32767.0, -32768, 32767).astype(np.int16)
        else:
            arr = arr.astype(np.int16)
    if frame.format.is_planar:
        mono = arr.mean(axis=0) if channels > 1 else arr[0]
    else:
        flat = arr.reshape(-1)
        mono = flat.reshape(-1, channels).mean(axis=1) if channels > 1 else flat
    return np.asarray(mono, dtype=np.int16)


class AgentTrack(MediaStreamTrack):
    """The audio we send: 20 ms frames of the agent's queued speech, silence in between, paced in real time."""

    kind = "audio"

    def __init__(self, playout: PlayoutBuffer, on_frame: Callable[[np.ndarray], None] | None = None) -> None:
        super().__init__()
        self.playout = playout
        self.on_frame = on_frame
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += FRAME
            wait = self._start + self._pts / RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.2:  # the loop stalled: restart the clock rather than send a burst
                self._start = now - self._pts / RATE
        pcm = self.playout.pull(FRAME)
        if pcm is None:
            pcm = _SILENCE
        if self.on_frame is not None:
            self.on_frame(pcm)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class WebRtcChannel:
    """A `MediaChannel` for one browser call. `attach(track)` once the browser's audio track arrives;
    `connection_lost(reason)` when the peer connection fails or closes."""

    sample_rate = RATE

    def __init__(self, recorder: Recorder | None = None) -> None:
        self.playout = PlayoutBuffer(RATE)
        self.track = AgentTrack(self.playout, self._agent_frame if recorder else None)
        self.recorder = recorder
        self._agent_heard: deque[np.ndarray] = deque(maxlen=10)
        self._fifo: deque[np.ndarray] = deque()
        self._fifo_samples = 0
        self._head = 0
        self._arrived = asyncio.Event()
        self._closed = asyncio.Event()
        self._reason: str | None = None
        self._reader: asyncio.Task[None] | None = None
        self.frames_received = 0
        self.frames_concealed = 0

    def attach_recorder(self, recorder: Recorder) -> None:
        """Record the call from now on (caller left, agent right)."""
        self.recorder = recorder
        self.track.on_frame = self._agent_frame

    async def wait_closed(self) -> None:
        """Return once the call has ended."""
        await self._closed.wait()

    # --- inbound -----------------------------------------------------------------------------
    def attach(self, track: MediaStreamTrack) -> None:
        """Start reading the browser's audio track."""
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read(track), name="webrtc-inbound")

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while not self._closed.is_set():
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                pcm = to_mono_int16(frame)
                if frame.sample_rate != RATE:  # Opus always decodes at 48 kHz; anything else is dropped
                    log.warning("dropping an audio frame at an unexpected rate", rate=frame.sample_rate)
                    continue
                self._fifo.append(pcm)
                self._fifo_samples += pcm.size
                self._arrived.set()
        except MediaStreamError:
            self.connection_lost("caller_hangup")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("browser audio track failed", error=str(exc) or type(exc).__name__)
            self.connection_lost("connection_lost")

    def _take(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.int16)
        filled = 0
        while filled < n:
            chunk = self._fifo[0]
            k = min(n - filled, chunk.size - self._head)
            out[filled:filled + k] = chunk[self._head:self._head + k]
            filled += k
            self._head += k
            if self._head >= chunk.size:
                self._fifo.popleft()
                self._head = 0
        self._fifo_samples -= n
        return out

    async def inbound(self) -> AsyncIterator[InboundItem]:
        """20 ms caller frames in real time from the first read until the call ends: silence for late or
        missing ones (a browser may send nothing while its microphone is quiet; the call's clock, and so the
        greeting, must not wait for the first packet)."""
        n = 0
        start = time.monotonic()
        while not self._closed.is_set():
            if self._fifo_samples >= FRAME:
                surplus = self._fifo_samples // FRAME - MAX_BACKLOG_FRAMES
                if surplus > 0:
                    self._take(surplus * FRAME)
                pcm = self._take(FRAME)
                self.frames_received += 1
            else:
                timeout = start + n * FRAME_S + JITTER_S - time.monotonic()
                if timeout > 0:
                    self._arrived.clear()
                    try:
                        async with asyncio.timeout(timeout):
                            await self._arrived.wait()  # also set when the call ends
                    except TimeoutError:
                        pass
                    continue
                pcm = _SILENCE.copy()
                self.frames_concealed += 1
            if self.recorder is not None:
                self._record(pcm)
            yield AudioFrame(pcm, n * FRAME_S)
            n += 1

    def _agent_frame(self, pcm: np.ndarray) -> None:
        self._agent_heard.append(pcm)

    def _record(self, caller: np.ndarray) -> None:
        assert self.recorder is not None
        agent = self._agent_heard.popleft() if self._agent_heard else None
        self.recorder.add(caller, agent)

    # --- outbound ----------------------------------------------------------------------------
    async def write(self, pcm: np.ndarray) -> None:
        """Queue agent audio (48 kHz mono int16) for the outgoing track."""
        if self.closed or pcm.size == 0:
            return
        self.playout.write(pcm)

    def clear_output(self) -> int:
        """Barge-in: drop everything not yet sent."""
        return self.playout.clear()

    @property
    def played_samples(self) -> int:
        return self.playout.played_samples

    @property
    def output_queued_ms(self) -> float:
        return self.playout.queued_ms

    async def drain(self) -> None:
        """Return once the last queued frame has gone to the encoder (or the call ended)."""
        if self.closed:
            return
        done = asyncio.ensure_future(self.playout.drain())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({done, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            closed.cancel()
        if not self.closed:
            await asyncio.sleep(FRAME_S)  # the last frame's own duration

    # --- control -----------------------------------------------------------------------------
    async def send_dtmf(self, digits: str) -> None:
        """Browsers play no touch-tones sent to them: logged and ignored."""
        log.info("DTMF is not sent on browser calls", digits=digits)

    async def transfer(self, target: str) -> bool:
        """A browser call cannot be transferred to a phone number or SIP URI (yet)."""
        log.info("transfer is not possible on a browser call", target=target)
        return False

    async def hangup(self, reason: str) -> None:
        """End the call with `reason` (idempotent): `inbound()` ends, the outgoing track stops. The owner
        (`WebRtcCalls`) then tells the page why and closes the peer connection."""
        if self._closed.is_set():
            return
        self._end(reason)

    def connection_lost(self, reason: str) -> None:
        """The browser went away (track ended, connection failed or closed)."""
        if not self._closed.is_set():
            self._end(reason)

    def _end(self, reason: str) -> None:
        self._reason = reason
        self._closed.set()
        self._arrived.set()
        self.playout.release()
        self.track.stop()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def end_reason(self) -> str | None:
        return self._reason
