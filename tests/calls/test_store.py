"""The store on a SQLite file and on real PostgreSQL: records, the state machine, timelines, transcripts,
pagination, and the outbox written in the same transaction as the status change."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from sqlalchemy import text

from parley.calls.models import utcnow
from parley.calls.states import IllegalTransition
from parley.calls.store import CallNotFound, Store


def _outbound(**extra):  # type: ignore[no-untyped-def]
    return {"direction": "outbound", "status": "queued", "agent": "receptionist", "to_number": "+15551230001",
            "variables": {"name": "Ada"}, "meta": {"crm_id": 7}, **extra}


async def test_migrations_create_tables_in_the_database(store: Store, db_url: str) -> None:
    async with store.engine.connect() as conn:
        if store.backend == "postgresql":
            schema = db_url.rsplit("%3D", 1)[1]
            rows = await conn.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": schema})
        else:
            rows = await conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
        tables = {r[0] for r in rows}
    assert {"calls", "transcript_entries", "call_events", "webhook_outbox", "queue_jobs",
            "alembic_version"} <= tables
    await store.upgrade()  # applying again is harmless


async def test_call_lifecycle_records_timestamps_timeline_and_transcript(store: Store) -> None:
    call = await store.add_call(_outbound(caller_name="Ada", trunk="main"))
    assert call.status == "queued" and call.attempt == 1 and call.created_at.tzinfo is not None
    dialing = await store.transition(call.id, "dialing", expect_attempt=1)
    assert dialing.dialed_at is not None
    await store.transition(call.id, "ringing", updates={"sip_call_id": "abc@host"})
    answered = await store.transition(call.id, "in_progress")
    assert answered.answered_at is not None and answered.sip_call_id == "abc@host"
    await store.add_transcript(call.id, "agent", "Hello, this is Ava.")
    await store.add_transcript(call.id, "caller", "Hi Ava!", metadata={"confidence": 0.9})
    await store.add_event(call.id, "dtmf", {"digits": "12"})
    ended = await store.transition(call.id, "completed", reason="caller hung up")
    assert ended.ended_at is not None and ended.end_reason == "caller hung up"
    assert ended.duration_s is not None and ended.duration_s >= 0

    detail = await store.get_detail(call.id)
    assert detail is not None
    assert [t.text for t in detail.transcript] == ["Hello, this is Ava.", "Hi Ava!"]
    assert detail.transcript[1].metadata == {"confidence": 0.9}
    statuses = [e.data.get("to") for e in detail.timeline if e.type == "status"]
    assert statuses == ["queued", "dialing", "ringing", "in_progress", "completed"]
    assert any(e.type == "dtmf" and e.data == {"digits": "12"} for e in detail.timeline)
    assert detail.call.variables == {"name": "Ada"} and detail.call.metadata == {"crm_id": 7}


async def test_illegal_transitions_are_refused_and_change_nothing(store: Store) -> None:
    call = await store.add_call(_outbound())
    with pytest.raises(IllegalTransition, match="cannot go from queued to completed"):
        await store.transition(call.id, "completed")
    await store.transition(call.id, "canceled")
    with pytest.raises(IllegalTransition, match="canceled"):
        await store.transition(call.id, "dialing")
    again = await store.get_call(call.id)
    assert again is not None and again.status == "canceled"
    with pytest.raises(CallNotFound):
        await store.transition("no-such-call", "dialing")
    with pytest.raises(ValueError, match="unknown status 'flying'"):
        await store.transition(call.id, "flying")


async def test_compare_and_set_on_attempt(store: Store) -> None:
    call = await store.add_call(_outbound())
    with pytest.raises(IllegalTransition):
        await store.transition(call.id, "dialing", expect_attempt=2)
    await store.transition(call.id, "dialing", expect_attempt=1)
    with pytest.raises(IllegalTransition):  # a second delivery of the same job cannot dial again
        await store.transition(call.id, "dialing", expect_attempt=1)


async def test_requeue_after_failed_attempt(store: Store) -> None:
    call = await store.add_call(_outbound())
    await store.transition(call.id, "dialing")
    due = utcnow() + timedelta(seconds=30)
    again = await store.requeue(call.id, outcome="busy", reason="486 Busy Here", due_at=due)
    assert again.status == "queued" and again.attempt == 2 and again.schedule_at == due
    detail = await store.get_detail(call.id)
    assert detail is not None
    failed = [e for e in detail.timeline if e.type == "attempt_failed"]
    assert failed and failed[0].data["outcome"] == "busy" and failed[0].data["attempt"] == 1


async def test_list_filters_and_cursor_pagination(store: Store) -> None:
    ids = []
    for i in range(7):
        c = await store.add_call(_outbound(to_number=f"+1555000000{i}", agent="receptionist" if i % 2 else "german_assistant"))
        ids.append(c.id)
    inbound = await store.add_call({"direction": "inbound", "status": "ringing", "agent": "receptionist",
                                    "from_number": "+4930111"})
    await store.transition(ids[0], "canceled")

    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await store.list_calls(direction="outbound", limit=3, before_seq=cursor)
        seen += [c.id for c in page]
        if cursor is None:
            break
    assert seen == list(reversed(ids))  # newest first, every call exactly once
    german, _ = await store.list_calls(agent="german_assistant")
    assert {c.id for c in german} == {ids[0], ids[2], ids[4], ids[6]}
    canceled, _ = await store.list_calls(status="canceled")
    assert [c.id for c in canceled] == [ids[0]]
    inb, _ = await store.list_calls(direction="inbound")
    assert [c.id for c in inb] == [inbound.id]
    future, _ = await store.list_calls(since=utcnow() + timedelta(minutes=1))
    assert future == []
    assert (await store.counts_by_status()) == {"queued": 6, "canceled": 1, "ringing": 1}


async def test_outbox_rows_come_with_the_status_change(store: Store) -> None:
    store.webhook_url_for = lambda call: "http://127.0.0.1:9/hook"
    call = await store.add_call(_outbound())
    await store.transition(call.id, "dialing")
    await store.transition(call.id, "ringing")
    await store.transition(call.id, "in_progress")
    await store.add_transcript(call.id, "agent", "Bye now.")
    await store.transition(call.id, "completed", reason="agent ended the call")
    rows = await store.webhooks_for(call.id)
    assert [r["event"] for r in rows] == ["call.queued", "call.ringing", "call.answered", "call.ended"]
    claimed = await store.claim_webhooks()
    assert [c.event for c in claimed] == ["call.queued"]  # only the head of each call's line
    assert await store.claim_webhooks() == []  # leased
    await store.webhook_done(claimed[0].id)
    nxt = await store.claim_webhooks()
    assert [c.event for c in nxt] == ["call.ringing"]  # the next in line once the first is delivered
    ended = json.loads(next(r for r in await _bodies(store, call.id) if '"call.ended"' in r))
    assert ended["end_reason"] == "agent ended the call"
    assert [t["text"] for t in ended["transcript"]] == ["Bye now."]
    assert ended["call"]["status"] == "completed"


async def _bodies(store: Store, call_id: str) -> list[str]:
    from sqlalchemy import select

    from parley.calls.models import WebhookRow

    async with store.sessions() as s:
        return list((await s.execute(select(WebhookRow.body).where(WebhookRow.call_id == call_id))).scalars())


async def test_no_webhook_url_means_no_outbox_rows(store: Store) -> None:
    call = await store.add_call(_outbound())
    await store.transition(call.id, "canceled")
    assert await store.webhooks_for(call.id) == []


async def test_a_burst_is_stored_without_a_read_and_a_burst_for_no_call_stores_nothing(store: Store) -> None:
    call = await store.add_call(_outbound())
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement.split(None, 1)[0].upper())

    from sqlalchemy import event

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await store.add_batch(call.id, [("event", {"type": "a"}), ("transcript", {"role": "agent", "text": "Hi."}),
                                        ("event", {"type": "b", "data": {"n": 2}})])
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    assert "SELECT" not in statements and statements.count("INSERT") == 2  # one INSERT per table, no read
    with pytest.raises(CallNotFound, match="no-such-call"):
        await store.add_batch("no-such-call", [("transcript", {"role": "agent", "text": "lost?"}),
                                               ("event", {"type": "x"})])
    with pytest.raises(CallNotFound):
        await store.add_event("no-such-call", "dtmf", {"digits": "1"})
    with pytest.raises(CallNotFound):
        await store.add_transcript("no-such-call", "agent", "Hello.")
    detail = await store.get_detail(call.id)
    assert detail is not None
    assert [e.type for e in detail.timeline] == ["status", "a", "b"] and detail.timeline[2].data == {"n": 2}
    assert [t.text for t in detail.transcript] == ["Hi."]
    async with store.engine.connect() as conn:
        orphans = (await conn.execute(text("SELECT count(*) FROM call_events WHERE call_id = 'no-such-call'"))
                   ).scalar_one()
    assert orphans == 0


async def test_bursts_that_many_calls_store_at_once_share_transactions(store: Store) -> None:
    """A busy worker: 30 calls each store a burst (an event, a transcript entry, an event) at the same
    moment. Every call gets its own rows, in order, and the 30 bursts cost a few INSERTs, not a pair each.
    Then a burst for a call that does not exist arrives among good ones: it alone fails (CallNotFound)."""
    calls = [await store.add_call(_outbound()) for _ in range(30)]
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement.split(None, 1)[0].upper())

    async def burst(i: int, call_id: str) -> None:
        await store.add_batch(call_id, [("event", {"type": f"e{i}"}),
                                        ("transcript", {"role": "agent", "text": f"t{i}"}),
                                        ("event", {"type": f"f{i}"})])

    from sqlalchemy import event

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await asyncio.gather(*(burst(i, c.id) for i, c in enumerate(calls)))
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    assert statements.count("INSERT") <= 10, statements  # one pair per call would be 60
    for i, call in enumerate(calls):
        detail = await store.get_detail(call.id)
        assert detail is not None
        assert [e.type for e in detail.timeline] == ["status", f"e{i}", f"f{i}"]
        assert [t.text for t in detail.transcript] == [f"t{i}"]

    results = await asyncio.gather(burst(100, calls[0].id), burst(101, "no-such-call"), burst(102, calls[1].id),
                                   return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], CallNotFound) and "no-such-call" in str(results[1])
    first = await store.get_detail(calls[0].id)
    assert first is not None and [e.type for e in first.timeline][-2:] == ["e100", "f100"]


async def test_a_burst_whose_writer_stops_waiting_is_still_stored(store: Store) -> None:
    call = await store.add_call(_outbound())
    writer = asyncio.create_task(store.add_batch(call.id, [("transcript", {"role": "caller", "text": "Bye."})]))
    await asyncio.sleep(0)  # the burst is submitted; its writer is cancelled before the write is done
    writer.cancel()
    await store.bursts.close()  # what Store.close() waits for
    detail = await store.get_detail(call.id)
    assert detail is not None and [t.text for t in detail.transcript] == ["Bye."]


async def test_a_call_is_settled_in_one_transaction_from_what_is_stored(store: Store) -> None:
    call = await store.add_call({"direction": "inbound", "status": "ringing", "agent": "receptionist"})
    seen: list[str] = []

    def decide(current):  # type: ignore[no-untyped-def]
        seen.append(current.status)
        return [("in_progress", "answer reported at the end"), ("completed", "caller hung up")]

    begins: list[str] = []

    def on_begin(conn):  # type: ignore[no-untyped-def]
        begins.append("begin")

    from sqlalchemy import event

    event.listen(store.engine.sync_engine, "begin", on_begin)
    try:
        settled = await store.transitions(call.id, decide)
    finally:
        event.remove(store.engine.sync_engine, "begin", on_begin)
    assert settled is not None and begins == ["begin"]  # one transaction: read, decide, both changes
    ended, changed = settled
    assert changed and seen == ["ringing"] and ended.status == "completed" and ended.answered_at is not None
    assert ended.end_reason == "caller hung up"
    again = await store.transitions(call.id, lambda current: [])  # decided to leave it: nothing changes
    assert again is not None and again[0].status == "completed" and not again[1]
    assert await store.transitions("no-such-call", decide) is None
    with pytest.raises(IllegalTransition):
        await store.transitions(call.id, lambda current: [("dialing", None)])
    detail = await store.get_detail(call.id)
    assert detail is not None
    assert [e.data.get("to") for e in detail.timeline if e.type == "status"] == ["ringing", "in_progress",
                                                                                  "completed"]


@pytest.mark.postgres
async def test_pooled_connections_are_checked_only_after_idling_and_a_dead_one_is_replaced(
        postgres_url: str) -> None:
    from sqlalchemy import event

    from parley.calls import db

    pings: list[int] = []
    busy = Store(db.create_engine(postgres_url, pool_size=1))  # the default: a check only after PING_IDLE_S
    idle = Store(db.create_engine(postgres_url, pool_size=1, ping_idle_s=0.0))  # every reuse counts as idle
    for store in (busy, idle):
        event.listen(store.engine.sync_engine, "checkout",
                     lambda conn, record, proxy: pings.append(record.info.get("pings", 0)))
    try:
        await busy.upgrade()
        call = await busy.add_call(_outbound())
        for _ in range(3):
            await busy.add_event(call.id, "tick")
        assert set(pings) == {0}  # a connection in steady use is not pinged (three round trips each)
        pings.clear()
        assert await idle.get_call(call.id) is not None
        pid = await _backend_pid(idle)
        async with busy.engine.connect() as conn:  # the database drops the idle store's connection
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        again = await idle.get_call(call.id)  # checked, found dead, replaced: the read succeeds
        assert again is not None and again.id == call.id
        assert await _backend_pid(idle) != pid
        # the trade-off: a connection that dies while in steady use fails the one transaction that meets
        # it (no check before it), and the pool replaces it for the next
        pid = await _backend_pid(busy)
        async with idle.engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(Exception):  # noqa: B017 - the driver's "connection was closed" error
            await busy.get_call(call.id)
        assert await busy.get_call(call.id) is not None and await _backend_pid(busy) != pid
    finally:
        await busy.close()
        await idle.close()


async def _backend_pid(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
