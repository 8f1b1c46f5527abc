"""Kamailio's worker set, kept in sync with the workers' registry.

Kamailio's `dispatcher` module reads its destinations from a list file (`setid uri flags priority attrs`);
`DispatcherSync` writes the running workers there whenever the set changes and asks Kamailio to reload it
(`kamcmd dispatcher.reload` over its control socket). A draining or lost worker leaves the list; Kamailio's
OPTIONS probing also takes a silent one out within seconds, before its lease even expires.
"""

from __future__ import annotations

import asyncio
import os
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
                 interval_s: float = 1.0) -> None:
        self.registry = registry
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
        if self.reload_cmd:
            proc = await asyncio.create_subprocess_exec(*self.reload_cmd, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            if proc.returncode != 0:
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
