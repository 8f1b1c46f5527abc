"""The `echo` LLM: answers "You said: …" with the caller's last words. For tests and wiring checks."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from parley.providers.base import LLM, LLMChunk, Message, ToolDefinition
from parley.providers.options import ProviderOptions, Script

if TYPE_CHECKING:
    from parley.settings import Settings

_WORDS = re.compile(r"\S+\s*")


class EchoLLM(LLM):
    """Repeats the last user message, streamed word by word."""

    name = "echo"

    def __init__(self, *, prefix: str = "You said: ", empty_reply: str = "I didn't hear anything.") -> None:
        self.prefix = prefix
        self.empty_reply = empty_reply

    async def chat(
        self, messages: list[Message], tools: list[ToolDefinition] | None = None
    ) -> AsyncGenerator[LLMChunk, None]:
        if not messages or messages[-1].role != "user":
            return
        heard = " ".join(messages[-1].content.split())
        text = f"{self.prefix}{heard}" if heard else self.empty_reply
        for word in _WORDS.findall(text):
            yield LLMChunk(text=word)
            await asyncio.sleep(0)


def create(spec: ProviderOptions, *, settings: Settings, script: Script | None = None) -> EchoLLM:
    """Factory used by the registry: option `prefix`."""
    opts = spec.options
    unknown = set(opts) - {"prefix"}
    if unknown:
        raise ValueError(f"echo: unknown option(s) {', '.join(sorted(unknown))}")
    return EchoLLM(prefix=str(opts.get("prefix", "You said: ")))
