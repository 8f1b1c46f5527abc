"""The start-up heap kept out of the garbage collector's full collections.

CPython's full (generation 2) collection walks every object the collector tracks and holds the event loop
meanwhile: every call's audio stops for that long. A worker's heap after start-up — modules, speech models'
Python objects, agents, settings, pools — is ~140,000 objects that live as long as the process; walked on
every full collection, they made those pauses ~100 ms with 200 calls up (5 frames late on every call at
once, the bulk of the late sends measured). Frozen after start-up (`gc.freeze`), a full collection walks
only what was allocated since (the calls' own objects): ~40 ms there. Objects frozen are still freed when
their last reference goes; only a reference cycle among them is never collected.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect the start-up garbage, then move every object alive now to the permanent generation (out of
    every later collection's walk). Call once, when start-up is done. Returns the objects frozen so far."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
