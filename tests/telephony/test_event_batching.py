"""Store batching (issue 15, item 4): a burst of conversation events is one transaction, not one each.
Counted with SQLAlchemy's own commit events on the real SQLite engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event

from parley.agents import AgentRegistry
from parley.calls.service import CallsService
from parley.engine.events import DtmfReceived, TranscriptEntry
from parley.telephony.event_writer import CallEventWriter


@pytest.fixture
async def service(settings, agents: AgentRegistry) -> AsyncIterator[CallsService]:  # type: ignore[no-untyped-def]
    calls = await CallsService.open(settings, agents=agents, send_webhooks=False)
    yield calls
    await calls.close()


async def test_a_burst_of_50_events_is_one_transaction_in_order(service: CallsService) -> None:
    call = await service.store.add_call({"direction": "inbound", "status": "in_progress", "agent": "receptionist",
                                         "to_number": "+15550000999"})
    commits: list[int] = []
    sync_engine = service.store.engine.sync_engine
    listener = lambda conn: commits.append(1)  # noqa: E731
    event.listen(sync_engine, "commit", listener)
    try:
        writer = CallEventWriter(service, call.id)
        for n in range(25):
            writer(TranscriptEntry(role="user" if n % 2 else "agent", text=f"words {n}", start=n, end=n + 0.5,
                                   turn=n))
            writer(DtmfReceived(digit=str(n % 10), t=n + 0.6))
        await writer.close()
    finally:
        event.remove(sync_engine, "commit", listener)
    assert len(commits) <= 2, f"{len(commits)} transactions for one burst"
    detail = await service.get(call.id)
    assert detail is not None
    assert [t.text for t in detail.transcript] == [f"words {n}" for n in range(25)]
    assert [e.data["digit"] for e in detail.timeline if e.type == "dtmf"] == [str(n % 10) for n in range(25)]
