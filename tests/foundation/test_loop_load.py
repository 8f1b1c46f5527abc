"""The event loop's load as the gateway's admission reads it: the share of a core the loop thread used over
the last few seconds, and the share it waited for a CPU — with time passed in (no sleeps), and once live."""

from __future__ import annotations

import asyncio
import time

import pytest

from parley.support.loop_load import LoopLoad, run_queue_wait, start_loop_load


def feed(load: LoopLoad, seconds: float, busy: float, *, start: float = 0.0, cpu0: float = 0.0,
         waiting: float = 0.0, calls: int = 0) -> float:
    """Samples every 100 ms for `seconds` with the loop `busy` (and `waiting`) that share of the time; returns
    the CPU total."""
    cpu = cpu0
    for n in range(int(round(seconds * 10)) + 1):
        load.add(start + n * 0.1, cpu, n * 0.1 * waiting, calls)
        cpu += 0.1 * busy
    return cpu - 0.1 * busy


def test_no_opinion_before_a_second_was_measured() -> None:
    load = LoopLoad(window_s=5.0)
    feed(load, 0.8, 1.0, waiting=0.5)
    assert load.busy == 0.0 and load.waiting == 0.0, "a start-up moment is not overload"
    feed(load, 0.3, 1.0, start=0.9, cpu0=0.9)
    assert load.busy > 0.95


def test_busy_is_the_loop_threads_cpu_over_the_last_window() -> None:
    load = LoopLoad(window_s=5.0)
    cpu = feed(load, 10.0, 0.2)
    assert abs(load.busy - 0.2) < 0.01
    # the loop gets busy: after a full window only the busy time counts
    feed(load, 5.0, 0.9, start=10.1, cpu0=cpu + 0.02)
    assert abs(load.busy - 0.9) < 0.03


def test_waiting_is_the_share_of_time_ready_but_without_a_cpu() -> None:
    load = LoopLoad(window_s=5.0)
    feed(load, 5.0, 0.3, waiting=0.12)
    assert abs(load.waiting - 0.12) < 0.005 and abs(load.busy - 0.3) < 0.01


def test_the_reading_projects_the_cost_per_call_onto_the_calls_up_now() -> None:
    load = LoopLoad(window_s=5.0)
    for n in range(51):  # 5 s at 40 % busy while 20 calls were up, then 10 more arrived at once
        load.add(n * 0.1, n * 0.04, 0.0, 20 if n < 50 else 30)
    r = load.reading(30)
    assert abs(r.busy - 0.40) < 0.01 and 20 < r.calls_mean < 20.3 and r.calls == 30
    assert abs(r.with_next_call - 0.40 / r.calls_mean * 31) < 1e-9  # ~62 %: the window has not seen them yet


@pytest.mark.realtime  # CPU time against the wall clock: not under `nice` beside the calls' tests
async def test_the_sampler_sees_cpu_spent_on_the_loop_and_not_time_asleep() -> None:
    load = LoopLoad(window_s=1.0)
    task = start_loop_load(load, every_s=0.05)
    try:
        await asyncio.sleep(1.3)  # idle: the loop sleeps
        idle = load.busy
        end = time.monotonic() + 1.5
        while time.monotonic() < end:  # blocking work on the loop, with short breaks for the sampler
            spin = time.perf_counter() + 0.045
            while time.perf_counter() < spin:
                pass
            await asyncio.sleep(0.005)
        assert idle < 0.3, idle
        assert load.busy > 0.5, load.busy
    finally:
        task.cancel()


def test_the_run_queue_wait_is_read_where_linux_keeps_it() -> None:
    first = run_queue_wait()
    assert first > 0.0, "Linux schedstat: this thread has waited for a CPU at least once since it started"
    assert run_queue_wait() >= first
