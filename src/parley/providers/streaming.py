"""Open a streamed cloud response with a first-item timeout, retrying only before the first item.

Once a provider has handed anything to the engine (a token, an audio chunk) a retry would repeat it,
so failures after that point are raised as `ProviderError` for the fallback adapter or the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from parley.logging import get_logger
from parley.providers.base import Pcm, ProviderError

T = TypeVar("T")
log = get_logger(__name__)

Closer = Callable[[], Awaitable[Any]]


@dataclass
class Opened(Generic[T]):
    """A stream whose first useful item has arrived: `head` (items read so far), the rest in `tail`."""

    head: list[T]
    tail: AsyncIterator[T]
    close: Closer
    finished: bool = False
    attempts: int = 1
    errors: list[str] = field(default_factory=list)


async def open_first(
    provider: str,
    start: Callable[[], Awaitable[tuple[AsyncIterator[T], Closer]]],
    *,
    timeout_s: float,
    retries: int,
    classify: Callable[[BaseException], ProviderError],
    useful: Callable[[T], bool] = lambda _item: True,
    backoff_s: float = 0.2,
) -> Opened[T]:
    """Call `start()` and read until the first `useful` item, within `timeout_s`, up to `1 + retries` times.

    `classify` turns a vendor exception into a `ProviderError`; errors marked not retryable (bad key,
    bad request) are raised at once. Cancelling the caller closes the half-open stream.
    """
    errors: list[str] = []
    last: ProviderError | None = None
    for attempt in range(retries + 1):
        close: Closer | None = None
        head: list[T] = []
        try:
            async with asyncio.timeout(timeout_s):
                tail, close = await start()
                while True:
                    try:
                        item = await anext(tail)
                    except StopAsyncIteration:
                        return Opened(head, tail, close, finished=True, attempts=attempt + 1, errors=errors)
                    head.append(item)
                    if useful(item):
                        return Opened(head, tail, close, attempts=attempt + 1, errors=errors)
        except TimeoutError:
            last = ProviderError(provider, f"no response within {timeout_s:g} s")
        except asyncio.CancelledError:
            if close is not None:
                await _quietly(close)
            raise
        except ProviderError as exc:
            last = exc
        except Exception as exc:  # noqa: BLE001 - vendor SDKs raise many types; classify says which
            last = classify(exc)
        if close is not None:
            await _quietly(close)
        errors.append(str(last))
        log.warning("provider attempt failed", provider=provider, attempt=attempt + 1, error=str(last))
        if not last.retryable or attempt == retries:
            break
        await asyncio.sleep(backoff_s * (2**attempt))
    assert last is not None
    raise last


async def _quietly(close: Closer) -> None:
    try:
        await close()
    except Exception:  # noqa: BLE001 - closing a broken stream may fail again; nothing left to do
        pass


async def next_within(tail: AsyncIterator[T], timeout_s: float, provider: str) -> T:
    """The next item of `tail`, or `ProviderError` if the stream stalls for `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            return await anext(tail)
    except TimeoutError:
        raise ProviderError(provider, f"stream stalled for {timeout_s:g} s") from None


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


async def pcm_stream(opened: Opened[bytes], provider: str, stream_timeout_s: float,
                     classify: Callable[[BaseException], ProviderError]) -> AsyncIterator[Pcm]:
    """int16 PCM from an opened byte stream (head first, then the tail within `stream_timeout_s` per chunk);
    a broken stream raises `ProviderError` with the reason; the stream is closed in every case."""
    assembler = PcmAssembler()
    try:
        for data in opened.head:
            if (pcm := assembler.feed(data)) is not None:
                yield pcm
        while not opened.finished:
            try:
                data = await next_within(opened.tail, stream_timeout_s, provider)
            except StopAsyncIteration:
                break
            except ProviderError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise ProviderError(provider, f"audio stream broke: {reason(classify(exc))}") from exc
            if (pcm := assembler.feed(data)) is not None:
                yield pcm
    finally:
        await opened.close()
