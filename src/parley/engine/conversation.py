"""`Conversation`: one call's turn-taking, barge-in, speech output, tools and life cycle.

It reads caller audio and DTMF from a `MediaChannel`, finds the caller's turns with the VAD
(`SpeechSegmenter`), sends each utterance to the STT, streams the LLM's reply sentence by sentence into the
TTS and the TTS audio into the channel, and reports everything as events. It knows nothing of the
transport and stores nothing itself.

Time is the channel's media clock: inbound frames are continuous, and every timer (idle reminders, maximum
duration, false-interruption timeout) runs off their timestamps, so a file channel may run faster than
real time. Per frame the work is constant (resample, VAD windows, a few comparisons); provider work runs in
tasks, CPU-heavy parts off the loop inside the providers.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal

import httpx
import numpy as np

from parley.agents.spec import AgentSpec, ToolSpec
from parley.engine import tools as toolbox
from parley.engine.channel import AudioFrame, DtmfEvent, MediaChannel
from parley.engine.events import (
    ConversationEnded,
    ConversationStarted,
    DtmfReceived,
    EventSink,
    Interruption,
    ProviderFailed,
    ToolInvoked,
    TranscriptEntry,
    emitter,
)
from parley.engine.listener import Listener
from parley.engine.playout import SentenceSpan, SpeechTrack
from parley.engine.reply import ReplyStream
from parley.engine.state import AgentSpeech, Interrupted, TurnMarks, Utterance
from parley.engine.turns import SegmentEvent, SpeechSegmenter
from parley.logging import get_logger
from parley.media.resample import Resampler
from parley.providers.base import LLM, STT, TTS, VAD, LLMChunk, Message, ProviderError, ToolCall

log = get_logger(__name__)

MAX_TOOL_ROUNDS = 4
MAX_PROVIDER_FAILURES = 3
_WORD = re.compile(r"[\w']+(?:-[\w']+)*")


class Conversation:
    """One conversation over one `MediaChannel`. Create it, then `await run()`; it returns the end reason.

    Providers: `stt`, `llm` and `tts` may be shared between conversations; `vad` must be this call's own.
    `on_event` receives every event (`parley.engine.events`): a non-blocking callable or an asyncio.Queue.
    """

    def __init__(
        self,
        agent: AgentSpec,
        channel: MediaChannel,
        *,
        stt: STT,
        llm: LLM,
        tts: TTS,
        vad: VAD,
        system_prompt: str = "",
        greeting: str = "",
        direction: str = "inbound",
        first_speaker: Literal["agent", "caller"] | None = None,
        on_event: EventSink | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.agent = agent
        self.channel = channel
        self.stt, self.llm, self.tts, self.vad = stt, llm, tts, vad
        self.greeting = greeting
        self.direction = direction
        self.first_speaker = first_speaker or agent.first_speaker
        self._emit = emitter(on_event)
        self._http = http
        self.history: list[Message] = [Message("system", system_prompt)] if system_prompt else []
        self._tools = {t.name: t for t in agent.tools}
        self._tool_defs = toolbox.definitions(agent.tools) or None

        rate = channel.sample_rate
        self._rate = rate
        threshold = getattr(agent.components.vad, "threshold", 0.5)
        self.segmenter = SpeechSegmenter(
            threshold=threshold,
            min_speech_ms=agent.turn.min_speech_ms,
            end_silence_ms=agent.turn.end_of_turn_silence_ms,
        )
        self._backchannels = {" ".join(_WORD.findall(b.lower())) for b in agent.interruption.backchannels}
        self._barge_in_ms = max(agent.interruption.min_speech_ms, agent.turn.min_speech_ms)

        self._stream: Any = None
        self._listener: Listener | None = None
        self._seg_overlap = False
        self._seg_interrupted = False

        self._now = 0.0
        self._turn = 0
        self._utts: list[Utterance] = []
        self._unresolved: deque[Utterance] = deque()
        self._speech: AgentSpeech | None = None
        self._interrupted: Interrupted | None = None
        self._deferred_reply = False
        self._deferred_marks: TurnMarks | None = None
        self._out_cursor = 0
        self._idle_since = 0.0
        self._reminders = 0
        self._failures = 0
        self._ending: str | None = None
        self._closing: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- public -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while anything is in progress: caller speech, recognition, a reply, queued audio."""
        return bool(
            self.segmenter.in_speech
            or self._speech is not None
            or self._unresolved
            or any(not u.consumed and u.kind == "turn" for u in self._utts)
            or self._interrupted is not None
            or self._closing is not None
            or self.channel.output_queued_ms > 0
        )

    @property
    def thinking(self) -> bool:
        """True while the agent is working on an answer with nothing left to play (STT, LLM or TTS pending)."""
        if self.channel.output_queued_ms > 0 or self.segmenter.in_speech:
            return False
        return bool(
            self._speech is not None
            or self._unresolved
            or any(not u.consumed and u.kind == "turn" for u in self._utts)
            or self._closing is not None
        )

    @property
    def now(self) -> float:
        """Media seconds since the call started (end of the last frame received)."""
        return self._now

    async def run(self) -> str:
        """Converse until the call ends; returns the end reason."""
        self._emit(ConversationStarted(self.agent.name, self.direction, self._rate, self.first_speaker))
        self._stream = self.stt.stream()
        self._listener = Listener(self._rate, self.vad, self.segmenter, self._stream, self.stt.sample_rate)
        if self.first_speaker == "agent" and self.greeting.strip():
            self._start_canned([self.greeting], "greeting", self.agent.allow_interruptions)
        try:
            async for item in self.channel.inbound():
                if isinstance(item, DtmfEvent):
                    self._on_dtmf(item)
                else:
                    await self._on_audio(item)
                if self.channel.closed:
                    break
        finally:
            reason = await self._shutdown()
        return reason

    # --- audio in -------------------------------------------------------------------------------

    async def _on_audio(self, frame: AudioFrame) -> None:
        assert self._listener is not None
        self._now = now = frame.timestamp + frame.pcm.size / self._rate
        end_of_turn = False
        for event in await self._listener.feed(frame.pcm, now):
            if event is SegmentEvent.ONSET:
                self._seg_overlap = self._agent_active()
            elif event is SegmentEvent.CONFIRMED:
                self._seg_overlap = self._seg_overlap or self._agent_active()
                self._on_confirmed()
            elif event is SegmentEvent.DISCARDED:
                self._seg_overlap = False
            else:
                end_of_turn = True
        segment = self.segmenter.segment
        if segment is not None and segment.confirmed and self._agent_active():
            self._seg_overlap = True
            if segment.voiced_ms >= self._barge_in_ms and self._may_interrupt():
                self._barge_in()
                self._seg_interrupted = True
        if end_of_turn:
            self._end_of_turn()
        self._check_timers()

    def _on_confirmed(self) -> None:
        """Real caller speech started: reset idle; a reply still being prepared gives way."""
        self._reminders = 0
        self._seg_interrupted = False
        sp = self._speech
        if sp is not None and not sp.started and sp.kind in ("reply", "apology") and self._may_interrupt():
            self._barge_in()
            self._seg_interrupted = True

    def _end_of_turn(self) -> None:
        seg = self.segmenter.ended
        assert seg is not None
        self._turn += 1
        marks = TurnMarks(self._turn, seg.last_voiced, self._now)
        overlapped = self._seg_overlap or self._interrupted is not None or bool(self._unresolved)
        utt = Utterance(
            seg.start,
            seg.last_voiced,
            marks,
            asyncio.get_running_loop().create_future(),
            overlapped=overlapped,
            interrupted=self._seg_interrupted,
        )
        self._seg_overlap = self._seg_interrupted = False
        if utt.interrupted and self._interrupted is not None:
            self._interrupted.utterance = utt
        self._utts.append(utt)
        self._spawn(self._transcribe(utt))
        if overlapped:
            self._unresolved.append(utt)
        else:
            utt.kind = "turn"
            self._start_reply(marks)

    async def _transcribe(self, utt: Utterance) -> None:
        text = ""
        assert self._listener is not None
        push_failed = self._listener.take_push_failure()
        try:
            result = await self._stream.end_utterance()
            if push_failed is not None:
                raise push_failed  # the audio never fully reached the recogniser
            text = " ".join(result.text.split())
        except ProviderError as exc:
            utt.failed = True
            self._provider_failed("stt", exc)
        except Exception as exc:
            log.exception("stt failed")
            utt.failed = True
            self._provider_failed("stt", ProviderError(getattr(self.stt, "name", "stt"), str(exc)))
        finally:
            utt.marks.stt_final = time.perf_counter()
            if not utt.future.done():
                utt.future.set_result(text)
        if text:
            self._emit(
                TranscriptEntry("user", text, round(utt.start, 3), round(utt.end, 3), turn=utt.marks.turn)
            )
        while self._unresolved and self._unresolved[0].future.done():
            self._resolve(self._unresolved.popleft())

    def _resolve(self, utt: Utterance) -> None:
        """Decide what an utterance said over the agent means: a real turn, a backchannel, or noise."""
        text = utt.future.result()
        trivial = not text or (self.agent.interruption.ignore_backchannels and self._is_backchannel(text))
        if self._ending:
            utt.kind = "dropped"
            return
        if trivial and not utt.failed:
            utt.kind = "dropped"
            if utt in self._utts:
                self._utts.remove(utt)
            intr = self._interrupted
            if intr is not None and intr.utterance is utt:
                if self.agent.interruption.resume_false_interruptions:
                    self._resume(caller_text=text)
                else:
                    self._commit_interrupted()
            elif self._speech is not None:
                self._emit(Interruption("ignored", round(self._now, 3), caller_text=text))
            return
        utt.kind = "turn"
        if self._interrupted is not None:
            self._commit_interrupted()
            self._start_reply(utt.marks)
        elif self._speech is not None:
            if self._may_interrupt():
                self._barge_in()
                self._commit_interrupted()
                self._start_reply(utt.marks)
            else:
                self._deferred_reply = True
                self._deferred_marks = utt.marks
        else:
            self._start_reply(utt.marks)

    def _is_backchannel(self, text: str) -> bool:
        words = _WORD.findall(text.lower())
        if not words:
            return False
        return " ".join(words) in self._backchannels or all(w in self._backchannels for w in words)

    def _on_dtmf(self, event: DtmfEvent) -> None:
        self._emit(DtmfReceived(event.digit, round(event.timestamp, 3)))
        if self._ending:
            return
        self._reminders = 0
        self._turn += 1
        marks = TurnMarks(self._turn, None, self._now)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        future.set_result(f"DTMF: {event.digit}")
        utt = Utterance(event.timestamp, event.timestamp, marks, future, overlapped=False, kind="turn")
        self._utts.append(utt)
        if self._speech is not None and not self._may_interrupt():
            self._deferred_reply = True
            self._deferred_marks = marks
            return
        if self._speech is not None:
            self._barge_in()
        if self._interrupted is not None:
            self._commit_interrupted()
        self._start_reply(marks)

    # --- interruption ---------------------------------------------------------------------------

    def _agent_active(self) -> bool:
        return self._speech is not None or self.channel.output_queued_ms > 0

    def _may_interrupt(self) -> bool:
        sp = self._speech
        return self.agent.allow_interruptions and sp is not None and sp.interruptible and not self._ending

    def _barge_in(self) -> None:
        """Stop the agent now: drop queued audio, cancel its LLM/TTS work, remember what was heard."""
        sp = self._speech
        assert sp is not None
        self.channel.clear_output()
        played = self.channel.played_samples
        self._out_cursor = played
        heard, _ = sp.track.heard(played)
        heard_sentences = [s.text for s in sp.track.spans if s.complete and played >= s.end]
        unheard = sp.track.unheard(played)
        self._cancel(sp)
        if sp.started:
            self._emit(Interruption("barge_in", round(self._now, 3), heard_text=heard))
        self._interrupted = Interrupted(sp, self._now, heard, heard_sentences, unheard)

    def _commit_interrupted(self) -> None:
        """The caller really took the turn: keep only what they heard of the agent's words."""
        intr = self._interrupted
        if intr is None:
            return
        self._interrupted = None
        sp = intr.speech
        if sp.started:
            heard = " ".join([*sp.said_before, intr.heard]).strip()
            kept = " ".join([*sp.unsaved, intr.heard]).strip()
            if kept:
                self.history.append(Message("assistant", kept))
            self._emit(
                TranscriptEntry(
                    "agent",
                    heard,
                    round(intr.t if sp.first_out is None else sp.first_out, 3),
                    round(intr.t, 3),
                    interrupted=True,
                    turn=sp.marks.turn if sp.marks else self._turn,
                )
            )
        self._finish_marks(sp)

    def _resume(self, caller_text: str = "") -> None:
        """A false interruption: continue the interrupted reply (or restart one that had not spoken yet)."""
        intr = self._interrupted
        assert intr is not None
        self._interrupted = None
        sp = intr.speech
        self._emit(
            Interruption("resumed", round(self._now, 3), heard_text=intr.heard, caller_text=caller_text)
        )
        if not sp.started:
            self._start_reply(sp.marks)
            return
        new = AgentSpeech(sp.kind if sp.kind != "reply" else "resume", True, self._rate, marks=sp.marks)
        new.said_before = [*sp.said_before, *intr.heard_sentences]
        new.unsaved = [*sp.unsaved, *intr.heard_sentences]
        if sp.reply is None:
            new.calls = list(sp.calls)
        else:  # tool calls of an answer the LLM had finished; an unfinished one is cut off where it was
            new.calls = list(sp.reply.calls) if sp.reply.finished else []
        new.started = True
        new.first_out = sp.first_out
        self._launch(new, lambda: self._resume_body(new, intr.unheard))

    def _cancel(self, sp: AgentSpeech) -> None:
        sp.cancelled = True
        for child in sp.children:
            child.cancel()
        if sp.task is not None and sp.task is not asyncio.current_task():
            sp.task.cancel()
        if self._speech is sp:
            self._speech = None

    # --- timers -----------------------------------------------------------------------------------

    def _check_timers(self) -> None:
        if self._ending:
            return
        now = self._now
        if now >= self.agent.max_duration_s:
            self._end("max_duration")
            return
        intr = self._interrupted
        timeout = self.agent.interruption.false_interruption_timeout_ms / 1000.0
        if (
            intr is not None
            and now - intr.t >= timeout
            and not self.segmenter.in_speech
            and (intr.utterance is None or not intr.utterance.future.done())
            and self.agent.interruption.resume_false_interruptions
        ):
            self._resume()  # its utterance, once recognised, is judged against the resumed speech
            return
        if self.busy:
            self._idle_since = now
            return
        idle = self.agent.idle
        if now - self._idle_since >= idle.reminder_after_s:
            if self._reminders < idle.max_reminders and idle.reminders:
                text = idle.reminders[self._reminders % len(idle.reminders)]
                self._reminders += 1
                self._start_canned([text], "reminder", self.agent.allow_interruptions)
            else:
                self._end("idle", idle.hangup_message)

    # --- speaking ----------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _launch(self, sp: AgentSpeech, body: Callable[[], Awaitable[None]]) -> None:
        if self._speech is not None:
            self.channel.clear_output()
            self._out_cursor = self.channel.played_samples
            self._cancel(self._speech)
        self._speech = sp
        sp.task = self._spawn(self._speech_main(sp, body))

    def _start_reply(self, marks: TurnMarks | None) -> None:
        if self._ending:
            return
        self._deferred_reply = False
        self._deferred_marks = None
        sp = AgentSpeech("reply", True, self._rate, marks=marks)
        self._launch(sp, lambda: self._reply_body(sp))

    def _start_canned(self, sentences: list[str], kind: str, interruptible: bool) -> None:
        sp = AgentSpeech(kind, interruptible, self._rate)
        self._launch(sp, lambda: self._canned_body(sp, sentences))

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
            for child in sp.children:
                child.cancel()
        if self._speech is sp:
            self._speech = None
            self._idle_since = self._now
            if self._deferred_reply and not self._ending:
                self._start_reply(self._deferred_marks)

    async def _canned_body(self, sp: AgentSpeech, sentences: list[str]) -> None:
        try:
            await self._say(sp, sentences)
        except ProviderError as exc:
            self._provider_failed(self._component(exc), exc)
            return
        await self._played(sp)
        self.history.append(Message("assistant", " ".join(sentences)))
        self._finish(sp)

    async def _resume_body(self, sp: AgentSpeech, sentences: list[str]) -> None:
        await self._say(sp, sentences)
        spoken = " ".join(sentences)
        await self._played(sp)
        text = " ".join([*sp.unsaved, spoken]).strip()
        if sp.calls:
            self.history.append(Message("assistant", text, tool_calls=sp.calls))
            if await self._run_tools(sp, sp.calls):
                return
        elif text:
            self.history.append(Message("assistant", text))
        self._finish(sp)

    async def _reply_body(self, sp: AgentSpeech) -> None:
        try:
            text = await self._collect_user_text()
        except ProviderError:
            await self._apologise(sp)
            return
        if text is None:
            self._finish_marks(sp)
            return
        try:
            for _round in range(MAX_TOOL_ROUNDS):
                sp.track = SpeechTrack(self._rate)
                said, calls = await self._llm_round(sp)
                if not calls:
                    break
                self.history.append(Message("assistant", said, tool_calls=calls))
                sp.said_before.append(said)
                sp.track = SpeechTrack(self._rate)
                if await self._run_tools(sp, calls):
                    return
                sp.calls = []
            else:
                said = ""  # tool rounds used up: everything said is in the history already
        except ProviderError as exc:
            self._provider_failed(self._component(exc), exc)
            await self._apologise(sp)
            return
        self._failures = 0
        await self._played(sp)
        if said:
            self.history.append(Message("assistant", said))
        self._finish(sp)

    async def _collect_user_text(self) -> str | None:
        """The caller's words since the last reply (None when there is nothing to answer)."""
        pending = [u for u in self._utts if u.kind == "turn" and not u.consumed]
        texts = [await asyncio.shield(u.future) for u in pending]
        for u in pending:
            u.consumed = True
        self._utts = [u for u in self._utts if not u.consumed and u.kind != "dropped"]
        text = " ".join(t for t in texts if t).strip()
        if not text:
            if any(u.failed for u in pending):
                raise ProviderError(getattr(self.stt, "name", "stt"), "recognition failed")
            # nothing new: answer only a caller message left unanswered (a reply restarted after a false alarm)
            return "" if self.history and self.history[-1].role == "user" else None
        if self.history and self.history[-1].role == "user":
            last = self.history[-1]
            if last.content.startswith("DTMF:") and text.startswith("DTMF:"):
                last.content = "DTMF: " + last.content[5:].strip() + text[5:].strip()
            else:
                last.content = f"{last.content} {text}".strip()
        else:
            self.history.append(Message("user", text))
        return text

    async def _llm_round(self, sp: AgentSpeech) -> tuple[str, list[ToolCall]]:
        """Stream one LLM answer into the TTS; returns (text said, tool calls) once all audio is written."""
        marks = sp.marks

        def on_chunk(chunk: LLMChunk) -> None:
            if marks is not None and marks.llm_first is None:
                marks.llm_first = time.perf_counter()
            if chunk.tool_call is not None and chunk.tool_call.name in ("end_call", "transfer_call"):
                sp.interruptible = False  # the goodbye or hand-over is said to its end

        reply = ReplyStream(
            self.llm.chat(list(self.history), self._tool_defs),
            on_chunk=on_chunk,
            on_sentence=sp.track.pending.append,
        )
        sp.reply = reply
        producer: asyncio.Task[None] | None = None
        said: list[str] = []
        try:
            await reply.pump(until_sentence=True)  # inline: no task hop before the first sentence
            if not reply.finished:
                producer = asyncio.ensure_future(reply.pump())
                sp.children.add(producer)
            while True:
                item = await reply.queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, ProviderError):
                        raise item
                    raise ProviderError(getattr(self.llm, "name", "llm"), f"{type(item).__name__}: {item}")
                sp.track.pending.remove(item)
                await self._say_sentence(sp, item)
                said.append(item)
        finally:
            if producer is not None and not producer.done():
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)
            await reply.close()
        sp.reply = None
        sp.calls = calls = reply.calls
        if not said:
            closing = [self._tools[c.name].message for c in calls if c.name in self._tools]
            lines = [m for m in closing if m]
            if lines:
                await self._say(sp, lines)
                said.extend(lines)
        return " ".join(said), calls

    async def _say(self, sp: AgentSpeech, sentences: list[str]) -> None:
        sp.track.pending.extend(sentences)
        for sentence in sentences:
            sp.track.pending.remove(sentence)
            await self._say_sentence(sp, sentence)

    async def _say_sentence(self, sp: AgentSpeech, text: str) -> None:
        """Synthesise one sentence and queue its audio, keeping track of its place in the output."""
        if sp.cancelled:
            raise asyncio.CancelledError
        span = sp.track.begin(text, self._out_cursor)
        resampler = Resampler(self.tts.sample_rate, self._rate)
        stream = self.tts.synthesize(text)
        try:
            async for chunk in stream:
                if sp.marks is not None and sp.marks.tts_first is None:
                    sp.marks.tts_first = time.perf_counter()
                await self._write(sp, span, resampler.process(chunk))
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except RuntimeError:
                    pass
        await self._write(sp, span, resampler.flush())
        span.complete = True

    async def _write(self, sp: AgentSpeech, span: SentenceSpan, pcm: np.ndarray) -> None:
        if sp.cancelled:
            raise asyncio.CancelledError
        if pcm.size == 0:
            return
        if not sp.started:
            sp.started = True
            sp.first_out = self._now
            marks = sp.marks
            if marks is not None and marks.frame_out is None:
                marks.frame_out = time.perf_counter()
                if marks.speech_end is not None and marks.end_of_turn is not None:
                    waited = (marks.end_of_turn - marks.speech_end) * 1000.0
                    marks.voice_to_voice_ms = round(waited + (marks.frame_out - marks.t0) * 1000.0, 1)
                self._finish_marks(sp)
        self._out_cursor += pcm.size
        span.end = self._out_cursor
        await self.channel.write(pcm)

    async def _played(self, sp: AgentSpeech) -> None:
        """Wait until this speech's last sample has been played out."""
        if sp.started:
            await self.channel.drain()

    def _finish(self, sp: AgentSpeech) -> None:
        """A speech played to its end: report it."""
        self._finish_marks(sp)
        if not sp.started:
            return
        text = " ".join([*sp.said_before, sp.track.written_text]).strip()
        self._emit(
            TranscriptEntry(
                "agent",
                text,
                round(self._now if sp.first_out is None else sp.first_out, 3),
                round(self._now, 3),
                turn=sp.marks.turn if sp.marks else self._turn,
            )
        )

    def _finish_marks(self, sp: AgentSpeech) -> None:
        marks = sp.marks
        if marks is not None and not marks.emitted:
            marks.emitted = True
            self._emit(marks.event())

    async def _apologise(self, sp: AgentSpeech) -> None:
        self._failures += 1
        sp.track = SpeechTrack(self._rate)
        if self._failures >= MAX_PROVIDER_FAILURES:
            self._finish_marks(sp)
            self._end("provider_error", self.agent.apology)
            return
        sp.interruptible = True
        try:
            await self._say(sp, [self.agent.apology])
        except ProviderError as exc:
            log.warning("cannot say the apology", error=str(exc))
            self._finish_marks(sp)
            return
        self.history.append(Message("assistant", self.agent.apology))
        await self._played(sp)
        self._finish(sp)

    def _component(self, exc: ProviderError) -> str:
        if exc.provider == getattr(self.tts, "name", None):
            return "tts"
        if exc.provider == getattr(self.llm, "name", None):
            return "llm"
        return exc.provider

    def _provider_failed(self, component: str, exc: ProviderError) -> None:
        log.warning("provider failed", component=component, error=str(exc))
        self._emit(ProviderFailed(component, str(exc), self._failures + 1, round(self._now, 3)))

    # --- tools -------------------------------------------------------------------------------------

    async def _run_tools(self, sp: AgentSpeech, calls: list[ToolCall]) -> bool:
        """Run the tool calls of one LLM round; True when the call is over (hung up or transferred)."""
        for call in calls:
            spec = self._tools.get(call.name)
            ok, result, over = True, "done", False
            if call.name == "end_call":
                await self._played(sp)
                self._finish(sp)
                self._ending = self._ending or "agent_ended"
                result, over = "call ended", True
            elif call.name == "transfer_call":
                await self._played(sp)
                target = str(call.arguments.get("target") or (spec.target if spec else "") or "")
                if not target:
                    ok, result = False, "error: no transfer target given or configured"
                else:
                    ok = await self.channel.transfer(target)
                    result = f"transferred to {target}" if ok else f"error: transfer to {target} failed"
                    if ok:
                        self._finish(sp)
                        self._ending = self._ending or "transferred"
                        over = True
            elif call.name == "send_dtmf":
                try:
                    digits = toolbox.dtmf_digits(call.arguments)
                except ValueError as exc:
                    ok, result = False, f"error: {exc}"
                else:
                    await self._played(sp)
                    await self.channel.send_dtmf(digits)
                    result = f"sent {digits}"
            elif spec is not None and spec.type == "http":
                ok, result = await self._http_tool(spec, call.arguments)
            else:
                ok, result = False, f"error: unknown tool {call.name!r}"
            self._emit(ToolInvoked(call.name, call.arguments, result, ok, round(self._now, 3)))
            self.history.append(Message("tool", result, tool_call_id=call.id, name=call.name))
            if over:
                await self.channel.hangup(self._ending or "agent_ended")
                return True
        return False

    async def _http_tool(self, spec: ToolSpec, arguments: dict[str, Any]) -> tuple[bool, str]:
        client = self._http or await toolbox.shared_client()
        return await toolbox.call_http_tool(spec, arguments, client)

    # --- ending ------------------------------------------------------------------------------------

    def _end(self, reason: str, message: str | None = None) -> None:
        """End the call: say `message` (if any) to its last frame, then hang up."""
        if self._ending:
            return
        self._ending = reason
        if self._speech is not None:
            self._speech.interruptible = True
            self.channel.clear_output()
            self._out_cursor = self.channel.played_samples
            self._cancel(self._speech)
        self._interrupted = None
        self._closing = self._spawn(self._close(reason, message))

    async def _close(self, reason: str, message: str | None) -> None:
        if message:
            sp = AgentSpeech("closing", False, self._rate)
            self._speech = sp
            try:
                await self._say(sp, [message])
                await self._played(sp)
                self.history.append(Message("assistant", message))
                self._finish(sp)
                self._speech = None
            except ProviderError as exc:
                log.warning("cannot say the closing line", error=str(exc))
        await self.channel.hangup(reason)

    async def _shutdown(self) -> str:
        reason = self._ending or self.channel.end_reason or "channel_closed"
        if self._speech is not None and self._speech.started and not self._speech.cancelled:
            played = self.channel.played_samples
            heard, _ = self._speech.track.heard(played)
            text = " ".join([*self._speech.said_before, heard]).strip()
            if text:
                self._emit(
                    TranscriptEntry(
                        "agent",
                        text,
                        round(self._now if self._speech.first_out is None else self._speech.first_out, 3),
                        round(self._now, 3),
                        interrupted=True,
                        turn=self._turn,
                    )
                )
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        pending = [t for t in self._tasks if t is not current]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)  # cancelled or failed: we are closing
        if not self.channel.closed:
            await self.channel.hangup(reason)
        if self._stream is not None:
            try:
                await self._stream.close()
            except Exception:  # noqa: BLE001
                log.warning("stt stream close failed")
        self._emit(ConversationEnded(reason, round(self._now, 3), self._turn))
        return reason
