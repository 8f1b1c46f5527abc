"""Parley agents in LiveKit rooms, and LiveKit SIP trunks managed like Parley's own (docs/livekit.md).

`config` (URL, key, secret), `audio` (SDK frames ↔ ours), `channel` (the room `MediaChannel`), `sessions`
(room sessions → call records), `dispatch` (which agent), `webhooks` (signed events), `sip_sync`
(`parley livekit sip …`), `outbound` (CreateSIPParticipant), `doctor` (a signed ListRooms round trip).
The SDKs (`livekit`, `livekit-api`, the `cloud` extra) are imported only inside these modules.
"""
