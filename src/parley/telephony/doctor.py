"""`parley doctor`: check settings, agents, providers, ports and trunks; every failure in one line with the fix."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from parley.settings import Settings

if TYPE_CHECKING:
    from parley.agents import AgentRegistry


@dataclass(frozen=True)
class Finding:
    """One check's outcome: `area`, `ok`, what was found, and the fix when it failed."""

    area: str
    ok: bool
    message: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.area}: {self.message}" + (f" — fix: {self.fix}" if self.fix and not self.ok else "")


def _port_free(host: str, port: int, kind: int) -> str | None:
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def check_ports(settings: Settings) -> list[Finding]:
    """The API and SIP ports can be bound (nothing else holds them)."""
    findings = []
    wanted = [("API", settings.api_host, settings.api_port, socket.SOCK_STREAM)]
    if settings.sip_transport in ("udp", "both"):
        wanted.append(("SIP/UDP", settings.sip_host, settings.sip_port, socket.SOCK_DGRAM))
    if settings.sip_transport in ("tcp", "both"):
        wanted.append(("SIP/TCP", settings.sip_host, settings.sip_port, socket.SOCK_STREAM))
    for name, host, port, kind in wanted:
        error = _port_free(host, port, kind)
        setting = "API_PORT" if name == "API" else "SIP_PORT"
        findings.append(Finding(f"port {name} {host}:{port}", error is None,
                                "free" if error is None else f"cannot bind: {error}",
                                f"stop whatever holds it (is Parley already running?) or set {setting}"))
    if settings.rtp_port_min >= settings.rtp_port_max:
        findings.append(Finding("RTP ports", False, f"RTP_PORT_MIN {settings.rtp_port_min} >= RTP_PORT_MAX "
                                f"{settings.rtp_port_max}", "set RTP_PORT_MIN below RTP_PORT_MAX"))
    return findings


def check_data_dir(settings: Settings) -> Finding:
    path = Path(settings.data_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".doctor"
        probe.write_text("ok")
        probe.unlink()
        return Finding("data dir", True, f"{path.resolve()} is writable")
    except OSError as exc:
        return Finding("data dir", False, f"{path}: {exc.strerror or exc}", "set DATA_DIR to a writable folder")


async def run_checks(settings: Settings, *, providers: bool = True, trunks: bool = True) -> AsyncIterator[Finding]:
    """Every check, yielded as it completes."""
    from parley.agents import AgentError, AgentRegistry

    yield check_data_dir(settings)
    if not settings.api_key_list:
        yield Finding("API keys", False, "API_KEYS is empty: a new key is generated on every start",
                      "set API_KEYS=key1,key2 in .env")
    else:
        yield Finding("API keys", True, f"{len(settings.api_key_list)} configured")
    try:
        registry = AgentRegistry.load(settings.agents_dir, settings.prompts_dir)
    except AgentError as exc:
        for problem in exc.problems:
            yield Finding("agents", False, problem, "edit the file; `parley agents validate` re-checks")
        return
    yield Finding("agents", True, f"{len(registry)} valid ({', '.join(a.key for a in registry)})")
    if settings.default_agent not in registry:
        yield Finding("default agent", False, f"DEFAULT_AGENT {settings.default_agent!r} is not an agent",
                      f"set DEFAULT_AGENT to one of {', '.join(a.key for a in registry)}")
    for finding in check_ports(settings):
        yield finding
    if providers:
        async for finding in _check_providers(settings, registry):
            yield finding
    if trunks:
        async for finding in _check_trunks(settings):
            yield finding
    yield await _check_livekit(settings)
    for finding in await asyncio.to_thread(check_twilio, settings):
        yield finding
    if settings.redis_url:
        for finding in await check_workers(settings):
            yield finding


async def _check_livekit(settings: Settings) -> Finding:
    """LIVEKIT_URL/KEY/SECRET: a signed ListRooms round trip (401s explained); fine when unset."""
    from parley.telephony.livekit.doctor import check

    try:
        import livekit.api  # noqa: F401
    except ImportError:  # the `cloud` extra is not installed
        if settings.livekit_url:
            return Finding("livekit", False, "LIVEKIT_URL is set but the LiveKit SDKs are not installed",
                           "pip install 'parley[cloud]'")
        return Finding("livekit", True, "not configured")
    ok, message, fix = await check(settings)
    return Finding("livekit", ok, message, fix)


async def check_workers(settings: Settings) -> list[Finding]:
    """With REDIS_URL: every worker of the registry and its state (a lost one fails)."""
    import redis.asyncio as aioredis

    from parley.calls.workers import WorkerRegistry

    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True, socket_connect_timeout=3)
    try:
        workers = await WorkerRegistry(client, prefix=settings.redis_prefix).workers()
    except Exception as exc:  # noqa: BLE001
        return [Finding("workers", False, f"cannot read the registry in Redis: {exc}", "check REDIS_URL")]
    finally:
        await client.aclose()
    if not workers:
        return [Finding("workers", False, "no worker registered", "start `parley worker` (or `parley up`)")]
    return [Finding(f"worker {w.id}", w.state != "lost",
                    f"{w.state}, sip {w.sip or '-'}, {w.live}/{w.capacity} live calls, "
                    f"event loop {w.loop_busy:.0%} busy"
                    + (f", health {w.health_url}" if w.health_url else ""),
                    "its lease expired: it is dead or cut off; its calls are closed worker_lost")
            for w in workers]


async def _check_providers(settings: Settings, registry: AgentRegistry) -> AsyncIterator[Finding]:
    from parley.providers.check import check_component

    seen: set[tuple[str, str]] = set()
    for agent in registry:
        for kind in ("stt", "llm", "tts"):
            spec = getattr(agent.spec.components, kind)
            key = (kind, spec.model_dump_json())
            if key in seen:
                continue
            seen.add(key)
            for name, result in await check_component(kind, spec, settings, timeout_s=20.0, agent=agent.spec):
                fix = "" if "set " in result.message else _provider_fix(name)
                yield Finding(f"{kind} {name} (agent {agent.key})", result.ok, result.message, fix)


def _provider_fix(name: str) -> str:
    return {
        "azure": "set AZURE_SPEECH_KEY and AZURE_SPEECH_REGION (or AZURE_OPENAI_* for the LLM)",
        "openai": "set OPENAI_API_KEY / OPENAI_BASE_URL, or base_url and api_key_env in the agent YAML",
        "azure_openai": "set AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY and AZURE_OPENAI_DEPLOYMENT_NAME",
        "espeak": "apt-get install espeak-ng",
    }.get(name, "reinstall Parley (`make run` installs the offline engines)")


async def _check_trunks(settings: Settings) -> AsyncIterator[Finding]:
    from parley.calls.store import Store
    from parley.sip.endpoint import SipEndpoint
    from parley.telephony.probe import options_ping, register_check
    from parley.telephony.store import TelephonyStore

    store = Store.from_url(settings.effective_database_url)
    try:
        await store.upgrade()
        trunks = await TelephonyStore(store).trunks()
    except Exception as exc:
        yield Finding("database", False, f"{type(exc).__name__}: {exc}", "check DATABASE_URL")
        await store.close()
        return
    await store.close()
    yield Finding("database", True, f"{store.backend} reachable, {len(trunks)} trunk(s)")
    if not trunks:
        yield Finding("trunks", True, "none configured: inbound calls are accepted from loopback only")
        return
    endpoint = SipEndpoint(host="0.0.0.0", port=0, transports=("udp", "tcp"))
    await endpoint.start()
    try:
        for trunk in trunks:
            if trunk.outbound is None:
                yield Finding(f"trunk {trunk.name}", True, "inbound only: nothing to probe from here")
                continue
            ping = await options_ping(endpoint, trunk.outbound)
            reg = await register_check(endpoint, trunk.outbound) if ping.ok else None
            yield Finding(f"trunk {trunk.name} reachability", ping.ok, ping.message,
                          "check the trunk's host/port/transport and your firewall")
            if reg is not None:
                yield Finding(f"trunk {trunk.name} credentials", reg.ok, reg.message,
                              "fix username/password, or add this machine's address to the provider's ACL")
    finally:
        await endpoint.close()


def check_twilio(settings: Settings) -> list[Finding]:
    """Twilio, when any TWILIO_* is set: settings, credentials (one REST request) and TWILIO_PHONE_NUMBER's
    configuration against what Parley expects (blocking: run it in a thread)."""
    from parley.telephony.twilio.admin import AdminError, Expected, check_credentials, status
    from parley.telephony.twilio.config import TwilioConfig
    from parley.telephony.twilio.rest import make_client

    config = TwilioConfig.from_settings(settings)
    if not (config.account_sid or config.auth_token or config.phone_number):
        return []
    problems = config.problems()
    if problems:
        return [Finding("twilio settings", False, p, "set it in .env") for p in problems]
    client = make_client(config)
    try:
        found = [Finding("twilio credentials", True, check_credentials(client, config))]
    except AdminError as exc:
        return [Finding("twilio credentials", False, str(exc), "copy the Account SID and Auth Token from "
                        "Twilio's console into TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN")]
    if not config.phone_number:
        return found + [Finding("twilio number", True, "TWILIO_PHONE_NUMBER not set: no number to check")]
    try:
        differences = status(client, Expected.from_settings(settings), config.phone_number)
    except AdminError as exc:
        return found + [Finding("twilio number", False, str(exc), "check TWILIO_PHONE_NUMBER")]
    number_lines = [d for d in differences if d.startswith(config.phone_number)]
    if not number_lines:
        return found + [Finding("twilio number", True, f"{config.phone_number} sends its calls to Parley")]
    fix = f"parley twilio numbers connect {config.phone_number} --mode stream (or --mode sip)"
    return found + [Finding("twilio number", False, d, fix) for d in number_lines]
