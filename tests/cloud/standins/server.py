"""Shared plumbing for the cloud stand-ins: a real HTTP server (uvicorn) on 127.0.0.1 in its own thread,
per-request behaviours queued by the test, and a record of what clients sent and when they hung up.

The stand-ins themselves (openai_server.py, azure_tts_server.py) speak the vendors' documented wire
protocols; this module knows nothing of any vendor.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send


class DroppedOnPurpose(Exception):
    """Raised inside a streaming response to cut the TCP connection mid-body (a 'dropped stream')."""


@dataclass
class Reply:
    """How the stand-in answers the next request of one kind.

    `status` != 200 answers with the vendor's JSON error shape; `first_delay_s` delays the first
    useful byte (headers go out at once, like the real services); `drop_after` cuts the connection
    after that many body chunks; `stall_after` stops sending (without closing) after that many chunks.
    """

    text: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    error_message: str = ""
    first_delay_s: float = 0.0
    chunk_delay_s: float = 0.005
    drop_after: int | None = None
    stall_after: int | None = None


@dataclass
class Hangup:
    """A client closed the connection before the response was complete."""

    kind: str
    chunks_sent: int
    at: float


class StandInServer:
    """Runs a Starlette app with uvicorn on a free 127.0.0.1 port in a background thread."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.replies: dict[str, deque[Reply]] = {}
        self.requests: list[dict[str, Any]] = []
        self.hangups: list[Hangup] = []
        self.completed: list[str] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self.port = 0

    # --- test side -------------------------------------------------------------------------
    def plan(self, kind: str, *replies: Reply) -> None:
        """Queue replies for the next requests of `kind` (then the default reply again)."""
        with self._lock:
            self.replies.setdefault(kind, deque()).extend(replies)

    def reset(self) -> None:
        """Forget planned replies, recorded requests and hang-ups (between tests)."""
        with self._lock:
            self.replies.clear()
            self.requests.clear()
            self.hangups.clear()
            self.completed.clear()

    def requests_of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["kind"] == kind]

    def wait_hangup(self, kind: str, timeout_s: float = 5.0) -> Hangup | None:
        """Block until a client of `kind` hung up mid-response (None after `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                for h in self.hangups:
                    if h.kind == kind:
                        return h
            time.sleep(0.01)
        return None

    def start(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="critical", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        ready = threading.Event()

        def run() -> None:
            async def serve() -> None:
                assert self._server is not None
                task = asyncio.create_task(self._server.serve(sockets=[sock]))
                while not self._server.started and not task.done():
                    await asyncio.sleep(0.005)
                ready.set()
                await task

            asyncio.run(serve())

        self._thread = threading.Thread(target=run, name="standin", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("stand-in server did not start")
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)

    # --- server side -----------------------------------------------------------------------
    def next_reply(self, kind: str, default: Reply) -> Reply:
        with self._lock:
            queue = self.replies.get(kind)
            return queue.popleft() if queue else default

    def record(self, kind: str, **details: Any) -> None:
        with self._lock:
            self.requests.append({"kind": kind, "at": time.monotonic(), **details})

    async def stream(
        self, kind: str, reply: Reply, chunks: list[bytes], headers: list[tuple[bytes, bytes]],
        receive: Receive, send: Send, *, head: list[bytes] | None = None,
    ) -> None:
        """Send `head` at once, then `chunks` paced as `reply` says; notice a client hanging up."""
        hung_up = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    hung_up.set()
                    return

        watcher = asyncio.create_task(watch())
        sent = 0
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for piece in head or []:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            if reply.first_delay_s and await _hung_up_within(hung_up, reply.first_delay_s):
                self._hangup(kind, sent)
                return
            for chunk in chunks:
                if reply.drop_after is not None and sent >= reply.drop_after:
                    raise DroppedOnPurpose(f"{kind}: dropping the connection after {sent} chunks")
                if reply.stall_after is not None and sent >= reply.stall_after:
                    await hung_up.wait()
                if hung_up.is_set():
                    self._hangup(kind, sent)
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += 1
                if reply.chunk_delay_s and await _hung_up_within(hung_up, reply.chunk_delay_s):
                    self._hangup(kind, sent)
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            with self._lock:
                self.completed.append(kind)
        except OSError:
            self._hangup(kind, sent)
        finally:
            watcher.cancel()

    def _hangup(self, kind: str, sent: int) -> None:
        with self._lock:
            self.hangups.append(Hangup(kind, sent, time.monotonic()))


async def _hung_up_within(event: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), seconds)
        return True
    except TimeoutError:
        return False


def asgi_stream(server: StandInServer, kind: str, reply: Reply, chunks: list[bytes],
                media_type: str, head: list[bytes] | None = None) -> Any:
    """An ASGI app sending a chunked streaming response through `server.stream`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", media_type.encode())]
        await server.stream(kind, reply, chunks, headers, receive, send, head=head)

    return app


async def espeak_pcm(text: str, rate: int, voice: str = "en-us") -> bytes:
    """Speak `text` with espeak-ng and return raw int16 mono PCM at `rate` (what a TTS stand-in sends)."""
    import numpy as np

    from parley.media.resample import resample
    from parley.media.wav import read_wav

    proc = await asyncio.create_subprocess_exec(
        "espeak-ng", "-v", voice, "--stdout", text,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"espeak-ng failed: {err.decode(errors='replace')}")
    pcm, src_rate = read_wav(out)
    return np.ascontiguousarray(resample(pcm, src_rate, rate), dtype=np.int16).tobytes()
