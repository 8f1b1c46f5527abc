"""`open_first`: a streamed response is retried only before its first useful item, on the one retry helper.

The owner is a real provider (the echo LLM) so the errors carry its name and component; the "server" is a
small async generator standing in for a vendor stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from parley.providers.base import ProviderError
from parley.providers.llm.echo import EchoLLM
from parley.providers.streaming import Closer, open_first

from ..eventually import eventually


class Server:
    """Answers attempt n with `plan[n]`: an exception to raise, or items to stream (None = hang)."""

    def __init__(self, *plan: BaseException | list[str] | None) -> None:
        self.plan = list(plan)
        self.attempts = 0
        self.closed = 0

    async def start(self) -> tuple[AsyncIterator[str], Closer]:
        step = self.plan[min(self.attempts, len(self.plan) - 1)]
        self.attempts += 1
        if isinstance(step, BaseException):
            raise step
        return self._items(step), self._close

    async def _items(self, items: list[str] | None) -> AsyncGenerator[str, None]:
        if items is None:
            await asyncio.Event().wait()
        for item in items or []:
            yield item

    async def _close(self) -> None:
        self.closed += 1


def classify(exc: BaseException) -> ProviderError:
    return ProviderError("echo", f"classified {type(exc).__name__}", component="llm")


async def test_retries_until_the_first_useful_item() -> None:
    server = Server(ProviderError("echo", "HTTP 503"), ["", "Hello"])
    opened = await open_first(EchoLLM(), server.start, timeout_s=5, retries=2, classify=classify,
                              useful=bool, backoff_s=0)
    assert server.attempts == 2 and opened.head == ["", "Hello"] and not opened.finished


async def test_not_retryable_errors_are_raised_at_once() -> None:
    server = Server(ProviderError("echo", "the API key was rejected (401)", retryable=False), ["late"])
    with pytest.raises(ProviderError, match="401"):
        await open_first(EchoLLM(), server.start, timeout_s=5, retries=3, classify=classify, backoff_s=0)
    assert server.attempts == 1


async def test_the_last_error_after_every_attempt_names_the_component() -> None:
    server = Server(ValueError("boom"))
    with pytest.raises(ProviderError, match="classified ValueError") as info:
        await open_first(EchoLLM(), server.start, timeout_s=5, retries=2, classify=classify, backoff_s=0)
    assert server.attempts == 3 and info.value.component == "llm"


async def test_a_silent_stream_times_out_and_is_closed() -> None:
    server = Server(None)
    with pytest.raises(ProviderError, match="no response within 0.1 s") as info:
        await open_first(EchoLLM(), server.start, timeout_s=0.1, retries=1, classify=classify, backoff_s=0)
    assert server.attempts == 2 and server.closed == 2
    assert info.value.provider == "echo" and info.value.component == "llm"


async def test_cancelling_the_caller_closes_the_half_open_stream() -> None:
    server = Server(None)
    task = asyncio.ensure_future(open_first(EchoLLM(), server.start, timeout_s=30, retries=3, classify=classify))
    await eventually(lambda: server.attempts == 1, what="the stream opened")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.closed == 1 and server.attempts == 1
