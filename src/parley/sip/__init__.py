"""SIP user agent and RTP media (RFC 3261, 3550, 4566/3264, 4733). Knows nothing of agents or calls.

The public names are importable from here (loaded on first use, so `parley.sip.rtp` stays light):
`SipEndpoint`, `IncomingCall`, `OutgoingCall`, `Call`, `Progress`, `Credentials`, `CallFailed`,
`SipParseError`, `Registration`, `RegistrationError`. See docs/sip.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SipEndpoint": "parley.sip.endpoint",
    "IncomingCall": "parley.sip.call",
    "OutgoingCall": "parley.sip.invite_client",
    "Call": "parley.sip.call",
    "Progress": "parley.sip.invite_client",
    "Credentials": "parley.sip.auth",
    "CallFailed": "parley.sip.errors",
    "SipParseError": "parley.sip.errors",
    "Registration": "parley.sip.register",
    "RegistrationError": "parley.sip.register",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'parley.sip' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
