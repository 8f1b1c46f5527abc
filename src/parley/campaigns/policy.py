"""What a campaign does next (pure): retry a recipient by outcome, and how many calls may start now.

Outcomes of one attempt: `completed`, `voicemail` (answered by a machine), `busy`, `no_answer`, `failed`,
`canceled`; besides those a recipient can end `dnc` (on the do-not-call list at dial time) or `invalid`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Outcomes a retry policy may name.
RETRYABLE_OUTCOMES = ("busy", "no_answer", "voicemail", "failed")
#: Every final outcome a recipient may have.
OUTCOMES = ("completed", "voicemail", "busy", "no_answer", "failed", "canceled", "dnc", "invalid", "expired")


@dataclass(frozen=True)
class OutcomeRetry:
    """Retry up to `max_attempts` attempts in all, waiting `backoff_s * multiplier**(n-1)` (capped)."""

    max_attempts: int = 1
    backoff_s: float = 600.0
    multiplier: float = 2.0
    max_backoff_s: float = 86400.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * self.multiplier ** max(0, attempt - 1)))


def _default_retry() -> dict[str, OutcomeRetry]:
    return {"busy": OutcomeRetry(3, 600), "no_answer": OutcomeRetry(3, 1800),
            "voicemail": OutcomeRetry(2, 3600), "failed": OutcomeRetry(2, 300)}


@dataclass(frozen=True)
class RetryByOutcome:
    """A retry rule per outcome; an outcome without one is final."""

    rules: Mapping[str, OutcomeRetry] = field(default_factory=_default_retry)

    KEYS = ("max_attempts", "backoff_s", "multiplier", "max_backoff_s")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> RetryByOutcome:
        """`{"busy": {"max_attempts": 3, "backoff_s": 600}, "no_answer": {...}}` over the defaults;
        `{"busy": null}` turns one off. ValueError names the bad key."""
        rules = dict(_default_retry())
        for outcome, spec in (data or {}).items():
            if outcome not in RETRYABLE_OUTCOMES:
                raise ValueError(f"retry.{outcome}: outcomes that may be retried are "
                                 f"{', '.join(RETRYABLE_OUTCOMES)}")
            if spec is None:
                rules.pop(outcome, None)
                continue
            if not isinstance(spec, Mapping):
                raise ValueError(f"retry.{outcome}: give an object with {', '.join(cls.KEYS)}")
            unknown = set(spec) - set(cls.KEYS)
            if unknown:
                raise ValueError(f"retry.{outcome}: unknown key(s) {', '.join(sorted(unknown))}; "
                                 f"known: {', '.join(cls.KEYS)}")
            base = vars(rules.get(outcome, OutcomeRetry()))
            values = {**base, **{k: (int(v) if k == "max_attempts" else float(v)) for k, v in spec.items()}}
            if values["max_attempts"] < 1 or values["max_attempts"] > 20:
                raise ValueError(f"retry.{outcome}.max_attempts: between 1 and 20")
            if values["backoff_s"] < 0 or values["multiplier"] < 1:
                raise ValueError(f"retry.{outcome}: backoff_s >= 0 and multiplier >= 1")
            rules[outcome] = OutcomeRetry(**values)
        return cls(rules)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {k: dict(vars(v)) for k, v in self.rules.items()}


@dataclass(frozen=True)
class Done:
    """The recipient is finished with `outcome`."""

    outcome: str
    why: str


@dataclass(frozen=True)
class RetryLater:
    """Call the recipient again after `delay_s` (and within the window)."""

    delay_s: float
    why: str


def after_attempt(outcome: str, attempts: int, policy: RetryByOutcome) -> Done | RetryLater:
    """What follows attempt number `attempts` (1-based) that ended in `outcome`."""
    rule = policy.rules.get(outcome)
    if rule is None:
        return Done(outcome, f"attempt {attempts} ended {outcome}; {outcome} is not retried")
    if attempts >= rule.max_attempts:
        return Done(outcome, f"attempt {attempts} ended {outcome}; all {rule.max_attempts} attempts used")
    delay = rule.delay(attempts)
    return RetryLater(delay, f"attempt {attempts} ended {outcome}; attempt {attempts + 1} of "
                             f"{rule.max_attempts} in {delay:g} s")


def outcome_of(status: str, metadata: Mapping[str, Any] | None = None) -> str:
    """A finished call's campaign outcome: its final status, or `voicemail` when answering-machine
    detection said a machine answered."""
    amd = (metadata or {}).get("amd") or {}
    if isinstance(amd, Mapping) and amd.get("result") == "machine" and status in ("completed", "failed"):
        return "voicemail"
    return status


@dataclass(frozen=True)
class Slots:
    """How many new calls may start now, and why not more."""

    n: int
    why: str


def free_slots(*, max_concurrent: int, in_flight: int, calls_per_minute: float | None,
               started_last_minute: int) -> Slots:
    """Start at most `max_concurrent - in_flight` calls and no more than the per-minute rate allows."""
    by_cap = max(0, max_concurrent - in_flight)
    if by_cap == 0:
        return Slots(0, f"{in_flight} call(s) in flight, the cap is {max_concurrent}")
    if calls_per_minute is None:
        return Slots(by_cap, f"{by_cap} under the concurrency cap of {max_concurrent}")
    by_rate = max(0, int(calls_per_minute) - started_last_minute)
    if by_rate == 0:
        return Slots(0, f"{started_last_minute} call(s) started in the last minute; the rate is "
                        f"{calls_per_minute:g}/min")
    n = min(by_cap, by_rate)
    return Slots(n, f"{n}: cap {max_concurrent} with {in_flight} in flight, rate {calls_per_minute:g}/min "
                    f"with {started_last_minute} started in the last minute")
