"""Open a streamed cloud response with a first-item timeout, retrying only before the first item.

Once a provider has handed anything to the engine (a token, an audio chunk) a retry would repeat it,
so failures after that point are raised as `ProviderError` for the fallback adapter or the engine.
Every error raised here is the calling provider's (`owner.error(...)`), so it names its component.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from parley.logging import get_logger
from parley.providers.base import Pcm, Provider, ProviderError
from parley.support.retry import Backoff, retry_async

T = TypeVar("T")
log = get_logger(__name__)

Closer = Callable[[], Awaitable[Any]]
Classify = Callable[[BaseException], ProviderError]


@dataclass
class Opened(Generic[T]):
    """A stream whose first useful item has arrived: `head` (items read so far), the rest in `tail`."""

    head: list[T]
    tail: AsyncIterator[T]
    close: Closer
    finished: bool = False


async def open_first(
    owner: Provider,
    start: Callable[[], Awaitable[tuple[AsyncIterator[T], Closer]]],
    *,
    timeout_s: float,
    retries: int,
    classify: Classify,
    useful: Callable[[T], bool] = lambda _item: True,
    backoff_s: float = 0.2,
) -> Opened[T]:
    """Call `start()` and read until the first `useful` item, within `timeout_s`, up to `1 + retries` times
    (waiting `backoff_s`, then twice as long, … between attempts).

    `classify` turns a vendor exception into a `ProviderError`; errors marked not retryable (bad key,
    bad request) are raised at once. Cancelling the caller closes the half-open stream.
    """
    attempt = 0

    async def once() -> Opened[T]:
        nonlocal attempt
        attempt += 1
        close: Closer | None = None
        head: list[T] = []
        try:
            async with asyncio.timeout(timeout_s):
                tail, close = await start()
                while True:
                    try:
                        item = await anext(tail)
                    except StopAsyncIteration:
                        return Opened(head, tail, close, finished=True)
                    head.append(item)
                    if useful(item):
                        return Opened(head, tail, close)
        except asyncio.CancelledError:
            if close is not None:
                await _quietly(close)
            raise
        except TimeoutError:
            error = owner.error(f"no response within {timeout_s:g} s")
        except ProviderError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - vendor SDKs raise many types; classify says which
            error = classify(exc)
        if close is not None:
            await _quietly(close)
        log.warning("provider attempt failed", provider=owner.name, attempt=attempt, error=str(error))
        raise error

    return await retry_async(once, backoff=Backoff(backoff_s), attempts=retries + 1,
                             retry_if=lambda exc: isinstance(exc, ProviderError) and exc.retryable)


async def _quietly(close: Closer) -> None:
    try:
        await close()
    except Exception:  # noqa: BLE001 - closing a broken stream may fail again; nothing left to do
        pass


async def next_within(tail: AsyncIterator[T], timeout_s: float, owner: Provider) -> T:
    """The next item of `tail`, or `ProviderError` if the stream stalls for `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            return await anext(tail)
    except TimeoutError:
        raise owner.error(f"stream stalled for {timeout_s:g} s") from None


def reason(error: ProviderError) -> str:
    """The error's message without the leading provider name."""
    text = str(error)
    prefix = f"{error.provider}: "
    return text[len(prefix):] if text.startswith(prefix) else text


class PcmAssembler:
    """Turns a byte stream into int16 arrays, carrying an odd trailing byte to the next chunk."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> Pcm | None:
        data = self._carry + data
        cut = len(data) - len(data) % 2
        self._carry = data[cut:]
        return np.frombuffer(data[:cut], dtype="<i2").astype(np.int16) if cut else None


async def pcm_stream(opened: Opened[bytes], owner: Provider, stream_timeout_s: float,
                     classify: Classify) -> AsyncGenerator[Pcm, None]:
    """int16 PCM from an opened byte stream (head first, then the tail within `stream_timeout_s` per chunk);
    a broken stream raises `ProviderError` with the reason; the stream is closed in every case."""
    assembler = PcmAssembler()
    try:
        for data in opened.head:
            if (pcm := assembler.feed(data)) is not None:
                yield pcm
        while not opened.finished:
            try:
                data = await next_within(opened.tail, stream_timeout_s, owner)
            except StopAsyncIteration:
                break
            except ProviderError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise owner.error(f"audio stream broke: {reason(classify(exc))}") from exc
            if (pcm := assembler.feed(data)) is not None:
                yield pcm
    finally:
        await opened.close()
