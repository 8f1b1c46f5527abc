"""Parley: self-hosted voice-AI agents on SIP trunks and WebRTC."""

__version__ = "0.1.0"
