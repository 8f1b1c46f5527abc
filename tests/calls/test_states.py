"""The call state machine: every allowed move, and refusals for everything else."""

from __future__ import annotations

import itertools

import pytest

from parley.calls.states import TERMINAL, TRANSITIONS, CallStatus, IllegalTransition, check_transition
from parley.calls.webhooks import event_for

HAPPY_PATH = ["queued", "dialing", "ringing", "in_progress", "completed"]


def test_happy_path_is_allowed() -> None:
    for a, b in itertools.pairwise(HAPPY_PATH):
        check_transition("c1", a, b)


@pytest.mark.parametrize(("current", "target"), [
    (a, b) for a in CallStatus for b in CallStatus if b not in TRANSITIONS[a]
])
def test_everything_else_is_refused(current: CallStatus, target: CallStatus) -> None:
    with pytest.raises(IllegalTransition, match=f"cannot go from {current.value} to {target.value}"):
        check_transition("c1", current, target)


def test_final_states_are_final_and_answered_calls_cannot_be_busy() -> None:
    assert all(not TRANSITIONS[t] for t in TERMINAL)
    assert CallStatus.BUSY not in TRANSITIONS[CallStatus.IN_PROGRESS]
    assert CallStatus.QUEUED not in TRANSITIONS[CallStatus.IN_PROGRESS]  # no retry once answered


def test_webhook_event_for_each_change() -> None:
    assert event_for(None, "queued") == "call.queued"
    assert event_for("dialing", "queued") is None  # a retry is not a new call
    assert event_for("queued", "dialing") is None
    assert event_for("dialing", "ringing") == "call.ringing"
    assert event_for("ringing", "in_progress") == "call.answered"
    assert event_for("in_progress", "completed") == "call.ended"
    assert event_for("queued", "canceled") == "call.ended"
    assert {event_for("dialing", s) for s in ("busy", "no_answer", "failed")} == {"call.failed"}
