"""Provider health checks for `parley doctor`: one tiny real request per configured provider.

`check_provider` builds the provider named by a component's options (ignoring its fallbacks) and asks it
for the smallest useful thing — a one-word reply, a short sentence of audio, the transcript of half
a second of silence — reporting the latency to the first result, or what went wrong in words.
`check_component` does the same for the primary provider and each fallback.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from parley.providers.base import LLM, STT, TTS, VAD, Message, Provider, ProviderError
from parley.providers.factory import build
from parley.providers.options import OptionsLike, Script, options_of

if TYPE_CHECKING:
    from parley.settings import Settings


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: `latency_ms` to the first result (None when it never came)."""

    ok: bool
    latency_ms: float | None
    message: str


async def check_provider(kind: str, spec: OptionsLike, settings: Settings, *, timeout_s: float = 20.0,
                         agent: Script | None = None) -> CheckResult:
    """Build `spec.provider` for `kind` and make one tiny real request to it (`agent`: the scripted LLM's)."""
    single = options_of(spec).alone()
    try:
        provider = build(kind, single, settings, script=agent)
    except (ProviderError, ValueError, ImportError, OSError) as exc:
        return CheckResult(False, None, f"cannot start {single.provider}: {exc}")
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            detail = await _probe(kind, provider)
    except TimeoutError:
        return CheckResult(False, None, f"{single.provider}: no answer within {timeout_s:g} s")
    except ProviderError as exc:
        return CheckResult(False, None, str(exc))
    except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
        return CheckResult(False, None, f"{single.provider}: {type(exc).__name__}: {exc}")
    finally:
        await provider.aclose()
    latency = (time.perf_counter() - started) * 1000
    return CheckResult(True, round(latency, 1), f"{single.provider}: {detail} in {latency:.0f} ms")


async def _probe(kind: str, provider: Provider) -> str:
    if isinstance(provider, LLM):
        async with aclosing(provider.chat([Message("user", "Reply with the single word OK.")])) as chunks:
            async for chunk in chunks:
                if chunk.text.strip() or chunk.tool_call is not None:
                    return f"first token {chunk.text.strip()[:20]!r}"
        raise provider.error("the model sent an empty reply")
    if isinstance(provider, TTS):
        async with aclosing(provider.synthesize("OK.")) as audio:
            async for pcm in audio:
                if len(pcm):
                    return f"first audio ({provider.sample_rate} Hz)"
        raise provider.error("no audio came back")
    if isinstance(provider, STT):
        silence = np.zeros(provider.sample_rate // 2, dtype=np.int16)
        result = await provider.transcribe(silence, provider.sample_rate)
        return f"transcribed half a second of silence as {result.text!r}"
    if isinstance(provider, VAD):
        provider.probability(np.zeros(provider.window_samples, dtype=np.int16))
        return "scored a silent window"
    raise ValueError(f"{provider.name} is no {kind} provider (it does not subclass parley.providers.base)")


async def check_component(kind: str, spec: OptionsLike, settings: Settings, *, timeout_s: float = 20.0,
                          agent: Script | None = None) -> list[tuple[str, CheckResult]]:
    """Check the primary provider and each fallback: `[(provider name, result), …]`."""
    options = options_of(spec)
    results = []
    for one in [options, *options.fallbacks]:
        results.append((one.provider, await check_provider(kind, one, settings, timeout_s=timeout_s, agent=agent)))
    return results
