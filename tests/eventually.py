"""Wait on a condition, not a clock: the one polling helper for the whole suite.

    await eventually(lambda: server.port_open(), timeout_s=10, what="SIPp listening")
    value = await eventually(lambda: store.get(call_id) if ... else None)   # returns the first truthy value

The condition may be a plain function or return an awaitable. It is checked at once, then every
`interval_s`; after `timeout_s` an AssertionError names `what` and the last value seen.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    condition: Callable[[], T | Awaitable[T]],
    *,
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
    what: str | None = None,
) -> T:
    """The first truthy value of `condition()`, polled until `timeout_s`; AssertionError after that."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]  # T | Awaitable[T] narrowed by the await above
        last = value
        if time.monotonic() >= deadline:
            label = what or getattr(condition, "__name__", "condition")
            raise AssertionError(f"{label}: not true after {timeout_s:g} s (last value: {last!r})")
        await asyncio.sleep(interval_s)


def eventually_sync(
    condition: Callable[[], T], *, timeout_s: float = 10.0, interval_s: float = 0.05, what: str | None = None
) -> T:
    """`eventually` for plain (non-async) tests and fixtures."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            label = what or getattr(condition, "__name__", "condition")
            raise AssertionError(f"{label}: not true after {timeout_s:g} s (last value: {value!r})")
        time.sleep(interval_s)


def udp_port_bound(port: int, host: str = "127.0.0.1") -> bool:
    """True once some process has bound UDP `port` (a peer such as SIPp is listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
        return False


def tcp_port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True once a TCP server accepts connections on `port`."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
