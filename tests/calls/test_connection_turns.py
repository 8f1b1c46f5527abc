"""Turns on SQLite's one connection: a call's set-up goes before the queue of other writes — as a pure
object, and on a real SQLite file where a burst of writes is queued ahead of a new call's record."""

from __future__ import annotations

import asyncio
from pathlib import Path

from parley.calls.connection_turns import ConnectionTurns
from parley.calls.store import Store

from .test_store import _outbound


async def _hold(turns: ConnectionTurns, name: str, order: list[str], *, urgent: bool = False,
                release: asyncio.Event | None = None) -> None:
    async with turns.turn(urgent=urgent):
        order.append(name)
        if release is not None:
            await release.wait()


async def _queued(turns: ConnectionTurns, count: int) -> None:
    """Until `count` holders wait for their turn (each waiter queues on its first step)."""
    while turns.waiting < count:
        await asyncio.sleep(0)


async def test_an_urgent_holder_goes_before_the_others_waiting_and_the_others_keep_their_order() -> None:
    turns, order, release = ConnectionTurns(), [], asyncio.Event()
    first = asyncio.create_task(_hold(turns, "first", order, release=release))
    others = [asyncio.create_task(_hold(turns, f"other{i}", order)) for i in range(3)]
    await _queued(turns, 3)
    urgent = asyncio.create_task(_hold(turns, "set-up", order, urgent=True))
    await _queued(turns, 4)
    release.set()
    await asyncio.gather(first, urgent, *others)
    assert order == ["first", "set-up", "other0", "other1", "other2"]
    assert turns.waiting == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_one_cancelled_at_its_turn_passes_it_on() -> None:
    turns, order, release = ConnectionTurns(), [], asyncio.Event()
    first = asyncio.create_task(_hold(turns, "first", order, release=release))
    gone = asyncio.create_task(_hold(turns, "gone", order))
    late = asyncio.create_task(_hold(turns, "late", order))
    last = asyncio.create_task(_hold(turns, "last", order))
    await _queued(turns, 3)
    gone.cancel()  # cancelled while waiting: it leaves the queue
    release.set()
    await asyncio.sleep(0)  # "first" lets go: "late" is handed the turn ...
    late.cancel()  # ... and cancelled before it runs: "last" must still get it
    await asyncio.gather(first, gone, late, last, return_exceptions=True)
    assert order == ["first", "last"]
    async with asyncio.timeout(1):  # nothing holds the connection any more
        await _hold(turns, "again", order)


async def test_a_new_calls_record_is_not_queued_behind_a_burst_of_writes(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    await store.upgrade()
    try:
        live = await store.add_call(_outbound())
        done: list[str] = []

        async def write_events(i: int) -> None:  # a transaction each (events would share one: GroupCommit)
            await store.update_call(live.id, variables={"i": i})
            done.append(f"write{i}")

        async def new_call() -> None:
            await store.add_call(_outbound(to_number="+15551230099"))
            done.append("new call")

        writes = [asyncio.create_task(write_events(i)) for i in range(40)]
        await asyncio.sleep(0)  # the event writes queue for the connection first
        setup = asyncio.create_task(new_call())
        await asyncio.gather(setup, *writes)
        # it waited for the transaction under way (and maybe the one just handed the turn), not for forty
        assert done.index("new call") <= 2, done
    finally:
        await store.close()
