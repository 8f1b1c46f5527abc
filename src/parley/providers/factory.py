"""Build providers from a component's options, by name, through the registry.

Every provider factory is called as `create(options, settings=settings)`; LLM factories are also given
`script=` (the agent's intents, replies and variables, which the `scripted` LLM answers from; the others
ignore it). `options` is a `ProviderOptions`, or anything with `provider_options()` (the agent schema's
component specs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from parley.providers import registry
from parley.providers.base import LLM, STT, TTS, VAD, Provider, ProviderError
from parley.providers.options import OptionsLike, ProviderOptions, Script, options_of

if TYPE_CHECKING:
    from parley.settings import Settings


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from parley.settings import get_settings

    return get_settings()


def build(kind: str, spec: OptionsLike, settings: Settings | None = None, *,
          script: Script | None = None) -> Provider:
    """Create the `kind` provider named by `spec.provider` (`script` only for LLMs).

    With fallbacks, every listed provider is built and wrapped in a fallback adapter
    (`parley.providers.fallback`): on an error or timeout the next one takes over the turn.
    """
    options = options_of(spec)
    if options.fallbacks and kind != "vad":
        from parley.providers.fallback import wrap

        chain = [options.alone(), *options.fallbacks]
        return wrap(kind, [_build_one(kind, one, settings, script) for one in chain], options.options)
    return _build_one(kind, options, settings, script)


def _build_one(kind: str, options: ProviderOptions, settings: Settings | None,
               script: Script | None) -> Provider:
    try:
        create = registry.factory(kind, options.provider)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    extra: dict[str, Any] = {"script": script} if kind == "llm" else {}
    return cast(Provider, create(options, settings=_settings(settings), **extra))


def build_stt(spec: OptionsLike, settings: Settings | None = None) -> STT:
    """The speech-to-text provider for `spec`."""
    return cast(STT, build("stt", spec, settings))


def build_llm(spec: OptionsLike, settings: Settings | None = None, *, agent: Script | None = None) -> LLM:
    """The chat model for `spec`; `agent` (its spec) gives the scripted LLM its intents and replies."""
    return cast(LLM, build("llm", spec, settings, script=agent))


def build_tts(spec: OptionsLike, settings: Settings | None = None) -> TTS:
    """The text-to-speech provider for `spec`."""
    return cast(TTS, build("tts", spec, settings))


def build_vad(spec: OptionsLike, settings: Settings | None = None, *, sample_rate: int | None = None) -> VAD:
    """A new voice-activity detector for `spec` (one per call: it keeps state).

    With `sample_rate` (the call's), the VAD runs at that rate when its options name none and it can
    (so the engine need not resample); otherwise at its configured rate."""
    options = options_of(spec)
    if sample_rate and "sample_rate" not in options.options:
        try:
            return cast(VAD, build("vad", options.with_options(sample_rate=sample_rate), settings))
        except ValueError:
            pass
    return cast(VAD, build("vad", options, settings))


__all__ = ["ProviderError", "build", "build_llm", "build_stt", "build_tts", "build_vad"]
