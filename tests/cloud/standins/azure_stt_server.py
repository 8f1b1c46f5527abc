"""Stand-in for the Azure Speech recognition WebSocket service
(`wss://{region}.stt.speech.microsoft.com/speech/recognition/conversation/cognitiveservices/v1`), for tests on
127.0.0.1 — Azure cannot be reached from here. The real Speech SDK connects to it through its `endpoint`.

It speaks the service's "USP" message protocol as the SDK uses it: text frames of `Name:value` header lines,
a blank line and a JSON body (`Path: speech.config`, `speech.context` from the client; `turn.start`,
`speech.startDetected`, `speech.hypothesis`, `speech.phrase`, `speech.endDetected`, `turn.end` from the
service, each carrying the client's `X-RequestId`), and binary `audio` frames (2-byte big-endian header
length, headers, then a WAV header followed by PCM; an empty body ends the audio). The key must come in
`Ocp-Apim-Subscription-Key` (the handshake is refused with 401 otherwise).

It does not recognise speech: it finds utterances by audio energy (using the segmentation silence the client
asked for) and answers each with the next scripted phrase, sending growing hypotheses while the caller speaks.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

TICKS = 10_000_000
SPEECH_RMS = 300.0
HYPOTHESIS_EVERY_S = 0.3


def _message(path: str, request_id: str, body: dict[str, Any]) -> str:
    return (f"X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\nPath:{path}\r\n\r\n"
            + json.dumps(body))


def _parse_text(frame: str) -> tuple[dict[str, str], str]:
    head, _, body = frame.partition("\r\n\r\n")
    headers = {}
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, body


def _parse_binary(frame: bytes) -> tuple[dict[str, str], bytes]:
    size = int.from_bytes(frame[:2], "big")
    headers, _ = _parse_text(frame[2:2 + size].decode() + "\r\n\r\n")
    return headers, frame[2 + size:]


class AzureSTTStandIn:
    """The server. `phrases` are the texts given to successive utterances; `sessions` records each connection."""

    def __init__(self, key: str = "speech-test") -> None:
        self.key = key
        self.phrases: deque[str] = deque()
        self.sessions: list[dict[str, Any]] = []
        self.reject_with: int | None = None  # e.g. 401 to refuse the next handshakes
        self.drop_after_s: float | None = None  # close the next connection after this much audio
        self.handshake_delay_s = 0.0  # answer each WebSocket handshake this late (a slow network or service)
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"ws://127.0.0.1:{self.port}/speech/recognition/conversation/cognitiveservices/v1"

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> str:
        ready = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with serve(self._session, "127.0.0.1", 0, process_request=self._check,
                             subprotocols=["USP"]) as server:  # type: ignore[list-item]
                self.port = server.sockets[0].getsockname()[1]
                ready.set()
                await self._stop.wait()

        self._thread = threading.Thread(target=lambda: asyncio.run(main()), name="azure-stt-standin", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("Azure STT stand-in did not start")
        return self.endpoint

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

    # --- protocol ----------------------------------------------------------------------------
    async def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.handshake_delay_s:
            await asyncio.sleep(self.handshake_delay_s)
        if self.reject_with is not None:
            return connection.respond(HTTPStatus(self.reject_with), "rejected by the stand-in\n")
        if request.headers.get("Ocp-Apim-Subscription-Key") != self.key:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid subscription key\n")
        return None

    async def _session(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)  # type: ignore[union-attr]
        record: dict[str, Any] = {"language": query.get("language", [""])[0], "phrases_hint": [],
                                  "audio_seconds": 0.0, "rate": 16000, "sent": [], "closed_by_client": False}
        self.sessions.append(record)
        silence_ms = 500
        request_id = ""
        rate = 16000
        samples = 0  # audio received so far
        speech_start: int | None = None
        last_voice = 0
        last_hypothesis = 0  # sample count at the last hypothesis
        turns_started: set[str] = set()
        phrase = ""

        async def send(path: str, body: dict[str, Any]) -> None:
            record["sent"].append(path)
            await ws.send(_message(path, request_id, body))

        async def finish_phrase(end: int) -> None:
            nonlocal speech_start
            assert speech_start is not None
            offset, duration = speech_start * TICKS // rate, (end - speech_start) * TICKS // rate
            text = phrase
            await send("speech.phrase", {
                "RecognitionStatus": "Success", "Offset": offset, "Duration": duration, "DisplayText": text,
                "NBest": [{"Confidence": 0.91, "Lexical": text.lower().strip(".?!"), "ITN": text,
                           "MaskedITN": text, "Display": text}]})
            speech_start = None

        try:
            async for frame in ws:
                if isinstance(frame, str):
                    headers, body = _parse_text(frame)
                    if headers.get("path") == "speech.context":
                        request_id = headers.get("x-requestid", request_id)
                        context = json.loads(body or "{}")
                        groups = (context.get("dgi") or {}).get("Groups") or []
                        record["phrases_hint"] = [i["Text"] for g in groups for i in g.get("Items", [])]
                        seg = ((context.get("phraseDetection") or {}).get("CONVERSATION") or {}).get("segmentation")
                        silence_ms = int((seg or {}).get("segmentationSilenceTimeoutMs", silence_ms))
                    elif headers.get("path") == "speech.config":
                        source = json.loads(body or "{}").get("context", {}).get("audio", {}).get("source", {})
                        rate = int(source.get("samplerate", rate))
                        record["rate"] = rate
                    continue
                headers, payload = _parse_binary(frame)
                if headers.get("path") != "audio":
                    continue
                request_id = headers.get("x-requestid", request_id)
                if request_id not in turns_started:  # each request (turn) of the client starts once
                    turns_started.add(request_id)
                    await send("turn.start", {"context": {"serviceTag": "standin"}})
                if payload[:4] == b"RIFF":  # the first audio frame carries the WAV header
                    payload = payload[44:]
                    if not payload:
                        continue
                if not payload:  # an empty audio frame ends the audio
                    record["ended"] = True
                    if speech_start is not None:
                        await finish_phrase(samples)
                    await send("speech.endDetected", {"Offset": samples * TICKS // rate})
                    await send("turn.end", {})
                    continue
                pcm = np.frombuffer(payload[: len(payload) // 2 * 2], dtype="<i2")
                loud = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > SPEECH_RMS if len(pcm) else False
                samples += len(pcm)
                record["audio_seconds"] = samples / rate
                if self.drop_after_s is not None and samples / rate >= self.drop_after_s:
                    self.drop_after_s = None
                    record["dropped"] = True
                    await ws.close(1011, "stand-in drops the connection")
                    return
                if loud:
                    last_voice = samples
                    if speech_start is None:
                        speech_start = samples - len(pcm)
                        phrase = self.phrases.popleft() if self.phrases else "Hallo."
                        last_hypothesis = samples
                        await send("speech.startDetected", {"Offset": speech_start * TICKS // rate})
                    elif samples - last_hypothesis >= HYPOTHESIS_EVERY_S * rate:  # every 0.3 s of speech
                        last_hypothesis = samples
                        words = phrase.strip(".?!").split()
                        heard = (samples - speech_start) / rate
                        partial = " ".join(words[: max(1, min(len(words), int(heard / 0.3)))]).lower()
                        await send("speech.hypothesis", {"Text": partial, "Offset": speech_start * TICKS // rate,
                                                         "Duration": (samples - speech_start) * TICKS // rate})
                elif speech_start is not None and (samples - last_voice) * 1000 / rate >= silence_ms:
                    await finish_phrase(last_voice)
        except Exception:  # noqa: BLE001 - a client going away mid-session is normal here
            pass
        record["closed_by_client"] = True
