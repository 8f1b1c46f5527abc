"""Where end-of-turn model decisions run: a thread pool of their own with one thread fewer than the machine
has cores (at least one), its threads at a lower CPU priority than the event loop (Linux: `DECISION_NICE`).

A burst of decisions across many calls then queues instead of taking every core from the event loop that
paces every call's audio (with the default pool, 50 Media Streams calls ran six inferences at once on two
cores and 27 % of the frames went out late). And when the machine is short of CPU — more speaking callers
than the model can judge (~45 ms of a core per decision) — the decisions wait, not the audio: a turn then
ends later (at worst at the detector's silence limits), while every call's frames still go out on time.

`expected_wait_s()` says how long a decision asked now would take to come back (the decisions queued
ahead of it and its own, at the recent time per decision): a conversation whose turn ends before that
does not ask (the detector's `model_busy`), so an overloaded pool spends its time on answers that can
still matter. A decision whose asker gave up before it started (cancelled) is never run."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from parley.logging import get_logger

log = get_logger(__name__)

#: How much lower the decision threads' priority is than the process's (Linux nice levels: the kernel
#: gives a thread at +10 about a tenth of the CPU share of one at 0 when both want the same core).
DECISION_NICE = 10

#: Time per decision assumed until one has been measured (Smart Turn v3.2 on one core: ~36–45 ms).
FIRST_GUESS_S = 0.05
#: Weight of the latest decision's time in the running estimate.
SMOOTHING = 0.2

_pool: ThreadPoolExecutor | None = None
_queued = 0  # decisions submitted and not yet back (running ones included)
_per_decision_s = FIRST_GUESS_S


def pool_size(cpus: int | None) -> int:
    """Threads for model decisions on a machine with `cpus` cores: all but one, at least one."""
    return max(1, (cpus or 1) - 1)


def lower_thread_priority(nice: int = DECISION_NICE) -> bool:
    """Lower the calling thread's CPU priority by `nice` levels (Linux only: there a thread id names one
    thread for `setpriority`); False where it is not possible. Never raises."""
    if not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:
        log.info("turn-model thread keeps its priority", error=str(exc))
        return False
    return True


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=pool_size(os.cpu_count()), thread_name_prefix="turn-model",
                                   initializer=lower_thread_priority)
    return _pool


def expected_wait_s(workers: int | None = None) -> float:
    """Seconds until a decision asked now would be answered: the queue ahead of it, then its own run."""
    threads = workers or pool_size(os.cpu_count())
    return (_queued // threads + 1) * _per_decision_s


def _timed(decide: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    return decide(), time.perf_counter() - start


async def run_turn_model(decide: Callable[[], float]) -> float:
    """`decide()` on the decision pool — the whole decision, preparing its audio included; the caller's
    task waits, the event loop does not. Cancelled before its turn in the queue, it is never run."""
    global _queued, _per_decision_s
    _queued += 1
    try:
        probability, took = await asyncio.get_running_loop().run_in_executor(_executor(), _timed, decide)
    finally:
        _queued -= 1
    _per_decision_s += SMOOTHING * (took - _per_decision_s)
    return probability
