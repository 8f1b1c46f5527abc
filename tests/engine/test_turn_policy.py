"""The turn decisions on their own: `TurnPolicy` driven event by event with times passed in.

No audio, no tasks, no sleeps: each test tells the policy what happened and when (media seconds), with
the agent's side as a snapshot, and checks the actions it returns. The agent of fakes.py: barge-in after
200 ms of caller speech, false-interruption timeout 1.5 s, idle reminder after 30 s (one), 600 s at most.
"""

from __future__ import annotations

from typing import Any

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
from tests.engine.fakes import agent_spec

SILENT = AgentState()
SPEAKING = AgentState(speaking=True, interruptible=True, started=True, kind="reply")
PREPARING = AgentState(speaking=True, interruptible=True, started=False, kind="reply")
GOODBYE = AgentState(speaking=True, interruptible=False, started=True, kind="reply")


def policy(**spec: Any) -> TurnPolicy:
    return TurnPolicy(agent_spec(**spec))


def kinds(actions: list[Action]) -> list[type]:
    return [type(a) for a in actions]


def utterance(
    p: TurnPolicy, start: float, end: float, agent: AgentState, *, voiced_ms: float = 0
) -> list[Action]:
    """Caller speech from `start` to `end` (confirmed at once), ended 400 ms later; all actions returned."""
    out = p.speech_started(start, agent) + p.speech_confirmed(start + 0.1, agent)
    if voiced_ms:
        out += p.speech_ongoing(start + voiced_ms / 1000, voiced_ms, agent)
    return out + p.speech_ended(end + 0.4, start, end)


def test_speech_ending_while_the_agent_is_silent_is_a_turn_answered_at_once() -> None:
    p = policy()
    actions = utterance(p, 0.5, 1.5, SILENT)
    assert kinds(actions) == [Transcribe, Accept, Reply]
    transcribe, _, reply = actions
    assert isinstance(transcribe, Transcribe)
    assert (transcribe.turn, transcribe.start, transcribe.end) == (1, 0.5, 1.5)
    assert not transcribe.overlapped and isinstance(reply, Reply) and reply.turn == 1
    assert p.transcript_final(2.0, 1, "hello", False, SILENT) == [], "its words change nothing"


def test_caller_speech_over_the_agent_barges_in_after_the_threshold_only() -> None:
    p = policy()
    p.speech_started(3.0, SPEAKING)
    p.speech_confirmed(3.1, SPEAKING)
    assert p.speech_ongoing(3.15, 150, SPEAKING) == []
    (barge,) = p.speech_ongoing(3.2, 200, SPEAKING)
    assert isinstance(barge, BargeIn) and "200 ms" in barge.reason
    assert p.pending, "the interruption waits for the caller's words"


def test_agent_that_may_not_be_interrupted_is_not_stopped() -> None:
    assert policy().speech_ongoing(3.5, 500, GOODBYE) == []
    assert policy(allow_interruptions=False).speech_ongoing(3.5, 500, SPEAKING) == []


def test_speech_starting_while_the_reply_is_prepared_stops_that_reply() -> None:
    p = policy()
    p.speech_started(2.0, PREPARING)
    assert kinds(p.speech_confirmed(2.1, PREPARING)) == [BargeIn]


def test_interruption_without_words_resumes_the_agent() -> None:
    p = policy()
    actions = utterance(p, 3.0, 3.4, SPEAKING, voiced_ms=200)
    assert kinds(actions) == [BargeIn, Transcribe]
    transcribe = actions[1]
    assert isinstance(transcribe, Transcribe) and transcribe.overlapped and transcribe.interrupted
    resolved = p.transcript_final(4.0, 1, "", False, SILENT)
    assert kinds(resolved) == [Drop, Resume]
    assert not p.pending


def test_false_interruption_kept_off_commits_the_cut() -> None:
    p = policy(interruption={"resume_false_interruptions": False})
    utterance(p, 3.0, 3.4, SPEAKING, voiced_ms=200)
    assert kinds(p.transcript_final(4.0, 1, "", False, SILENT)) == [Drop, Commit]


def test_real_words_after_a_barge_in_take_the_turn() -> None:
    p = policy()
    utterance(p, 3.0, 3.8, SPEAKING, voiced_ms=200)
    actions = p.transcript_final(4.3, 1, "wait stop please", False, SILENT)
    assert kinds(actions) == [Accept, Commit, Reply]
    assert actions[2] == Reply(1, "the caller took the turn")


def test_backchannel_over_the_agent_is_ignored_and_the_agent_goes_on() -> None:
    p = policy()
    actions = utterance(p, 3.0, 3.15, SPEAKING)  # shorter than the barge-in threshold
    assert kinds(actions) == [Transcribe]
    resolved = p.transcript_final(3.7, 1, "Mm-hm.", False, SPEAKING)
    assert kinds(resolved) == [Drop, Ignore]
    assert resolved[0] == Drop(1, "a backchannel")
    assert resolved[1] == Ignore("Mm-hm.", "sound over the agent that does not take the turn")


def test_words_over_an_uninterruptible_agent_are_answered_once_it_is_done() -> None:
    p = policy()
    utterance(p, 3.0, 3.8, GOODBYE)
    assert kinds(p.transcript_final(4.3, 1, "wait", False, GOODBYE)) == [Accept]
    assert p.speech_done(6.0) == [Reply(1, "the caller spoke while the agent could not be interrupted")]
    assert p.speech_done(8.0) == [], "answered once"


def test_utterances_over_the_agent_are_judged_in_order() -> None:
    p = policy()
    utterance(p, 3.0, 3.15, SPEAKING)
    utterance(p, 4.0, 4.15, SPEAKING)
    assert p.transcript_final(4.7, 2, "yeah", False, SPEAKING) == [], "waits for the first one"
    assert kinds(p.transcript_final(4.8, 1, "", False, SPEAKING)) == [Drop, Ignore]
    assert kinds(p.resolve_next(4.8, SPEAKING)) == [Drop, Ignore]
    assert p.resolve_next(4.8, SPEAKING) == [] and not p.pending


def test_unrecognised_interruption_resumes_once_its_words_are_overdue() -> None:
    p = policy()
    p.speech_started(3.0, SPEAKING)
    p.speech_confirmed(3.1, SPEAKING)
    p.speech_ongoing(3.2, 200, SPEAKING)  # barge-in at 3.2 s
    assert p.tick(4.8, busy=True, caller_speaking=True) == [], "the caller is still talking"
    p.speech_ended(5.0, 3.0, 4.6)  # recognition of its words starts now
    assert p.tick(6.49, busy=True, caller_speaking=False) == []
    (resume,) = p.tick(6.5, busy=True, caller_speaking=False)
    assert isinstance(resume, Resume) and resume.caller_text == "" and "1.5 s" in resume.reason
    # its words, once known, are judged against the resumed speech
    assert kinds(p.transcript_final(7.0, 1, "", False, SPEAKING)) == [Drop, Ignore]


def test_a_long_interruption_waits_for_its_words_and_does_not_resume_the_agent() -> None:
    # a caller talks over the agent for 2 s: when their turn ends, the barge-in is long past the
    # timeout, but recognition has only just begun - the agent must not start talking again meanwhile
    p = policy()
    p.speech_started(3.0, SPEAKING)
    p.speech_confirmed(3.1, SPEAKING)
    p.speech_ongoing(3.2, 200, SPEAKING)  # barge-in at 3.2 s
    p.speech_ended(5.6, 3.0, 5.2)
    assert p.tick(5.62, busy=True, caller_speaking=False) == []
    assert p.tick(6.0, busy=True, caller_speaking=False) == []
    assert kinds(p.transcript_final(6.1, 1, "I want to cancel my appointment", False, SILENT)) == [
        Accept, Commit, Reply]


def test_key_press_stops_an_interruptible_agent_and_is_answered() -> None:
    p = policy()
    actions = p.key(2.5, "0", 2.5, SPEAKING)
    assert kinds(actions) == [TakeKey, BargeIn, Commit, Reply]
    assert actions[0] == TakeKey(1, "0", 2.5) and actions[3] == Reply(1, "the caller pressed a key")


def test_key_press_during_an_uninterruptible_speech_waits_for_its_end() -> None:
    p = policy()
    assert kinds(p.key(2.5, "5", 2.5, GOODBYE)) == [TakeKey]
    assert kinds(p.speech_done(3.0)) == [Reply]


def test_idle_reminder_then_hangup() -> None:
    p = policy(idle={"reminder_after_s": 5.0, "reminders": ["Still there?"], "max_reminders": 1})
    assert p.tick(3.0, busy=True, caller_speaking=False) == []  # something in progress: not idle
    assert p.tick(7.9, busy=False, caller_speaking=False) == []
    assert p.tick(8.0, busy=False, caller_speaking=False) == [Remind("Still there?", "nobody spoke for 5 s")]
    p.speech_done(9.0)  # the reminder was said
    assert p.tick(13.9, busy=False, caller_speaking=False) == []
    (end,) = p.tick(14.0, busy=False, caller_speaking=False)
    assert isinstance(end, End) and end.reason == "idle" and end.message
    assert p.tick(20.0, busy=False, caller_speaking=False) == [], "decided once"


def test_caller_speech_resets_the_reminders() -> None:
    p = policy(idle={"reminder_after_s": 5.0, "max_reminders": 1})
    assert kinds(p.tick(5.0, busy=False, caller_speaking=False)) == [Remind]
    p.speech_started(6.0, SILENT)
    p.speech_confirmed(6.1, SILENT)
    p.speech_done(11.0)
    assert kinds(p.tick(16.0, busy=False, caller_speaking=False)) == [Remind]


def test_maximum_duration_ends_the_call() -> None:
    p = policy(max_duration_s=10)
    assert p.tick(9.98, busy=True, caller_speaking=True) == []
    assert p.tick(10.0, busy=True, caller_speaking=True) == [End("max_duration", None)]


def test_nothing_is_decided_once_the_call_is_ending() -> None:
    p = policy()
    utterance(p, 3.0, 3.15, SPEAKING)
    p.end()
    assert p.transcript_final(4.0, 1, "tell me more", False, SILENT) == [Drop(1, "the call is ending")]
    assert p.key(4.1, "1", 4.1, SILENT) == []
    assert p.speech_ongoing(4.2, 500, SPEAKING) == []
    assert p.tick(700.0, busy=False, caller_speaking=False) == []


def test_backchannel_words_alone_or_together() -> None:
    p = policy()
    assert p.is_backchannel("Okay.") and p.is_backchannel("yeah, right") and p.is_backchannel("Uh-huh!")
    assert not p.is_backchannel("okay tell me more") and not p.is_backchannel("")
