"""DTMF: RFC 4733 telephone-event payloads (send and receive) and SIP INFO bodies.

    parse_event(payload) -> DtmfEvent(event, end, volume, duration)      # RFC 4733 §2.3
    DtmfEvent(...).pack() -> bytes
    event_payloads(digit, duration_samples, step) -> list[(payload, marker)]   # one per packet time
    rx = DtmfReceiver();  rx.feed(ssrc, timestamp, payload) -> "5" | None
    parse_dtmf_info(content_type, body) -> DtmfInfo(digit, duration_ms)  # SIP INFO, DtmfError if bad

Receiving: an event is identified by (SSRC, RTP timestamp) — every packet of one key press carries
the start timestamp. The digit is reported from the first packet of a new event that is seen,
whether or not its marker bit is set (some providers never set it) and whether or not that packet is
the end packet (if the start was lost); the repeated updates and the three end-packet
retransmissions of the same event are recognised and ignored. A sender that wrongly restamps every
packet with the current time is recognised too: a packet of the same event whose timestamp falls
within the last press's duration (+40 ms) continues it, unless that press had ended and the packet is
not an end packet (then it is the same key pressed again).

Sending: `event_payloads` gives the packets of one digit for a sender that emits one packet per
`step` samples: updates with growing duration (marker on the first) and the final packet with the E
bit, three times (RFC 4733 §2.5.1.4). All share the event's start timestamp.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

__all__ = [
    "DTMF_EVENTS",
    "DtmfError",
    "DtmfEvent",
    "DtmfInfo",
    "DtmfReceiver",
    "digit_to_event",
    "event_payloads",
    "event_to_digit",
    "parse_dtmf_info",
    "parse_event",
]

DTMF_EVENTS = "0123456789*#ABCD"  # event codes 0..15
_DIGITS = frozenset(DTMF_EVENTS)
END_REPEATS = 3


class DtmfError(ValueError):
    """A DTMF payload or INFO body that cannot be understood."""


def digit_to_event(digit: str) -> int:
    """'0'-'9', '*', '#', 'A'-'D' (case-insensitive) -> event code 0..15."""
    d = digit.upper()
    if d not in _DIGITS:
        raise DtmfError(f"not a DTMF digit: {digit!r} (allowed: {DTMF_EVENTS})")
    return DTMF_EVENTS.index(d)


def event_to_digit(event: int) -> str | None:
    """Event code -> digit, or None for non-DTMF events (flash hook, tones)."""
    return DTMF_EVENTS[event] if 0 <= event < len(DTMF_EVENTS) else None


@dataclass(slots=True, frozen=True)
class DtmfEvent:
    event: int
    end: bool
    volume: int  # 0..63, -dBm0
    duration: int  # RTP timestamp units since the event's start

    def pack(self) -> bytes:
        return struct.pack(
            "!BBH",
            self.event & 0xFF,
            (0x80 if self.end else 0) | (self.volume & 0x3F),
            min(self.duration, 0xFFFF),
        )


def parse_event(payload: bytes) -> DtmfEvent:
    """The first (normally only) event in a telephone-event payload."""
    if len(payload) < 4:
        raise DtmfError(f"telephone-event payload needs 4 octets, got {len(payload)}")
    event, flags, duration = struct.unpack_from("!BBH", payload)
    return DtmfEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def event_payloads(
    digit: str, duration_samples: int, step: int, volume: int = 10
) -> list[tuple[bytes, bool]]:
    """Packets for one digit, one per `step` samples: (payload, marker)."""
    event = digit_to_event(digit)
    if step <= 0 or duration_samples <= 0:
        raise ValueError("duration and step must be positive")
    duration_samples = min(duration_samples, 0xFFFF)
    out: list[tuple[bytes, bool]] = []
    elapsed = step
    while elapsed < duration_samples:
        out.append((DtmfEvent(event, False, volume, elapsed).pack(), not out))
        elapsed += step
    end = DtmfEvent(event, True, volume, duration_samples).pack()
    first_is_end = not out
    out.extend((end, first_is_end and i == 0) for i in range(END_REPEATS))
    return out


@dataclass(slots=True)
class _Press:
    event: int
    timestamp: int
    duration: int
    ended: bool


class DtmfReceiver:
    """Turns received telephone-event packets into digits, each key press exactly once."""

    # RTP clock units of slack when telling a sender that restamps every packet from a new key press
    _SLACK = 320

    def __init__(self) -> None:
        self._seen: deque[tuple[int, int]] = deque(maxlen=32)
        self._last: dict[int, _Press] = {}
        self.digits_received = 0
        self.packets = 0

    def feed(self, ssrc: int, timestamp: int, payload: bytes) -> str | None:
        """Account one packet; the digit when it starts a new key press, else None. DtmfError if malformed."""
        ev = parse_event(payload)
        self.packets += 1
        key = (ssrc, timestamp)
        last = self._last.get(ssrc)
        if key in self._seen:
            if last is not None and last.timestamp == timestamp:
                last.duration = max(last.duration, ev.duration)
                last.ended = last.ended or ev.end
            return None
        digit = event_to_digit(ev.event)
        if digit is None:
            return None
        self._seen.append(key)
        if last is not None and last.event == ev.event and self._same_press(last, timestamp, ev):
            last.timestamp, last.duration, last.ended = timestamp, ev.duration, last.ended or ev.end
            return None
        self._last[ssrc] = _Press(ev.event, timestamp, ev.duration, ev.end)
        self.digits_received += 1
        return digit

    def _same_press(self, last: _Press, timestamp: int, ev: DtmfEvent) -> bool:
        """A new timestamp that still belongs to the last press: senders that (against RFC 4733)
        stamp each packet with the current time, or their retransmitted end packets."""
        delta = (timestamp - last.timestamp) & 0xFFFFFFFF
        if delta >= 0x80000000:
            return True  # older than the last press: a straggler, never a new key press
        if delta >= last.duration + self._SLACK:
            return False
        return not last.ended or ev.end


@dataclass(slots=True, frozen=True)
class DtmfInfo:
    digit: str
    duration_ms: int | None = None


def parse_dtmf_info(content_type: str, body: bytes | str) -> DtmfInfo:
    """Digit from a SIP INFO body: `application/dtmf-relay` ("Signal=5\\r\\nDuration=160") or
    `application/dtmf` (the bare digit, or the same key=value form). DtmfError when it has none."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype not in ("application/dtmf-relay", "application/dtmf"):
        raise DtmfError(f"not a DTMF INFO content type: {content_type!r}")
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body
    text = text.strip()
    if not text:
        raise DtmfError("empty DTMF INFO body")
    fields: dict[str, str] = {}
    if "=" in text:
        for line in text.splitlines():
            if "=" in line:
                key, _, value = line.partition("=")
                fields[key.strip().lower()] = value.strip()
        signal = fields.get("signal")
        if signal is None:
            raise DtmfError("DTMF INFO body has no Signal= line")
    else:
        signal = text
    digit = _signal_digit(signal)
    duration = None
    if "duration" in fields:
        try:
            duration = int(fields["duration"])
        except ValueError:
            raise DtmfError(f"bad Duration in DTMF INFO: {fields['duration']!r}") from None
        if duration < 0:
            raise DtmfError(f"negative Duration in DTMF INFO: {duration}")
    return DtmfInfo(digit, duration)


def _signal_digit(signal: str) -> str:
    s = signal.strip()
    if s.isascii() and s.isdigit() and len(s) > 1:  # numeric event code: "10" is *, "11" is #
        code = int(s)
        digit = event_to_digit(code)
        if digit is None:
            raise DtmfError(f"DTMF event code {code} is not a digit")
        return digit
    if len(s) == 1 and s.upper() in _DIGITS:
        return s.upper()
    raise DtmfError(f"not a DTMF digit: {signal!r}")
