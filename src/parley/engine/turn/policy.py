"""`TurnPolicy`: who has the floor — the turn decisions of one call, pure.

No audio, no tasks, no clock of its own: each event method gets the media time (`now`, seconds since
the call started) and, where the answer depends on it, a snapshot of the agent's side (`AgentState`).
It returns the `Action`s to carry out, in order, each with its reason in words. The caller of the
policy (the `Conversation`) must carry out every action it is given, in order, before the next event.

Events: caller speech `speech_started` / `speech_confirmed` / `speech_ongoing` / `speech_discarded` /
`speech_ended`; `transcript_final` (then `resolve_next` until it returns nothing); `key` (DTMF);
`speech_done` (an agent speech finished); `tick` (once per audio frame: maximum duration,
false-interruption timeout, idle reminders). `end()` records that the call is ending, whoever ended it.

What it decides:
* an utterance that ended while the agent was silent is the caller's turn: reply;
* one that overlapped the agent (or an interruption in doubt) waits for its words: none, or only a
  backchannel, is dropped (the interrupted reply resumes, or the agent was never stopped); real words
  take the turn (barge in if the agent is still talking and may be interrupted, else answer afterwards);
* caller speech over an interruptible agent for `barge_in_ms` stops it (barge-in); real speech starting
  while a reply is being prepared (nothing heard yet) stops that reply too;
* a key press is a turn of its own, answered at once unless the agent may not be interrupted;
* an interruption whose words are not known `false_interruption_timeout_ms` after its utterance ended
  (after the barge-in if no utterance of its own ended), with the caller silent, resumes the reply;
  nobody speaking for `reminder_after_s` → a reminder, then hang up.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from parley.agents.spec import AgentSpec

_WORD = re.compile(r"[\w']+(?:-[\w']+)*")


# --- what the policy is told --------------------------------------------------------------------


@dataclass(frozen=True)
class AgentState:
    """The agent's side at the moment of an event.

    `speaking`: a speech is being produced or played; `interruptible`, `started` (its first audio was
    written) and `kind` (`reply`, `greeting`, `reminder`, `resume`, `closing`) describe it.
    `audio_queued`: agent audio is still waiting to be played."""

    speaking: bool = False
    interruptible: bool = True
    started: bool = False
    kind: str = ""
    audio_queued: bool = False

    @property
    def active(self) -> bool:
        """The caller would be talking over the agent."""
        return self.speaking or self.audio_queued


# --- what the policy decides ----------------------------------------------------------------------


@dataclass(frozen=True)
class Transcribe:
    """A caller utterance ended: recognise it as turn `turn` (`overlapped`: decide once recognised)."""

    turn: int
    start: float
    end: float
    overlapped: bool
    interrupted: bool
    reason: str


@dataclass(frozen=True)
class TakeKey:
    """A key press is the caller's turn `turn` (as the user message `DTMF: <digit>`)."""

    turn: int
    digit: str
    t: float
    reason: str = "a key press is a turn of its own"


@dataclass(frozen=True)
class Accept:
    """Utterance `turn` is something the caller said to the agent: answer it."""

    turn: int
    reason: str


@dataclass(frozen=True)
class Drop:
    """Utterance `turn` is not a turn (no words, a backchannel, or the call is ending)."""

    turn: int
    reason: str


@dataclass(frozen=True)
class Reply:
    """Start the agent's reply to everything accepted so far (`turn` names the latency marks)."""

    turn: int
    reason: str


@dataclass(frozen=True)
class BargeIn:
    """Stop the agent now; what the caller heard is kept until the interruption is judged."""

    reason: str


@dataclass(frozen=True)
class Commit:
    """The interruption was real: the interrupted speech ends where the caller stopped hearing it."""

    reason: str


@dataclass(frozen=True)
class Resume:
    """The interruption was false: the interrupted speech goes on (`caller_text`: what was said)."""

    caller_text: str
    reason: str


@dataclass(frozen=True)
class Ignore:
    """Caller sound over the agent that did not stop it and is not a turn (`caller_text`: its words)."""

    caller_text: str
    reason: str


@dataclass(frozen=True)
class Remind:
    """Nobody spoke for a while: say `text`."""

    text: str
    reason: str


@dataclass(frozen=True)
class End:
    """End the call with `reason`, after saying `message` (if any) to its last frame."""

    reason: str
    message: str | None


Action = Transcribe | TakeKey | Accept | Drop | Reply | BargeIn | Commit | Resume | Ignore | Remind | End


# --- the policy -----------------------------------------------------------------------------------


@dataclass
class _Segment:
    """The caller speech in progress, as far as turns go."""

    overlap: bool = False  # the agent was active while it lasted
    interrupted: bool = False  # it stopped the agent


@dataclass
class _Interruption:
    """An agent speech the caller stopped, until we know whether they really took the turn."""

    t: float
    turn: int | None = None  # the utterance that stopped it, once it ended
    ended: float | None = None  # when that utterance ended: its words are awaited from then on


class TurnPolicy:
    """The turn decisions of one call under one agent's rules."""

    def __init__(self, agent: AgentSpec) -> None:
        self.allow_interruptions = agent.allow_interruptions
        self.interruption = agent.interruption
        self.idle = agent.idle
        self.max_duration_s = agent.max_duration_s
        self.barge_in_ms = max(agent.interruption.min_speech_ms, agent.turn.min_speech_ms)
        self.backchannels = {" ".join(_WORD.findall(b.lower())) for b in agent.interruption.backchannels}

        self.turn = 0  # turns taken so far (utterances and keys)
        self.ending = False
        self._segment = _Segment()
        self._interruption: _Interruption | None = None
        self._unresolved: deque[int] = deque()  # overlapped utterances, in order, awaiting their words
        self._words: dict[int, tuple[str, bool]] = {}  # recognised unresolved utterances: (text, failed)
        self._deferred: int | None = None  # a turn to answer once the agent's speech is over
        self._idle_since = 0.0
        self._reminders = 0

    # --- state ----------------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """An overlapped utterance or an interruption is still to be judged."""
        return bool(self._unresolved) or self._interruption is not None

    @property
    def caller_over_agent(self) -> bool:
        """The caller speech in progress overlaps the agent (or an interruption in doubt): its words
        will be judged as a backchannel or a barge-in, not waited for as an unfinished sentence."""
        return self._segment.overlap or self._interruption is not None or bool(self._unresolved)

    def may_interrupt(self, agent: AgentState) -> bool:
        return self.allow_interruptions and agent.speaking and agent.interruptible and not self.ending

    def is_backchannel(self, text: str) -> bool:
        """Only acknowledgement words (`interruption.backchannels`), alone or together."""
        words = _WORD.findall(text.lower())
        if not words:
            return False
        return " ".join(words) in self.backchannels or all(w in self.backchannels for w in words)

    def end(self) -> None:
        """The call is ending (any reason): nothing more is decided, an interruption is forgotten."""
        self.ending = True
        self._interruption = None

    # --- caller speech --------------------------------------------------------------------------

    def speech_started(self, now: float, agent: AgentState) -> list[Action]:
        """Voice began (not yet confirmed as speech)."""
        self._segment = _Segment(overlap=agent.active)
        return []

    def speech_discarded(self, now: float) -> list[Action]:
        """The voice was too short to be speech (a click, a cough)."""
        self._segment = _Segment()
        return []

    def speech_confirmed(self, now: float, agent: AgentState) -> list[Action]:
        """The voice is real speech: the caller is active; a reply not heard yet gives way."""
        self._segment.overlap = self._segment.overlap or agent.active
        self._segment.interrupted = False
        self._reminders = 0
        if agent.speaking and not agent.started and agent.kind == "reply" and self.may_interrupt(agent):
            reason = "the caller went on talking before the reply was heard"
            return self._barge_in(now, reason, by_speech=True)
        return []

    def speech_ongoing(self, now: float, voiced_ms: float, agent: AgentState) -> list[Action]:
        """Once per frame while confirmed speech is open (`voiced_ms` so far)."""
        if not agent.active:
            return []
        self._segment.overlap = True
        if voiced_ms >= self.barge_in_ms and self.may_interrupt(agent):
            reason = f"the caller spoke over the agent for {voiced_ms:.0f} ms"
            return self._barge_in(now, reason, by_speech=True)
        return []

    def speech_ended(self, now: float, start: float, last_voiced: float) -> list[Action]:
        """End of the caller's turn (the detector's decision). Over the agent, its words decide later."""
        self.turn += 1
        seg, self._segment = self._segment, _Segment()
        overlapped = seg.overlap or self._interruption is not None or bool(self._unresolved)
        if seg.interrupted and self._interruption is not None:
            self._interruption.turn = self.turn
            self._interruption.ended = now
        if overlapped:
            self._unresolved.append(self.turn)
            reason = "said over the agent: its words decide"
            return [Transcribe(self.turn, start, last_voiced, True, seg.interrupted, reason)]
        return [
            Transcribe(self.turn, start, last_voiced, False, seg.interrupted, "the caller finished speaking"),
            Accept(self.turn, "said while the agent was silent"),
            self._reply(self.turn, "the caller finished speaking"),
        ]

    # --- recognition ----------------------------------------------------------------------------

    def transcript_final(
        self, now: float, turn: int, text: str, failed: bool, agent: AgentState
    ) -> list[Action]:
        """The words of utterance `turn` (`failed`: recognition failed). Call `resolve_next` after
        carrying out the actions, until it returns nothing: later utterances may be ready too."""
        if turn in self._unresolved:
            self._words[turn] = (text, failed)
        return self.resolve_next(now, agent)

    def resolve_next(self, now: float, agent: AgentState) -> list[Action]:
        """Judge the oldest overlapped utterance if its words are known (else nothing)."""
        if not self._unresolved or self._unresolved[0] not in self._words:
            return []
        turn = self._unresolved.popleft()
        text, failed = self._words.pop(turn)
        return self._judge(now, turn, text, failed, agent)

    def _judge(self, now: float, turn: int, text: str, failed: bool, agent: AgentState) -> list[Action]:
        if self.ending:
            return [Drop(turn, "the call is ending")]
        backchannel = bool(text) and self.interruption.ignore_backchannels and self.is_backchannel(text)
        if (not text or backchannel) and not failed:
            actions: list[Action] = [Drop(turn, "a backchannel" if backchannel else "no words")]
            intr = self._interruption
            if intr is not None and intr.turn == turn:
                self._interruption = None
                if self.interruption.resume_false_interruptions:
                    actions.append(Resume(text, "the interruption held no words that take the turn"))
                else:
                    actions.append(Commit("a false interruption, but resume_false_interruptions is off"))
            elif agent.speaking:
                actions.append(Ignore(text, "sound over the agent that does not take the turn"))
            return actions
        actions = [Accept(turn, "real words" if text else "recognition failed: apologise")]
        if self._interruption is not None:
            return [*actions, self._commit(), self._reply(turn, "the caller took the turn")]
        if agent.speaking:
            if self.may_interrupt(agent):
                return [
                    *actions,
                    *self._barge_in(now, "the caller's words take the turn"),
                    self._commit(),
                    self._reply(turn, "the caller took the turn"),
                ]
            self._defer(turn)
            return actions
        return [*actions, self._reply(turn, "the caller's words are a turn")]

    # --- keys -------------------------------------------------------------------------------------

    def key(self, now: float, digit: str, t: float, agent: AgentState) -> list[Action]:
        """A DTMF key at media time `t`: a turn answered at once (after an interruptible agent stops)."""
        if self.ending:
            return []
        self._reminders = 0
        self.turn += 1
        actions: list[Action] = [TakeKey(self.turn, digit, t)]
        if agent.speaking and not self.may_interrupt(agent):
            self._defer(self.turn)
            return actions
        if agent.speaking:
            actions += self._barge_in(now, "the caller pressed a key")
        if self._interruption is not None:
            actions.append(self._commit())
        actions.append(self._reply(self.turn, "the caller pressed a key"))
        return actions

    # --- the agent's side and the clock -----------------------------------------------------------

    def speech_done(self, now: float) -> list[Action]:
        """The agent's current speech is over (played out, failed or cut off by itself)."""
        self._idle_since = now
        if self._deferred is not None and not self.ending:
            return [self._reply(self._deferred, "the caller spoke while the agent could not be interrupted")]
        return []

    def tick(self, now: float, *, busy: bool, caller_speaking: bool) -> list[Action]:
        """Once per frame: the timers. `busy`: anything in progress (see `Conversation.busy`)."""
        if self.ending:
            return []
        if now >= self.max_duration_s:
            self.end()
            return [End("max_duration", None)]
        intr = self._interruption
        timeout = self.interruption.false_interruption_timeout_ms / 1000.0
        if (
            intr is not None
            and now - (intr.ended if intr.ended is not None else intr.t) >= timeout
            and not caller_speaking
            and (intr.turn is None or intr.turn not in self._words)
            and self.interruption.resume_false_interruptions
        ):
            # its utterance, once recognised, is judged against the resumed speech
            self._interruption = None
            return [Resume("", f"no words {timeout:g} s after the interruption")]
        if busy:
            self._idle_since = now
            return []
        idle = self.idle
        if now - self._idle_since < idle.reminder_after_s:
            return []
        if self._reminders < idle.max_reminders and idle.reminders:
            text = idle.reminders[self._reminders % len(idle.reminders)]
            self._reminders += 1
            return [Remind(text, f"nobody spoke for {idle.reminder_after_s:g} s")]
        self.end()
        return [End("idle", idle.hangup_message)]

    # --- helpers ----------------------------------------------------------------------------------

    def _barge_in(self, now: float, reason: str, *, by_speech: bool = False) -> list[Action]:
        if by_speech:
            self._segment.interrupted = True
        self._interruption = _Interruption(now)
        return [BargeIn(reason)]

    def _commit(self) -> Commit:
        self._interruption = None
        return Commit("the caller took the turn")

    def _reply(self, turn: int, reason: str) -> Reply:
        self._deferred = None
        return Reply(turn, reason)

    def _defer(self, turn: int) -> None:
        self._deferred = turn
