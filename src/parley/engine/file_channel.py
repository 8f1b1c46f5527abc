"""`FileChannel`: a `MediaChannel` over an in-memory recording (WAV in, WAV out).

The caller's audio is played into the conversation frame by frame, then silence for up to `tail_s`; the
agent's audio is recorded on the same timeline, so the output is exactly what a caller would have heard
and when. Time is media time driven by the frames: `speed=1` paces frames in real time, `speed=4` four
times faster (provider work then looks four times slower on the media clock). With `hold`, once the
caller's recording has ended the media clock stands still while `hold()` is true (the file front holds
it while the agent is thinking and has nothing to play), so a slow machine cannot run out the tail. Used by `parley talk`,
`POST /api/voice-pipeline`, the tests and the benchmark.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable

import numpy as np

from parley.engine.channel import AudioFrame, DtmfEvent, InboundItem, Pcm, PlayoutBuffer


class FileChannel:
    """Feeds `pcm` (mono int16 at `sample_rate`) as caller audio and records the agent's audio."""

    def __init__(
        self,
        pcm: Pcm,
        sample_rate: int,
        *,
        frame_ms: int = 20,
        speed: float = 1.0,
        tail_s: float = 30.0,
        dtmf: Iterable[tuple[float, str]] = (),
        transfer_result: bool = True,
        hold: Callable[[], bool] | None = None,
        max_hold_s: float = 120.0,
    ) -> None:
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"expected mono int16 PCM, got dtype {pcm.dtype} shape {pcm.shape}")
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self.frame_s = self.frame_samples / sample_rate
        self.speed = speed
        n_in = -(-pcm.size // self.frame_samples)
        self._input = np.zeros(n_in * self.frame_samples, dtype=np.int16)
        self._input[: pcm.size] = pcm
        self.input_frames = n_in
        self.total_frames = n_in + int(tail_s / self.frame_s)
        self._output = np.zeros(self.total_frames * self.frame_samples, dtype=np.int16)
        self._dtmf = sorted(dtmf)
        self._playout = PlayoutBuffer(sample_rate)
        self._frame = 0  # frames delivered so far
        self._closed = False
        self._end_reason: str | None = None
        self._transfer_result = transfer_result
        self._hold = hold
        self._max_hold_s = max_hold_s
        self.input_done = asyncio.Event()
        self.sent_dtmf: list[str] = []
        self.transfers: list[str] = []
        self.hangups: list[tuple[float, str]] = []

    # --- clock -------------------------------------------------------------------------------

    def clock(self) -> float:
        """Media seconds played so far."""
        return self._frame * self.frame_s

    # --- inbound -------------------------------------------------------------------------------

    async def inbound(self) -> AsyncIterator[InboundItem]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        step = self.frame_s / self.speed
        dtmf = list(self._dtmf)
        fs = self.frame_samples
        held = 0.0
        while not self._closed and self._frame < self.total_frames:
            i = self._frame
            delay = start + i * step - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            if self._closed:
                break
            if i >= self.input_frames and self._hold is not None and held < self._max_hold_s and self._hold():
                start += step  # the recording waits for the agent: media time stands still
                held += step
                continue
            out = self._playout.pull(fs)
            if out is not None:
                self._output[i * fs : (i + 1) * fs] = out
            t = i * self.frame_s
            while dtmf and dtmf[0][0] <= t:
                yield DtmfEvent(dtmf.pop(0)[1], t)
            frame = self._input[i * fs : (i + 1) * fs] if i < self.input_frames else np.zeros(fs, np.int16)
            self._frame = i + 1
            if self._frame == self.input_frames:
                self.input_done.set()
            yield AudioFrame(frame, t)
        self.input_done.set()
        self._close("input_ended")

    # --- outbound ------------------------------------------------------------------------------

    async def write(self, pcm: Pcm) -> None:
        if not self._closed:
            self._playout.write(pcm)

    def clear_output(self) -> int:
        return self._playout.clear()

    @property
    def played_samples(self) -> int:
        return self._playout.played_samples

    @property
    def output_queued_ms(self) -> float:
        return self._playout.queued_ms

    async def drain(self) -> None:
        await self._playout.drain()

    # --- control -------------------------------------------------------------------------------

    async def send_dtmf(self, digits: str) -> None:
        self.sent_dtmf.append(digits)

    async def transfer(self, target: str) -> bool:
        self.transfers.append(target)
        if self._transfer_result:
            self._close("transferred")
            await asyncio.sleep(0.05)  # as on a real line: closed, then the hang-up's round trip
        return self._transfer_result

    async def hangup(self, reason: str) -> None:
        self._close(reason)

    def remote_hangup(self) -> None:
        """Simulate the caller hanging up."""
        self._close("caller_hangup")

    def _close(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._end_reason = reason
        self.hangups.append((self.clock(), reason))
        self._playout.release()
        self.input_done.set()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    # --- results -------------------------------------------------------------------------------

    def output(self) -> Pcm:
        """The agent's audio on the call's timeline, up to the last frame played."""
        return self._output[: self._frame * self.frame_samples].copy()

    def agent_audio(self) -> Pcm:
        """The agent's audio with the silence before its first and after its last sample cut off."""
        out = self.output()
        voiced = np.flatnonzero(out)
        if voiced.size == 0:
            return out[:0]
        return out[voiced[0] : voiced[-1] + 1]
