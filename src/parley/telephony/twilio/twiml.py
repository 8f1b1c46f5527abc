"""The TwiML Parley answers with, built with the SDK's `VoiceResponse`."""

from __future__ import annotations

from collections.abc import Mapping

from twilio.twiml.voice_response import Connect, Dial, VoiceResponse


def connect_stream(stream_url: str, parameters: Mapping[str, str], status_callback: str | None = None,
                   *, play_digits: str | None = None) -> str:
    """`<Connect><Stream url=…>` with one `<Parameter>` per item (Twilio forbids a query string on the URL,
    so identity and token travel as parameters); optionally touch-tones played first."""
    response = VoiceResponse()
    if play_digits:
        response.play(digits=play_digits)
    connect = Connect()
    extra = {"status_callback": status_callback, "status_callback_method": "POST"} if status_callback else {}
    stream = connect.stream(url=stream_url, **extra)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response)


def reject(reason: str = "busy") -> str:
    """`<Reject reason="busy|rejected">`: the caller hears busy (or a rejection) and we are not billed."""
    response = VoiceResponse()
    response.reject(reason="busy" if reason == "busy" else "rejected")
    return str(response)


def hangup() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def transfer(target: str, caller_id: str | None = None) -> str:
    """`<Dial>` to a number, or `<Dial><Sip>` to a sip: URI."""
    response = VoiceResponse()
    dial = Dial(caller_id=caller_id) if caller_id else Dial()
    if target.startswith(("sip:", "sips:")):
        dial.sip(target)
    else:
        dial.number(target.removeprefix("tel:"))
    response.append(dial)
    return str(response)
