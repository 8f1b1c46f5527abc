"""How busy this process's event loop is, measured from inside it.

    load = LoopLoad(window_s=5.0)
    load.add(wall, cpu, waited, calls)  # a sample: monotonic s, the loop thread's CPU s and run-queue wait s
                                        # (both cumulative), calls up
    load.busy                           # share of the window the loop thread ran on a CPU (0.0 until 1 s)
    load.waiting                        # share of the window it was ready to run but waited for a CPU
    load.reading(calls_now)             # LoadReading: both, and the busy share one more call would bring
    task = start_loop_load(load, lambda: calls_up)   # the sampler, every 100 ms on the running loop

Every call's audio on a worker goes through one event loop on one core. Measured with `bench/gateway`
(docs/benchmarks-gateway.md part 7): past ~80 % busy its 20 ms ticks start to run late for every call at
once, and past ~90 % the late sends grow without bound (a third of all frames). `busy` is the loop thread's
own CPU time (`time.thread_time()` read on the loop's thread). A loop can also be starved: ready, but the
machine's cores are taken by other threads or processes (speech models, a neighbour) — `waiting` is the
thread's time on the run queue (Linux `/proc/thread-self/schedstat`; 0 where it cannot be read). Both are
over the last `window_s`, so one garbage collection or one busy moment is not overload. Because a window
lags behind a ramp of new calls (at 20 calls/s, 5 s hold ~100 calls the measure has not fully seen),
admission reads the busy share *per call* over the window and projects it onto the calls up now and the
next one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LoadReading", "LoopLoad", "run_queue_wait", "start_loop_load"]

SAMPLE_EVERY_S = 0.1
MIN_SPAN_S = 1.0  # less than this measured: no opinion yet
_SCHEDSTAT = Path("/proc/thread-self/schedstat")


@dataclass(frozen=True)
class LoadReading:
    """The loop's load as admission sees it."""

    busy: float  #: share of a core used over the window
    waiting: float  #: share of the window spent ready but waiting for a CPU
    calls_mean: float  #: calls up on average over the window
    calls: int  #: calls up now
    window_s: float

    @property
    def with_next_call(self) -> float:
        """The busy share projected for the calls up now and one more, at the window's cost per call (the
        measured share itself when fewer than one call was up on average)."""
        if self.calls_mean < 1.0:
            return self.busy
        return max(self.busy, self.busy / self.calls_mean * (self.calls + 1))


class LoopLoad:
    """A sliding window of (wall, CPU, run-queue wait, calls) samples; time is passed in."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float, float, int]] = deque()

    def add(self, wall: float, cpu: float, waited: float, calls: int = 0) -> None:
        """One sample taken on the loop's thread at monotonic `wall`: its CPU time and its time waiting for a
        CPU so far (s, cumulative) and the calls up. Samples older than the window are dropped (the oldest
        kept spans it)."""
        samples = self._samples
        samples.append((wall, cpu, waited, calls))
        while len(samples) > 2 and wall - samples[1][0] >= self.window_s:
            samples.popleft()

    def _share(self, field: int) -> float:
        if len(self._samples) < 2:
            return 0.0
        first, last = self._samples[0], self._samples[-1]
        span = last[0] - first[0]
        return (last[field] - first[field]) / span if span >= MIN_SPAN_S else 0.0

    @property
    def busy(self) -> float:
        """The loop thread's CPU time over the wall time the window spans (0.0 with under a second)."""
        return self._share(1)

    @property
    def waiting(self) -> float:
        """The loop thread's time ready but not running (waiting for a CPU) over the window's wall time."""
        return self._share(2)

    def reading(self, calls: int) -> LoadReading:
        """The window's figures with `calls` up now."""
        samples = self._samples
        mean = sum(s[3] for s in samples) / len(samples) if samples else 0.0
        return LoadReading(self.busy, self.waiting, mean, calls, self.window_s)


def run_queue_wait() -> float:
    """Seconds the calling thread has spent ready to run but waiting for a CPU (Linux schedstat); 0.0 where
    it cannot be read."""
    try:
        return int(_SCHEDSTAT.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def start_loop_load(load: LoopLoad, calls: Callable[[], int] = lambda: 0,
                    every_s: float = SAMPLE_EVERY_S) -> asyncio.Task[None]:
    """Sample `load` every `every_s` on the running loop's thread: its CPU time, its run-queue wait and
    `calls()`."""
    return asyncio.get_running_loop().create_task(_sample(load, calls, every_s), name="loop-load")


async def _sample(load: LoopLoad, calls: Callable[[], int], every_s: float) -> None:
    while True:
        load.add(time.monotonic(), time.thread_time(), run_queue_wait(), calls())
        await asyncio.sleep(every_s)
