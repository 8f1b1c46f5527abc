"""Prometheus collectors for calls, the queue, the dialer, webhooks and per-turn latency.

They live in their own `REGISTRY` (not the process default), served by `GET /metrics`. Gauges that mirror
stored state (calls by status, queue depth) are refreshed by `refresh()` right before each scrape.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

CALLS = Gauge("parley_calls", "Stored calls by status.", ["status"], registry=REGISTRY)
ACTIVE_CALLS = Gauge("parley_active_calls", "Calls dialing, ringing or in progress.", registry=REGISTRY)
QUEUE_DEPTH = Gauge("parley_queue_depth", "Dial jobs waiting in the queue (due or scheduled).",
                    registry=REGISTRY)
DIALER_ACTIVE = Gauge("parley_dialer_active_calls", "Calls this process's dialer is placing now.",
                      registry=REGISTRY)
DIALER_HANDED_BACK = Counter("parley_dialer_jobs_handed_back_total",
                             "Dial jobs this worker gave back to the queue because it was overloaded, draining "
                             "or full (another worker may dial them).", registry=REGISTRY)
DIAL_OUTCOMES = Counter("parley_dial_outcomes_total", "Dial attempts by outcome.", ["outcome"],
                        registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter("parley_webhook_deliveries_total",
                             "Webhook attempts by result (delivered, failed = will retry, dead = gave up).",
                             ["result"], registry=REGISTRY)
WEBHOOK_PENDING = Gauge("parley_webhook_pending", "Webhook events waiting in the outbox.", registry=REGISTRY)

SIP_UNACKED = Counter("parley_sip_unacked_total",
                      "Inbound calls answered 200 OK whose ACK never came (slot freed at Timer H).",
                      registry=REGISTRY)
WORKERS = Gauge("parley_workers", "Workers in the registry by state (running, draining).", ["state"],
                registry=REGISTRY)
WORKER_LIVE_CALLS = Gauge("parley_worker_live_calls", "Live calls per worker, from the registry.", ["worker"],
                          registry=REGISTRY)
WORKERS_LOST = Counter("parley_workers_lost_total", "Workers whose lease expired (their calls closed "
                       "worker_lost).", registry=REGISTRY)

CALL_SETUP = Histogram("parley_call_setup_seconds", "Inbound: INVITE received to 200 OK sent.",
                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=REGISTRY)
RTP_SENT = Counter("parley_rtp_packets_sent_total", "RTP packets sent (counted when a call ends).",
                   registry=REGISTRY)
RTP_LATE = Counter("parley_rtp_late_sends_total", "RTP packets sent over half a ptime after their slot "
                   "(counted when a call ends).", registry=REGISTRY)
RTP_JITTER_DROPS = Counter("parley_rtp_jitter_drops_total", "Packets the jitter buffer dropped as too late "
                           "(counted when a call ends).", registry=REGISTRY)

_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
TURN_LATENCY = Histogram("parley_turn_latency_seconds",
                         "Per-turn latency: seconds from the end of the caller's turn to each step (see observe_turn).", ["stage"],
                         buckets=_BUCKETS, registry=REGISTRY)

#: The engine's `TurnMetrics` marks (milliseconds after the end-of-turn decision, except
#: `voice_to_voice_ms`: end of the caller's speech to the agent's first audio, media time).
TURN_MARKS = ("stt_final_ms", "llm_first_token_ms", "tts_first_audio_ms", "first_frame_out_ms",
              "voice_to_voice_ms", "silence_waited_ms")
TURN_VERDICTS = Counter("parley_turn_endings_total",
                        "Caller turns by what ended them: finished (detector), timeout (max or doubt silence), "
                        "silence (fixed silence), key (DTMF).", ["detector"], registry=REGISTRY)
TURN_PROBABILITY = Histogram("parley_turn_model_probability",
                             "The end-of-turn audio model's P(finished) when the turn ended.",
                             buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), registry=REGISTRY)
PREEMPTIVE_RESTARTS = Counter("parley_preemptive_restarts_total",
                              "Replies started on early words and restarted because the final transcript "
                              "differed.", registry=REGISTRY)
PREFETCHED_TURNS = Counter("parley_llm_prefetched_turns_total",
                           "Replies whose LLM answer was asked for on the words before the turn was decided.",
                           registry=REGISTRY)
TTS_PREFETCHED_TURNS = Counter("parley_tts_prefetched_turns_total",
                               "Replies whose first words were synthesized before the turn was decided.",
                               registry=REGISTRY)

TURN_MODEL_BUSY = Counter("parley_turn_model_busy_turns_total",
                          "Caller turns the end-of-turn model was too busy to judge in time (the decisions of "
                          "many calls queued): they ended on the words and the silence.", registry=REGISTRY)

LOOP_BUSY = Gauge("parley_loop_busy_ratio",
                  "Share of a core this worker's event loop (every call's audio) used over the last 5 s; new calls "
                  "are refused past MAX_LOOP_BUSY.", registry=REGISTRY)
LOOP_WAIT = Gauge("parley_loop_wait_ratio",
                  "Share of the last 5 s this worker's event loop was ready but waited for a CPU; new calls are "
                  "refused past MAX_LOOP_WAIT.", registry=REGISTRY)
OVERLOAD_REFUSALS = Counter("parley_overload_refusals_total",
                            "New calls refused because this worker's event loop was overloaded (MAX_LOOP_BUSY, "
                            "MAX_LOOP_WAIT), by kind: inbound, browser, twilio (outbound jobs wait parked, not "
                            "counted).", ["kind"], registry=REGISTRY)

FROZEN_OBJECTS = Gauge("parley_gc_frozen_objects",
                       "Objects alive at start-up kept out of the garbage collector's full collections "
                       "(gc.freeze; 0: not frozen).", registry=REGISTRY)
GC_PAUSES = Histogram("parley_gc_pause_seconds",
                      "Garbage-collector pauses by generation (each holds the event loop, and every call's "
                      "audio with it; generation 2 is a full collection).", ["generation"],
                      buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5), registry=REGISTRY)
_gc_started: list[float] = []


def _time_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[:] = [time.perf_counter()]
    elif _gc_started:
        GC_PAUSES.labels(str(info["generation"])).observe(time.perf_counter() - _gc_started.pop())


def watch_gc_pauses() -> None:
    """Time every garbage collection of this process into `parley_gc_pause_seconds` (idempotent)."""
    if _time_gc not in gc.callbacks:
        gc.callbacks.append(_time_gc)


def observe_turn(marks: Mapping[str, Any]) -> dict[str, float]:
    """Feed one turn's latency marks into the histogram (label `stage` = mark name without `_ms`).

    `marks` is the engine's `TurnMetrics` event as a dict (`event.to_dict()`); marks that are None or
    missing are skipped. Returns the observed values in seconds.
    """
    observed: dict[str, float] = {}
    for key in TURN_MARKS:
        value = marks.get(key)
        if isinstance(value, (int, float)) and value >= 0:
            seconds = float(value) / 1000.0
            TURN_LATENCY.labels(stage=key.removesuffix("_ms")).observe(seconds)
            observed[key.removesuffix("_ms")] = seconds
    detector = marks.get("detector")
    if isinstance(detector, str) and detector:
        TURN_VERDICTS.labels(detector=detector).inc()
    probability = marks.get("probability")
    if isinstance(probability, (int, float)):
        TURN_PROBABILITY.observe(float(probability))
    restarts = marks.get("preemptive_restarts")
    if isinstance(restarts, int) and restarts > 0:
        PREEMPTIVE_RESTARTS.inc(restarts)
    if marks.get("llm_prefetched") is True:
        PREFETCHED_TURNS.inc()
    if marks.get("tts_prefetched") is True:
        TTS_PREFETCHED_TURNS.inc()
    if marks.get("model_busy") is True:
        TURN_MODEL_BUSY.inc()
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
