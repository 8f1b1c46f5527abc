"""Browser calls over WebRTC: a `MediaChannel` over an aiortc peer connection, and the service that
admits an SDP offer, answers it and runs the agent through the calls service (see docs/webrtc.md)."""
