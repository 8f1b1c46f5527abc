"""Host name -> IPv4 address for SIP, never on the event loop (RFC 3263 A-record fallback, no SRV).

`Resolver.resolve()` runs `loop.getaddrinfo` (the resolver's thread pool) under a timeout and caches
answers and failures for `ttl` seconds, so a slow or hostile DNS costs one lookup per name per
`ttl`, never a stalled loop. IP literals are returned as they are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

from parley.sip.guard import BoundedDict


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class Resolver:
    """Cached, time-limited name lookups (answers and failures both cached for `ttl` s)."""

    def __init__(self, timeout: float = 2.0, ttl: float = 60.0, max_entries: int = 1024) -> None:
        self.timeout = timeout
        self.ttl = ttl
        self._cache: BoundedDict[str, tuple[str | None, float]] = BoundedDict(max_entries)
        self._pending: dict[str, asyncio.Future[str | None]] = {}
        self.lookups = 0

    async def resolve(self, host: str) -> str | None:
        """The first IPv4 address of `host`, or None when it does not resolve within `timeout`."""
        host = host.strip("[]")
        if is_ip(host):
            return host
        cached = self._cache.get(host)
        if cached is not None and time.monotonic() - cached[1] < self.ttl:
            return cached[0]
        pending = self._pending.get(host)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending[host] = fut
        try:
            answer = await self._lookup(host)
            self._cache.put(host, (answer, time.monotonic()))
            fut.set_result(answer)
            return answer
        finally:
            if not fut.done():
                fut.set_result(None)
            self._pending.pop(host, None)

    async def _lookup(self, host: str) -> str | None:
        self.lookups += 1
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, None, family=socket.AF_INET), self.timeout)
        except (OSError, asyncio.TimeoutError, UnicodeError):
            return None
        return str(infos[0][4][0]) if infos else None
