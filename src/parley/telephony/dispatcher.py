"""Kamailio's worker set, kept in sync with the workers' registry.

Kamailio's `dispatcher` module reads its destinations from a list file (`setid uri flags priority attrs`);
`DispatcherSync` writes the running workers there whenever the set changes and asks Kamailio to reload it
(`kamcmd dispatcher.reload` over its control socket). A draining or lost worker leaves the list; Kamailio's
OPTIONS probing also takes a silent one out within seconds, before its lease even expires.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import time
from collections.abc import Sequence
from pathlib import Path

from parley.calls.workers import WorkerInfo, WorkerRegistry
from parley.logging import get_logger

log = get_logger(__name__)


def dispatcher_list(workers: Sequence[WorkerInfo], setid: int = 1) -> str:
    """The dispatcher list of the workers taking calls (running, with a SIP address), sorted by id."""
    lines = ["# written by `parley cluster kamailio-sync` from the workers' registry; do not edit"]
    for w in sorted(workers, key=lambda w: w.id):
        if w.state == "running" and w.sip:
            lines.append(f"{setid} sip:{w.sip} 0 0 duid={w.id.replace(';', '_').replace(' ', '_')}")
    return "\n".join(lines) + "\n"


class DispatcherSync:
    """Every `interval_s`: registry → list file; on a change, `reload_cmd` (e.g. kamcmd … dispatcher.reload)."""

    def __init__(self, registry: WorkerRegistry, path: Path, reload_cmd: Sequence[str], *, setid: int = 1,
                 interval_s: float = 1.0, reload_fifo: Path | None = None) -> None:
        self.registry = registry
        self.reload_fifo = reload_fifo
        self.path = path
        self.reload_cmd = list(reload_cmd)
        self.setid = setid
        self.interval_s = interval_s
        self.written: str | None = None

    async def once(self) -> bool:
        """One round; True when the list changed (written and reloaded)."""
        text = dispatcher_list(await self.registry.workers(), self.setid)
        if text == self.written:
            return False
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)
        self.written = text
        if self.reload_fifo is not None:
            try:
                answer = await asyncio.to_thread(fifo_rpc, self.reload_fifo, "dispatcher.reload")
            except OSError as exc:
                self.written = None
                log.warning("kamailio dispatcher reload over the JSON-RPC FIFO failed", error=str(exc))
                return False
            if '"error"' in answer:
                self.written = None
                log.warning("kamailio refused the dispatcher reload", answer=answer[-300:])
                return False
        elif self.reload_cmd:
            proc = await asyncio.create_subprocess_exec(*self.reload_cmd, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            # kamcmd may exit 0 and still print an error (e.g. "500 - ongoing reload"): try again next round
            if proc.returncode != 0 or b"error" in out.lower():
                self.written = None  # try again next round
                log.warning("kamailio dispatcher reload failed", code=proc.returncode,
                            output=out.decode(errors="replace")[-500:])
                return False
        log.info("kamailio worker set updated", workers=text.count("\n") - 1)
        return True

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except Exception as exc:  # noqa: BLE001 - Redis or Kamailio away: next round
                log.warning("dispatcher sync round failed", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(self.interval_s)


def fifo_rpc(fifo: Path, method: str, timeout_s: float = 3.0) -> str:
    """One JSON-RPC call through Kamailio's `jsonrpcs` FIFO (blocking; run it in a thread). The reply
    comes back through a FIFO made next to it (Kamailio's `fifo_reply_dir` must be that directory)."""
    reply = fifo.parent / f"parley_sync_{os.getpid()}_reply"  # no dot or slash: jsonrpcs refuses them
    if reply.exists():
        reply.unlink()
    os.mkfifo(reply, 0o660)
    try:
        rfd = os.open(reply, os.O_RDONLY | os.O_NONBLOCK)
        try:
            wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: Kamailio is not reading it
            try:
                request = {"jsonrpc": "2.0", "method": method, "id": 1, "reply_name": reply.name}
                os.write(wfd, json.dumps(request).encode() + b"\n")
            finally:
                os.close(wfd)
            buf = b""
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                ready, _, _ = select.select([rfd], [], [], 0.1)
                chunk = os.read(rfd, 65536) if ready else b""
                if not chunk:
                    if buf:
                        try:
                            json.loads(buf)
                            return buf.decode(errors="replace")
                        except ValueError:
                            pass
                    time.sleep(0.02)
                    continue
                buf += chunk
            raise OSError(f"no answer from Kamailio on {fifo} within {timeout_s:g}s")
        finally:
            os.close(rfd)
    finally:
        reply.unlink()
