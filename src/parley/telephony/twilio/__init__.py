"""Twilio: calls over Media Streams (a `MediaChannel` on Twilio's WebSocket), webhooks signed by Twilio,
REST actions (hang-up, transfer, DTMF, outbound calls), and number / Elastic SIP trunk management.

Modules: `config` (settings → `TwilioConfig`), `signature` (X-Twilio-Signature behind a proxy),
`twiml` (the answers we give), `tokens` (single-use stream tokens), `protocol` (Media Streams messages),
`channel` (the `MediaChannel`), `rest` (the SDK client, in threads), `status` (Twilio call status → ours),
`bridge` (webhook → call record → stream → conversation; outbound), `admin` (numbers, trunk, status).
"""
