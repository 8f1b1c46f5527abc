"""Twilio Media Streams messages (bidirectional `<Connect><Stream>`), parsed strictly.

Twilio → us: `connected`, `start` (stream/call SIDs, `mediaFormat`, `customParameters`), `media` (base64
μ-law 8 kHz mono, 20 ms per message, `timestamp` in ms since the stream started), `dtmf`, `mark` (a mark
we sent has been played, or was dropped by `clear`), `stop`. Us → Twilio: `media`, `mark`, `clear`.
Anything else — an unknown event, bad JSON or base64, another audio format — is a `ProtocolError` whose
message says what was wrong; the stream handler closes the stream with it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

ENCODING = "audio/x-mulaw"
SAMPLE_RATE = 8000
#: Largest media payload accepted (one second of μ-law; Twilio sends 160 bytes per message).
MAX_PAYLOAD = 8000
DTMF_DIGITS = set("0123456789*#ABCD")


class ProtocolError(ValueError):
    """A message that breaks the Media Streams protocol; the text says what was wrong."""


@dataclass(frozen=True)
class Connected:
    protocol: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    parameters: dict[str, str] = field(default_factory=dict)
    tracks: tuple[str, ...] = ("inbound",)


@dataclass(frozen=True)
class Media:
    payload: bytes
    timestamp_ms: int | None
    track: str


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Mark:
    name: str


@dataclass(frozen=True)
class Stop:
    call_sid: str


Message = Connected | Start | Media | Dtmf | Mark | Stop


def _obj(msg: dict[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"'{msg.get('event')}' message without a '{key}' object")
    return value


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse(text: str | bytes) -> Message:
    """One WebSocket text message → a typed message, or `ProtocolError`."""
    try:
        msg = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"message is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("message is not a JSON object")
    event = msg.get("event")
    if event == "media":
        media = _obj(msg, "media")
        raw = media.get("payload")
        if not isinstance(raw, str):
            raise ProtocolError("media message without a base64 'payload'")
        if len(raw) > MAX_PAYLOAD * 4 // 3 + 4:
            raise ProtocolError(f"media payload of {len(raw)} base64 characters is larger than one second")
        try:
            payload = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("media payload is not valid base64") from None
        return Media(payload, _int(media.get("timestamp")), str(media.get("track", "inbound")))
    if event == "start":
        start = _obj(msg, "start")
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict):
            raise ProtocolError("start.mediaFormat is not an object")
        encoding, rate, channels = fmt.get("encoding"), _int(fmt.get("sampleRate")), _int(fmt.get("channels"))
        if (encoding, rate, channels) != (ENCODING, SAMPLE_RATE, 1):
            raise ProtocolError(f"unsupported media format {encoding}/{fmt.get('sampleRate')}/"
                                f"{fmt.get('channels')} channel(s): Parley takes {ENCODING} at 8000 Hz, mono")
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            raise ProtocolError("start.customParameters is not an object")
        sid = start.get("streamSid") or msg.get("streamSid")
        if not isinstance(sid, str) or not sid:
            raise ProtocolError("start message without a streamSid")
        tracks = start.get("tracks") or ["inbound"]
        return Start(sid, str(start.get("callSid", "")), str(start.get("accountSid", "")),
                     {str(k): str(v) for k, v in params.items()}, tuple(str(t) for t in tracks))
    if event == "dtmf":
        digit = str(_obj(msg, "dtmf").get("digit", ""))
        if digit not in DTMF_DIGITS:
            raise ProtocolError(f"dtmf message with digit {digit!r} (expected one of 0-9 * # A-D)")
        return Dtmf(digit)
    if event == "mark":
        return Mark(str(_obj(msg, "mark").get("name", "")))
    if event == "stop":
        stop = msg.get("stop")
        return Stop(str(stop.get("callSid", "")) if isinstance(stop, dict) else "")
    if event == "connected":
        return Connected(str(msg.get("protocol", "")))
    raise ProtocolError(f"unknown Media Streams event {str(event)[:40]!r}")


def media(stream_sid: str, payload: bytes) -> str:
    return json.dumps({"event": "media", "streamSid": stream_sid,
                       "media": {"payload": base64.b64encode(payload).decode()}})


def mark(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
