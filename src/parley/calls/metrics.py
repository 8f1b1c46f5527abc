"""Prometheus collectors for calls, the queue, the dialer, webhooks and per-turn latency.

They live in their own `REGISTRY` (not the process default), served by `GET /metrics`. Gauges that mirror
stored state (calls by status, queue depth) are refreshed by `refresh()` right before each scrape.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

CALLS = Gauge("parley_calls", "Stored calls by status.", ["status"], registry=REGISTRY)
ACTIVE_CALLS = Gauge("parley_active_calls", "Calls dialing, ringing or in progress.", registry=REGISTRY)
QUEUE_DEPTH = Gauge("parley_queue_depth", "Dial jobs waiting in the queue (due or scheduled).",
                    registry=REGISTRY)
DIALER_ACTIVE = Gauge("parley_dialer_active_calls", "Calls this process's dialer is placing now.",
                      registry=REGISTRY)
DIAL_OUTCOMES = Counter("parley_dial_outcomes_total", "Dial attempts by outcome.", ["outcome"],
                        registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter("parley_webhook_deliveries_total",
                             "Webhook attempts by result (delivered, failed = will retry, dead = gave up).",
                             ["result"], registry=REGISTRY)
WEBHOOK_PENDING = Gauge("parley_webhook_pending", "Webhook events waiting in the outbox.", registry=REGISTRY)

_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
TURN_LATENCY = Histogram("parley_turn_latency_seconds",
                         "Per-turn latency by stage (see observe_turn).", ["stage"],
                         buckets=_BUCKETS, registry=REGISTRY)

#: Stage name -> (start mark, end mark). Marks are seconds on one clock (e.g. time.monotonic()).
TURN_STAGES: dict[str, tuple[str, str]] = {
    "stt": ("end_of_speech", "stt_final"),
    "llm_first_token": ("stt_final", "llm_first_token"),
    "tts_first_audio": ("llm_first_token", "tts_first_audio"),
    "response": ("end_of_speech", "first_audio_out"),
    "interruption_stop": ("interruption", "playback_stopped"),
}


def observe_turn(marks: Mapping[str, float]) -> dict[str, float]:
    """Feed one turn's latency marks (seconds, same clock) into the histograms.

    Recognised marks: `end_of_speech`, `stt_final`, `llm_first_token`, `tts_first_audio`,
    `first_audio_out`, `interruption`, `playback_stopped`. Stages whose two marks are present are
    observed; missing marks are skipped. Returns the observed stage durations.
    """
    observed: dict[str, float] = {}
    for stage, (start, end) in TURN_STAGES.items():
        if start in marks and end in marks:
            value = float(marks[end]) - float(marks[start])
            if value >= 0:
                TURN_LATENCY.labels(stage=stage).observe(value)
                observed[stage] = value
    return observed


def set_call_counts(counts: Mapping[str, int], queue_depth: int | None, pending_webhooks: int) -> None:
    """Refresh the state-mirroring gauges."""
    from parley.calls.states import ACTIVE, CallStatus

    for status in CallStatus:
        CALLS.labels(status=status.value).set(counts.get(status.value, 0))
    ACTIVE_CALLS.set(sum(counts.get(s.value, 0) for s in ACTIVE))
    if queue_depth is not None:
        QUEUE_DEPTH.set(queue_depth)
    WEBHOOK_PENDING.set(pending_webhooks)


def render() -> bytes:
    """The Prometheus text exposition of every Parley collector."""
    return generate_latest(REGISTRY)
