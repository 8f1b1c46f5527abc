"""The attacker's side of the hardening tests: raw UDP/TCP sockets on 127.0.0.1, run in threads so
the endpoint's event loop is measured from outside (an OPTIONS round trip that waits on a stalled
loop shows the stall, as a caller on another call would hear it)."""

from __future__ import annotations

import os
import socket
import threading
import time


def request(method: str, port: int, *, src_port: int, call_id: str | None = None, via_extra: str = "",
            headers: str = "", body: bytes = b"", cseq: str | None = None, uri: str | None = None,
            content_length: str | None = None, via_host: str = "127.0.0.1", transport: str = "UDP") -> bytes:
    """A well-formed request (unless the caller bends a field) from 127.0.0.1:src_port."""
    call_id = call_id or os.urandom(6).hex()
    lines = [
        f"{method} {uri or f'sip:probe@127.0.0.1:{port}'} SIP/2.0",
        f"Via: SIP/2.0/{transport} {via_host}:{src_port};branch=z9hG4bK{os.urandom(6).hex()}{via_extra}",
        "Max-Forwards: 70",
        f"From: <sip:attacker@127.0.0.1:{src_port}>;tag={os.urandom(4).hex()}",
        f"To: <sip:probe@127.0.0.1:{port}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq or f'1 {method}'}",
    ]
    if headers:
        lines += headers.rstrip("\r\n").split("\r\n")
    lines.append(f"Content-Length: {content_length if content_length is not None else len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def udp_socket(host: str = "127.0.0.1", timeout: float = 2.0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(timeout)
    return s


def exchange(sock: socket.socket, data: bytes, port: int) -> bytes | None:
    """Send `data` to the endpoint and return the first datagram back (None on timeout)."""
    sock.sendto(data, ("127.0.0.1", port))
    try:
        return sock.recv(65535)
    except socket.timeout:
        return None


class OptionsProbe(threading.Thread):
    """Sends an OPTIONS every `interval` s and records round-trip times (s; 10 s for a lost one)."""

    def __init__(self, port: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.rtts: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        sock = udp_socket(timeout=0.05)
        src = sock.getsockname()[1]
        while not self.stop.is_set():
            call_id = os.urandom(6).hex()
            t0 = time.monotonic()
            sock.sendto(request("OPTIONS", self.port, src_port=src, call_id=call_id), ("127.0.0.1", self.port))
            while True:
                try:
                    data = sock.recv(65535)
                except socket.timeout:
                    if time.monotonic() - t0 > 10:
                        self.rtts.append(10.0)
                        break
                    continue
                if call_id.encode() in data:
                    self.rtts.append(time.monotonic() - t0)
                    break
            time.sleep(self.interval)
        sock.close()

    def p99(self) -> float:
        ordered = sorted(self.rtts)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("inf")
