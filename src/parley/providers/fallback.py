"""Fallback adapters: a component with several providers (e.g. Azure OpenAI -> local server -> scripted).

On an error or a timeout *before the provider produced anything*, the next provider takes over the
same turn. After output was produced (words spoken, audio played) nothing can be taken back, so the
error is raised for the engine's apology line. Every failover is recorded as a `FailoverEvent`, given
to listeners (the conversation puts it on the call's timeline) and logged. A provider that failed is
tried last for `cooldown_s`, so one outage does not cost a timeout on every turn. When every provider
fails, `ProviderError` says what each one answered.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from parley.logging import get_logger
from parley.media.resample import Resampler
from parley.providers.base import (
    LLM,
    STT,
    TTS,
    Capabilities,
    LLMChunk,
    Message,
    Pcm,
    Provider,
    ProviderError,
    STTStream,
    ToolDefinition,
    Transcript,
)
from parley.providers.streaming import reason

log = get_logger(__name__)
P = TypeVar("P", bound=Provider)
T = TypeVar("T")


@dataclass(frozen=True)
class FailoverEvent:
    """Provider `failed` gave up for `reason`; `next` takes over (None: nobody left, or output already sent)."""

    kind: str
    failed: str
    reason: str
    next: str | None
    at: float

    def describe(self) -> str:
        """One line for the timeline."""
        then = f"; {self.next} takes over" if self.next else ""
        return f"{self.kind} provider {self.failed} failed ({self.reason}){then}"


Listener = Callable[[FailoverEvent], Any]

#: The listener of the conversation running in the current task (providers are shared between calls, so a
#: per-call listener travels with the asyncio context instead of being registered on the provider).
context_listener: ContextVar[Listener | None] = ContextVar("parley_failover_listener", default=None)


def listen_in_context(listener: Listener | None) -> Token[Listener | None]:
    """Send failovers that happen in this task (and tasks it starts afterwards) to `listener`.

    A conversation calls this at the start of its run with a function that puts the event on its
    timeline; `context_listener.reset(token)` undoes it.
    """
    return context_listener.set(listener)


def as_provider_error(provider: Provider, exc: BaseException) -> ProviderError:
    """Any exception of `provider` as a `ProviderError` naming its component (own providers raise those;
    anything else is a bug there)."""
    if isinstance(exc, ProviderError):
        if exc.component is None:
            exc.component = provider.component
        return exc
    if isinstance(exc, TimeoutError):
        return provider.error("timed out")
    return provider.error(f"{type(exc).__name__}: {exc}")


class _Chain(Provider, Generic[P]):
    """The ordered providers of one component, their recent failures, and the failover listeners.

    The chain is itself a provider of that component (`FallbackLLM` is an `LLM`, …), named
    `first+second+…`; errors it raises name it and its component."""

    def __init__(self, providers: Sequence[P], *, first_timeout_s: float | None,
                 cooldown_s: float, listeners: Sequence[Listener] = ()) -> None:
        if not providers:
            raise ValueError(f"a {self.component} fallback chain needs at least one provider")
        self.kind = self.component
        self.providers = list(providers)
        self.first_timeout_s = first_timeout_s
        self.cooldown_s = cooldown_s
        self.listeners: list[Listener] = list(listeners)
        self.events: deque[FailoverEvent] = deque(maxlen=200)
        self._failed_at: dict[int, float] = {}
        self.name = "+".join(p.name for p in self.providers)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(event)` on every failover (e.g. to put it on the call timeline)."""
        self.listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def order(self) -> list[P]:
        """Healthy providers in configured order, then those that failed within `cooldown_s`."""
        now = time.monotonic()
        recent = {i for i, t in self._failed_at.items() if now - t < self.cooldown_s}
        return ([p for i, p in enumerate(self.providers) if i not in recent]
                + [p for i, p in enumerate(self.providers) if i in recent])

    def succeeded(self, provider: P) -> None:
        self._failed_at.pop(self._index(provider), None)

    def failed(self, provider: P, error: ProviderError, next_provider: P | None) -> FailoverEvent:
        self._failed_at[self._index(provider)] = time.monotonic()
        event = FailoverEvent(self.kind, provider.name, reason(error),
                              next_provider.name if next_provider is not None else None, time.time())
        self.events.append(event)
        log.warning("provider failover", kind=self.kind, failed=event.failed, reason=event.reason, next=event.next)
        in_context = context_listener.get()
        for listener in [*self.listeners, *([in_context] if in_context is not None else [])]:
            try:
                listener(event)
            except Exception as exc:  # noqa: BLE001 - a broken listener must not break the call
                log.error("failover listener raised", error=str(exc))
        return event

    def _index(self, provider: P) -> int:
        return next(i for i, p in enumerate(self.providers) if p is provider)

    def all_failed(self, errors: list[ProviderError]) -> ProviderError:
        detail = "; ".join(str(e) for e in errors)
        retryable = any(e.retryable for e in errors)
        return self.error(f"every {self.kind} provider failed: {detail}", retryable=retryable)

    async def first(self, items: AsyncIterator[T], provider: P) -> T:
        """The provider's first item, within `first_timeout_s`."""
        if self.first_timeout_s is None:
            return await anext(items)
        try:
            async with asyncio.timeout(self.first_timeout_s):
                return await anext(items)
        except TimeoutError:
            raise provider.error(f"nothing within {self.first_timeout_s:g} s") from None

    async def run(self, open_items: Callable[[P], AsyncGenerator[T, None]]) -> AsyncGenerator[T, None]:
        """Items from the first provider that produces any; switch on failure before output only."""
        order = self.order()
        errors: list[ProviderError] = []
        for position, provider in enumerate(order):
            following = order[position + 1] if position + 1 < len(order) else None
            produced = False
            try:
                async with aclosing(open_items(provider)) as items:
                    try:
                        item = await self.first(items, provider)
                    except StopAsyncIteration:
                        self.succeeded(provider)
                        return
                    produced = True
                    yield item
                    async for item in items:
                        yield item
                self.succeeded(provider)
                return
            except Exception as exc:  # noqa: BLE001 - every provider failure is turned into words
                error = as_provider_error(provider, exc)
                if produced:
                    self.failed(provider, error, None)
                    raise self.error(str(error), retryable=error.retryable) from exc
                self.failed(provider, error, following)
                errors.append(error)
        raise self.all_failed(errors)


# --- LLM --------------------------------------------------------------------------------------

class FallbackLLM(_Chain[LLM], LLM):
    """An LLM that tries each configured chat model in turn for every reply."""

    def __init__(self, providers: Sequence[LLM], *, first_timeout_s: float | None = 15.0,
                 cooldown_s: float = 30.0, listeners: Sequence[Listener] = ()) -> None:
        super().__init__(providers, first_timeout_s=first_timeout_s, cooldown_s=cooldown_s, listeners=listeners)

    async def chat(self, messages: list[Message],
                   tools: list[ToolDefinition] | None = None) -> AsyncGenerator[LLMChunk, None]:
        """Stream the reply from the first provider that answers."""
        async with aclosing(self.run(lambda p: p.chat(messages, tools))) as chunks:
            async for chunk in chunks:
                yield chunk


# --- TTS --------------------------------------------------------------------------------------

class FallbackTTS(_Chain[TTS], TTS):
    """A TTS that tries each configured voice in turn; audio comes out at the first one's rate."""

    def __init__(self, providers: Sequence[TTS], *, first_timeout_s: float | None = 10.0,
                 cooldown_s: float = 30.0, listeners: Sequence[Listener] = ()) -> None:
        super().__init__(providers, first_timeout_s=first_timeout_s, cooldown_s=cooldown_s, listeners=listeners)
        self.sample_rate = providers[0].sample_rate
        self.capabilities = Capabilities(streaming=all(p.capabilities.streaming for p in providers),
                                         sample_rates=providers[0].capabilities.sample_rates)

    def for_rate(self, sample_rate: int) -> FallbackTTS:
        """The same chain at `sample_rate` when the first voice can produce it natively; every other voice
        then produces the chain's rate where it can (the rest are resampled in the chain)."""
        first = self.providers[0].for_rate(sample_rate)
        members = [first, *(p.for_rate(first.sample_rate) for p in self.providers[1:])]
        if all(m is p for m, p in zip(members, self.providers)):
            return self
        return FallbackTTS(members, first_timeout_s=self.first_timeout_s, cooldown_s=self.cooldown_s,
                           listeners=self.listeners)

    async def _converted(self, provider: TTS, text: str) -> AsyncGenerator[Pcm, None]:
        resampler = Resampler(provider.sample_rate, self.sample_rate)
        async with aclosing(provider.synthesize(text)) as chunks:
            async for chunk in chunks:
                out = resampler.process(chunk)
                if out.size:
                    yield out
        tail = resampler.flush()
        if tail.size:
            yield tail

    async def synthesize(self, text: str) -> AsyncGenerator[Pcm, None]:
        """Yield PCM at `sample_rate` from the first provider that speaks."""
        async with aclosing(self.run(lambda p: self._converted(p, text))) as chunks:
            async for chunk in chunks:
                yield chunk


# --- STT --------------------------------------------------------------------------------------

class FallbackSTT(_Chain[STT], STT):
    """An STT whose streams move to the next provider when the current one fails.

    The current utterance's audio is kept, so the provider taking over hears it again and the
    caller's words are not lost. `sample_rate` is the first provider's.
    """

    def __init__(self, providers: Sequence[STT], *, first_timeout_s: float | None = 15.0,
                 cooldown_s: float = 30.0, listeners: Sequence[Listener] = ()) -> None:
        super().__init__(providers, first_timeout_s=first_timeout_s, cooldown_s=cooldown_s, listeners=listeners)
        self.sample_rate = providers[0].sample_rate
        self.punctuates = all(p.punctuates for p in providers)
        self.capabilities = Capabilities(streaming=any(p.capabilities.streaming for p in providers),
                                         interim_results=any(p.capabilities.interim_results for p in providers))

    def stream(self, *, language: str | None = None) -> FallbackSTTStream:
        """A recognition stream on the first healthy provider."""
        return FallbackSTTStream(self, language)

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, language: str | None = None) -> Transcript:
        """Recognise a whole utterance with the first provider that manages it."""
        order = self.order()
        errors: list[ProviderError] = []
        for position, provider in enumerate(order):
            try:
                result = await self._timed(provider.transcribe(pcm, sample_rate, language=language), provider)
                self.succeeded(provider)
                return result
            except Exception as exc:  # noqa: BLE001
                error = as_provider_error(provider, exc)
                errors.append(error)
                self.failed(provider, error, order[position + 1] if position + 1 < len(order) else None)
        raise self.all_failed(errors)

    async def _timed(self, awaitable: Awaitable[T], provider: STT) -> T:
        if self.first_timeout_s is None:
            return await awaitable
        try:
            async with asyncio.timeout(self.first_timeout_s):
                return await awaitable
        except TimeoutError:
            raise provider.error(f"no result within {self.first_timeout_s:g} s") from None


class FallbackSTTStream(STTStream):
    """Feeds the current provider's stream; on failure replays the utterance into the next one."""

    def __init__(self, chain: FallbackSTT, language: str | None) -> None:
        self._chain = chain
        self._language = language
        self._order = chain.order()
        self._position = 0
        self._utterance: list[np.ndarray] = []
        self._closed = False
        self._errors: list[ProviderError] = []
        self._open(self._order[0])

    def _open(self, provider: STT) -> None:
        self._provider = provider
        self._inner = provider.stream(language=self._language)
        self._resampler = Resampler(self._chain.sample_rate, provider.sample_rate)

    @property
    def provider(self) -> STT:
        """The provider currently recognising."""
        return self._provider

    async def _fail_over(self, exc: BaseException) -> None:
        """Move to the next provider (raises when none is left)."""
        error = as_provider_error(self._provider, exc)
        self._errors.append(error)
        following = self._order[self._position + 1] if self._position + 1 < len(self._order) else None
        self._chain.failed(self._provider, error, following)
        old = self._inner
        try:
            await old.close()
        except Exception:  # noqa: BLE001 - the failed stream may not close cleanly
            pass
        if following is None:
            errors, self._errors = self._errors, []
            self._order, self._position = self._chain.order(), 0
            self._open(self._order[0])  # the next utterance starts over with the healthiest provider
            self._utterance = []
            raise self._chain.all_failed(errors)
        self._position += 1
        self._open(following)
        replay = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.int16)
        if replay.size:
            await self._push_inner(replay)

    async def _push_inner(self, pcm: Pcm) -> None:
        try:
            converted = self._resampler.process(pcm)
            if converted.size:
                await self._inner.push(converted)
        except Exception as exc:  # noqa: BLE001
            await self._fail_over(exc)  # replays the whole utterance, including `pcm`

    async def push(self, pcm: Pcm) -> None:
        """Feed caller audio at the chain's `sample_rate`."""
        chunk = np.asarray(pcm, dtype=np.int16).copy()
        self._utterance.append(chunk)
        await self._push_inner(chunk)

    async def end_utterance(self) -> Transcript:
        """Final text from the current provider, or from the next ones over the kept audio."""
        try:
            while True:
                try:
                    result = await self._chain._timed(self._inner.end_utterance(), self._provider)
                    self._chain.succeeded(self._provider)
                    self._errors = []
                    return result
                except Exception as exc:  # noqa: BLE001
                    await self._fail_over(exc)  # replays the utterance into the next provider
        finally:
            self._utterance = []

    async def snapshot(self) -> Transcript:
        """The current provider's words so far; an empty interim (no opinion) when it fails or is late —
        a provider that is really down fails over at `end_utterance()`, which replays the audio."""
        try:
            return await self._chain._timed(self._inner.snapshot(), self._provider)
        except Exception as exc:  # noqa: BLE001 - a snapshot is advice; the final transcript decides
            log.info("stt snapshot failed", provider=self._provider.name, error=str(as_provider_error(self._provider, exc)))
            return Transcript("", False)

    async def interim(self) -> AsyncIterator[Transcript]:
        """Interim results of whichever provider is current."""
        while not self._closed:
            inner = self._inner
            async for item in inner.interim():
                yield item
                if inner is not self._inner:
                    break
            if inner is self._inner:
                return

    async def close(self) -> None:
        self._closed = True
        await self._inner.close()


FALLBACK_KINDS = {"llm": FallbackLLM, "stt": FallbackSTT, "tts": FallbackTTS}


def wrap(kind: str, providers: Sequence[Any], options: Mapping[str, Any] | None = None) -> Provider:
    """A fallback adapter of `kind` over `providers` (the primary first).

    Options read from the primary component: `fallback_timeout_s` (first output per provider) and
    `fallback_cooldown_s` (how long a failed provider is tried last).
    """
    options = options or {}
    adapter = FALLBACK_KINDS[kind]
    timeout = options.get("fallback_timeout_s")
    kwargs: dict[str, Any] = {"cooldown_s": float(options.get("fallback_cooldown_s", 30.0))}
    if timeout is not None:
        kwargs["first_timeout_s"] = float(timeout)
    return adapter(providers, **kwargs)
