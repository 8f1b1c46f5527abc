"""End-of-turn model decisions run on a pool of their own: many calls' decisions at once never take more
threads than the pool has (one fewer than the cores), so the event loop pacing the audio keeps a core."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import numpy as np

from parley.engine.turn.model_runner import pool_size, run_turn_model


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
    results = await asyncio.gather(*(run_turn_model(predict, audio) for _ in range(12)))

    assert results == [0.5] * 12
    assert most <= pool_size(os.cpu_count())
    assert loop_thread not in threads
