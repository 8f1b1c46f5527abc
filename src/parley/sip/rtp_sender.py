"""The sending half of an RTP session: queued audio and RFC 4733 DTMF out, one packet per pacer tick.

    tx = RtpSender(ssrc, codec, telephone_event_pt=101, ptime_ms=20, send_silence=True,
                   clock=MONOTONIC, transmit=transport.sendto, route=lambda: remote_or_none)
    tx.write(pcm); tx.clear_output() -> samples dropped; tx.output_queued_ms
    await tx.send_dtmf("12#", duration_ms=100)
    tx.tick(deadline); tx.skip_ticks(n)     # called by the Pacer (tx is a PacerMember)
    tx.rtp_timestamp_at(now)                # for an RTCP SR

Each tick sends at most one packet to `route()` (None: do not send now — no remote address, a
direction that does not send, closed): a pending DTMF event packet, else a frame of queued audio (a
partial last frame is padded with silence), else encoded silence with `send_silence`, else nothing;
the first packet after a gap carries the marker bit. The RTP timestamp advances one frame per tick
whether or not a packet goes out, and by `n` frames for `skip_ticks(n)` (marker on the next packet);
the sequence number by one per packet. While `route()` is None, audio and digits wait, they are not
dropped. Lateness of each packet against its tick's deadline is measured on `clock`.

DTMF: each digit is sent as event updates every ptime and the end packet three times, all with the
digit's start timestamp, followed by a 60 ms pause; `send_dtmf` returns after the last digit's pause.
It raises DtmfError (a ValueError) naming a bad character, or ValueError for a bad duration, before
queueing anything; `fail_pending_dtmf(exc)` fails the digits not yet sent (the session closes).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import numpy as np

from parley.media.codecs import Codec
from parley.sip.clock import Clock
from parley.sip.dtmf import digit_to_event, event_payloads
from parley.sip.rtp import rtp_bytes

__all__ = ["Address", "RtpSender"]

Address = tuple[str, int]

DTMF_PAUSE_MS = 60


class RtpSender:
    """Paced RTP output of one session (see the module docstring)."""

    def __init__(
        self,
        ssrc: int,
        codec: Codec,
        *,
        telephone_event_pt: int | None,
        ptime_ms: int,
        send_silence: bool,
        clock: Clock,
        transmit: Callable[[bytes, Address], object],
        route: Callable[[], Address | None],
        first_sequence: int = 0,
        first_timestamp: int = 0,
    ) -> None:
        self.ssrc = ssrc
        self.ptime_ms = ptime_ms
        self.send_silence = send_silence
        self._clock = clock
        self._transmit = transmit
        self._route = route
        self._seq = first_sequence & 0xFFFF
        self._ts = first_timestamp & 0xFFFFFFFF
        self._talking = False
        self._out: deque[np.ndarray] = deque()
        self._out_samples = 0
        self._dtmf_queue: deque[tuple[str, int, asyncio.Future[None]]] = deque()
        self._dtmf_packets: deque[tuple[bytes, bool]] = deque()
        self._dtmf_ts = 0
        self._dtmf_pause = 0
        self._dtmf_done: asyncio.Future[None] | None = None
        # counters
        self.packets_sent = 0
        self.bytes_sent = 0  # RTP payload octets
        self.dtmf_packets_sent = 0
        self.late_sends = 0  # packets more than half a ptime after their tick
        self.max_lateness = 0.0  # seconds
        self.skipped_ticks = 0
        self.last_sent_ts = 0
        self.last_sent_at = 0.0
        self._use(codec, telephone_event_pt)

    def __repr__(self) -> str:
        return f"RtpSender(ssrc={self.ssrc:08x}, codec={self._codec.name})"

    def set_codec(self, codec: Codec, telephone_event_pt: int | None) -> None:
        """Encode with `codec` from the next tick on; queued audio at another rate is dropped."""
        old_rate = self._codec.sample_rate
        self._use(codec, telephone_event_pt)
        if old_rate != codec.sample_rate:
            self.clear_output()

    def _use(self, codec: Codec, telephone_event_pt: int | None) -> None:
        self._codec = codec
        self._encoder = codec.new()
        self._te_pt = telephone_event_pt
        self._frame_samples = codec.samples_per_frame(self.ptime_ms)
        self._ts_step = codec.timestamp_step(self.ptime_ms)
        self._silence = np.zeros(self._frame_samples, dtype=np.int16)
        # a coder without state (G.711: `new()` hands back the shared codec) encodes silence the same way
        # every time: encode it once, not 50 times a second per call
        self._silence_payload = self._encoder.encode(self._silence) if self._encoder is codec else None

    @property
    def frame_samples(self) -> int:
        return self._frame_samples

    # -- audio ----------------------------------------------------------------------------
    def write(self, pcm: np.ndarray) -> None:
        """Queue int16 mono PCM at the codec's sample rate (ValueError for anything else)."""
        arr = np.asarray(pcm)
        if arr.dtype != np.int16:
            raise ValueError(f"write() takes int16 PCM, got dtype {arr.dtype}")
        if arr.ndim != 1:
            raise ValueError(f"write() takes mono PCM (1-D), got shape {arr.shape}")
        if len(arr):
            self._out.append(arr.copy())
            self._out_samples += len(arr)

    def clear_output(self) -> int:
        """Drop all queued audio at once (barge-in); the number of samples dropped."""
        dropped = self._out_samples
        self._out.clear()
        self._out_samples = 0
        return dropped

    @property
    def output_queued_ms(self) -> float:
        return self._out_samples * 1000.0 / self._codec.sample_rate

    def _take_frame(self) -> np.ndarray | None:
        if not self._out_samples:
            return None
        need = self._frame_samples
        parts: list[np.ndarray] = []
        while need and self._out:
            head = self._out[0]
            if len(head) <= need:
                parts.append(self._out.popleft())
                need -= len(head)
            else:
                parts.append(head[:need])
                self._out[0] = head[need:]
                need = 0
        self._out_samples -= self._frame_samples - need
        if need:
            parts.append(np.zeros(need, dtype=np.int16))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    # -- DTMF -----------------------------------------------------------------------------
    async def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue `digits` as RFC 4733 events; returns once the last one (and its pause) is out."""
        if not 40 <= duration_ms <= 5000:
            raise ValueError(f"DTMF duration must be 40..5000 ms, got {duration_ms}")
        for d in digits:
            digit_to_event(d)  # validates; DtmfError (a ValueError) names the bad character
        if not digits:
            return
        loop = asyncio.get_running_loop()
        futures = []
        for d in digits:
            fut: asyncio.Future[None] = loop.create_future()
            self._dtmf_queue.append((d, duration_ms, fut))
            futures.append(fut)
        await asyncio.gather(*futures)

    def fail_pending_dtmf(self, exc: Exception) -> None:
        """Fail every digit not yet fully sent with `exc`."""
        if self._dtmf_done is not None and not self._dtmf_done.done():
            self._dtmf_done.set_exception(exc)
        while self._dtmf_queue:
            fut = self._dtmf_queue.popleft()[2]
            if not fut.done():
                fut.set_exception(exc)

    def _dtmf_tick(self, ts: int, deadline: float, to: Address) -> bool:
        """Send the next DTMF packet if an event is under way; True when this tick was used."""
        if not self._dtmf_packets:
            if self._dtmf_done is not None:
                if self._dtmf_pause > 0:
                    self._dtmf_pause -= 1
                    return False
                if not self._dtmf_done.done():
                    self._dtmf_done.set_result(None)
                self._dtmf_done = None
            if not self._dtmf_queue or self._te_pt is None:
                return False
            digit, duration_ms, fut = self._dtmf_queue.popleft()
            if fut.done():
                return False
            duration = duration_ms * self._codec.clock_rate // 1000
            self._dtmf_packets.extend(event_payloads(digit, duration, self._ts_step))
            self._dtmf_ts = ts
            self._dtmf_done = fut
            self._dtmf_pause = max(1, DTMF_PAUSE_MS // self.ptime_ms)
        payload, marker = self._dtmf_packets.popleft()
        assert self._te_pt is not None  # an event under way was started with a telephone-event PT
        self._send(self._te_pt, self._dtmf_ts, payload, marker, deadline, to)
        self.dtmf_packets_sent += 1
        return True

    # -- pacing ---------------------------------------------------------------------------
    def skip_ticks(self, n: int) -> None:
        self._ts = (self._ts + n * self._ts_step) & 0xFFFFFFFF
        self.skipped_ticks += n
        self._talking = False

    def tick(self, deadline: float) -> None:
        ts = self._ts
        self._ts = (ts + self._ts_step) & 0xFFFFFFFF
        to = self._route()
        if to is None:
            self._talking = False
            return
        if self._dtmf_tick(ts, deadline, to):
            return
        frame = self._take_frame()
        if frame is None:
            if not self.send_silence:
                self._talking = False
                return
            payload = self._silence_payload
            if payload is None:
                payload = self._encoder.encode(self._silence)
        else:
            payload = self._encoder.encode(frame)
        self._send(self._codec.payload_type, ts, payload, not self._talking, deadline, to)
        self._talking = True

    def _send(self, pt: int, ts: int, payload: bytes, marker: bool, deadline: float, to: Address) -> None:
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        self._transmit(rtp_bytes(pt, seq, ts, self.ssrc, payload, marker), to)
        now = self._clock.now()
        lateness = now - deadline
        if lateness > self.max_lateness:
            self.max_lateness = lateness
        if lateness * 2000 > self.ptime_ms:
            self.late_sends += 1
        self.packets_sent += 1
        self.bytes_sent += len(payload)
        self.last_sent_ts = ts
        self.last_sent_at = now

    def rtp_timestamp_at(self, now: float) -> int:
        """The RTP timestamp that corresponds to `now` on our sending clock (for an RTCP SR)."""
        return (self.last_sent_ts + int((now - self.last_sent_at) * self._codec.clock_rate)) & 0xFFFFFFFF
