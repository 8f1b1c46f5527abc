"""Provider protocols: what the conversation engine needs from STT, LLM, TTS and VAD engines.

Audio is always mono int16 PCM in a numpy array, tagged with its sample rate where it crosses a
boundary. Providers that burn CPU (Whisper, piper, Silero) must run that work off the event loop
(`asyncio.to_thread` or a process pool) so one call never stalls the others.

A provider that cannot do its job raises `ProviderError` (or a subclass); the engine then tries the
component's fallbacks, and says the agent's apology line when none is left.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

Pcm = np.ndarray  # dtype int16, shape (n,)


class ProviderError(Exception):
    """A provider failed (network, timeout, bad credentials, engine crash). Message says why in words."""

    def __init__(self, provider: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.retryable = retryable


# --- STT -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Transcript:
    """A recognition result. `start`/`end` are seconds from the start of the stream."""

    text: str
    is_final: bool
    start: float = 0.0
    end: float = 0.0
    confidence: float | None = None
    language: str | None = None


@runtime_checkable
class STTStream(Protocol):
    """One utterance-by-utterance recognition stream for one call."""

    async def push(self, pcm: Pcm) -> None:
        """Feed caller audio (at the STT's `sample_rate`), in any chunk size, in order."""

    async def end_utterance(self) -> Transcript:
        """The caller stopped talking: return the final text for the audio pushed since the last call.

        Returns an empty-text final when nothing was recognised (cough, noise)."""

    def interim(self) -> AsyncIterator[Transcript]:
        """Interim (non-final) results as they arrive; may yield nothing for batch engines."""

    async def close(self) -> None:
        """Release engine resources."""


@runtime_checkable
class STT(Protocol):
    """Speech to text."""

    name: str
    sample_rate: int  # the rate `push` expects (16000 for the offline engines)

    def stream(self, *, language: str | None = None) -> STTStream:
        """A new recognition stream (one per call)."""

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


@runtime_checkable
class LLM(Protocol):
    """A chat model that streams. Cancelling the iteration (barge-in) must close the stream at once."""

    name: str

    def chat(self, messages: list[Message], tools: list[ToolDefinition] | None = None) -> AsyncIterator[LLMChunk]:
        """Stream the reply to `messages`."""


# --- TTS -------------------------------------------------------------------------------------

@runtime_checkable
class TTS(Protocol):
    """Text to speech, streamed: the first audio should come before the whole text is synthesised."""

    name: str
    sample_rate: int  # rate of the PCM it yields

    def synthesize(self, text: str) -> AsyncIterator[Pcm]:
        """Yield int16 PCM chunks at `sample_rate` for `text` (one sentence or more)."""


# --- VAD -------------------------------------------------------------------------------------

@runtime_checkable
class VAD(Protocol):
    """Voice activity: speech probability per window. One instance per call (it keeps state)."""

    name: str
    sample_rate: int  # 8000 or 16000
    window_samples: int  # samples per decision (e.g. 512 at 16 kHz = 32 ms)

    def probability(self, window: Pcm) -> float:
        """Speech probability 0..1 for exactly `window_samples` samples."""

    def reset(self) -> None:
        """Forget state (new call or after a long silence)."""
