"""An LLM answer started on the caller's words before the end of their turn is decided.

The detector waits for the audio model and a silence after the words are in; a cloud LLM's first token
takes a few hundred milliseconds more. `AnswerPrefetch` overlaps the two: as soon as the STT snapshot
gives the words, the LLM is asked with exactly the messages the reply will send (the history plus those
words as the caller's message) and its chunks are kept. When the reply asks the LLM, `take(messages)`
hands over the kept stream only if the messages are *equal* — the same history and the same words — so
an answer is never spoken to words the caller did not say; anything else cancels the prefetch and the
reply asks the LLM itself. Nothing is heard before the turn ends: this only fills a buffer.

A prefetch that is not taken costs one LLM request (cancelled as soon as it is known to be useless).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

from parley.engine.streams import close_stream
from parley.providers.base import LLM, LLMChunk, Message, ToolDefinition


class AnswerPrefetch:
    """The chunks of `llm.chat(messages, tools)`, read in the background from the moment it is made."""

    def __init__(self, llm: LLM, messages: list[Message], tools: list[ToolDefinition] | None,
                 spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]]) -> None:
        self.messages = [copy.copy(m) for m in messages]  # the history's messages change in place later
        self.chunks: list[LLMChunk] = []
        self.error: BaseException | None = None
        self.finished = False
        self._more = asyncio.Event()
        self._task = spawn(self._read(llm, tools), "llm-prefetch")

    async def _read(self, llm: LLM, tools: list[ToolDefinition] | None) -> None:
        stream = llm.chat(list(self.messages), tools)
        try:
            async for chunk in stream:
                self.chunks.append(chunk)
                self._more.set()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to whoever takes the stream
            self.error = exc
        finally:
            await close_stream(stream)
            self.finished = True
            self._more.set()

    def matches(self, messages: list[Message]) -> bool:
        """True when `messages` are the ones this answer was asked with."""
        return messages == self.messages

    def cancel(self) -> None:
        """Stop asking (the words changed, the caller went on, or the reply went another way)."""
        self._task.cancel()

    async def stream(self) -> AsyncGenerator[LLMChunk, None]:
        """The answer's chunks: those kept so far at once, then the rest as they come; the LLM's error,
        if it failed, is raised where it happened. Closing the stream early cancels the request."""
        sent = 0
        try:
            while True:
                while sent < len(self.chunks):
                    sent += 1
                    yield self.chunks[sent - 1]
                if self.finished:
                    if self.error is not None:
                        raise self.error
                    return
                self._more.clear()
                await self._more.wait()
        finally:
            if not self.finished:
                self.cancel()


class Prefetcher:
    """At most one `AnswerPrefetch` per conversation: the one for the caller's latest words."""

    def __init__(self, llm: LLM, spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]]) -> None:
        self.llm = llm
        self.spawn = spawn
        self.current: AnswerPrefetch | None = None
        self.made = 0  # prefetches started
        self.used = 0  # prefetches a reply took

    def start(self, messages: list[Message], tools: list[ToolDefinition] | None) -> None:
        """Ask the LLM with `messages` now (unless the current prefetch already has them)."""
        if self.current is not None:
            if self.current.matches(messages):
                return
            self.current.cancel()
        self.current = AnswerPrefetch(self.llm, messages, tools, self.spawn)
        self.made += 1

    def drop(self) -> None:
        """Forget the current prefetch (cancelled)."""
        if self.current is not None:
            self.current.cancel()
            self.current = None

    def take(self, messages: list[Message]) -> AsyncGenerator[LLMChunk, None] | None:
        """The prefetched answer to exactly `messages` (then forgotten here), or None — and any other
        prefetch is cancelled."""
        current, self.current = self.current, None
        if current is None:
            return None
        if not current.matches(messages):
            current.cancel()
            return None
        self.used += 1
        return current.stream()
