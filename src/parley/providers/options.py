"""What a provider factory is told: one component's provider choice and its settings.

Providers know nothing of agent files: `parley.agents.spec.ComponentSpec` (the YAML schema) turns itself
into a `ProviderOptions` with `provider_options()`, and the factory accepts either (`options_of`).
Common settings have fields; anything vendor-specific stays in `options`, which each provider's
factory checks against the keys it knows (an unknown key is a `ValueError` naming the provider).

LLM factories are also given a `Script` (the offline `scripted` LLM answers from its intents); the agent
schema's `AgentSpec` is one, structurally.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


@dataclass(frozen=True)
class ProviderOptions:
    """One provider choice: `provider` name, the common settings, vendor `options`, `fallbacks` in order.

    `temperature`/`max_tokens` are read by LLMs, `speed` by voices (None = the provider's default),
    `threshold` by VADs (the speech probability at or above which a window counts as speech)."""

    provider: str
    language: str | None = None
    model: str | None = None
    voice: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    speed: float | None = None
    threshold: float = 0.5
    options: Mapping[str, Any] = field(default_factory=dict)
    fallbacks: tuple[ProviderOptions, ...] = ()

    def alone(self) -> ProviderOptions:
        """This provider without its fallbacks (and without the `fallback_*` options that tune them)."""
        own = {k: v for k, v in self.options.items() if not k.startswith("fallback_")}
        return replace(self, options=own, fallbacks=())

    def with_options(self, **extra: Any) -> ProviderOptions:
        """A copy with `extra` added to (or replacing keys of) `options`."""
        return replace(self, options={**self.options, **extra})


class Intent(Protocol):
    """One intent as the scripted LLM reads it (the agent schema's `IntentSpec` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def examples(self) -> Sequence[str]: ...
    @property
    def keywords(self) -> Sequence[str]: ...
    @property
    def reply(self) -> str: ...
    @property
    def slots(self) -> Mapping[str, Sequence[str]]: ...
    @property
    def end_call(self) -> bool: ...
    @property
    def transfer_to(self) -> str | None: ...


class Script(Protocol):
    """What the scripted LLM answers from (the agent schema's `AgentSpec` is one)."""

    @property
    def intents(self) -> Sequence[Intent]: ...
    @property
    def variables(self) -> Mapping[str, Any]: ...
    @property
    def fallback_reply(self) -> str: ...


class HasProviderOptions(Protocol):
    """Anything that can say which provider to build (the agent schema's component specs)."""

    def provider_options(self) -> ProviderOptions: ...


OptionsLike = ProviderOptions | HasProviderOptions


def options_of(spec: OptionsLike) -> ProviderOptions:
    """`spec` as `ProviderOptions`."""
    return spec if isinstance(spec, ProviderOptions) else spec.provider_options()
