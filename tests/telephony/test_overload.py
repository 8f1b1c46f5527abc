"""A worker whose event loop is overloaded refuses new calls instead of making every call's audio late.

Every call's media on a worker runs on one event loop: admitted past what that loop can do, each new call
makes *all* calls' frames go out late. So while the loop used more than MAX_LOOP_BUSY of a core over the
last seconds, INVITEs get 503 with Retry-After (Kamailio then tries the next worker), the dialer is told to
hand its jobs back to the queue for another worker, and the refusal says why in words; once the load is gone, calls are answered again. The load
here is real: blocking work on the gateway's own loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from parley.calls import metrics
from tests.eventually import eventually
from tests.telephony.test_caps_burst import Burst

pytestmark = [pytest.mark.sip, pytest.mark.realtime]


class Burner:
    """Keeps the running loop ~90 % busy with blocking work in 45 ms slices until stopped."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def _burn(self) -> None:
        while True:
            end = time.perf_counter() + 0.045
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0.005)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._burn())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
async def burner() -> AsyncIterator[Burner]:
    b = Burner()
    yield b
    await b.stop()


async def test_an_overloaded_worker_refuses_calls_with_503_until_its_loop_recovers(phone_stack,
                                                                                 burner: Burner) -> None:
    stack = await phone_stack(num_agents=10, max_loop_busy=0.6)
    gateway = stack.gateway
    refused_before = metrics.OVERLOAD_REFUSALS.labels("inbound")._value.get()
    burst = Burst()
    try:
        ids = burst.fire([stack.sip_port], 1)
        assert list((await burst.wait_finals(ids)).values()) == [200], "an idle worker answers"

        burner.start()
        await eventually(lambda: gateway.overloaded("inbound", count=False), timeout_s=15, interval_s=0.2,
                         what="the worker's event loop over MAX_LOOP_BUSY (60 %)")
        ids = burst.fire([stack.sip_port], 3)
        assert sorted((await burst.wait_finals(ids)).values()) == [503, 503, 503]
        assert metrics.OVERLOAD_REFUSALS.labels("inbound")._value.get() - refused_before == 3
        assert len(gateway.live) == 1, "only the call answered before the load is up"
        queued = await stack.calls.create_call(to_number="+15550001234")
        told = await gateway.admit_outbound(queued)  # what the dialer is told: another worker should dial it
        assert told is not None and told.here_only
        assert "overloaded" in told.reason and "MAX_LOOP_BUSY 60%" in told.reason

        await burner.stop()
        await eventually(lambda: gateway.overloaded("inbound", count=False) is None, timeout_s=15,
                         interval_s=0.2, what="the worker's event loop back under MAX_LOOP_BUSY")
        ids = burst.fire([stack.sip_port], 1)
        assert list((await burst.wait_finals(ids)).values()) == [200], "answered again once the load is gone"
    finally:
        burst.close()
