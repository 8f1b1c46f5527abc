"""Errors raised by the SIP stack."""

from __future__ import annotations


class SipParseError(ValueError):
    """A message, header or URI that does not follow RFC 3261 grammar (answered 400 when possible)."""


class CallFailed(Exception):
    """An outgoing call ended before answer, or an incoming call could not be accepted."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class TransactionTimeout(Exception):
    """No final response arrived before Timer B/F (64*T1) fired."""
