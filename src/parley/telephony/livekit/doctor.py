"""LiveKit checks for `parley doctor`, and LiveKit errors in words for every command.

`check(settings)` makes a signed `ListRooms` round trip: it proves the URL answers, the key is known and
the secret is the key's (a 401 says which of those failed, as far as the server tells).
"""

from __future__ import annotations

import asyncio

from parley.settings import Settings
from parley.telephony.livekit.config import LiveKitConfig, LiveKitConfigError


def explain(exc: BaseException, config: LiveKitConfig | None = None) -> str:
    """A LiveKit API failure in one line, with the usual cause."""
    import aiohttp
    from livekit.api import ServerError

    where = f" at {config.http_url}" if config else ""
    if isinstance(exc, ServerError):
        msg = exc.message or exc.code
        if exc.status == 401:
            key = f" ({config.key!r})" if config else ""
            if "api key" in msg.lower():
                cause = f"the server does not know LIVEKIT_API_KEY{key}: copy the key from the LiveKit project"
            elif "expired" in msg.lower():
                cause = "the token expired before it arrived: check this machine's clock"
            else:
                cause = (f"LIVEKIT_API_SECRET is not the secret of LIVEKIT_API_KEY{key}: copy both from the same "
                         "LiveKit project")
            return f"LiveKit{where} refused the credentials (401 {msg}): {cause}"
        if exc.status == 403:
            return f"LiveKit{where} refused the request (403 {msg}): the API key lacks this permission"
        if exc.status == 404:
            return f"LiveKit{where}: not found ({msg}); is LIVEKIT_URL the LiveKit server (and SIP enabled on it)?"
        return f"LiveKit{where} answered {exc.status} {exc.code}: {msg}"
    if type(exc).__name__ == "ConnectError":  # livekit.rtc: the room's signal connection failed
        ws = f" at {config.ws_url}" if config else ""
        return f"cannot connect to the LiveKit room{ws}: {exc}; check LIVEKIT_URL and that the server is up"
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, OSError)):
        return (f"cannot reach LiveKit{where}: {type(exc).__name__} {exc}".rstrip() +
                "; check LIVEKIT_URL and that the server is up")
    if isinstance(exc, LiveKitConfigError):
        return str(exc)
    return f"LiveKit{where}: {type(exc).__name__}: {exc}"


async def list_rooms(config: LiveKitConfig) -> int:
    """A signed ListRooms round trip; the number of rooms (raises on failure)."""
    from livekit.protocol import room

    client = config.api()
    try:
        return len((await client.room.list_rooms(room.ListRoomsRequest())).rooms)
    finally:
        await client.aclose()


async def check(settings: Settings, timeout_s: float = 10.0) -> tuple[bool, str, str]:
    """(ok, what was found, fix) for the LiveKit settings; not configured at all counts as ok."""
    if not (settings.livekit_url or settings.livekit_api_key or settings.livekit_api_secret.get_secret_value()):
        return True, "not configured (LIVEKIT_URL unset): LiveKit rooms and SIP are off", ""
    try:
        config = LiveKitConfig.from_settings(settings)
    except LiveKitConfigError as exc:
        return False, str(exc), "set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET together"
    try:
        rooms = await asyncio.wait_for(list_rooms(config), timeout_s)
    except Exception as exc:
        return False, explain(exc, config), "fix the LiveKit settings in .env (see docs/livekit.md)"
    return True, f"{config.http_url} accepted key {config.key!r} (signed ListRooms: {rooms} room(s))", ""
