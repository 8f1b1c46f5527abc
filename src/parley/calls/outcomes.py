"""How a call ended and what follows from it: the one decision of a call's final status (pure).

The transport reports how a call went as a `DialOutcome` (the SIP gateway's `place_call` for outbound
calls, its inbound path for inbound ones) and only ever reports progress on its own (ringing, answered).
`settle(call, outcome, policy)` decides, with the reason in words, whether the call

* is left as it is (`Leave`: it already ended, e.g. canceled meanwhile),
* is dialed again later (`Retry`: busy / no answer / failed with retries left, never once answered), or
* ends in a final status (`Finish`).

The dialer applies the decision for outbound calls, `CallsService.end` for inbound ones; nothing else
writes a final status from an outcome. The final statuses are `states.TERMINAL`, nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from parley.calls.records import Call
from parley.calls.states import RETRYABLE, TERMINAL, CallStatus, parse_status
from parley.support.retry import Backoff


@dataclass(frozen=True)
class DialOutcome:
    """How a call ended as its transport reports it: a final status (`states.TERMINAL`), why, and the SIP
    Call-ID if one was sent."""

    status: str
    reason: str = ""
    sip_call_id: str | None = None

    def __post_init__(self) -> None:
        try:
            final = parse_status(self.status) in TERMINAL
        except ValueError:
            final = False
        if not final:
            raise ValueError(f"dial outcome must be one of {', '.join(sorted(TERMINAL))}, not {self.status!r}")


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a failed attempt up to `max_retries` times, waiting `backoff_s * multiplier**(n-1)` (capped)."""

    max_retries: int = 0
    backoff_s: float = 60.0
    multiplier: float = 2.0
    max_backoff_s: float = 3600.0
    retry_on: frozenset[str] = RETRYABLE

    KEYS = ("max_retries", "backoff_s", "multiplier", "max_backoff_s", "retry_on")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: RetryPolicy | None = None) -> RetryPolicy:
        """A policy from an agent's `retry:` block, over `base`; ValueError names a bad key."""
        unknown = set(data) - set(cls.KEYS)
        if unknown:
            raise ValueError(f"unknown retry key(s) {', '.join(sorted(unknown))}; known: {', '.join(cls.KEYS)}")
        values: dict[str, Any] = dict(vars(base or cls()))
        for key, value in data.items():
            if key == "retry_on":
                bad = set(value) - set(RETRYABLE)
                if bad:
                    raise ValueError(f"retry_on may list {', '.join(sorted(RETRYABLE))}; not {', '.join(bad)}")
                values[key] = frozenset(value)
            elif key == "max_retries":
                values[key] = int(value)
            else:
                values[key] = float(value)
        if values["max_retries"] < 0 or values["backoff_s"] < 0:
            raise ValueError("max_retries and backoff_s must not be negative")
        return cls(**values)

    @property
    def backoff(self) -> Backoff:
        return Backoff(first_s=self.backoff_s, factor=self.multiplier, max_s=self.max_backoff_s)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the attempt after `attempt` (1-based)."""
        return self.backoff.delay(attempt)

    def over(self, call: Call) -> RetryPolicy:
        """This policy with the call's own `max_retries` / `retry_backoff_s` (API fields) over it."""
        overrides: dict[str, Any] = {}
        if call.max_retries is not None:
            overrides["max_retries"] = call.max_retries
        if call.retry_backoff_s is not None:
            overrides["backoff_s"] = call.retry_backoff_s
        return RetryPolicy.from_mapping(overrides, self) if overrides else self


@dataclass(frozen=True)
class Leave:
    """Nothing to record."""

    why: str


@dataclass(frozen=True)
class Retry:
    """Queue the call again; dial the next attempt after `delay_s`."""

    delay_s: float
    why: str


@dataclass(frozen=True)
class Finish:
    """End the call in `status` with `reason`; `answer_first`: record the answer before (it was reported
    only with the outcome)."""

    status: CallStatus
    reason: str
    answer_first: bool
    why: str


Settlement = Leave | Retry | Finish


def settle(call: Call, outcome: DialOutcome, policy: RetryPolicy | None = None) -> Settlement:
    """What `outcome` means for `call` as it is stored now; `policy` None: no retries (inbound calls, or
    an attempt that must not be retried)."""
    current = parse_status(call.status)
    if current in TERMINAL:
        return Leave(f"the call already ended as {current} (canceled, or recorded before the outcome came)")
    answered = current == CallStatus.IN_PROGRESS
    target = parse_status(outcome.status)
    if policy is not None and not answered and target in policy.retry_on:
        if call.attempt <= policy.max_retries:
            delay = policy.delay(call.attempt)
            return Retry(delay, f"attempt {call.attempt} ended {target}; {policy.max_retries - call.attempt + 1} "
                                f"retr{'y' if policy.max_retries == call.attempt else 'ies'} left, next in "
                                f"{delay:g} s")
    reason = outcome.reason or target.value
    if answered and target in (CallStatus.BUSY, CallStatus.NO_ANSWER):
        return Finish(CallStatus.FAILED, reason, False,
                      f"the call was answered, so {target} cannot be its end; recorded as failed")
    if target == CallStatus.COMPLETED and not answered:
        return Finish(target, reason, True, "completed without a reported answer: the answer is recorded now")
    return Finish(target, reason, False, f"the call ended {target}")
