"""Receive jitter buffer: reorder, duplicate drop, late drop, loss concealment, bounded delay.

    jb = JitterBuffer(decode=codec.decode, frame_samples=160, sample_rate=8000, target_ms=60, max_ms=300,
                      min_ms=20)
    jb.push(ext_seq, payload, arrival)   # -> "ok" | "duplicate" | "late"
    jb.push_gap(ext_seq, arrival)        # a sequence number used by a non-audio packet (DTMF, CN)
    pcm = jb.frame(now)                  # always exactly frame_samples int16 samples

Packets are keyed by extended sequence number. A talkspurt starts playing once its first packet
has waited `target_ms` (the reorder window). While playing, each packet is decoded in sequence
order; a missing packet with later ones already waiting is lost and concealed; an empty buffer is
an underrun (concealment fading to silence, then a new prefetch). Concealment repeats the last
decoded packet with a falling gain (-3 dB per frame, silent after 5 frames). If more than `max_ms`
of audio waits (sender clock faster than ours, burst after a stall), the oldest packets are dropped
down to `target_ms` so the delay stays bounded. Decoded audio longer than a frame (30 ms packets,
say) is carried over to the next frame.

Adaptive delay (`min_ms` given): every audio packet's transit time (arrival minus its place in the
stream) updates an interarrival-jitter estimate (RFC 3550's J, smoothed over 16 packets). The delay the
buffer aims for is `JITTER_FACTOR` × J, never below `min_ms` nor above `target_ms`; it rises at once
(and by a packet on each late drop) and falls by `DECAY_MS` a packet. New talkspurts prefetch that
delay, and while more audio waits than it, a quiet packet (decoded RMS under `QUIET_RMS`: a pause, not
speech) is skipped (`skipped`) — a voice agent hears the caller's last word sooner, and nothing
audible is lost. Without `min_ms` the delay is always `target_ms`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["JitterBuffer"]

_FADE = 0.7071  # per concealed frame
_MAX_CONCEAL = 5
#: The adaptive delay is this many times the interarrival jitter (covers ~99 % of arrivals).
JITTER_FACTOR = 4.0
#: The adaptive delay falls by at most this much per audio packet (a 40 ms fall takes ~0.8 s).
DECAY_MS = 1.0
#: A decoded packet under this RMS (int16) is a pause, safe to skip to shorten the delay (−40 dBFS).
QUIET_RMS = 330.0


class JitterBuffer:
    """Reorders RTP payloads and turns them into fixed-size PCM frames on the consumer's clock."""

    def __init__(
        self,
        decode: Callable[[Any], np.ndarray],
        frame_samples: int,
        sample_rate: int,
        target_ms: int = 60,
        max_ms: int = 300,
        min_ms: int | None = None,
    ) -> None:
        if frame_samples <= 0 or sample_rate <= 0:
            raise ValueError("frame_samples and sample_rate must be positive")
        if not 0 <= target_ms <= max_ms:
            raise ValueError("need 0 <= target_ms <= max_ms")
        if min_ms is not None and not 0 <= min_ms <= target_ms:
            raise ValueError("need 0 <= min_ms <= target_ms")
        self._decode = decode
        self.frame_samples = frame_samples
        self.sample_rate = sample_rate
        self.target = target_ms / 1000.0
        self.max_delay = max_ms / 1000.0
        self.adaptive = min_ms is not None
        self.min_delay = min_ms / 1000.0 if min_ms is not None else self.target
        self.delay = self.target  # the delay aimed for now (adaptive: between min and target)
        self.jitter = 0.0  # interarrival jitter estimate, seconds
        self._last_transit: float | None = None
        self._audio_count = 0  # audio (not gap) entries in _packets
        self._packets: dict[int, Any] = {}  # ext seq -> payload given to decode (None: non-audio gap)
        self._next: int | None = None
        self._playing = False
        self._prefetch_since: float | None = None
        self._carry: np.ndarray = np.zeros(0, dtype=np.int16)
        self._last_pcm: np.ndarray | None = None
        self._conceal_run = 0
        self._ramps: dict[tuple[int, int], np.ndarray] = {}
        self._packet_samples = frame_samples
        # counters
        self.played = 0
        self.concealed = 0  # packets concealed because they were lost (or too late)
        self.underruns = 0
        self.late = 0
        self.duplicates = 0
        self.overflow_dropped = 0
        self.skipped = 0  # quiet packets skipped to bring the delay down (adaptive only)

    # -- input ------------------------------------------------------------------------------
    def push(self, ext_seq: int, payload: Any, arrival: float) -> str:
        """Store one audio payload (anything `decode` takes); "ok", "duplicate" or "late" (dropped)."""
        return self._store(ext_seq, payload, arrival)

    def push_gap(self, ext_seq: int, arrival: float) -> str:
        """Mark a sequence number taken by a non-audio packet so it is not treated as lost."""
        return self._store(ext_seq, None, arrival)

    def _store(self, ext_seq: int, payload: Any, arrival: float) -> str:
        if self._next is not None and ext_seq < self._next:
            if payload is not None:
                self.late += 1
                if self.adaptive:  # it needed more delay than we gave it
                    self.delay = min(self.target, self.delay + self._packet_samples / self.sample_rate)
            return "late"
        if ext_seq in self._packets:
            self.duplicates += 1
            return "duplicate"
        if not self._packets and not self._playing:
            self._prefetch_since = arrival
        self._packets[ext_seq] = payload
        if payload is not None:
            self._audio_count += 1
            if self.adaptive:
                self._adapt(ext_seq, arrival)
        self._trim()
        return "ok"

    def _adapt(self, ext_seq: int, arrival: float) -> None:
        transit = arrival - ext_seq * self._packet_samples / self.sample_rate
        if self._last_transit is not None:
            self.jitter += (abs(transit - self._last_transit) - self.jitter) / 16.0
        self._last_transit = transit
        wanted = min(self.target, max(self.min_delay, JITTER_FACTOR * self.jitter))
        self.delay = wanted if wanted > self.delay else max(wanted, self.delay - DECAY_MS / 1000.0)

    def _buffered_seconds(self) -> float:
        return self._audio_count * self._packet_samples / self.sample_rate

    def _trim(self) -> None:
        if self._buffered_seconds() <= self.max_delay:
            return
        keep = max(1, int(self.target * self.sample_rate / self._packet_samples))
        for seq in sorted(self._packets)[: max(0, len(self._packets) - keep)]:
            if self._packets.pop(seq) is not None:
                self.overflow_dropped += 1
                self._audio_count -= 1
        if self._playing and self._packets:
            self._next = min(self._packets)

    # -- output -----------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Packets waiting."""
        return len(self._packets)

    def frame(self, now: float) -> np.ndarray:
        """The next frame of exactly `frame_samples` samples (audio, concealment or silence)."""
        n = self.frame_samples
        if not len(self._carry):
            chunk = self._next_chunk(now)
            if chunk is not None and len(chunk) == n:  # the common case: one packet per frame
                return chunk
            parts = [] if chunk is None else [chunk]
            have = 0 if chunk is None else len(chunk)
        else:
            parts, have = [self._carry], len(self._carry)
        while have < n:
            chunk = self._next_chunk(now)
            if chunk is None:
                break
            parts.append(chunk)
            have += len(chunk)
        if have < n:
            if self._playing:
                self._playing = False  # underrun: wait for a new prefetch
                self.underruns += 1
                self._prefetch_since = None  # set again by the next packet stored
            parts.append(self._conceal(n - have))
        pcm = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self._carry = pcm[n:]
        return pcm[:n]

    def _next_chunk(self, now: float) -> np.ndarray | None:
        """Decoded (or concealed) audio of the next packet, or None when nothing is due yet."""
        if not self._playing:
            if not self._packets or self._prefetch_since is None or now - self._prefetch_since < self.delay:
                return None
            first = min(self._packets)
            if self._next is None or first > self._next:
                self._next = first  # lost packets during a gap are not concealed after it
            self._playing = True
        while True:
            assert self._next is not None
            if self._next in self._packets:
                payload = self._packets.pop(self._next)
                self._next += 1
                if payload is None:
                    continue
                self._audio_count -= 1
                try:
                    pcm = self._decode(payload)
                except Exception:  # noqa: BLE001  # a payload the codec rejects is concealed like a loss
                    self.concealed += 1
                    return self._conceal(self._packet_samples)
                if len(pcm) == 0:
                    continue
                self._packet_samples = len(pcm)
                if self._should_skip(pcm):
                    self.skipped += 1
                    continue
                self._last_pcm = pcm
                self._conceal_run = 0
                self.played += 1
                return pcm
            if self._packets:
                self._next += 1
                self.concealed += 1
                return self._conceal(self._packet_samples)
            return None

    def _should_skip(self, pcm: np.ndarray) -> bool:
        """Skip this quiet packet: more audio waits behind it than the delay aimed for."""
        if not self.adaptive or self._audio_count * self._packet_samples / self.sample_rate <= self.delay:
            return False
        return float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2))) < QUIET_RMS

    def _conceal(self, n: int) -> np.ndarray:
        last = self._last_pcm
        if last is None or self._conceal_run >= _MAX_CONCEAL:
            return np.zeros(n, dtype=np.int16)
        self._conceal_run += 1
        src = last[:n] if len(last) >= n else np.tile(last, -(-n // len(last)))[:n]
        return (src * self._ramp(n, self._conceal_run)).astype(np.int16)

    def _ramp(self, n: int, run: int) -> np.ndarray:
        """Gain across the `run`-th concealed chunk of `n` samples (cached: concealment is per frame)."""
        ramp = self._ramps.get((n, run))
        if ramp is None:
            g0 = _FADE ** (run - 1)
            g1 = g0 * _FADE if run < _MAX_CONCEAL else 0.0
            ramp = np.linspace(g0, g1, n, dtype=np.float32)
            self._ramps[(n, run)] = ramp
        return ramp
