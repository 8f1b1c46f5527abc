"""Twilio's routes: the voice webhook, the Media Streams WebSocket and status callbacks.

They are public (no `X-API-Key`: Twilio cannot send one) and authenticated by Twilio instead: the two
webhooks by `X-Twilio-Signature` (HMAC-SHA1 with `TWILIO_AUTH_TOKEN` over the URL Twilio used — see
`telephony/twilio/signature.py` for proxies — and the form fields), the WebSocket by the single-use token
our signed TwiML answer handed to Twilio. A forged or unsigned request gets 403 and reaches no agent.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import Response

from parley.api.deps import StateDep
from parley.api.errors import ApiError
from parley.api.state import ApiState
from parley.logging import get_logger
from parley.telephony.twilio.bridge import Refused, TwilioBridge
from parley.telephony.twilio.signature import SIGNATURE_HEADER, is_valid, signed_url

log = get_logger(__name__)
router = APIRouter(tags=["twilio"])
XML = "application/xml"


def _bridge(state: ApiState) -> TwilioBridge:
    if state.twilio is None:
        raise ApiError(503, "unavailable", "the Twilio bridge is not running (the app's startup did not run)")
    return state.twilio


async def _signed_form(request: Request, bridge: TwilioBridge) -> tuple[dict[str, str], str]:
    """The form fields of a request Twilio signed, and the URL it signed; else 403."""
    form = await request.form()
    params = {k: str(v) for k, v in form.items()}
    url = signed_url(str(request.url), {k.lower(): v for k, v in request.headers.items()},
                     bridge.config.public_url)
    token = bridge.config.auth_token
    if not token:
        log.warning("Twilio webhook refused: TWILIO_AUTH_TOKEN is not set", path=request.url.path)
        raise ApiError(403, "forbidden", "Twilio webhooks are refused: TWILIO_AUTH_TOKEN is not set")
    if not is_valid(token, url, params, request.headers.get(SIGNATURE_HEADER)):
        log.warning("Twilio webhook refused: bad or missing signature", url=url,
                    client=request.client.host if request.client else None, call_sid=params.get("CallSid"))
        raise ApiError(403, "forbidden", f"missing or invalid {SIGNATURE_HEADER} for {url} (if Parley is "
                       "behind a proxy, set TWILIO_PUBLIC_URL to the address Twilio calls)")
    return params, url


@router.post("/twilio/voice", summary="Twilio voice webhook (signed by Twilio): answers TwiML")
async def voice(request: Request, state: StateDep) -> Response:
    bridge = _bridge(state)
    form, url = await _signed_form(request, bridge)
    parts = urlsplit(url)
    base = bridge.config.public_url or f"{parts.scheme}://{parts.netloc}"
    try:
        answer, _ = await bridge.answer(form, base)
    except Refused as refused:
        return Response(refused.twiml, media_type=XML)
    return Response(answer, media_type=XML)


@router.post("/twilio/status", summary="Twilio call status callback (signed by Twilio)")
async def status(request: Request, state: StateDep) -> Response:
    bridge = _bridge(state)
    form, _ = await _signed_form(request, bridge)
    done = await bridge.on_status(form)
    log.info("Twilio status callback", call_sid=form.get("CallSid"), status=form.get("CallStatus"), done=done)
    return Response(status_code=204)


@router.websocket("/twilio/stream")
async def stream(ws: WebSocket) -> None:
    """Twilio Media Streams: authenticated by the single-use token in the `start` message."""
    state = ApiState.of(ws.app)
    await ws.accept()
    if state.twilio is None:
        await ws.close(1011, "the Twilio bridge is not running")
        return
    await state.twilio.run_stream(ws)
