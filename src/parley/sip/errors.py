"""Errors raised by the SIP stack."""

from __future__ import annotations


class SipParseError(ValueError):
    """A message, header or URI that does not follow RFC 3261 grammar (answered `status`, 400 unless
    said otherwise, e.g. 505 for an unknown SIP version, when a response can be built)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class CallFailed(Exception):
    """An outgoing call ended before answer, or an incoming call could not be accepted."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class TransactionTimeout(Exception):
    """No final response arrived before Timer B/F (64*T1) fired."""
