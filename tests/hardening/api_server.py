"""A real `uvicorn` API server in its own process (so its RSS is its own), and the attacker's tools:
a raw-socket client that streams a huge body and a prober that times `/health` round trips meanwhile.

Also runnable to take the figures of the report against any source tree (the "before" on unchanged code):

    PYTHONPATH=src python -m tests.hardening.api_server /path/to/src   # prints answer time, RSS, health
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-key"

_SERVER = """
import sys, uvicorn
from pathlib import Path
from parley.api import create_app
from parley.settings import Settings
data, root, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
settings = Settings(_env_file=None, data_dir=data, agents_dir=root / "agents", prompts_dir=root / "prompts",
                    api_keys="test-key")
uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiProcess:
    """`uvicorn` serving `create_app` from the sources in `src`, on a free port, until `stop()`."""

    def __init__(self, src: Path, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(src), **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(data_dir), str(ROOT), str(self.port)],
                                     env=env, cwd=str(data_dir.parent), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API server exited: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if health_round_trip(self.port, timeout=1.0) is not None:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("API server did not answer /health within 60 s")

    def rss_kb(self) -> int:
        """Resident memory of the server process (kB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def health_round_trip(port: int, timeout: float = 5.0) -> float | None:
    """Seconds for one `GET /health` on a fresh connection (None when it did not answer 200/503)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: parley\r\nConnection: close\r\n\r\n")
        head = s.recv(64)
    if not (head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.1 503")):
        return None
    return time.monotonic() - start


@dataclass
class Attack:
    """The outcome of one huge-body request."""

    status: int | None = None
    answer_s: float | None = None  # seconds from the first byte sent to the status line received
    sent: int = 0  # body bytes the server took before the answer or the connection closed
    rss_growth_kb: int = 0
    health_worst_s: float = 0.0
    health_failures: int = 0
    body: dict[str, Any] = field(default_factory=dict)


def huge_body_attack(server: ApiProcess, path: str, size: int, *, key: str | None = None,
                     chunked: bool = False, content_type: str = "application/json",
                     timeout_s: float = 120.0) -> Attack:
    """POST a `size`-byte JSON body to `path` over a raw socket (declared by Content-Length, or chunked),
    while `/health` is probed every 50 ms and the server's RSS is sampled. Stops sending when the server
    answers or closes."""
    # Many small JSON values, like the probe's: what parsing turns into hundreds of MB of Python objects.
    prefix = b'{"to_number": "+14155550123", "metadata": {"pad": ['
    suffix = b'0]}}'
    fill = size - len(prefix) - len(suffix)
    out = Attack()
    baseline = server.rss_kb()
    peak = baseline
    answered = threading.Event()
    done = threading.Event()
    response = bytearray()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.rss_kb())
            done.wait(0.01)

    def probe() -> None:
        while not done.is_set():
            try:
                rtt = health_round_trip(server.port, timeout=10.0)
            except OSError:
                rtt = None
            if rtt is None:
                out.health_failures += 1
            else:
                out.health_worst_s = max(out.health_worst_s, rtt)
            done.wait(0.05)

    head = [f"POST {path} HTTP/1.1", "Host: parley", f"Content-Type: {content_type}"]
    if key is not None:
        head.append(f"X-API-Key: {key}")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout_s)

    def read() -> None:
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                response.extend(chunk)
                head_end = response.find(b"\r\n\r\n")
                if head_end < 0:
                    continue
                if out.answer_s is None:
                    out.answer_s = time.monotonic() - start
                length = next((int(line.split(b":", 1)[1]) for line in response[:head_end].split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                if len(response) >= head_end + 4 + length:
                    break
        except OSError:
            pass
        answered.set()

    prober = threading.Thread(target=probe, daemon=True)
    sampler = threading.Thread(target=sample, daemon=True)
    reader = threading.Thread(target=read, daemon=True)
    prober.start()
    sampler.start()
    start = time.monotonic()
    reader.start()
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        pieces = [prefix] + [b"0," * 131072] * (fill // 262144) + [b" " * (fill % 262144), suffix]
        for piece in pieces:
            if answered.is_set():
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            out.sent += len(piece)
        if chunked and not answered.is_set():
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server closed the connection: what it should do after answering early
    answered.wait(timeout_s)
    sock.close()
    reader.join(5)
    done.set()
    prober.join(15)
    sampler.join(5)
    out.rss_growth_kb = max(peak, server.rss_kb()) - baseline
    text = bytes(response)
    if text.startswith(b"HTTP/1.1 "):
        out.status = int(text[9:12])
        _, _, raw = text.partition(b"\r\n\r\n")
        try:
            out.body = json.loads(raw) if raw else {}
        except ValueError:
            out.body = {"raw": raw[:200].decode(errors="replace")}
    return out


if __name__ == "__main__":
    import tempfile

    src = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "src"
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 100 * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        server = ApiProcess(src, Path(tmp) / "data")
        try:
            idle = [health_round_trip(server.port) or 0.0 for _ in range(20)]
            result = huge_body_attack(server, "/api/outbound-call", size)
        finally:
            server.stop()
    print(json.dumps({"src": str(src), "size": size, "status": result.status, "answer_s": result.answer_s,
                      "sent_mb": round(result.sent / 1e6, 1), "rss_growth_mb": round(result.rss_growth_kb / 1024, 1),
                      "health_idle_worst_ms": round(max(idle) * 1000, 1),
                      "health_worst_ms": round(result.health_worst_s * 1000, 1),
                      "health_failures": result.health_failures, "load": os.getloadavg()}))
