"""Calls service: call records, state machine, queue, dialer, webhooks, export.

Use `CallsService` (service.py); the transport dials through `place_call(call) -> DialOutcome` (dialer.py);
how a call's end is recorded is decided in outcomes.py.
"""

from parley.calls.dialer import Dialer, DialerLimits, PlaceCall
from parley.calls.outcomes import DialOutcome, RetryPolicy
from parley.calls.records import Call, CallDetail, CallEvent, TranscriptEntry
from parley.calls.service import CallRequestError, CallsService
from parley.calls.states import CallStatus, IllegalTransition
from parley.calls.store import CallNotFound, Store

__all__ = [
    "Call", "CallDetail", "CallEvent", "CallNotFound", "CallRequestError", "CallStatus", "CallsService",
    "DialOutcome", "Dialer", "DialerLimits", "IllegalTransition", "PlaceCall", "RetryPolicy", "Store",
    "TranscriptEntry",
]
