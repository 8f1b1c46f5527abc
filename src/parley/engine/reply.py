"""`ReplyStream`: one streamed LLM answer, cut into sentences for the TTS as they complete.

A first sentence that opens with a short phrase ("Sure, …") or is long comes as two pieces, that phrase or
its first clause and the rest (`SentenceBuffer(first_clause=True)`): the first piece is synthesized on its
own, so the first audio comes sooner.

The conversation reads the answer inline up to its first sentence (no task hop before the first audio),
then lets a task `pump()` the rest while the TTS speaks. Sentences, the end (None) or the error arrive on
`queue`; tool calls are collected in `calls`. Whoever stops reading calls `close()`, which closes the
LLM's stream at once (barge-in).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from parley.engine.streams import close_stream
from parley.providers.base import LLMChunk, ToolCall
from parley.providers.text import SentenceBuffer

Item = str | None | BaseException


class ReplyStream:
    """Reads an LLM chunk stream into sentences and tool calls."""

    def __init__(
        self,
        stream: AsyncIterator[LLMChunk],
        *,
        on_chunk: Callable[[LLMChunk], None] | None = None,
        on_sentence: Callable[[str], None] | None = None,
    ) -> None:
        self._stream = stream
        self._splitter = SentenceBuffer(first_clause=True)
        self._on_chunk = on_chunk
        self._on_sentence = on_sentence
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.calls: list[ToolCall] = []
        self.finished = False  # the whole answer was read (or failed)
        self._closed = False

    def _sentence(self, text: str) -> None:
        if self._on_sentence is not None:
            self._on_sentence(text)
        self.queue.put_nowait(text)

    async def pump(self, *, until_sentence: bool = False) -> None:
        """Read chunks; with `until_sentence`, return as soon as one sentence is queued."""
        try:
            while True:
                try:
                    chunk = await anext(self._stream)
                except StopAsyncIteration:
                    break
                if self._on_chunk is not None:
                    self._on_chunk(chunk)
                if chunk.tool_call is not None:
                    self.calls.append(chunk.tool_call)
                if chunk.text:
                    ready = self._splitter.push(chunk.text)
                    for sentence in ready:
                        self._sentence(sentence)
                    if ready and until_sentence:
                        return
            rest = self._splitter.flush()
            if rest:
                self._sentence(rest)
            self.finished = True
            self.queue.put_nowait(None)
        except Exception as exc:  # noqa: BLE001 - handed to the reader of the queue, which raises it
            self.finished = True
            self.queue.put_nowait(exc)
        if self.finished:
            await self.close()

    async def close(self) -> None:
        """Close the LLM stream (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await close_stream(self._stream)
