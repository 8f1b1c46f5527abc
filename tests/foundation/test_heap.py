"""Once started, a process keeps its start-up heap out of the garbage collector's full collections: a full
collection during calls (which holds the event loop, and every call's audio with it) walks only what was
allocated since, not the modules, models and settings that live as long as the process."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import pytest

from parley.calls.metrics import REGISTRY, render, watch_gc_pauses
from parley.support.heap import freeze_startup_heap


@pytest.fixture
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the suite's objects go back to normal collection


def test_a_full_collection_after_start_up_walks_only_what_came_since(thawed: None) -> None:
    startup = [[i] for i in range(200_000)]  # objects built at start-up that live on
    began = time.perf_counter()
    gc.collect()
    before = time.perf_counter() - began

    assert freeze_startup_heap() >= len(startup)
    assert not any(o is startup[0] for o in gc.get_objects())  # out of every generation the collector walks

    later = [[i] for i in range(1000)]  # a call's objects: still collected as before
    assert any(o is later[0] for o in gc.get_objects())
    began = time.perf_counter()
    gc.collect()
    assert time.perf_counter() - began < before / 2


def test_the_collector_s_pauses_are_on_the_metrics_by_generation() -> None:
    watch_gc_pauses()
    watch_gc_pauses()  # once per process, however often asked

    def full_collections() -> float:
        return REGISTRY.get_sample_value("parley_gc_pause_seconds_count", {"generation": "2"}) or 0.0

    before = full_collections()
    gc.collect()
    assert full_collections() == before + 1
    assert "parley_gc_pause_seconds_bucket" in render().decode()
