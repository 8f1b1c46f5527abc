"""Build conversations for an agent, and run one over a recording (the file front).

`Engines.build(agent, settings)` creates the agent's STT, LLM and TTS once (they are shared by all its
conversations; the VAD is made per call), and one TTS cache of the agent's fixed texts (`fixed_texts`:
greetings, reminders, closing lines, apology, acknowledgements, tool messages, the scripted LLM's fixed
replies), filled by `warm()` and shared by its conversations through a `CachedTTS` — which also keeps the
phrases a generative LLM's replies often open with the first time each is said (`kept_texts`).
`Engines.conversation(channel, …)` renders the agent's prompt and greeting and returns a ready
`Conversation`. `talk_file(…)` runs a whole conversation over a WAV recording and returns what happened:
transcript, latency marks, the agent's audio.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from parley.agents.prompts import PromptError
from parley.engine.conversation import Conversation
from parley.engine.events import Event, EventSink, TranscriptEntry, TurnMetrics, emitter
from parley.engine.file_channel import FileChannel
from parley.engine.tts_cache import CachedTTS, TTSCache, WarmReport, normalise_text
from parley.engine.turn.detector import TurnModel
from parley.logging import get_logger
from parley.providers.base import LLM, STT, TTS, VAD, ProviderError
from parley.providers.factory import build_llm, build_stt, build_tts, build_vad
from parley.providers.text import common_openers, speech_pieces

if TYPE_CHECKING:
    import httpx

    from parley.agents.loader import Agent
    from parley.settings import Settings

log = get_logger(__name__)


@runtime_checkable
class HasFixedReplies(Protocol):
    """An LLM that knows replies it always says the same way (the scripted one)."""

    def fixed_replies(self) -> list[str]: ...


@dataclass
class Engines:
    """An agent's providers, built once, and the cache of its fixed texts' audio."""

    agent: Agent
    settings: Settings
    stt: STT
    llm: LLM
    tts: TTS
    turn_model: TurnModel | None = None
    cache: TTSCache = field(default_factory=TTSCache)

    @classmethod
    def build(cls, agent: Agent, settings: Settings) -> Engines:
        """Create the providers named in the agent's `components` (raises `ValueError`/`ProviderError`),
        and load the end-of-turn model when the agent's `turn.detector` is `smart_turn` (blocking: it
        is read and hash-checked once per process). A missing model is logged with the fix; the agent
        then ends turns after `turn.end_of_turn_silence_ms`."""
        c = agent.spec.components
        return cls(
            agent=agent,
            settings=settings,
            stt=build_stt(c.stt, settings),
            llm=build_llm(c.llm, settings, agent=agent.spec),
            tts=build_tts(c.tts, settings),
            turn_model=_turn_model(agent) if agent.spec.turn.detector == "smart_turn" else None,
        )

    def vad(self, sample_rate: int | None = None) -> VAD:
        """A fresh VAD for one call, at the channel's `sample_rate` when the VAD supports it (no resampling)."""
        return build_vad(self.agent.spec.components.vad, self.settings, sample_rate=sample_rate)

    @property
    def voice(self) -> CachedTTS:
        """The agent's TTS answering its fixed texts from the cache (what conversations speak with)."""
        return CachedTTS(self.tts, self.cache, keep=self.kept_texts())

    def kept_texts(self) -> frozenset[str]:
        """For an LLM that writes its own replies, the phrases they often open with in the agent's language
        (`common_openers`): cached the first time each is said, not at start (no start-up cost, and no
        burst of requests to a cloud TTS)."""
        if isinstance(self.llm, HasFixedReplies):
            return frozenset()
        return frozenset(normalise_text(t) for t in common_openers(self.agent.spec.language))

    async def warm(self) -> WarmReport:
        """Load models now (each provider's `warm()`, and the VAD's library), so the first call does not
        wait, then synthesize the agent's fixed texts into the cache (failures are logged, not raised)."""
        await asyncio.to_thread(self.vad)
        for provider in (self.stt, self.llm, self.tts):
            await provider.warm()
        report = await self.voice.warm_texts(self.fixed_texts())
        if report.failed:
            log.warning("some fixed texts could not be cached", failed=report.failed[:3])
        return report

    def fixed_texts(self) -> list[str]:
        """Every text the agent says the same way on every call, in the pieces the voice requests them."""
        spec = self.agent.spec
        texts: list[str] = []
        for direction in ("inbound", "outbound"):
            try:  # rendered with the agent's own variables: a call's variables make another text (a miss)
                texts.append(self.agent.greeting(direction))
            except PromptError:  # it needs per-call variables: not fixed
                pass
        texts += [*spec.idle.reminders, spec.idle.hangup_message, spec.apology]
        if spec.acknowledgement.enabled:
            texts += spec.acknowledgement.phrases
        texts += [t.message for t in spec.tools if t.message]
        if isinstance(self.llm, HasFixedReplies):
            texts += self.llm.fixed_replies()
        return [piece for text in texts for piece in speech_pieces(text)]

    def conversation(
        self,
        channel: Any,
        *,
        direction: Literal["inbound", "outbound"] = "inbound",
        variables: dict[str, Any] | None = None,
        first_speaker: Literal["agent", "caller"] | None = None,
        on_event: EventSink | None = None,
        http: httpx.AsyncClient | None = None,
        system_prompt: str | None = None,
        greeting: str | None = None,
    ) -> Conversation:
        """A new conversation on `channel` with the agent's rendered prompt and greeting.

        `system_prompt` / `greeting` replace the agent's for this call (an API request's `llm_prompt` and
        `greeting`); they are used as given, not rendered as templates."""
        return Conversation(
            self.agent.spec,
            channel,
            stt=self.stt,
            llm=self.llm,
            tts=self.voice,
            vad=self.vad(channel.sample_rate),
            system_prompt=system_prompt
            if system_prompt is not None
            else self.agent.system_prompt(direction, variables),
            greeting=greeting if greeting is not None else self.agent.greeting(direction, variables),
            direction=direction,
            first_speaker=first_speaker,
            on_event=on_event,
            http=http,
            turn_model=self.turn_model,
        )


def _turn_model(agent: Agent) -> TurnModel | None:
    from parley.providers.turn.smart_turn import SmartTurnModel

    try:
        return SmartTurnModel.shared()
    except ProviderError as exc:
        log.warning("no end-of-turn model: turns end after a fixed silence", agent=agent.name, error=str(exc))
        return None


@dataclass
class FileTalk:
    """The outcome of `talk_file`."""

    reason: str
    sample_rate: int
    audio: np.ndarray  # the agent's audio, leading/trailing silence cut
    events: list[Event] = field(default_factory=list)

    @property
    def transcript(self) -> list[TranscriptEntry]:
        return [e for e in self.events if isinstance(e, TranscriptEntry)]

    @property
    def metrics(self) -> list[TurnMetrics]:
        return [e for e in self.events if isinstance(e, TurnMetrics)]

    def said(self, role: str) -> str:
        """Everything `role` (`user` or `agent`) said, joined."""
        return " ".join(e.text for e in self.transcript if e.role == role)


async def talk_file(
    engines: Engines,
    pcm: np.ndarray,
    sample_rate: int,
    *,
    speed: float = 1.0,
    first_speaker: Literal["agent", "caller"] = "caller",
    tail_s: float = 30.0,
    on_event: EventSink | None = None,
) -> FileTalk:
    """Run one conversation over a recording of the caller; ends once the agent has answered it all."""
    thinking = [lambda: False]
    channel = FileChannel(pcm, sample_rate, speed=speed, tail_s=tail_s, hold=lambda: thinking[0]())
    events: list[Event] = []
    forward = emitter(on_event)

    def collect(event: Event) -> None:
        events.append(event)
        forward(event)

    conversation = engines.conversation(channel, first_speaker=first_speaker, on_event=collect)
    thinking[0] = lambda: conversation.thinking
    runner = asyncio.ensure_future(conversation.run())
    input_end = channel.input_frames * channel.frame_s
    try:
        while not runner.done():
            await asyncio.wait({runner}, timeout=channel.frame_s / channel.speed)
            if (
                channel.clock() > input_end + 2 * channel.frame_s
                and not conversation.busy
                and not channel.closed
            ):
                await channel.hangup("completed")
        reason = await runner
    finally:
        if not runner.done():
            runner.cancel()
    return FileTalk(reason, sample_rate, channel.agent_audio(), events)


class EngineCache:
    """Each agent's `Engines`, built once per process off the event loop (models load then). Callers
    arriving during a build wait for the same build; a failed build is tried again by the next caller."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._builds: dict[str, asyncio.Future[Engines]] = {}

    async def get(self, agent: Agent) -> Engines:
        if agent.key not in self._builds:
            self._builds[agent.key] = asyncio.ensure_future(asyncio.to_thread(Engines.build, agent, self.settings))
        try:
            return await asyncio.shield(self._builds[agent.key])
        except Exception:
            self._builds.pop(agent.key, None)
            raise
