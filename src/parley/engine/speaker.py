"""`Speaker`: the agent's side of one conversation — replies, canned lines, interruptions and tools.

One agent speech at a time (`current`), each in its own task: a reply (the caller's words → LLM rounds
with tools → TTS), a canned line (greeting, reminder, closing), an apology, or a resumed speech after a
false interruption. `barge_in()` stops the current speech at once and keeps what the caller heard in
`interrupted` until the turn policy decides: `commit_interrupted()` (the history keeps only the heard
words) or `resume()` (the speech goes on from the interrupted sentence).

With `acknowledgement.enabled`, a reply whose LLM has not given its first sentence `after_ms` after it
was asked starts with a short phrase (`engine/acknowledgement.py`).

It decides nothing about turns: the `Conversation` (its `SpeakerHost`) says when to speak and stop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import httpx

from parley.agents.spec import AgentSpec
from parley.engine.acknowledgement import Acknowledger
from parley.engine.channel import MediaChannel
from parley.engine.events import Event, Interruption, ProviderFailed, ToolInvoked
from parley.engine.playout import SpeechTrack
from parley.engine.prefetch import Prefetcher
from parley.engine.reply import ReplyStream
from parley.engine.state import AgentSpeech, Interrupted, TurnMarks, WordsChanged
from parley.engine.tools import ToolBox, ToolContext
from parley.engine.voice import AgentVoice, confirm_words
from parley.logging import get_logger
from parley.providers.base import LLM, TTS, Component, LLMChunk, Message, ProviderError, ToolCall

log = get_logger(__name__)

MAX_TOOL_ROUNDS = 4
MAX_PROVIDER_FAILURES = 3


class SpeakerHost(Protocol):
    """What the speaker needs from its conversation."""

    @property
    def now(self) -> float: ...  # media seconds

    @property
    def turn(self) -> int: ...

    @property
    def ending(self) -> str | None: ...

    def end(self, reason: str, message: str | None = None) -> None:
        """End the call: say `message`, then hang up."""

    def ended_by_tool(self, reason: str) -> None:
        """A tool ended the call (it hangs up itself)."""

    async def user_text(self) -> str | None:
        """The caller's words to answer, now in the history (None: nothing to answer). They may be the
        detector's preview of a transcript not final yet: then `confirmation()` says whether they held."""

    def confirmation(self) -> asyncio.Task[bool] | None:
        """For words `user_text` took from a preview: a task that is True once the final transcript says
        the same (False: it did not, and the history now has the final words). None: nothing to confirm."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    def speech_done(self) -> None:
        """The current speech is over."""


def blame(exc: ProviderError, component: Component) -> ProviderError:
    """`exc`, naming `component` as the failed part when the provider did not say."""
    exc.component = exc.component or component
    return exc


class Speaker:
    """Produces and stops the agent's speech for one conversation."""

    def __init__(
        self,
        host: SpeakerHost,
        agent: AgentSpec,
        channel: MediaChannel,
        *,
        llm: LLM,
        tts: TTS,
        history: list[Message],
        emit: Callable[[Event], None],
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.host = host
        self.agent = agent
        self.channel = channel
        self.llm = llm
        self.history = history
        self.tools = ToolBox(agent.tools)
        self.voice = AgentVoice(channel, tts, emit, lambda: host.now, lambda: host.turn)
        self.rate = channel.sample_rate
        self._emit = emit
        self._http = http
        self.current: AgentSpeech | None = None
        self.interrupted: Interrupted | None = None
        self.failures = 0  # consecutive failed turns
        self.acknowledger = Acknowledger(agent.acknowledgement, self.voice)
        self._tool_settled: asyncio.Event | None = None  # unset while a tool runs
        self.prefetch = Prefetcher(llm, host.spawn, first_piece=lambda text: self.voice.prepare(text, host.spawn))

    # --- starting and stopping ------------------------------------------------------------------------

    def start_reply(self, marks: TurnMarks | None) -> None:
        if self.host.ending:
            return
        sp = AgentSpeech("reply", True, self.rate, marks=marks)
        self._launch(sp, lambda: self._reply_body(sp))

    def start_canned(self, sentences: list[str], kind: str, interruptible: bool) -> None:
        sp = AgentSpeech(kind, interruptible, self.rate)
        self._launch(sp, lambda: self._canned_body(sp, sentences))

    def barge_in(self) -> None:
        """Stop the agent now: drop queued audio, cancel its LLM/TTS work, remember what was heard."""
        sp = self.current
        assert sp is not None
        played = self.voice.stop()
        heard, _ = sp.track.heard(played)
        heard_sentences = [s.text for s in sp.track.spans if s.complete and played >= s.end]
        unheard = sp.track.unheard(played)
        self._cancel(sp)
        now = self.host.now
        if sp.started:
            self._emit(Interruption("barge_in", round(now, 3), heard_text=heard))
        self.interrupted = Interrupted(sp, now, heard, heard_sentences, unheard)

    def commit_interrupted(self) -> None:
        """The caller really took the turn: keep only what they heard of the agent's words."""
        intr = self.interrupted
        if intr is None:
            return
        self.interrupted = None
        sp = intr.speech
        if sp.started:
            kept = " ".join([*sp.unsaved, intr.heard]).strip()
            if kept:
                self.history.append(Message("assistant", kept))
            heard = " ".join([*sp.said_before, intr.heard]).strip()
            self.voice.report_cut(sp, heard, intr.t, sp.marks.turn if sp.marks else self.host.turn)
        self.voice.report_marks(sp)

    def resume(self, caller_text: str = "") -> None:
        """A false interruption: continue the interrupted reply (or restart one that had not spoken yet)."""
        intr = self.interrupted
        assert intr is not None
        self.interrupted = None
        sp = intr.speech
        self._emit(
            Interruption("resumed", round(self.host.now, 3), heard_text=intr.heard, caller_text=caller_text)
        )
        if not sp.started:
            self.start_reply(sp.marks)
            return
        new = AgentSpeech(sp.kind if sp.kind != "reply" else "resume", True, self.rate, marks=sp.marks)
        new.said_before = [*sp.said_before, *intr.heard_sentences]
        new.unsaved = [*sp.unsaved, *intr.heard_sentences]
        if sp.reply is None:
            new.calls = list(sp.calls)
        else:  # tool calls of an answer the LLM had finished; an unfinished one is cut off where it was
            new.calls = list(sp.reply.calls) if sp.reply.finished else []
        new.started = True
        new.first_out = sp.first_out
        self._launch(new, lambda: self._resume_body(new, intr.unheard))

    def stop_for_end(self) -> None:
        """The call is ending: whatever is being said stops now, an interruption is forgotten."""
        if self.current is not None:
            self.current.interruptible = True
            self.voice.stop()
            self._cancel(self.current)
        self.interrupted = None

    async def say_closing(self, message: str) -> None:
        """Say the closing line to its last frame (uninterruptible)."""
        sp = AgentSpeech("closing", False, self.rate)
        self.current = sp
        try:
            await self.voice.say(sp, [message])
            await self.voice.played(sp)
            self.history.append(Message("assistant", message))
            self.voice.finish(sp)
            self.current = None
        except ProviderError as exc:
            log.warning("cannot say the closing line", error=str(exc))

    def prefetch_answer(self, words: str) -> None:
        """The caller's words are in but their turn is not decided: ask the LLM now for the answer a
        reply to exactly these words would ask for (see `engine/prefetch.py`). Not while the agent is
        speaking or a caller message is still unanswered (the reply would merge the words into it)."""
        if self.current is not None or self.host.ending or not words.strip():
            return
        if self.history and self.history[-1].role == "user":
            return
        self.prefetch.start([*self.history, Message("user", words)], self.tools.definitions)

    async def tool_settled(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) for a tool that is running to report its outcome: a transfer or
        hang-up closes the line before its tool returns, and the call's record must still show it."""
        settled = self._tool_settled
        if settled is not None and not settled.is_set():
            try:
                await asyncio.wait_for(settled.wait(), timeout_s)
            except asyncio.TimeoutError:
                log.warning("a tool was still running when the call ended; it is cancelled")

    def report_unfinished(self) -> None:
        """The call is over mid-speech: report what the caller heard of it."""
        sp = self.current
        if sp is None or not sp.started or sp.cancelled:
            return
        heard, _ = sp.track.heard(self.channel.played_samples)
        text = " ".join([*sp.said_before, heard]).strip()
        if text:
            self.voice.report_cut(sp, text, self.host.now, self.host.turn)

    def _cancel(self, sp: AgentSpeech) -> None:
        sp.cancelled = True
        sp.children.cancel()
        if sp.task is not None and sp.task is not asyncio.current_task():
            sp.task.cancel()
        if self.current is sp:
            self.current = None

    def _launch(self, sp: AgentSpeech, body: Callable[[], Awaitable[None]]) -> None:
        if self.current is not None:
            self.voice.stop()
            self._cancel(self.current)
        self.current = sp
        sp.task = self.host.spawn(self._speech_main(sp, body), f"speech-{sp.kind}")

    async def _speech_main(self, sp: AgentSpeech, body: Callable[[], Awaitable[None]]) -> None:
        try:
            await body()
        except asyncio.CancelledError:
            if not sp.cancelled:
                raise
            return
        except Exception:
            log.exception("agent speech failed", kind=sp.kind)
        finally:
            sp.children.cancel()
        if self.current is sp:
            self.current = None
            self.host.speech_done()

    # --- what is said ---------------------------------------------------------------------------------

    async def _canned_body(self, sp: AgentSpeech, sentences: list[str]) -> None:
        try:
            await self.voice.say(sp, sentences)
        except ProviderError as exc:
            self.provider_failed(blame(exc, "tts"))
            return
        await self.voice.played(sp)
        self.history.append(Message("assistant", " ".join(sentences)))
        self.voice.finish(sp)

    async def _resume_body(self, sp: AgentSpeech, sentences: list[str]) -> None:
        await self.voice.say(sp, sentences)
        spoken = " ".join(sentences)
        await self.voice.played(sp)
        text = " ".join([*sp.unsaved, spoken]).strip()
        if sp.calls:
            self.history.append(Message("assistant", text, tool_calls=sp.calls))
            if await self._run_tools(sp, sp.calls):
                return
        elif text:
            self.history.append(Message("assistant", text))
        self.voice.finish(sp)

    async def _reply_body(self, sp: AgentSpeech) -> None:
        try:
            text = await self.host.user_text()
        except ProviderError:
            await self._apologise(sp)
            return
        if text is None:
            self.voice.report_marks(sp)
            return
        sp.gate = self.host.confirmation()
        try:
            while True:
                try:
                    said = await self._answer(sp)
                    break
                except WordsChanged:  # started on early words the final transcript did not confirm
                    if sp.marks is not None:
                        sp.marks.restarts += 1
                    sp.calls, sp.gate = [], None  # the history now holds the final words
                    log.info("preemptive reply restarted on the final transcript", turn=self.host.turn)
            if said is None:
                return
        except ProviderError as exc:
            self.provider_failed(exc)
            await self._apologise(sp)
            return
        self.failures = 0
        await self.voice.played(sp)
        if said:
            self.history.append(Message("assistant", said))
        self.voice.finish(sp)

    async def _answer(self, sp: AgentSpeech) -> str | None:
        """The LLM rounds of one reply (with tools); the last round's text, or None when a tool ended
        the call. Tools act only on confirmed words."""
        for _round in range(MAX_TOOL_ROUNDS):
            sp.track = SpeechTrack(self.rate)
            said, calls = await self._llm_round(sp)
            if not calls:
                return said
            await confirm_words(sp)
            self.history.append(Message("assistant", said, tool_calls=calls))
            sp.said_before.append(sp.track.written_text)  # an acknowledgement is heard, not answered
            sp.track = SpeechTrack(self.rate)
            if await self._run_tools(sp, calls):
                return None
            sp.calls = []
        return ""  # tool rounds used up: everything said is in the history already

    async def _llm_round(self, sp: AgentSpeech) -> tuple[str, list[ToolCall]]:
        """Stream one LLM answer into the TTS; returns (text said, tool calls) once all audio is written."""
        marks = sp.marks

        def on_chunk(chunk: LLMChunk) -> None:
            if marks is not None and marks.llm_first is None:
                marks.llm_first = time.perf_counter()
            if chunk.tool_call is not None and self.tools.is_final(chunk.tool_call.name):
                sp.interruptible = False  # the goodbye or hand-over is said to its end

        messages = list(self.history)
        prefetched = self.prefetch.take(messages)
        if prefetched is not None and marks is not None:
            marks.prefetched = True
        reply = ReplyStream(
            prefetched or self.llm.chat(messages, self.tools.definitions),
            on_chunk=on_chunk,
            on_sentence=sp.track.pending.append,
        )
        sp.reply = reply
        producer: asyncio.Task[None] | None = None
        ack = self.acknowledger.later(sp, reply)
        said: list[str] = []
        try:
            await reply.pump(until_sentence=True)  # inline: no task hop before the first sentence
            if not reply.finished:
                producer = sp.children.spawn(reply.pump(), name="llm-reader")
            while True:
                item = await reply.queue.get()
                if ack is not None:  # the answer is here: an acknowledgement not begun is not said
                    await ack.settle()
                    ack = None
                if item is None:
                    break
                if isinstance(item, ProviderError):
                    raise blame(item, "llm")
                if isinstance(item, BaseException):
                    raise ProviderError(self.llm.name, f"{type(item).__name__}: {item}", component="llm")
                sp.track.pending.remove(item)
                await self.voice.say_sentence(sp, item)
                said.append(item)
        finally:
            if ack is not None:
                ack.cancel()
            if producer is not None and not producer.done():
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)
            await reply.close()
        sp.reply = None
        sp.calls = calls = reply.calls
        if not said:
            lines = [m for m in (self.tools.message(c.name) for c in calls) if m]
            if lines:
                await self.voice.say(sp, lines)
                said.extend(lines)
        return " ".join(said), calls

    async def _apologise(self, sp: AgentSpeech) -> None:
        self.failures += 1
        sp.track = SpeechTrack(self.rate)
        if self.failures >= MAX_PROVIDER_FAILURES:
            self.voice.report_marks(sp)
            self.host.end("provider_error", self.agent.apology)
            return
        sp.interruptible = True
        try:
            await self.voice.say(sp, [self.agent.apology])
        except ProviderError as exc:
            log.warning("cannot say the apology", error=str(exc))
            self.voice.report_marks(sp)
            return
        self.history.append(Message("assistant", self.agent.apology))
        await self.voice.played(sp)
        self.voice.finish(sp)

    def provider_failed(self, exc: ProviderError) -> None:
        """Report a failed provider (its component is known by now)."""
        component = exc.component or "unknown"
        log.warning("provider failed", component=component, error=str(exc))
        self._emit(ProviderFailed(component, str(exc), self.failures + 1, round(self.host.now, 3)))

    # --- tools ----------------------------------------------------------------------------------------

    async def _run_tools(self, sp: AgentSpeech, calls: list[ToolCall]) -> bool:
        """Run the tool calls of one LLM round; True when the call is over (hung up or transferred)."""
        ctx = ToolContext(self.channel, played=lambda: self.voice.played(sp), http=self._http)
        for call in calls:
            self._tool_settled = settled = asyncio.Event()
            try:
                outcome = await self.tools.run(call, ctx)
                if outcome.ends_call:
                    self.voice.finish(sp)
                    self.host.ended_by_tool(outcome.ends_call)
                self._emit(
                    ToolInvoked(call.name, call.arguments, outcome.result, outcome.ok, round(self.host.now, 3))
                )
            finally:
                settled.set()
            self.history.append(Message("tool", outcome.result, tool_call_id=call.id, name=call.name))
            if outcome.ends_call:
                await self.channel.hangup(self.host.ending or outcome.ends_call)
                return True
        return False
