"""Twilio's REST API through the official SDK, off the event loop (the SDK is synchronous: each call runs
in a thread). `TWILIO_API_BASE_URL` points the SDK elsewhere (a regional proxy; the tests' stand-in) via the
SDK's own extension point, a custom `HttpClient`: every `https://<domain>.twilio.com/...` request goes to
the same path under that base.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from parley.logging import get_logger
from parley.telephony.twilio import twiml
from parley.telephony.twilio.config import TwilioConfig

log = get_logger(__name__)
T = TypeVar("T")

#: `calls.create` options a request may pass through (answering-machine detection and friends).
PASS_THROUGH = frozenset({
    "machine_detection", "machine_detection_timeout", "machine_detection_speech_threshold",
    "machine_detection_speech_end_threshold", "machine_detection_silence_timeout", "async_amd",
    "async_amd_status_callback", "async_amd_status_callback_method", "timeout", "time_limit", "record",
    "caller_id",
})


class TwilioError(RuntimeError):
    """A Twilio REST failure in words (status, Twilio's error code and message)."""


class RebasedHttpClient(TwilioHttpClient):
    """The SDK's HTTP client, sending `https://*.twilio.com/<path>` to `<base_url>/<path>` instead."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        if (parts.hostname or "").endswith("twilio.com"):
            url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().request(method, url, *args, **kwargs)


def make_client(config: TwilioConfig, timeout_s: float = 10.0) -> Client:
    """An SDK client for the configured account (and base URL). The SDK's per-request INFO logging is
    turned down to warnings."""
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    http = RebasedHttpClient(config.api_base_url, timeout=timeout_s) if config.api_base_url \
        else TwilioHttpClient(timeout=timeout_s)
    return Client(config.account_sid, config.auth_token, http_client=http)


HINTS = {20003: "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN", 20404: "no such resource on this account",
         21210: "the caller ID is not a number of this account or a verified one",
         21211: "the number to call is not valid"}


def describe(exc: Exception) -> str:
    """A REST failure as one readable line (a refused request, a page that could not be fetched, no network)."""
    if isinstance(exc, TwilioRestException):
        status, code, message = exc.status, exc.code, exc.msg
    elif isinstance(exc, TwilioException) and len(exc.args) > 1 and hasattr(exc.args[1], "status_code"):
        response = exc.args[1]  # a list page: ("Unable to fetch page", Response)
        try:
            body = json.loads(response.text)
        except (TypeError, ValueError):
            body = {}
        status, code, message = response.status_code, body.get("code"), body.get("message", str(exc.args[0]))
    elif isinstance(exc, TwilioException):
        return f"Twilio SDK error: {exc}"
    else:
        return f"Twilio could not be reached: {exc}"
    hint = HINTS.get(code or 0, "")
    return f"Twilio answered {status} (error {code}): {message}" + (f": {hint}" if hint else "")


class TwilioRest:
    """The REST actions Parley takes, each run in a thread; failures raise `TwilioError`."""

    def __init__(self, config: TwilioConfig, client: Client | None = None) -> None:
        self.config = config
        self.client = client or make_client(config)

    async def run(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except TwilioException as exc:
            raise TwilioError(describe(exc)) from exc
        except OSError as exc:
            raise TwilioError(describe(exc)) from exc

    async def update_twiml(self, call_sid: str, twiml_text: str) -> None:
        await self.run(lambda: self.client.calls(call_sid).update(twiml=twiml_text))

    async def hangup(self, call_sid: str) -> None:
        """End the call (`status=completed`)."""
        await self.run(lambda: self.client.calls(call_sid).update(status="completed"))

    async def transfer(self, call_sid: str, target: str) -> bool:
        """Replace the call's TwiML with a `<Dial>` to `target`; False (logged) when Twilio refuses."""
        try:
            await self.update_twiml(call_sid, twiml.transfer(target, self.config.phone_number or None))
            return True
        except TwilioError as exc:
            log.warning("Twilio transfer failed", call_sid=call_sid, target=target, error=str(exc))
            return False

    async def create_call(self, *, to: str, from_: str, twiml_text: str, status_callback: str | None,
                          options: dict[str, Any] | None = None) -> str:
        """Place a call running `twiml_text`; returns its CallSid. `options` are `PASS_THROUGH` keys."""
        extra = {k: v for k, v in (options or {}).items() if k in PASS_THROUGH}
        if status_callback:
            extra.update(status_callback=status_callback, status_callback_method="POST",
                         status_callback_event=["initiated", "ringing", "answered", "completed"])
        call = await self.run(lambda: self.client.calls.create(to=to, from_=from_, twiml=twiml_text, **extra))
        return str(call.sid)
