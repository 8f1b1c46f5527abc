"""A real WebRTC peer playing the browser: aiortc with an `events` data channel, a microphone track
that plays queued speech in real time (silence in between), and everything it hears kept with the wall
clock time each frame arrived. It signals through the real HTTP endpoint with `X-API-Key`."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections import deque
from typing import Any

import av
import httpx
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from parley.webrtc.ice import host_addresses

RATE = 48000
FRAME = 960


class Microphone(MediaStreamTrack):
    """Sends queued 48 kHz mono speech in 20 ms frames, paced by the wall clock; silence when idle."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[np.ndarray] = deque()
        self._start: float | None = None
        self._pts = 0
        self.speaking_until = 0.0  # monotonic time the queued speech ends

    def say(self, pcm: np.ndarray) -> float:
        """Queue speech; returns the monotonic time it will have been sent."""
        start = max(time.monotonic(), self.speaking_until)
        for i in range(0, len(pcm), FRAME):
            chunk = np.zeros(FRAME, np.int16)
            part = pcm[i:i + FRAME]
            chunk[: len(part)] = part
            self._queue.append(chunk)
        self.speaking_until = start + len(self._queue) * FRAME / RATE
        return self.speaking_until

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
        pcm = self._queue.popleft() if self._queue else np.zeros(FRAME, np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class BrowserPeer:
    """One browser-like caller."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = Microphone()
        self.pc.addTrack(self.mic)
        self.events = self.pc.createDataChannel("events")
        self.messages: list[dict[str, Any]] = []
        self.timed_messages: list[tuple[float, dict[str, Any]]] = []  # (arrival monotonic time, message)
        self.heard: list[tuple[float, np.ndarray]] = []  # (arrival monotonic time, mono 48 kHz frame)
        self.call_id: str | None = None
        self._reader: asyncio.Task[None] | None = None

        @self.events.on("message")
        def on_message(message: Any) -> None:
            self.messages.append(json.loads(message))
            self.timed_messages.append((time.monotonic(), self.messages[-1]))

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                self._reader = asyncio.ensure_future(self._listen(track))

    async def _listen(self, track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                arr = frame.to_ndarray().reshape(-1)
                mono = arr.reshape(-1, len(frame.layout.channels))[:, 0] if not frame.format.is_planar else arr
                self.heard.append((time.monotonic(), mono.astype(np.int16)))
        except MediaStreamError:
            pass

    async def offer_sdp(self) -> str:
        """Gather (loopback only, as a browser on this machine would reach us) and return the offer."""
        offer = await self.pc.createOffer()
        with host_addresses(["127.0.0.1"]):
            await self.pc.setLocalDescription(offer)
        return self.pc.localDescription.sdp

    async def call(self, client: httpx.AsyncClient, agent: str = "receptionist", **extra: Any) -> httpx.Response:
        """POST the offer; on 200 apply the answer. Returns the response."""
        body = {"agent": agent, "sdp": await self.offer_sdp(), "type": "offer", **extra}
        r = await client.post("/api/webrtc/offer", json=body)
        if r.status_code == 200:
            data = r.json()
            self.call_id = data["call_id"]
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type=data["type"]))
        return r

    def transcripts(self, role: str) -> list[str]:
        return [m["text"] for m in self.messages if m.get("type") == "transcript" and m.get("role") == role]

    def audio(self, since: float = 0.0) -> np.ndarray:
        frames = [f for t, f in self.heard if t >= since]
        return np.concatenate(frames) if frames else np.zeros(0, np.int16)

    def voiced_after(self, t: float, threshold: float = 500.0) -> float:
        """Seconds of speech-level 20 ms frames that arrived after monotonic time `t`."""
        return sum(0.02 for at, f in self.heard if at >= t and f.size and
                   float(np.sqrt((f.astype(np.float64) ** 2).mean())) > threshold)

    async def close(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
