"""The live path of conversation events into the calls record: `CallEventWriter` (what the gateway hands the
engine as `on_event`) over a real calls service on SQLite. Transcript entries go to the transcript, turn
metrics to the latency histograms and the timeline, everything else to the timeline, in order; a write that
fails is retried with backoff, and given up (logged) only after its attempts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from parley.agents import AgentRegistry
from parley.calls.metrics import REGISTRY
from parley.calls.service import CallsService
from parley.engine.events import DtmfReceived, TranscriptEntry, TurnMetrics
from parley.support.retry import Backoff
from parley.telephony.event_writer import CallEventWriter
from tests.eventually import eventually


@pytest.fixture
async def service(settings, agents: AgentRegistry) -> AsyncIterator[CallsService]:  # type: ignore[no-untyped-def]
    calls = await CallsService.open(settings, agents=agents, send_webhooks=False)
    yield calls
    await calls.close()


def _inbound(call_id: str | None = None) -> dict[str, object]:
    return {**({"id": call_id} if call_id else {}), "direction": "inbound", "status": "in_progress",
            "agent": "receptionist", "to_number": "+15550000999", "from_number": "anonymous"}


async def test_engine_events_land_in_transcript_timeline_and_metrics(service: CallsService) -> None:
    call = await service.store.add_call(_inbound())
    before = REGISTRY.get_sample_value("parley_turn_latency_seconds_count", {"stage": "stt_final"}) or 0.0
    writer = CallEventWriter(service, call.id)
    writer(TranscriptEntry(role="user", text="I need an appointment", start=1.0, end=2.2, turn=1))
    writer(TranscriptEntry(role="agent", text="Sure, which day?", start=2.9, end=4.0, interrupted=True, turn=1))
    writer(TranscriptEntry(role="user", text="  ", start=4.5, end=4.6, turn=2))  # nothing said: not stored
    writer(TurnMetrics(turn=1, stt_final_ms=150.0, voice_to_voice_ms=880.0))
    writer(DtmfReceived(digit="5", t=5.5))
    writer.note("provider_failover", {"component": "stt", "text": "stt: whisper failed, using pocketsphinx"})
    await writer.close()

    detail = await service.get(call.id)
    assert detail is not None
    assert [(t.role, t.text) for t in detail.transcript] == [("caller", "I need an appointment"),
                                                              ("agent", "Sure, which day?")]
    assert detail.transcript[1].metadata["interrupted"] is True
    assert [e.type for e in detail.timeline] == ["status", "turn_metrics", "dtmf", "provider_failover"]
    assert [type(e) for e in writer.events] == [TranscriptEntry] * 3 + [TurnMetrics, DtmfReceived]
    after = REGISTRY.get_sample_value("parley_turn_latency_seconds_count", {"stage": "stt_final"})
    assert after == before + 1


async def test_a_failed_write_is_retried_until_it_lands(service: CallsService) -> None:
    call_id = str(uuid.uuid4())  # the record is not there yet: the first writes fail
    writer = CallEventWriter(service, call_id, backoff=Backoff(first_s=0.05, factor=1.0), attempts=200)
    writer(DtmfReceived(digit="1", t=0.5))
    writer(DtmfReceived(digit="2", t=0.7))
    await eventually(lambda: writer.events, what="the writer took the first event (and failed to store it)")
    await service.store.add_call(_inbound(call_id))
    await writer.close()
    detail = await service.get(call_id)
    assert detail is not None
    assert [e.data.get("digit") for e in detail.timeline if e.type == "dtmf"] == ["1", "2"]  # in order


async def test_a_write_that_keeps_failing_is_given_up_and_the_next_goes_on(service: CallsService) -> None:
    call = await service.store.add_call(_inbound())
    writer = CallEventWriter(service, call.id, backoff=Backoff(first_s=0.01), attempts=2)
    writer.note("bad", {"unstorable": object()})  # not JSON: every attempt fails
    writer(DtmfReceived(digit="9", t=1.0))
    await writer.close()
    detail = await service.get(call.id)
    assert detail is not None
    assert [e.type for e in detail.timeline] == ["status", "dtmf"]
