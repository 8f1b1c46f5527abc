"""Where end-of-turn model decisions run: a thread pool of their own with one thread fewer than the machine
has cores (at least one). A burst of decisions across many calls then queues for a few tens of ms instead of
taking every core from the event loop that paces every call's audio (with the default pool, 50 Media Streams
calls ran six inferences at once on two cores and 27 % of the frames went out late)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_pool: ThreadPoolExecutor | None = None


def pool_size(cpus: int | None) -> int:
    """Threads for model decisions on a machine with `cpus` cores: all but one, at least one."""
    return max(1, (cpus or 1) - 1)


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=pool_size(os.cpu_count()), thread_name_prefix="turn-model")
    return _pool


async def run_turn_model(predict: Callable[[np.ndarray], float], audio: np.ndarray) -> float:
    """`predict(audio)` on the decision pool; the caller's task waits, the event loop does not."""
    return await asyncio.get_running_loop().run_in_executor(_executor(), predict, audio)
