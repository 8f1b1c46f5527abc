"""Answering-machine detection (pure, offline): human or machine, from the callee's first audio, before
the agent greets.

Signal features, frame by frame (any rate, 10–40 ms frames): speech by energy over an adaptive noise floor,
and the voicemail beep as a steady pure tone (FFT peak holding most of the frame's energy, 300–2500 Hz,
for at least `beep_min_ms`). The STT text, when the caller's side has any, adds the words machines say
("leave a message", "not available", "after the tone" …). `AmdDetector.push(pcm)` returns a decision once
there is one, with the reason in words and the media time it was reached:

* machine: the beep; machine words in the text; one uninterrupted greeting longer than `greeting_max_ms`;
* human: a short greeting then a pause (`after_greeting_ms`) — a person says "Hello?" and waits;
* unknown: nothing said for `initial_silence_ms`, or `max_ms` reached (the caller of the detector decides
  what unknown means; the gateway treats it as human).

After a machine decision, `AmdDetector.beep_or_end(pcm)` keeps listening for where to leave a message: the
beep, or the end of the greeting (a long pause) for machines without one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

MACHINE_WORDS = re.compile(
    r"leave (me |us )?(a |your )?(message|name|number)|after the (tone|beep)|not (available|able to take)|"
    r"can'?t (take|come to|answer)|unable to (take|answer)|(reached|reach) the (voice ?mail|mailbox)|"
    r"voice ?mail|mailbox|record your message|at the tone|get back to you|(are|is) not here|"
    r"nicht erreichbar|hinterlassen sie|nach dem (ton|signalton)|mailbox von", re.IGNORECASE)


@dataclass(frozen=True)
class AmdConfig:
    """Thresholds in ms of media time."""

    max_ms: int = 5000
    greeting_max_ms: int = 2400
    after_greeting_ms: int = 800
    initial_silence_ms: int = 3500
    gap_bridge_ms: int = 450
    beep_min_ms: int = 160
    beep_wait_ms: int = 20000
    end_of_greeting_ms: int = 1800
    speech_margin_db: float = 6.0
    min_speech_dbfs: float = -45.0


@dataclass(frozen=True)
class AmdResult:
    """`result`: human | machine | unknown; `at_ms`: media time of the decision; `beep_hz` when a beep."""

    result: str
    reason: str
    at_ms: int
    beep_hz: float | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"result": self.result, "reason": self.reason, "decided_after_ms": self.at_ms}
        if self.beep_hz is not None:
            out["beep_hz"] = round(self.beep_hz)
        return out


def is_machine_text(text: str) -> str | None:
    """The machine phrase in `text`, or None."""
    m = MACHINE_WORDS.search(text or "")
    return m.group(0) if m else None


def tone_of(pcm: np.ndarray, rate: int) -> float | None:
    """The frequency of a pure tone filling `pcm` (peak ±1 bin ≥ 80 % of the energy, 300–2500 Hz), else None."""
    if pcm.size < rate // 100:
        return None
    x = pcm.astype(np.float64) * np.hanning(pcm.size)
    spec = np.abs(np.fft.rfft(x)) ** 2
    total = float(spec[1:].sum())
    if total <= 0:
        return None
    k = int(np.argmax(spec[1:])) + 1
    share = float(spec[max(1, k - 1): k + 2].sum()) / total
    hz = k * rate / pcm.size
    return hz if share >= 0.8 and 300.0 <= hz <= 2500.0 else None


class AmdDetector:
    """Feed the callee's audio in order; get one `AmdResult`. Not thread-safe; one per call."""

    def __init__(self, sample_rate: int, config: AmdConfig | None = None) -> None:
        self.rate = sample_rate
        self.config = config or AmdConfig()
        self.t_ms = 0.0
        self.result: AmdResult | None = None
        self._floor_db: float | None = None
        self._speech_start: float | None = None  # start of the current greeting segment
        self._last_voice: float | None = None
        self._heard_speech = False
        self._tone_hz: float | None = None
        self._tone_ms = 0.0
        self._text: str = ""
        self._beep_heard = False

    # --- features ------------------------------------------------------------------------------
    def _frame(self, pcm: np.ndarray) -> tuple[bool, float | None, float]:
        ms = 1000.0 * pcm.size / self.rate
        rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0
        db = 20 * np.log10(max(rms, 1.0) / 32768.0)
        floor = self._floor_db
        # the noise floor follows quiet frames quickly and loud ones slowly
        self._floor_db = db if floor is None else (min(db, floor + 0.05) if db > floor else 0.7 * floor + 0.3 * db)
        threshold = max(self.config.min_speech_dbfs, (self._floor_db or -90.0) + self.config.speech_margin_db)
        hz = tone_of(pcm, self.rate) if db > self.config.min_speech_dbfs else None
        return db > threshold, hz, ms

    def _tone(self, hz: float | None, ms: float) -> bool:
        if hz is not None and self._tone_hz is not None and abs(hz - self._tone_hz) <= max(25.0, 0.03 * hz):
            self._tone_ms += ms
        elif hz is not None:
            self._tone_hz, self._tone_ms = hz, ms
        else:
            self._tone_hz, self._tone_ms = None, 0.0
        return self._tone_ms >= self.config.beep_min_ms

    # --- decisions -----------------------------------------------------------------------------
    def add_text(self, text: str) -> AmdResult | None:
        """STT text of the callee's greeting so far; machine words decide at once."""
        self._text = f"{self._text} {text}".strip()
        if self.result is None:
            phrase = is_machine_text(self._text)
            if phrase:
                self.result = AmdResult("machine", f"the greeting says {phrase!r}", int(self.t_ms))
        return self.result

    def push(self, pcm: np.ndarray) -> AmdResult | None:
        """One frame of callee audio; the decision once reached (then always the same)."""
        if self.result is not None:
            return self.result
        voiced, hz, ms = self._frame(pcm)
        start = self.t_ms
        self.t_ms += ms
        c = self.config
        if self._tone(hz, ms):
            self.result = AmdResult("machine", f"a {self._tone_hz:.0f} Hz beep", int(self.t_ms), self._tone_hz)
            return self.result
        if voiced and hz is None:
            if self._speech_start is None or (self._last_voice is not None
                                              and start - self._last_voice > c.gap_bridge_ms):
                self._speech_start = start
            self._last_voice = self.t_ms
            self._heard_speech = True
            if self.t_ms - self._speech_start >= c.greeting_max_ms:
                self.result = AmdResult("machine", f"an uninterrupted greeting longer than {c.greeting_max_ms} ms",
                                        int(self.t_ms))
        elif self._heard_speech and self._last_voice is not None and self.t_ms - self._last_voice >= c.after_greeting_ms:
            spoke = self._last_voice - (self._speech_start or 0.0)
            self.result = AmdResult("human", f"a short greeting ({spoke:.0f} ms), then {c.after_greeting_ms} ms of "
                                             "silence: someone waiting for an answer", int(self.t_ms))
        elif not self._heard_speech and self.t_ms >= c.initial_silence_ms:
            self.result = AmdResult("unknown", f"nothing said in the first {c.initial_silence_ms} ms", int(self.t_ms))
        if self.result is None and self.t_ms >= c.max_ms:
            self.result = AmdResult("unknown", f"no decision within {c.max_ms} ms", int(self.t_ms))
        return self.result

    def beep_or_end(self, pcm: np.ndarray) -> str | None:
        """After a machine decision: 'beep' once the beep ends, 'silence' when the greeting ended without one,
        'timeout' after `beep_wait_ms`; None while the greeting goes on."""
        voiced, hz, ms = self._frame(pcm)
        self.t_ms += ms
        if self._tone(hz, ms):
            self._beep_heard = True
        elif self._beep_heard:
            return "beep"  # the tone just ended: the recording starts now
        if voiced and hz is None:
            self._last_voice = self.t_ms
        if self._last_voice is not None and self.t_ms - self._last_voice >= self.config.end_of_greeting_ms \
                and not self._beep_heard:
            return "silence"
        if self.t_ms >= self.config.beep_wait_ms:
            return "timeout"
        return None
