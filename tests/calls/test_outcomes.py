"""The one decision of a call's final status (`outcomes.settle`), without a database: what each outcome
means for a call as it is stored, with the retry policy and its reasons."""

from __future__ import annotations

from typing import Any

import pytest

from parley.calls.models import utcnow
from parley.calls.outcomes import DialOutcome, Finish, Leave, Retry, RetryPolicy, settle
from parley.calls.records import Call
from parley.calls.states import TERMINAL, CallStatus


def _call(status: str, attempt: int = 1, **fields: Any) -> Call:
    now = utcnow()
    values: dict[str, Any] = {
        "id": "c1", "direction": "outbound", "status": status, "agent": "receptionist", "from_number": None,
        "to_number": "+15550000001", "caller_name": None, "trunk": None, "variables": {}, "metadata": {},
        "llm_prompt": None, "greeting": None, "webhook_url": None, "schedule_at": None, "max_retries": None,
        "retry_backoff_s": None, "attempt": attempt, "worker": None, "sip_call_id": None,
        "recording_path": None, "end_reason": None, "created_at": now, "updated_at": now, "dialed_at": None,
        "answered_at": None, "ended_at": None, **fields}
    return Call(**values)


def test_outcomes_are_the_final_states() -> None:
    for status in TERMINAL:
        assert DialOutcome(status).status == status
    for status in ("queued", "ringing", "in_progress", "nonsense"):
        with pytest.raises(ValueError, match="dial outcome must be one of"):
            DialOutcome(status)


def test_a_call_that_already_ended_is_left_alone() -> None:
    decision = settle(_call("canceled"), DialOutcome("completed", "far end hung up"), RetryPolicy(max_retries=3))
    assert isinstance(decision, Leave) and "already ended as canceled" in decision.why


def test_busy_with_retries_left_is_retried_after_the_backoff() -> None:
    policy = RetryPolicy(max_retries=2, backoff_s=10, multiplier=3)
    first = settle(_call("dialing", attempt=1), DialOutcome("busy"), policy)
    second = settle(_call("ringing", attempt=2), DialOutcome("no_answer"), policy)
    assert isinstance(first, Retry) and first.delay_s == 10 and "2 retries left" in first.why
    assert isinstance(second, Retry) and second.delay_s == 30 and "1 retry left" in second.why
    last = settle(_call("dialing", attempt=3), DialOutcome("busy", "486 Busy Here"), policy)
    assert last == Finish(CallStatus.BUSY, "486 Busy Here", False, "the call ended busy")


def test_no_policy_or_a_status_outside_retry_on_ends_the_call() -> None:
    assert isinstance(settle(_call("dialing"), DialOutcome("busy")), Finish)
    policy = RetryPolicy(max_retries=5, retry_on=frozenset({"busy"}))
    decision = settle(_call("dialing"), DialOutcome("failed", "503 from trunk"), policy)
    assert isinstance(decision, Finish) and decision.status == "failed" and decision.reason == "503 from trunk"


def test_an_answered_call_is_never_retried_and_cannot_end_busy() -> None:
    policy = RetryPolicy(max_retries=5)
    failed = settle(_call("in_progress"), DialOutcome("failed", "conversation error"), policy)
    assert failed == Finish(CallStatus.FAILED, "conversation error", False, "the call ended failed")
    busy = settle(_call("in_progress"), DialOutcome("busy"), policy)
    assert isinstance(busy, Finish) and busy.status == "failed" and "answered" in busy.why


def test_completed_without_a_reported_answer_records_the_answer_first() -> None:
    decision = settle(_call("dialing"), DialOutcome("completed"))
    assert isinstance(decision, Finish) and decision.answer_first and decision.reason == "completed"
    answered = settle(_call("in_progress"), DialOutcome("completed", "caller hung up"))
    assert isinstance(answered, Finish) and not answered.answer_first


def test_the_call_own_fields_go_over_the_policy() -> None:
    policy = RetryPolicy(max_retries=0, backoff_s=60).over(_call("dialing", max_retries=2, retry_backoff_s=0.5))
    assert policy.max_retries == 2 and policy.delay(1) == 0.5 and policy.delay(2) == 1.0


async def test_the_calls_service_records_an_inbound_end_as_settle_decides(make_service) -> None:  # type: ignore[no-untyped-def]
    service = await make_service(send_webhooks=False)
    ringing = await service.create_call(direction="inbound", to_number="+15550000001", agent="receptionist")
    ended = await service.end(ringing.id, DialOutcome("completed", "caller hung up"))
    assert ended is not None and ended.status == "completed" and ended.answered_at is not None  # answer first
    assert (await service.end(ringing.id, DialOutcome("failed", "late"))).status == "completed"  # type: ignore[union-attr]
    assert await service.end("no-such-call", DialOutcome("failed")) is None
    detail = await service.get(ringing.id)
    assert detail is not None
    assert [e.data.get("to") for e in detail.timeline if e.type == "status"] == ["ringing", "in_progress",
                                                                                  "completed"]
    path = service.settings.data_dir / "conversations" / f"{ringing.id}.json"
    assert path.exists()  # the conversation file of an ended call
