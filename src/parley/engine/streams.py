"""Closing a provider's output stream at once (barge-in), whatever kind of async iterator it is."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any


async def close_stream(stream: AsyncIterator[Any]) -> None:
    """Close `stream` now if it can be closed (an async generator); a plain iterator holds nothing."""
    if isinstance(stream, AsyncGenerator):
        try:
            await stream.aclose()
        except RuntimeError:  # a generator still running in a task being cancelled right now
            pass
