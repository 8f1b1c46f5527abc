"""SIP user agent and RTP media (RFC 3261, 3550, 4566/3264, 4733). Knows nothing of agents or calls."""
