"""`MediaChannel`: what every transport (SIP/RTP, WebRTC, file …) gives the conversation engine.

Contract, in short:

* **Inbound** — `inbound()` is an async iterator of `AudioFrame` (mono int16 at `sample_rate`, with the
  media time of its first sample) and `DtmfEvent`. Frames are *continuous*: a transport fills lost or
  missing packets with silence, so the inbound stream is also the call's clock (the engine runs its idle,
  max-duration and false-interruption timers off frame timestamps). The iterator ends when the call ends
  (remote hangup, `hangup()`, transfer); `end_reason` then says why.
* **Outbound** — `write(pcm)` queues agent audio (int16 at `sample_rate`, any length) and returns at once;
  the transport plays it out in real time. `clear_output()` drops everything queued (barge-in) so the
  caller hears nothing more after the current frame. `played_samples` counts samples actually played out
  since the start (monotonic; it is how the engine knows which words the caller heard), `output_queued_ms`
  what is still waiting, and `drain()` returns once the last queued sample has been played (the goodbye
  is heard to its last frame before `hangup()`).
* **Control** — `send_dtmf(digits)`, `transfer(target) -> bool`, `hangup(reason)`; `closed` and
  `end_reason`.

`PlayoutBuffer` implements the outbound half for any transport that sends fixed-size frames on a timer:
call `pull(n)` once per frame tick and send what it returns.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

Pcm = np.ndarray  # int16, shape (n,)


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """Caller audio: mono int16 `pcm` at the channel's rate; `timestamp` = media seconds of its first sample."""

    pcm: Pcm
    timestamp: float


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """A touch-tone key the caller pressed (`0-9`, `*`, `#`, `A-D`) at media time `timestamp`."""

    digit: str
    timestamp: float
    duration_ms: int = 0


InboundItem = AudioFrame | DtmfEvent


@runtime_checkable
class MediaChannel(Protocol):
    """One call's media and control, independent of the transport."""

    sample_rate: int  # rate of inbound frames and of `write()` audio (8000 phone, 16000/48000 web, file any)

    def inbound(self) -> AsyncIterator[InboundItem]:
        """Caller audio frames (continuous, silence-filled) and DTMF events; ends when the call ends."""

    async def write(self, pcm: Pcm) -> None:
        """Queue agent audio for real-time playout; returns without waiting for it to be played."""

    def clear_output(self) -> int:
        """Drop all queued agent audio now (barge-in); returns the number of samples dropped."""

    @property
    def played_samples(self) -> int:
        """Agent samples played out since the call started (never decreases)."""

    @property
    def output_queued_ms(self) -> float:
        """Agent audio written but not yet played, in milliseconds."""

    async def drain(self) -> None:
        """Return once every queued sample has been played (or the call has ended)."""

    async def send_dtmf(self, digits: str) -> None:
        """Send touch-tones to the far end."""

    async def transfer(self, target: str) -> bool:
        """Hand the caller to `target` (SIP URI or number); True when the transfer was accepted."""

    async def hangup(self, reason: str) -> None:
        """End the call; `reason` becomes `end_reason`. Idempotent."""

    @property
    def closed(self) -> bool:
        """True once the call has ended, for whatever reason."""

    @property
    def end_reason(self) -> str | None:
        """Why the call ended (`caller_hangup`, `agent_ended`, `transferred`, …); None while it runs."""


class PlayoutBuffer:
    """Outbound audio queue for a frame-clocked transport: `write` appends, `pull(n)` plays `n` samples.

    Keeps the counters the engine reads through the channel (`played_samples`, `queued_samples`) and
    wakes `drain()` waiters when the queue runs empty. Not thread-safe: use it on the event loop.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._chunks: deque[Pcm] = deque()
        self._head = 0  # offset into _chunks[0]
        self.queued_samples = 0
        self.played_samples = 0
        self._empty = asyncio.Event()
        self._empty.set()

    def write(self, pcm: Pcm | bytes) -> None:
        """Append int16 samples."""
        arr = np.frombuffer(pcm, dtype=np.int16) if isinstance(pcm, (bytes, bytearray, memoryview)) else pcm
        if arr.dtype != np.int16 or arr.ndim != 1:
            raise ValueError(f"expected mono int16 PCM, got dtype {arr.dtype} shape {arr.shape}")
        if arr.size == 0:
            return
        self._chunks.append(arr)
        self.queued_samples += arr.size
        self._empty.clear()

    def pull(self, n: int) -> Pcm | None:
        """The next `n` samples to play (silence-padded), or None when nothing is queued.

        `played_samples` grows by the agent samples taken (not the padding)."""
        if self.queued_samples == 0:
            return None
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n and self._chunks:
            chunk = self._chunks[0]
            take = min(n - filled, chunk.size - self._head)
            out[filled : filled + take] = chunk[self._head : self._head + take]
            filled += take
            self._head += take
            if self._head >= chunk.size:
                self._chunks.popleft()
                self._head = 0
        self.queued_samples -= filled
        self.played_samples += filled
        if self.queued_samples == 0:
            self._empty.set()
        return out

    def clear(self) -> int:
        """Drop everything queued; returns the number of samples dropped."""
        dropped = self.queued_samples
        self._chunks.clear()
        self._head = 0
        self.queued_samples = 0
        self._empty.set()
        return dropped

    @property
    def queued_ms(self) -> float:
        return self.queued_samples * 1000.0 / self.sample_rate

    async def drain(self) -> None:
        """Wait until the queue is empty."""
        await self._empty.wait()

    def release(self) -> None:
        """Wake every `drain()` waiter (the call ended; nothing more will be played)."""
        self.clear()
