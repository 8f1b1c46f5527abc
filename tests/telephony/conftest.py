"""Fixtures for the telephony gateway: a running phone stack (calls service + SIP gateway) on free ports,
a webhook receiver, a loopback RTP sniffer, and caller speech as raw μ-law for SIPp."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parley.agents import AgentRegistry
from parley.calls.service import CallsService
from parley.calls.webhooks import RetryTiming
from parley.media.g711 import ulaw_decode
from parley.sip.endpoint import SipEndpoint
from parley.telephony.gateway import Gateway
from tests.conftest import ROOT, free_port
from tests.eventually import eventually


@pytest.fixture(scope="session")
def agents() -> AgentRegistry:
    return AgentRegistry.load(ROOT / "agents", ROOT / "prompts")


@dataclass
class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 collecting webhook bodies (and answering incoming-call webhooks)."""

    url: str
    events: list[dict[str, Any]] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    delay_s: float = 0.0

    def types(self) -> list[str]:
        return [e.get("event") or e.get("type") or "" for e in self.events]

    def find(self, event: str) -> dict[str, Any] | None:
        """The first `event` webhook received, or None."""
        return next((e for e in list(self.events) if (e.get("event") or e.get("type")) == event), None)

    async def wait_for(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        return await eventually(lambda: self.find(event), timeout_s=timeout,
                                what=f"a {event!r} webhook (got {self.types()})")


@pytest.fixture
def webhook_receiver() -> Any:
    box: dict[str, WebhookReceiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            receiver = box["r"]
            receiver.events.append(body)
            if receiver.delay_s:
                time.sleep(receiver.delay_s)
            payload = json.dumps(receiver.answer or {}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["r"] = WebhookReceiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box["r"]
    server.shutdown()
    server.server_close()


@dataclass
class PhoneStack:
    calls: CallsService
    gateway: Gateway

    @property
    def sip_port(self) -> int:
        return self.gateway.endpoint.port

    async def wait_status(self, call_id: str, statuses: set[str], timeout: float = 20.0) -> Any:
        async def in_status() -> Any:
            call = await self.calls.get_call(call_id)
            return call if call is not None and call.status in statuses else None

        return await eventually(in_status, timeout_s=timeout, what=f"call {call_id} in one of {statuses}")

    async def only_call(self, timeout: float = 10.0) -> Any:
        async def first() -> Any:
            calls, _ = await self.calls.list_calls(limit=5)
            return calls[0] if calls else None

        return await eventually(first, timeout_s=timeout, what="a call recorded")


StackFactory = Callable[..., Awaitable[PhoneStack]]


@pytest.fixture
async def phone_stack(settings, agents) -> AsyncIterator[StackFactory]:  # type: ignore[no-untyped-def]
    """`await make(**settings_updates)` -> a started calls service + gateway on a free SIP port."""
    made: list[PhoneStack] = []

    async def make(*, warm: bool = False, loopback_fallback: bool = True, dial: bool = False,
                   slots: Any = None, worker_id: str | None = None, sip_timers: Any = None,
                   **updates: Any) -> PhoneStack:
        s = settings.model_copy(update={"sip_port": 0, **updates})
        calls = await CallsService.open(
            s, agents=agents, webhook_timing=RetryTiming(base_s=0.05, factor=2.0, max_attempts=5, timeout_s=5.0),
            webhook_poll_s=0.05)
        endpoint = SipEndpoint(host="127.0.0.1", port=0, transports=("udp", "tcp"),
                               rtp_port_range=(s.rtp_port_min, s.rtp_port_max), timers=sip_timers)
        gateway = Gateway(s, agents, calls, endpoint=endpoint, loopback_fallback=loopback_fallback, slots=slots,
                          worker_id=worker_id, cluster=slots is not None and slots.shared is not None)
        if warm:
            await gateway.warm()
        await gateway.start()
        if dial:
            await calls.start_dialer(gateway.place_call)
        stack = PhoneStack(calls, gateway)
        made.append(stack)
        return stack

    yield make
    for stack in reversed(made):
        await stack.gateway.close(timeout_s=1.0)  # real peers answer a BYE in ms; a test's dead socket never
        await stack.calls.close()


class RtpSniffer:
    """Captures RTP sent to a UDP port on the loopback interface (AF_PACKET; needs root)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.payloads: list[bytes] = []
        self._stop = threading.Event()
        try:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        except PermissionError:
            pytest.skip("capturing RTP on loopback needs root (AF_PACKET)")
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(65535)
            except OSError:
                continue
            if addr[2] == socket.PACKET_OUTGOING or len(data) < 14 + 20 + 8 + 12:
                continue
            ip = data[14:]
            if ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 0x0F) * 4
            dport = struct.unpack("!H", ip[ihl + 2: ihl + 4])[0]
            if dport == self.port:
                self.payloads.append(ip[ihl + 8:])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def audio(self, payload_type: int = 0) -> np.ndarray:
        """Decoded μ-law audio of the captured RTP packets with `payload_type`."""
        frames = [p[12:] for p in self.payloads if len(p) > 12 and (p[1] & 0x7F) == payload_type]
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return ulaw_decode(b"".join(frames))


def speech_energy_seconds(pcm: np.ndarray, rate: int = 8000, threshold: float = 500.0) -> float:
    """Seconds of 20 ms windows whose RMS is above `threshold` (speech, not silence or comfort noise)."""
    n = rate // 50
    usable = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    if not len(usable):
        return 0.0
    rms = np.sqrt((usable ** 2).mean(axis=1))
    return float((rms > threshold).sum() * 0.02)


def ulaw_file(wav: Path, out: Path, lead_silence_s: float = 0.0, tail_silence_s: float = 0.0) -> Path:
    """A raw 8 kHz μ-law file for SIPp's rtp_stream (it reads no WAV headers), padded with silence."""
    if not shutil.which("sox"):
        pytest.skip("sox is not installed (make test installs it)")
    subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-t", "ul", str(out),
                    "pad", str(lead_silence_s), str(tail_silence_s)], check=True)
    return out


__all__ = ["PhoneStack", "RtpSniffer", "WebhookReceiver", "free_port", "speech_energy_seconds", "ulaw_file"]
