"""`Conversation`: one call — the caller's side, the turn decisions carried out, and the life cycle.

It reads caller audio and DTMF from a `MediaChannel`, finds the caller's speech with the VAD
(`Listener`, `SpeechSegmenter`), sends each utterance to the STT, tells the `TurnPolicy` what happened and
carries out the actions it returns; the agent's side (LLM replies with tools, TTS into the channel,
barge-in and resume) is the `Speaker`, whose `SpeakerHost` this is (`now`, `turn`, `ending`, `end`,
`ended_by_tool`, `user_text`, `spawn`, `speech_done`). Everything is reported as events. It knows
nothing of the transport and stores nothing itself.

Time is the channel's media clock: inbound frames are continuous, and every timer (idle reminders, maximum
duration, false-interruption timeout) runs off their timestamps, so a file channel may run faster than
real time. Per frame the work is constant (resample, VAD windows, a few comparisons); provider work runs in
tasks, CPU-heavy parts off the loop inside the providers.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Coroutine
from typing import Any, Literal

import httpx

from parley.agents.spec import AgentSpec
from parley.engine.channel import AudioFrame, DtmfEvent, MediaChannel
from parley.engine.events import (
    ConversationEnded,
    ConversationStarted,
    DtmfReceived,
    EventSink,
    Interruption,
    TranscriptEntry,
    TurnDecision,
    emitter,
)
from parley.engine.listener import Listener
from parley.engine.speaker import Speaker, blame
from parley.engine.state import TurnMarks, Utterance
from parley.engine.turn.policy import (
    Accept,
    Action,
    AgentState,
    BargeIn,
    Commit,
    Drop,
    End,
    Ignore,
    Remind,
    Reply,
    Resume,
    TakeKey,
    Transcribe,
    TurnPolicy,
)
from parley.engine.turn.detector import (
    AskModel,
    DetectorStep,
    EndOfTurnDetector,
    Request,
    Snapshot,
    TurnModel,
    TurnVerdict,
)
from parley.engine.turn.segmenter import SegmentEvent, SpeechSegmenter
from parley.engine.turn.model_runner import expected_wait_s, run_turn_model
from parley.logging import get_logger
from parley.providers.base import LLM, STT, TTS, VAD, Message, ProviderError, STTStream
from parley.support.taskset import TaskSet

log = get_logger(__name__)
_WORDS = re.compile(r"[\w']+")
#: How long a call that has ended waits for a running tool (a transfer's last reply) to report.
TOOL_SETTLE_S = 2.0


def same_words(a: str, b: str) -> bool:
    """The same words, whatever the case and punctuation (what "differs in substance" means here)."""
    return _WORDS.findall(a.lower()) == _WORDS.findall(b.lower())


class Conversation:
    """One conversation over one `MediaChannel`. Create it, then `await run()`; it returns the end reason.

    Providers: `stt`, `llm` and `tts` may be shared between conversations; `vad` must be this call's own.
    `on_event` receives every event (`parley.engine.events`): a non-blocking callable or an asyncio.Queue.
    The caller's side is here (audio → `Listener` → `TurnPolicy` → actions); the agent's side is the
    `Speaker`.
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
        turn_model: TurnModel | None = None,
    ) -> None:
        self.agent = agent
        self.channel = channel
        self.stt, self.llm, self.tts, self.vad = stt, llm, tts, vad
        self.greeting = greeting
        self.direction = direction
        self.first_speaker = first_speaker or agent.first_speaker
        self._emit = emitter(on_event)
        self.history: list[Message] = [Message("system", system_prompt)] if system_prompt else []
        self._rate = channel.sample_rate
        # the segmenter finds speech; when a turn ends after a silence is the detector's decision
        self.segmenter = SpeechSegmenter(
            threshold=vad.threshold,
            min_speech_ms=agent.turn.min_speech_ms,
            end_silence_ms=float("inf"),
            discard_gap_ms=min(agent.turn.end_of_turn_silence_ms, 300),
        )
        self.turn_model = turn_model if agent.turn.detector == "smart_turn" else None
        self.detector = EndOfTurnDetector(
            agent.turn, agent.components.stt.language or agent.language, model=self.turn_model is not None,
            punctuated=stt.punctuates,
        )
        self._detector_steps: list[DetectorStep] = []  # results that came back from tasks
        self._verdict: TurnVerdict | None = None  # what ended the last turn
        self._model_task: asyncio.Task[None] | None = None  # the audio model's decision being waited for
        self._preview = ""  # the words the detector had when it ended the last turn
        self._to_confirm: tuple[Message, str, list[Utterance], list[str]] | None = None
        self.policy = TurnPolicy(agent)
        self.speaker = Speaker(
            self, agent, channel, llm=llm, tts=tts, history=self.history, emit=self._emit, http=http
        )
        self._stream: STTStream | None = None
        self._listener: Listener | None = None
        self._now = 0.0
        self._utts: list[Utterance] = []  # the caller's utterances and keys not yet answered
        self._marks: dict[int, TurnMarks] = {}  # latency marks per turn (one small record per turn)
        self._ending: str | None = None
        self._closing: asyncio.Task[None] | None = None
        self._tasks = TaskSet("conversation")

    # --- public -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while anything is in progress: caller speech, recognition, a reply, queued audio."""
        return bool(
            self.segmenter.in_speech
            or self.speaker.current is not None
            or self.policy.pending
            or self._unanswered()
            or self._closing is not None
            or self.channel.output_queued_ms > 0
        )

    @property
    def thinking(self) -> bool:
        """True while the agent is working on an answer with nothing left to play (STT, LLM or TTS pending)."""
        if self.channel.output_queued_ms > 0 or self.segmenter.in_speech:
            return False
        return bool(
            self.speaker.current is not None
            or self.policy.pending
            or self._unanswered()
            or self._closing is not None
        )

    @property
    def now(self) -> float:
        """Media seconds since the call started (end of the last frame received)."""
        return self._now

    @property
    def turn(self) -> int:
        """Caller turns (utterances and keys) so far."""
        return self.policy.turn

    @property
    def ending(self) -> str | None:
        """The end reason once the call is ending."""
        return self._ending

    async def run(self) -> str:
        """Converse until the call ends; returns the end reason."""
        self._emit(ConversationStarted(self.agent.name, self.direction, self._rate, self.first_speaker))
        self._stream = self.stt.stream()
        self._listener = Listener(self._rate, self.vad, self.segmenter, self._stream, self.stt.sample_rate)
        if self.first_speaker == "agent" and self.greeting.strip():
            self.speaker.start_canned([self.greeting], "greeting", self.agent.allow_interruptions)
        try:
            async for item in self.channel.inbound():
                if isinstance(item, DtmfEvent):
                    self._emit(DtmfReceived(item.digit, round(item.timestamp, 3)))
                    if self.segmenter.segment is not None and self.segmenter.segment.confirmed:
                        await self._end_turn(self.detector.force_end("the caller pressed a key"))
                    self._apply(self.policy.key(self._now, item.digit, item.timestamp, self._agent()))
                else:
                    await self._on_audio(item)
                if self.channel.closed:
                    break
        finally:
            reason = await self._shutdown()
        return reason

    # --- caller side ------------------------------------------------------------------------------

    def _agent(self) -> AgentState:
        sp = self.speaker.current
        queued = self.channel.output_queued_ms > 0
        if sp is None:
            return AgentState(audio_queued=queued)
        return AgentState(True, sp.interruptible, sp.started, sp.kind, queued)

    def _unanswered(self) -> bool:
        return any(not u.consumed and u.kind == "turn" for u in self._utts)

    async def _on_audio(self, frame: AudioFrame) -> None:
        assert self._listener is not None
        self._now = now = frame.timestamp + frame.pcm.size / self._rate
        policy = self.policy
        for event in await self._listener.feed(frame.pcm, now):
            if event is SegmentEvent.ONSET:
                self._apply(policy.speech_started(now, self._agent()))
            elif event is SegmentEvent.CONFIRMED:
                self.detector.speech()
                self.speaker.prefetch.drop()  # the caller went on: the words will change
                self._apply(policy.speech_confirmed(now, self._agent()))
            elif event is SegmentEvent.DISCARDED:
                self._apply(policy.speech_discarded(now))
        segment = self.segmenter.segment
        if segment is not None and segment.confirmed:
            self._apply(policy.speech_ongoing(now, segment.voiced_ms, self._agent()))
            await self._detect(segment.voiced_ms)
        self._apply(policy.tick(now, busy=self.busy, caller_speaking=self.segmenter.in_speech))

    # --- end of turn --------------------------------------------------------------------------------

    async def _detect(self, voiced_ms: float) -> None:
        """One frame of an open utterance: tell the detector about the silence, start what it asks for,
        and end the turn when it says so."""
        silence_ms = self.segmenter.silence_ms
        if silence_ms == 0.0:
            gap = self.detector.gap
            if self.detector.silence_ms > 0.0:
                self.detector.speech()  # the caller went on: an earlier silence's results are stale
            step = self.detector.quiet(self.segmenter.quiet_ms)
            if self.detector.gap != gap:
                self.speaker.prefetch.drop()  # an answer to words the caller is adding to
                self._drop_model_ask()
            self._detector_steps.clear()
            self._start(step.requests)
            return
        step = self.detector.silence(silence_ms, over_agent=self.policy.caller_over_agent)
        steps, self._detector_steps = [*self._detector_steps, step], []
        for step in steps:
            self._start(step.requests)
            verdict = step.verdict
            if verdict is None:
                continue
            end_p = self.detector.sentence_end_p
            self._emit(TurnDecision(verdict.kind, verdict.reason, verdict.silence_ms, round(self._now, 3),
                                    verdict.probability, verdict.words, self.detector.text or "",
                                    None if end_p is None else round(end_p, 3)))
            if verdict.ends_turn:
                await self._end_turn(verdict)
                return

    def _start(self, requests: list[Request]) -> None:
        """Start what the detector asked for (the words so far, the audio model's opinion)."""
        for request in requests:
            if isinstance(request, Snapshot):
                self._tasks.spawn(self._snapshot(request.gap), name="stt-snapshot")
            elif isinstance(request, AskModel):
                if expected_wait_s() * 1000.0 >= self.detector.time_left_ms():
                    # the answer would come after the turn ends anyway: leave the pool to calls it can help
                    self._detector_steps.append(self.detector.model_busy(request.gap))
                else:
                    self._model_task = self._tasks.spawn(self._ask_model(request.gap), name="turn-model")

    async def _snapshot(self, gap: int) -> None:
        assert self._stream is not None and self._listener is not None
        end_p: float | None = None
        try:
            await self._listener.catch_up()
            snapshot = await self._stream.snapshot()
            text, end_p = " ".join(snapshot.text.split()), snapshot.sentence_end_p
        except Exception as exc:  # noqa: BLE001 - the final transcript will report a real STT failure
            log.info("stt snapshot failed", error=str(exc))
            text = ""
        step = self.detector.words_ready(gap, text, end_p)
        self._detector_steps.append(step)
        words = self.detector.words
        if (self.agent.turn.prefetch_answer and not step.end and self.detector.ended is None
                and self.detector.gap == gap and words is not None and not words.unfinished):
            # the detector still waits (for the model, or on its doubt): ask the LLM meanwhile
            self.speaker.prefetch_answer(text)

    def _drop_model_ask(self) -> None:
        """The silence the model was asked about is over: a decision still queued is not run."""
        if self._model_task is not None and not self._model_task.done():
            self._model_task.cancel()
        self._model_task = None

    async def _ask_model(self, gap: int) -> None:
        assert self._listener is not None and self.turn_model is not None
        audio = self._listener.turn_audio()  # joined and resampled in the decision thread (~1 ms)
        predict = self.turn_model.predict
        try:
            probability: float | None = await run_turn_model(lambda: predict(audio.at(16000)))
        except Exception as exc:  # noqa: BLE001 - a broken model must not end the call: silence decides
            log.warning("end-of-turn model failed; the silence decides", error=str(exc))
            probability = None
        self._detector_steps.append(self.detector.model_ready(gap, probability))

    async def _end_turn(self, verdict: TurnVerdict) -> None:
        """The detector (or a key) ended the caller's turn: close the utterance and tell the policy."""
        assert self._listener is not None
        ended = self.segmenter.end_now()
        if ended is None:
            return
        self._verdict = verdict
        self._preview = self.detector.text or ""
        self._detector_steps.clear()
        self._drop_model_ask()
        await self._listener.finish()
        self._apply(self.policy.speech_ended(self._now, ended.start, ended.last_voiced))

    async def _transcribe(self, utt: Utterance) -> None:
        text = ""
        assert self._listener is not None and self._stream is not None
        push_failed = self._listener.take_push_failure()
        try:
            result = await self._stream.end_utterance()
            if push_failed is not None:
                raise push_failed  # the audio never fully reached the recogniser
            text = " ".join(result.text.split())
        except ProviderError as exc:
            utt.failed = True
            self.speaker.provider_failed(blame(exc, "stt"))
        except Exception as exc:
            log.exception("stt failed")
            utt.failed = True
            self.speaker.provider_failed(ProviderError(self.stt.name, str(exc), component="stt"))
        finally:
            utt.marks.stt_final = time.perf_counter()
            if not utt.future.done():
                utt.future.set_result(text)
        if text:
            self._emit(
                TranscriptEntry("user", text, round(utt.start, 3), round(utt.end, 3), turn=utt.marks.turn)
            )
        actions = self.policy.transcript_final(self._now, utt.marks.turn, text, utt.failed, self._agent())
        while actions:
            self._apply(actions)
            actions = self.policy.resolve_next(self._now, self._agent())

    async def user_text(self) -> str | None:
        """The caller's words since the last reply (None when there is nothing to answer).

        An utterance whose final transcript is still being made but whose words the detector already
        had (`preview`) is answered from the preview: the reply starts now and `confirmation()` checks
        the final words before anything is heard."""
        pending = [u for u in self._utts if u.kind == "turn" and not u.consumed]
        texts: list[str] = []
        previewed: list[tuple[Utterance, str]] = []
        for u in pending:
            if not u.future.done() and u.preview:
                texts.append(u.preview)
                previewed.append((u, u.preview))
            else:
                texts.append(await asyncio.shield(u.future))
        for u in pending:
            u.consumed = True
        self._utts = [u for u in self._utts if not u.consumed and u.kind != "dropped"]
        text = " ".join(t for t in texts if t).strip()
        if not text:
            if any(u.failed for u in pending):
                raise ProviderError(self.stt.name, "recognition failed", component="stt")
            # nothing new: answer only a caller message left unanswered (a reply restarted after a false alarm)
            return "" if self.history and self.history[-1].role == "user" else None
        if self.history and self.history[-1].role == "user":
            last = self.history[-1]
            before = last.content
            if last.content.startswith("DTMF:") and text.startswith("DTMF:"):
                last.content = "DTMF: " + last.content[5:].strip() + text[5:].strip()
            else:
                last.content = f"{last.content} {text}".strip()
        else:
            before = ""
            last = Message("user", text)
            self.history.append(last)
        self._to_confirm = (last, before, pending, texts) if previewed else None
        return text

    def confirmation(self) -> asyncio.Task[bool] | None:
        check, self._to_confirm = self._to_confirm, None
        if check is None:
            return None
        return self._tasks.spawn(self._confirm(*check), name="confirm-words")

    async def _confirm(self, message: Message, before: str, utts: list[Utterance], used: list[str]) -> bool:
        finals = [await asyncio.shield(u.future) for u in utts]
        if all(u.failed or same_words(final, said) for u, final, said in zip(utts, finals, used)):
            return True
        message.content = f"{before} {' '.join(t for t in finals if t)}".strip()
        return False

    # --- carrying out the policy's decisions ---------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            self._do(action)

    def _do(self, action: Action) -> None:
        speaker = self.speaker
        match action:
            case Transcribe(turn=turn, start=start, end=end, overlapped=overlapped):
                marks = self._marks[turn] = TurnMarks(turn, end, self._now)
                if self._verdict is not None:
                    marks.verdict, self._verdict = self._verdict, None
                utt = Utterance(start, end, marks, asyncio.get_running_loop().create_future())
                utt.preview, self._preview = ("" if overlapped else self._preview), ""
                self._utts.append(utt)
                self._tasks.spawn(self._transcribe(utt), name=f"stt-turn-{turn}")
            case TakeKey(turn=turn, digit=digit, t=t):
                marks = self._marks[turn] = TurnMarks(turn, None, self._now)
                future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                future.set_result(f"DTMF: {digit}")
                self._utts.append(Utterance(t, t, marks, future, kind="turn"))
            case Accept(turn=turn):
                for utt in self._utts:
                    if utt.marks.turn == turn:
                        utt.kind = "turn"
            case Drop(turn=turn):
                for utt in self._utts:
                    if utt.marks.turn == turn:
                        utt.kind = "dropped"
                self._utts = [u for u in self._utts if u.kind != "dropped"]
            case Reply(turn=turn):
                speaker.start_reply(self._marks[turn])
            case BargeIn():
                speaker.barge_in()
            case Commit():
                speaker.commit_interrupted()
            case Resume(caller_text=text):
                speaker.resume(caller_text=text)
            case Ignore(caller_text=text):
                self._emit(Interruption("ignored", round(self._now, 3), caller_text=text))
            case Remind(text=text):
                speaker.start_canned([text], "reminder", self.agent.allow_interruptions)
            case End(reason=reason, message=message):
                self.end(reason, message)

    # --- the speaker's host -----------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro, name=name)

    def speech_done(self) -> None:
        self._apply(self.policy.speech_done(self._now))

    def ended_by_tool(self, reason: str) -> None:
        self._ending = self._ending or reason
        self.policy.end()

    def end(self, reason: str, message: str | None = None) -> None:
        """End the call: say `message` (if any) to its last frame, then hang up."""
        if self._ending:
            return
        self._ending = reason
        self.policy.end()
        self.speaker.stop_for_end()
        self._closing = self._tasks.spawn(self._close(reason, message), name="closing")

    async def _close(self, reason: str, message: str | None) -> None:
        if message:
            await self.speaker.say_closing(message)
        await self.channel.hangup(reason)

    async def _shutdown(self) -> str:
        await self.speaker.tool_settled(TOOL_SETTLE_S)
        reason = self._ending or self.channel.end_reason or "channel_closed"
        self.speaker.report_unfinished()
        await self._tasks.cancel_all()
        if not self.channel.closed:
            await self.channel.hangup(reason)
        if self._stream is not None:
            try:
                await self._stream.close()
            except Exception:  # noqa: BLE001
                log.warning("stt stream close failed")
        self._emit(ConversationEnded(reason, round(self._now, 3), self.turn))
        return reason
