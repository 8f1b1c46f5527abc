"""Provider base classes: what the conversation engine needs from STT, LLM, TTS and VAD engines.

Audio is always mono int16 PCM in a numpy array, tagged with its sample rate where it crosses a
boundary. Providers that burn CPU (Whisper, piper, Silero) must run that work off the event loop
(`asyncio.to_thread` or a process pool) so one call never stalls the others.

Every provider subclasses one of the base classes below (`STT`, `LLM`, `TTS`, `VAD`), so the engine
never guesses: each has a `name`, a `capabilities` record, `warm()` (load models now; default: nothing)
and `aclose()` (release shared resources; default: nothing).

A provider that cannot do its job raises `ProviderError` (or a subclass) carrying its `component`
(`self.error(...)` builds one); the engine then tries the component's fallbacks, and says the agent's
apology line when none is left.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
import abc
from typing import Any, ClassVar, Literal

import numpy as np

Pcm = np.ndarray  # dtype int16, shape (n,)


Component = Literal["stt", "llm", "tts", "vad", "turn"]


class ProviderError(Exception):
    """A provider failed (network, timeout, bad credentials, engine crash). Message says why in words.

    `component` says which part of the pipeline failed; it is None only where an error is raised
    outside any provider (then the engine fills in the component it was calling)."""

    def __init__(self, provider: str, message: str, *, retryable: bool = True,
                 component: Component | None = None) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.retryable = retryable
        self.component = component


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, so callers ask instead of probing attributes.

    `streaming`: output starts before the input is complete (STT recognising while audio arrives, TTS
    audio per chunk, LLM tokens). `interim_results`: an STT yields non-final text while the caller
    speaks. `sample_rates`: the rates it can work at (STT, VAD: chosen by its `sample_rate` option) or
    produce natively (TTS, through `TTS.for_rate`); empty = its `sample_rate` only.
    """

    streaming: bool = False
    interim_results: bool = False
    sample_rates: tuple[int, ...] = ()


class Provider(abc.ABC):
    """What every provider has. Subclasses set `component` (class) and `name` (instance or class)."""

    component: ClassVar[Component]
    name: str
    capabilities: Capabilities = Capabilities()

    async def warm(self) -> None:
        """Load models / open connections now, so the first call does not wait. Default: nothing."""

    async def aclose(self) -> None:
        """Release what the provider holds for all calls (sessions, clients). Default: nothing."""

    def error(self, message: str, *, retryable: bool = True) -> ProviderError:
        """A `ProviderError` naming this provider and its component."""
        return ProviderError(self.name, message, retryable=retryable, component=self.component)


# --- STT -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Transcript:
    """A recognition result. `start`/`end` are seconds from the start of the stream.

    `sentence_end_p`: the recogniser's probability for the full stop / question mark that ends `text`
    (None: no such mark, or the recogniser does not say). Low means it is unsure the sentence ended
    there — Whisper tiny.en drops a trailing "and" and writes a hesitant full stop."""

    text: str
    is_final: bool
    start: float = 0.0
    end: float = 0.0
    confidence: float | None = None
    language: str | None = None
    sentence_end_p: float | None = None


class STTStream(abc.ABC):
    """One utterance-by-utterance recognition stream for one call."""

    @abc.abstractmethod
    async def push(self, pcm: Pcm) -> None:
        """Feed caller audio (at the STT's `sample_rate`), in any chunk size, in order."""

    @abc.abstractmethod
    async def end_utterance(self) -> Transcript:
        """The caller stopped talking: return the final text for the audio pushed since the last call.

        Returns an empty-text final when nothing was recognised (cough, noise)."""

    async def interim(self) -> AsyncIterator[Transcript]:
        """Interim (non-final) results as they arrive; batch engines (the default) yield nothing."""
        return
        yield  # pragma: no cover - makes this an async generator

    async def snapshot(self) -> Transcript:
        """The words of the audio pushed since the current utterance began, without ending it (an
        interim, `is_final=False`).

        Batch engines decode now and keep the result: if only silence is pushed afterwards,
        `end_utterance()` returns it without decoding again; if more speech is pushed, the kept result
        is dropped. Streaming engines return their latest interim. May be called several times per
        utterance; cheap when nothing new was pushed (the same result, or the same decode awaited).
        Called from the event loop: CPU work runs in a thread. Default: an empty interim (no opinion)."""
        return Transcript("", False)

    async def close(self) -> None:
        """Release this stream's engine resources. Default: nothing."""


class STT(Provider):
    """Speech to text."""

    component: ClassVar[Component] = "stt"
    sample_rate: int  # the rate `push` expects (16000 for the offline engines)
    #: its transcripts end a sentence with a mark (".", "?", "!"): a missing one means something to the
    #: end-of-turn detector (engines that never punctuate say False)
    punctuates: bool = True

    @abc.abstractmethod
    def stream(self, *, language: str | None = None) -> STTStream:
        """A new recognition stream (one per call)."""

    @abc.abstractmethod
    async def transcribe(self, pcm: Pcm, sample_rate: int, *, language: str | None = None) -> Transcript:
        """Recognise a whole utterance at once (file front, tests)."""


# --- LLM -------------------------------------------------------------------------------------

Role = Literal["system", "user", "assistant", "tool"]


@dataclass
class ToolCall:
    """A complete tool call requested by the LLM; `arguments` already parsed from JSON."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass
class Message:
    """One chat message. Assistant messages may carry tool calls; tool messages answer one by id."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ToolDefinition:
    """A tool offered to the LLM (OpenAI function-calling shape)."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class LLMChunk:
    """A piece of the streamed answer: text, or one fully assembled tool call (never partial)."""

    text: str = ""
    tool_call: ToolCall | None = None


class LLM(Provider):
    """A chat model that streams. Cancelling the iteration (barge-in) must close the stream at once."""

    component: ClassVar[Component] = "llm"
    capabilities: Capabilities = Capabilities(streaming=True)

    @abc.abstractmethod
    def chat(self, messages: list[Message],
             tools: list[ToolDefinition] | None = None) -> AsyncGenerator[LLMChunk, None]:
        """Stream the reply to `messages` (an async generator: `aclose()` stops the work at once)."""


# --- TTS -------------------------------------------------------------------------------------

class TTS(Provider):
    """Text to speech, streamed: the first audio should come before the whole text is synthesised."""

    component: ClassVar[Component] = "tts"
    sample_rate: int  # rate of the PCM it yields

    @abc.abstractmethod
    def synthesize(self, text: str) -> AsyncGenerator[Pcm, None]:
        """Yield int16 PCM chunks at `sample_rate` for `text` (one sentence or more); an async generator,
        so `aclose()` stops synthesis at once."""

    def for_rate(self, sample_rate: int) -> TTS:
        """This voice producing `sample_rate` natively, when `capabilities.sample_rates` has it (saves a
        resample at the transport); otherwise itself, unchanged."""
        return self


# --- VAD -------------------------------------------------------------------------------------

class VAD(Provider):
    """Voice activity: speech probability per window. One instance per call (it keeps state).

    `threshold` is the probability at or above which a window counts as speech (the agent's
    `vad.threshold`, default 0.5)."""

    component: ClassVar[Component] = "vad"
    sample_rate: int  # 8000 or 16000
    window_samples: int  # samples per decision (e.g. 512 at 16 kHz = 32 ms)
    threshold: float = 0.5

    @abc.abstractmethod
    def probability(self, window: Pcm) -> float:
        """Speech probability 0..1 for exactly `window_samples` samples."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget state (new call or after a long silence)."""
