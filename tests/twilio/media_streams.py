"""A Media Streams client playing Twilio's part against Parley's real `/twilio/stream` WebSocket.

What it does is what Twilio documents for a bidirectional `<Connect><Stream>`: it sends `connected`,
`start` (with the TwiML's `<Parameter>`s as `customParameters`), then one `media` message per 20 ms of
caller audio (base64 μ-law 8 kHz, `timestamp` in ms) for as long as the call lasts — silence when the
caller says nothing — plus `dtmf` and, at the end, `stop`. It plays what Parley sends the way Twilio does:
`media` into a playback buffer drained in real time, each `mark` echoed once the audio before it has been
played, and on `clear` the buffer dropped and the pending marks echoed at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

import numpy as np
import websockets

from parley.media.g711 import ulaw_decode, ulaw_encode

FRAME = 160


def parse_twiml(text: str) -> tuple[str, dict[str, str]]:
    """(stream url, parameters) of a `<Connect><Stream>` answer."""
    root = ElementTree.fromstring(text)
    stream = root.find("./Connect/Stream")
    assert stream is not None, text
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), params


def sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


@dataclass
class Received:
    """What Parley sent, with arrival times (perf_counter)."""

    media: list[tuple[float, bytes]] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    other: list[dict[str, Any]] = field(default_factory=list)

    def audio(self) -> np.ndarray:
        return ulaw_decode(b"".join(p for _, p in self.media)) if self.media else np.zeros(0, np.int16)


class MediaStreamsClient:
    """One call's stream, as Twilio would run it."""

    def __init__(self, url: str, parameters: dict[str, str], *, call_sid: str | None = None,
                 account_sid: str = "AC" + "0" * 32, media_format: dict[str, Any] | None = None) -> None:
        self.url = url
        self.parameters = parameters
        self.call_sid = call_sid or sid("CA")
        self.stream_sid = sid("MZ")
        self.account_sid = account_sid
        self.media_format = media_format or {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        self.received = Received()
        self.ws: Any = None
        self.closed_code: int | None = None
        self.closed_reason: str = ""
        self._seq = 0
        self._speech: list[np.ndarray] = []
        self._playback: list[tuple[int, str]] = []  # (samples of audio before the mark, name) pending
        self._queued = 0  # samples waiting to be played
        self._tasks: list[asyncio.Task[Any]] = []
        self.speech_end: float | None = None  # perf_counter when the last queued caller speech was sent
        self.sent_frames = 0

    def _next(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def open(self, *, start: bool = True) -> None:
        self.ws = await websockets.connect(self.url, open_timeout=5, max_size=2**20)
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        if start:
            await self.send_start()
        self._tasks.append(asyncio.create_task(self._receive()))

    async def send_start(self) -> None:
        await self.send({"event": "start", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                         "start": {"accountSid": self.account_sid, "streamSid": self.stream_sid,
                                   "callSid": self.call_sid, "tracks": ["inbound"],
                                   "mediaFormat": self.media_format, "customParameters": self.parameters}})

    def start_audio(self) -> None:
        """Send caller audio (queued speech, else silence) every 20 ms, and play Parley's audio out."""
        self._tasks.append(asyncio.create_task(self._send_audio()))
        self._tasks.append(asyncio.create_task(self._play()))

    def say(self, pcm: np.ndarray) -> None:
        """Queue caller speech (int16 8 kHz); it goes out in 20 ms frames after what is queued already."""
        self._speech.append(pcm.astype(np.int16))

    async def _send_audio(self) -> None:
        try:
            await self._send_audio_frames()
        except websockets.ConnectionClosed:
            pass  # Parley ended the call

    async def _send_audio_frames(self) -> None:
        t0 = time.perf_counter()
        n = 0
        pending = np.zeros(0, dtype=np.int16)
        while True:
            if pending.size == 0 and self._speech:
                pending = self._speech.pop(0)
                if not self._speech:
                    self.speech_end = None
            frame = np.zeros(FRAME, dtype=np.int16)
            if pending.size:
                take = pending[:FRAME]
                frame[:take.size] = take
                pending = pending[FRAME:]
                if pending.size == 0 and not self._speech:
                    self.speech_end = time.perf_counter()
            await self.send({"event": "media", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                             "media": {"track": "inbound", "chunk": str(n + 1), "timestamp": str(n * 20),
                                       "payload": base64.b64encode(ulaw_encode(frame)).decode()}})
            n += 1
            self.sent_frames = n
            await asyncio.sleep(max(0.0, t0 + n * 0.02 - time.perf_counter()))

    async def _play(self) -> None:
        """Drain the playback buffer in real time, echoing marks whose audio has been played."""
        while True:
            await asyncio.sleep(0.02)
            self._queued = max(0, self._queued - FRAME)
            played_marks = [m for m in self._playback if m[0] <= 0]
            self._playback = [(before - FRAME, name) for before, name in self._playback if before > 0]
            for _, name in played_marks:
                await self._echo_mark(name)

    async def _echo_mark(self, name: str) -> None:
        try:
            await self.send({"event": "mark", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                             "mark": {"name": name}})
        except websockets.ConnectionClosed:
            pass

    async def _receive(self) -> None:
        try:
            async for text in self.ws:
                msg = json.loads(text)
                now = time.perf_counter()
                event = msg.get("event")
                if event == "media":
                    payload = base64.b64decode(msg["media"]["payload"])
                    self.received.media.append((now, payload))
                    self._queued += len(payload)
                elif event == "mark":
                    name = msg["mark"]["name"]
                    self.received.marks.append(name)
                    self._playback.append((self._queued, name))
                elif event == "clear":
                    self.received.clears.append(now)
                    self._queued = 0
                    pending, self._playback = self._playback, []
                    for _, name in pending:
                        await self._echo_mark(name)
                else:
                    self.received.other.append(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            if self.ws.close_code is not None:
                self.closed_code = self.ws.close_code
                self.closed_reason = self.ws.close_reason or ""

    async def dtmf(self, digit: str) -> None:
        await self.send({"event": "dtmf", "streamSid": self.stream_sid, "sequenceNumber": self._next(),
                         "dtmf": {"track": "inbound_track", "digit": digit}})

    async def stop(self) -> None:
        await self.send({"event": "stop", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                         "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        self.closed_code = self.ws.close_code
        self.closed_reason = self.ws.close_reason or ""
        return self.closed_code

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()
