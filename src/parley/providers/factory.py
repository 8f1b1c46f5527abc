"""Build providers from an agent's component specs, by name, through the registry.

Every provider factory has the signature `create(spec, *, settings, **extra) -> provider`. LLM
factories also receive `agent=` (the `AgentSpec`), which the `scripted` LLM reads its intents from;
factories that take no `agent` keyword are called without it.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from parley.providers import registry
from parley.providers.base import LLM, STT, TTS, VAD, ProviderError

if TYPE_CHECKING:
    from parley.agents.spec import AgentSpec, ComponentSpec
    from parley.settings import Settings


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from parley.settings import get_settings

    return get_settings()


def _accepts(func: Any, name: str) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def build(kind: str, spec: ComponentSpec, settings: Settings | None = None, **extra: Any) -> Any:
    """Create the `kind` provider named by `spec.provider` (extra keywords only where accepted).

    With `spec.fallbacks`, every listed provider is built and wrapped in a fallback adapter
    (`parley.providers.fallback`): on an error or timeout the next one takes over the turn.
    """
    if spec.fallbacks and kind != "vad":
        from parley.providers.fallback import wrap

        own = {k: v for k, v in spec.model_dump(exclude={"fallbacks"}).items() if not k.startswith("fallback_")}
        chain = [type(spec).model_validate(own), *spec.fallbacks]
        return wrap(kind, [_build_one(kind, one, settings, **extra) for one in chain], spec.options)
    return _build_one(kind, spec, settings, **extra)


def _build_one(kind: str, spec: ComponentSpec, settings: Settings | None = None, **extra: Any) -> Any:
    try:
        create = registry.factory(kind, spec.provider)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    kwargs = {k: v for k, v in extra.items() if _accepts(create, k)}
    return create(spec, settings=_settings(settings), **kwargs)


def build_stt(spec: ComponentSpec, settings: Settings | None = None) -> STT:
    """The speech-to-text provider for `spec`."""
    return build("stt", spec, settings)


def build_llm(spec: ComponentSpec, settings: Settings | None = None, *, agent: AgentSpec | None = None) -> LLM:
    """The chat model for `spec`; `agent` gives the scripted LLM its intents and replies."""
    return build("llm", spec, settings, agent=agent)


def build_tts(spec: ComponentSpec, settings: Settings | None = None) -> TTS:
    """The text-to-speech provider for `spec`."""
    return build("tts", spec, settings)


def build_vad(spec: ComponentSpec, settings: Settings | None = None) -> VAD:
    """A new voice-activity detector for `spec` (one per call: it keeps state)."""
    return build("vad", spec, settings)


__all__ = ["ProviderError", "build", "build_llm", "build_stt", "build_tts", "build_vad"]
