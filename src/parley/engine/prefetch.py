"""An LLM answer started on the caller's words before the end of their turn is decided.

The detector waits for the audio model and a silence after the words are in; a cloud LLM's first token
takes a few hundred milliseconds more. `AnswerPrefetch` overlaps the two: as soon as the STT snapshot
gives the words, the LLM is asked with exactly the messages the reply will send (the history plus those
words as the caller's message) and its chunks are kept. When the reply asks the LLM, `take(messages)`
hands over the kept stream only if the messages are *equal* — the same history and the same words — so
an answer is never spoken to words the caller did not say; anything else cancels the prefetch and the
reply asks the LLM itself. Nothing is heard before the turn ends: this only fills a buffer.

A prefetch that is not taken costs one LLM request (cancelled as soon as it is known to be useless).

With `first_piece`, the answer's first speech piece (what `ReplyStream` will hand the TTS first: its first
clause or sentence) is handed to that callback as soon as it is complete, so its audio can be synthesized
while the detector still waits too (`AgentVoice.prepare`); the callback returns what discards that audio,
called if the prefetch is cancelled.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from parley.engine.streams import KeptStream, Spawn, close_stream
from parley.providers.base import LLM, LLMChunk, Message, ToolDefinition
from parley.providers.text import SentenceBuffer

#: Told an answer's first speech piece; returns what discards anything made of it.
FirstPiece = Callable[[str], Callable[[], None]]


class AnswerPrefetch:
    """The chunks of `llm.chat(messages, tools)`, read in the background from the moment it is made."""

    def __init__(self, llm: LLM, messages: list[Message], tools: list[ToolDefinition] | None, spawn: Spawn,
                 first_piece: FirstPiece | None = None) -> None:
        self.messages = [copy.copy(m) for m in messages]  # the history's messages change in place later
        self._first_piece = first_piece
        self._discard: Callable[[], None] | None = None
        self._kept = KeptStream(self._watch(llm.chat(list(self.messages), tools)), spawn, "llm-prefetch")

    async def _watch(self, source: AsyncIterator[LLMChunk]) -> AsyncGenerator[LLMChunk, None]:
        """`source`'s chunks; on the way, the first speech piece goes to `first_piece` once complete."""
        splitter = SentenceBuffer(first_clause=True) if self._first_piece is not None else None
        try:
            async for chunk in source:
                if splitter is not None and chunk.text:
                    ready = splitter.push(chunk.text)
                    if ready:
                        self._announce(ready[0])
                        splitter = None
                yield chunk
            if splitter is not None and (rest := splitter.flush()):
                self._announce(rest)
        finally:
            await close_stream(source)

    def _announce(self, piece: str) -> None:
        assert self._first_piece is not None
        self._discard = self._first_piece(piece)

    def matches(self, messages: list[Message]) -> bool:
        """True when `messages` are the ones this answer was asked with."""
        return messages == self.messages

    def cancel(self) -> None:
        """Stop asking (the words changed, the caller went on, or the reply went another way); anything
        made of the first piece is discarded."""
        self._kept.cancel()
        if self._discard is not None:
            self._discard()
            self._discard = None

    def stream(self) -> AsyncGenerator[LLMChunk, None]:
        """The answer's chunks: those kept so far at once, then the rest as they come; the LLM's error,
        if it failed, is raised where it happened. Closing the stream early cancels the request."""
        return self._kept.stream()


class Prefetcher:
    """At most one `AnswerPrefetch` per conversation: the one for the caller's latest words."""

    def __init__(self, llm: LLM, spawn: Spawn, first_piece: FirstPiece | None = None) -> None:
        self.llm = llm
        self.spawn = spawn
        self.first_piece = first_piece
        self.current: AnswerPrefetch | None = None
        self.made = 0  # prefetches started
        self.used = 0  # prefetches a reply took

    def start(self, messages: list[Message], tools: list[ToolDefinition] | None) -> None:
        """Ask the LLM with `messages` now (unless the current prefetch already has them)."""
        if self.current is not None:
            if self.current.matches(messages):
                return
            self.current.cancel()
        self.current = AnswerPrefetch(self.llm, messages, tools, self.spawn, self.first_piece)
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
