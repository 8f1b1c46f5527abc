"""End-of-turn model decisions run on a pool of their own: many calls' decisions at once never take more
threads than the pool has (one fewer than the cores), at a lower priority, so the event loop pacing the audio
keeps a core; a decision nobody waits for any more is not run, and the wait for a new one can be foreseen."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from functools import partial

import numpy as np
import pytest

from parley.engine.turn.model_runner import DECISION_NICE, expected_wait_s, pool_size, run_turn_model


def test_the_pool_leaves_one_core_to_the_event_loop() -> None:
    assert pool_size(2) == 1
    assert pool_size(8) == 7
    assert pool_size(1) == 1
    assert pool_size(None) == 1


async def test_a_burst_of_decisions_queues_instead_of_taking_every_core() -> None:
    running = 0
    most = 0
    lock = threading.Lock()
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    def predict(audio: np.ndarray) -> float:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            threads.add(threading.get_ident())
        time.sleep(0.02)  # a decision's CPU time, as a blocking call
        with lock:
            running -= 1
        return float(audio.mean())

    audio = np.full(16000, 0.5, dtype=np.float32)
    results = await asyncio.gather(*(run_turn_model(partial(predict, audio)) for _ in range(12)))

    assert results == [0.5] * 12
    assert most <= pool_size(os.cpu_count())
    assert loop_thread not in threads


async def test_a_decision_given_up_before_its_turn_in_the_queue_is_never_run() -> None:
    ran: list[str] = []
    gate = threading.Event()

    def predict(audio: np.ndarray) -> float:
        gate.wait(5)
        ran.append(str(audio[0]))
        return 0.9

    threads = pool_size(os.cpu_count())
    busy = [asyncio.ensure_future(run_turn_model(partial(predict, np.full(1, i, np.float32)))) for i in range(threads)]
    late = asyncio.ensure_future(run_turn_model(partial(predict, np.full(1, 99, np.float32))))
    await asyncio.sleep(0)
    late.cancel()  # its caller resumed speaking: the silence it was about is over
    with pytest.raises(asyncio.CancelledError):
        await late  # the cancellation reaches the pool's queue before the running decision ends
    gate.set()
    assert await asyncio.gather(*busy) == [0.9] * threads
    assert "99.0" not in ran and len(ran) == threads


async def test_the_expected_wait_grows_with_the_decisions_queued_ahead() -> None:
    gate = threading.Event()

    def predict() -> float:
        gate.wait(5)
        return 0.5

    idle = expected_wait_s(workers=1)
    queued = [asyncio.ensure_future(run_turn_model(predict)) for _ in range(4)]
    await asyncio.sleep(0)
    assert expected_wait_s(workers=1) == pytest.approx(5 * idle)
    gate.set()
    await asyncio.gather(*queued)
    assert expected_wait_s(workers=1) < 5 * idle  # all answered; the estimate follows their time


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is a Linux feature")
async def test_decisions_run_at_a_lower_priority_than_the_event_loop() -> None:
    def niceness() -> float:
        return float(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert await run_turn_model(niceness) == min(19, loop_nice + DECISION_NICE)
