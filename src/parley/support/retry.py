"""One retry policy for the whole code base: exponential backoff, capped.

`Backoff.delay(attempt)` is pure (the webhook outbox and the dialer store the next attempt's time in the
database); `retry_async` runs an awaitable again in-process (the event writer, provider streams) with
`tenacity` doing the looping.

    backoff = Backoff(first_s=0.2, factor=2, max_s=30)
    backoff.delay(1) == 0.2; backoff.delay(3) == 0.8
    await retry_async(lambda: store(item), backoff=backoff, attempts=12, on_retry=log_it)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delay before retry number `attempt` (1 = the first retry): `first_s * factor**(attempt-1)`, at most
    `max_s`."""

    first_s: float
    factor: float = 2.0
    max_s: float = 3600.0

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.first_s * self.factor ** max(0, attempt - 1))


async def retry_async(
    call: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    attempts: int,
    retry_if: Callable[[BaseException], bool] = lambda _exc: True,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Await `call()` up to `attempts` times; between failures wait `backoff.delay(n)`.

    Only exceptions for which `retry_if` is true are retried; the last failure (or a non-retryable one)
    is raised as it is. `on_retry(attempt, exc, delay_s)` is told before each wait (for a log line).
    Cancellation is never retried."""

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            assert exc is not None
            on_retry(state.attempt_number, exc, backoff.delay(state.attempt_number))

    retrying = AsyncRetrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=lambda state: backoff.delay(state.attempt_number),
        retry=retry_if_exception(retry_if),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
