"""Which provider names exist for each component kind, and where their factories live.

Names are known without importing the engines (agent validation stays fast and works even when
an optional SDK is not installed); the factory is imported only when a provider is built.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Literal

Kind = Literal["stt", "llm", "tts", "vad"]

#: kind -> provider name -> "module:factory" (factory takes the component spec, returns a provider).
PROVIDERS: dict[str, dict[str, str]] = {
    "stt": {
        "whisper": "parley.providers.stt.whisper:create",
        "pocketsphinx": "parley.providers.stt.pocketsphinx:create",
        "azure": "parley.providers.stt.azure:create",
        "openai": "parley.providers.stt.openai:create",
    },
    "llm": {
        "scripted": "parley.providers.llm.scripted:create",
        "echo": "parley.providers.llm.echo:create",
        "openai": "parley.providers.llm.openai:create",
        "azure_openai": "parley.providers.llm.openai:create_azure",
    },
    "tts": {
        "piper": "parley.providers.tts.piper:create",
        "espeak": "parley.providers.tts.espeak:create",
        "azure": "parley.providers.tts.azure:create",
        "openai": "parley.providers.tts.openai:create",
    },
    "vad": {
        "silero": "parley.providers.vad.silero:create",
        "webrtc": "parley.providers.vad.webrtc:create",
    },
}

_runtime: dict[tuple[str, str], Callable[..., Any]] = {}


def known(kind: str) -> list[str]:
    """Sorted provider names for `kind` (built-in plus registered at run time)."""
    names = set(PROVIDERS.get(kind, {})) | {n for k, n in _runtime if k == kind}
    return sorted(names)


def register(kind: Kind, name: str, factory: Callable[..., Any]) -> None:
    """Add a provider at run time (plugins, benchmarks' instant fakes)."""
    _runtime[(kind, name)] = factory


def factory(kind: str, name: str) -> Callable[..., Any]:
    """The factory for `kind`/`name`; raises `KeyError` naming the known ones."""
    if (kind, name) in _runtime:
        return _runtime[(kind, name)]
    try:
        target = PROVIDERS[kind][name]
    except KeyError:
        raise KeyError(f"unknown {kind} provider {name!r}; known: {', '.join(known(kind))}") from None
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)
