"""The call state machine. Every status change goes through `check_transition`; illegal ones are refused."""

from __future__ import annotations

from enum import StrEnum

from parley.logging import get_logger

log = get_logger(__name__)


class CallStatus(StrEnum):
    """Where a call is in its life."""

    QUEUED = "queued"
    DIALING = "dialing"
    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CANCELED = "canceled"


S = CallStatus
TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.BUSY, S.NO_ANSWER, S.CANCELED})
ACTIVE = frozenset({S.DIALING, S.RINGING, S.IN_PROGRESS})
#: Statuses a dial attempt can end in that a retry policy may retry.
RETRYABLE = frozenset({S.BUSY, S.NO_ANSWER, S.FAILED})

#: Allowed moves. `dialing/ringing -> queued` is a retry after a failed attempt.
TRANSITIONS: dict[CallStatus, frozenset[CallStatus]] = {
    S.QUEUED: frozenset({S.DIALING, S.CANCELED, S.FAILED}),
    S.DIALING: frozenset({S.RINGING, S.IN_PROGRESS, S.FAILED, S.BUSY, S.NO_ANSWER, S.CANCELED, S.QUEUED}),
    S.RINGING: frozenset({S.IN_PROGRESS, S.FAILED, S.BUSY, S.NO_ANSWER, S.CANCELED, S.QUEUED}),
    S.IN_PROGRESS: frozenset({S.COMPLETED, S.FAILED, S.CANCELED}),
    **{t: frozenset() for t in TERMINAL},
}

#: Statuses a call record may start in: outbound calls are queued, inbound ones ring or are answered.
INITIAL = frozenset({S.QUEUED, S.RINGING, S.IN_PROGRESS})


class IllegalTransition(Exception):
    """A status change the state machine does not allow."""

    def __init__(self, call_id: str, current: str, target: str) -> None:
        allowed = ", ".join(sorted(TRANSITIONS.get(CallStatus(current), ()))) or "none (final)"
        super().__init__(f"call {call_id}: cannot go from {current} to {target} (allowed: {allowed})")
        self.call_id, self.current, self.target = call_id, current, target


def parse_status(value: str) -> CallStatus:
    """`value` as a status, or ValueError listing the valid ones."""
    try:
        return CallStatus(value)
    except ValueError:
        raise ValueError(f"unknown status {value!r}; one of: {', '.join(s.value for s in S)}") from None


def check_transition(call_id: str, current: str, target: str) -> None:
    """Raise (and log) `IllegalTransition` unless `current -> target` is allowed."""
    if parse_status(target) not in TRANSITIONS[parse_status(current)]:
        err = IllegalTransition(call_id, current, target)
        log.warning("illegal call transition refused", call_id=call_id, current=current, target=target)
        raise err
