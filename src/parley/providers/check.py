"""Provider health checks for `parley doctor`: one tiny real request per configured provider.

`check_provider` builds the provider named by a component spec (ignoring its fallbacks) and asks it
for the smallest useful thing — a one-word reply, a short sentence of audio, the transcript of half
a second of silence — reporting the latency to the first result, or what went wrong in words.
`check_component` does the same for the primary provider and each fallback.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from parley.providers.base import Message, ProviderError
from parley.providers.factory import build

if TYPE_CHECKING:
    from parley.agents.spec import AgentSpec, ComponentSpec
    from parley.settings import Settings


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: `latency_ms` to the first result (None when it never came)."""

    ok: bool
    latency_ms: float | None
    message: str


async def check_provider(kind: str, spec: ComponentSpec, settings: Settings, *, timeout_s: float = 20.0,
                         agent: AgentSpec | None = None) -> CheckResult:
    """Build `spec.provider` for `kind` and make one tiny real request to it."""
    single = spec.model_copy(update={"fallbacks": []})
    try:
        provider = build(kind, single, settings, **({"agent": agent} if agent is not None else {}))
    except (ProviderError, ValueError, ImportError, OSError) as exc:
        return CheckResult(False, None, f"cannot start {spec.provider}: {exc}")
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            detail = await _probe(kind, provider)
    except TimeoutError:
        return CheckResult(False, None, f"{spec.provider}: no answer within {timeout_s:g} s")
    except ProviderError as exc:
        return CheckResult(False, None, str(exc))
    except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
        return CheckResult(False, None, f"{spec.provider}: {type(exc).__name__}: {exc}")
    finally:
        closer = getattr(provider, "aclose", None)
        if closer is not None:
            await closer()
    latency = (time.perf_counter() - started) * 1000
    return CheckResult(True, round(latency, 1), f"{spec.provider}: {detail} in {latency:.0f} ms")


async def _probe(kind: str, provider: Any) -> str:
    if kind == "llm":
        async with aclosing(provider.chat([Message("user", "Reply with the single word OK.")])) as chunks:
            async for chunk in chunks:
                if chunk.text.strip() or chunk.tool_call is not None:
                    return f"first token {chunk.text.strip()[:20]!r}"
        raise ProviderError(getattr(provider, "name", kind), "the model sent an empty reply")
    if kind == "tts":
        async with aclosing(provider.synthesize("OK.")) as audio:
            async for pcm in audio:
                if len(pcm):
                    return f"first audio ({provider.sample_rate} Hz)"
        raise ProviderError(getattr(provider, "name", kind), "no audio came back")
    if kind == "stt":
        silence = np.zeros(provider.sample_rate // 2, dtype=np.int16)
        result = await provider.transcribe(silence, provider.sample_rate)
        return f"transcribed half a second of silence as {result.text!r}"
    if kind == "vad":
        provider.probability(np.zeros(provider.window_samples, dtype=np.int16))
        return "scored a silent window"
    raise ValueError(f"unknown provider kind {kind!r}")


async def check_component(kind: str, spec: ComponentSpec, settings: Settings, *, timeout_s: float = 20.0,
                          agent: AgentSpec | None = None) -> list[tuple[str, CheckResult]]:
    """Check the primary provider and each fallback: `[(provider name, result), …]`."""
    results = []
    for one in [spec, *spec.fallbacks]:
        results.append((one.provider, await check_provider(kind, one, settings, timeout_s=timeout_s, agent=agent)))
    return results
