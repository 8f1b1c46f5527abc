"""The end-of-turn detector as a specification: silence in, requests and verdicts out (no audio, no clock).

Driven with recorded model outputs (probabilities as Smart Turn v3.2 gave them on this machine for
piper speech, docs/turn-detection.md) and transcripts; time is the silence in milliseconds.
"""

from __future__ import annotations

from parley.agents.spec import TurnSpec
from parley.engine.turn.detector import (
    SNAPSHOT_AFTER_MS,
    SNAPSHOT_AFTER_QUIET_MS,
    AskModel,
    DetectorStep,
    EndOfTurnDetector,
    Snapshot,
    judge_turn,
)
from parley.engine.turn.words import judge

# the first 20 ms frame at or past the snapshot time
WORDS_AT = f"words@{-(-SNAPSHOT_AFTER_MS // 20) * 20:.0f}"
SPEC = TurnSpec(min_silence_ms=200, max_silence_ms=1500, hold_silence_ms=6000, threshold=0.5)


def run_silence(det: EndOfTurnDetector, until_ms: float, *, text: str | None, probabilities: list[float],
                frame_ms: float = 20.0, end_p: float | None = None) -> tuple[DetectorStep | None, list[str]]:
    """Feed silence frame by frame; answer each request at once (words: `text`, whose final mark the
    recogniser gave `end_p`; model: the next probability, the last one repeated). Returns the step that
    ended the turn and what was asked."""
    asked: list[str] = []
    answers = list(probabilities)
    t = 0.0
    while t < until_ms:
        t += frame_ms
        step = det.silence(t)
        steps = [step]
        for req in step.requests:
            if isinstance(req, Snapshot):
                asked.append(f"words@{t:.0f}")
                assert text is not None
                steps.append(det.words_ready(req.gap, text, end_p))
            elif isinstance(req, AskModel):
                asked.append(f"model@{t:.0f}")
                p = answers.pop(0) if len(answers) > 1 else answers[0]
                steps.append(det.model_ready(req.gap, p))
        for s in steps:
            if s.end:
                return s, asked
    return None, asked


def test_a_finished_question_ends_the_turn_at_the_minimum_silence() -> None:
    det = EndOfTurnDetector(SPEC)
    step, asked = run_silence(det, 3000, text="What time do you open on Saturday?", probabilities=[0.93])
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "finished" and step.verdict.silence_ms == 200
    assert asked == [WORDS_AT, "model@200"]
    assert "finished turn (p=0.93)" in step.verdict.reason


def test_words_that_announce_more_wait_even_when_the_model_says_finished() -> None:
    det = EndOfTurnDetector(SPEC)
    # "my number is" scored 0.98 "finished" over G.711: the words must win
    step, asked = run_silence(det, 3000, text="Sure, my number is", probabilities=[0.98])
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "timeout" and step.verdict.silence_ms == 1500
    assert step.verdict.words == "announcement"
    assert "model@200" not in asked  # words said "wait" first: the model cannot overrule them


def test_a_conjunction_at_the_end_waits_for_the_rest() -> None:
    det = EndOfTurnDetector(SPEC)
    step, _ = run_silence(det, 1000, text="I would like to book a table and", probabilities=[0.95])
    assert step is None  # still waiting after a second of silence


def test_asking_for_time_waits_much_longer() -> None:
    det = EndOfTurnDetector(SPEC)
    step, _ = run_silence(det, 5000, text="Hold on", probabilities=[0.9])
    assert step is None
    step, _ = run_silence(EndOfTurnDetector(SPEC), 7000, text="Um", probabilities=[0.9])
    assert step is not None and step.verdict is not None and step.verdict.silence_ms == 6000


def test_an_unsure_model_is_asked_again_as_the_silence_grows() -> None:
    det = EndOfTurnDetector(SPEC)
    step, asked = run_silence(det, 3000, text="Can I book an appointment?", probabilities=[0.2, 0.4, 0.7],
                              end_p=0.8)
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "finished" and step.verdict.silence_ms == 600
    assert asked == [WORDS_AT, "model@200", "model@400", "model@600"]
    assert step.verdict.model_runs == 3


def test_a_late_change_of_mind_over_words_without_a_final_mark_waits_for_the_doubt_limit() -> None:
    # espeak-scot's "I am calling because" on the wire: tiny.en heard "I am calling the card" (no mark),
    # Smart Turn said 0.06 at 264 ms and 0.70 at 456 ms; the reply cut into the caller's 689 ms pause
    det = EndOfTurnDetector(SPEC)
    step, asked = run_silence(det, 3000, text="I am calling the card", probabilities=[0.06, 0.70])
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "timeout" and step.verdict.silence_ms == SPEC.doubt_silence_ms
    assert asked == [WORDS_AT, "model@200", "model@400"]  # not asked again: its "finished" is in
    assert "the words carry no final mark" in step.verdict.reason


def test_words_without_a_final_mark_still_end_at_once_when_the_model_never_doubted() -> None:
    det = EndOfTurnDetector(SPEC)
    step, _ = run_silence(det, 3000, text="can you call me back later", probabilities=[0.96])
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "finished" and step.verdict.silence_ms == 200


def test_an_stt_that_never_punctuates_is_not_held_for_a_missing_mark() -> None:
    det = EndOfTurnDetector(SPEC, punctuated=False)  # pocketsphinx: no marks at all
    step, _ = run_silence(det, 3000, text="can i book an appointment", probabilities=[0.2, 0.7])
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "finished" and step.verdict.silence_ms == 400


def test_a_model_that_alone_never_gets_sure_ends_at_the_doubt_limit() -> None:
    # espeak's "Can I speak to a person about my bill, please?" scored 0.02-0.07 at every silence: the
    # words have no objection, so the model's doubt alone holds the turn only `doubt_silence_ms`
    det = EndOfTurnDetector(SPEC)
    step, asked = run_silence(det, 3000, text="Can I speak to a person about my bill, please?",
                              probabilities=[0.07, 0.02, 0.07, 0.06])
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "timeout" and step.verdict.silence_ms == SPEC.doubt_silence_ms == 800
    assert "unfinished turn (p=0.07" in step.verdict.reason and "the words have no objection" in step.verdict.reason
    assert asked == [WORDS_AT, "model@200", "model@400", "model@600"]


def test_a_full_stop_the_recogniser_doubts_waits_for_the_doubt_limit_whatever_the_model_says() -> None:
    # "I need to cancel my appointment and [pause]": tiny.en heard "I need to cancel my appointment."
    # with p=0.21 for its full stop, and Smart Turn said 0.98: a caller back within 800 ms is not cut
    det = EndOfTurnDetector(SPEC)
    step, asked = run_silence(det, 3000, text="I need to cancel my appointment.", probabilities=[0.98],
                              end_p=0.21)
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "timeout" and step.verdict.silence_ms == SPEC.doubt_silence_ms
    assert "unsure the sentence ended (p=0.21" in step.verdict.reason
    assert not [a for a in asked if a.startswith("model")]  # the audio model could not overrule it
    # the caller resumes at 600 ms: no verdict ended the turn, the next silence starts afresh
    det = EndOfTurnDetector(SPEC)
    step, _ = run_silence(det, 600, text="I need to cancel my appointment.", probabilities=[0.98], end_p=0.21)
    assert step is None
    det.speech()
    assert det.sentence_end_p is None and det.words is None


def test_a_sure_full_stop_leaves_the_decision_to_the_model() -> None:
    step, _ = run_silence(EndOfTurnDetector(SPEC), 3000, text="What are your opening hours?",
                          probabilities=[0.9], end_p=0.9)
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "finished" and step.verdict.silence_ms == 200


def test_without_the_words_the_model_s_doubt_waits_up_to_the_maximum() -> None:
    det = EndOfTurnDetector(SPEC)
    gap = det.silence(100).requests[0].gap  # the snapshot is asked, and never answered
    t, step = 100.0, DetectorStep()
    while not step.end:
        t += 20
        step = det.silence(t)
        for req in step.requests:
            if isinstance(req, AskModel):
                assert det.model_ready(gap, 0.1).verdict is None
    assert step.verdict is not None and step.verdict.kind == "timeout" and step.verdict.silence_ms == 1500


def test_the_doubt_limit_never_exceeds_the_maximum() -> None:
    spec = TurnSpec(min_silence_ms=200, max_silence_ms=600, doubt_silence_ms=800)
    step, _ = run_silence(EndOfTurnDetector(spec), 3000, text="Thanks", probabilities=[0.1])
    assert step is not None and step.verdict is not None and step.verdict.silence_ms == 600


def test_results_for_an_earlier_silence_are_ignored_when_the_caller_resumed() -> None:
    det = EndOfTurnDetector(SPEC)
    step = det.silence(120)
    (snap,) = step.requests
    det.speech()  # the caller went on talking before the words came back
    assert det.words_ready(snap.gap, "What time do you open?").verdict is None
    assert det.words is None
    step = det.silence(200)
    assert [type(r) for r in step.requests] == [Snapshot, AskModel]


def test_the_words_are_asked_for_when_the_sound_stops_before_the_vad_lets_go() -> None:
    det = EndOfTurnDetector(SPEC)
    assert det.quiet(SNAPSHOT_AFTER_QUIET_MS - 8).requests == []
    (snap,) = det.quiet(SNAPSHOT_AFTER_QUIET_MS).requests
    assert isinstance(snap, Snapshot)
    assert det.quiet(SNAPSHOT_AFTER_QUIET_MS + 32).requests == [], "asked once"
    det.words_ready(snap.gap, "What time do you open?")
    step, asked = run_silence(det, 3000, text=None, probabilities=[0.9])
    assert asked == ["model@200"], "the VAD's silence does not ask for the words again"
    assert step is not None and step.verdict is not None and step.verdict.kind == "finished"


def test_words_asked_for_in_a_quiet_the_sound_ended_are_stale() -> None:
    det = EndOfTurnDetector(SPEC)
    (snap,) = det.quiet(SNAPSHOT_AFTER_QUIET_MS).requests
    det.quiet(0.0)  # the caller goes on ("What time do you open ... on Saturday?")
    assert det.words_ready(snap.gap, "What time do you open?").verdict is None
    assert det.words is None
    step, asked = run_silence(det, 3000, text="What time do you open on Saturday?", probabilities=[0.9])
    assert asked == [WORDS_AT, "model@200"]
    assert det.text == "What time do you open on Saturday?"


def test_a_failed_model_leaves_the_silence_and_the_words_to_decide() -> None:
    det = EndOfTurnDetector(SPEC)
    step = det.silence(200)
    gap = step.requests[0].gap
    det.words_ready(gap, "What time do you open?")
    assert det.model_ready(gap, None).verdict is None
    step, _ = run_silence(det, 3000, text="What time do you open?", probabilities=[0.9])
    assert step is not None and step.verdict is not None and step.verdict.kind == "silence"


def silence_with_a_busy_model(det: EndOfTurnDetector, until_ms: float, text: str,
                              first: float | None = None) -> tuple[DetectorStep | None, list[str]]:
    """Like `run_silence`, but the model answers only its first ask (`first`; None: not even that) and is
    too busy for every later one."""
    asked: list[str] = []
    t = 0.0
    while t < until_ms:
        t += 20.0
        steps = [det.silence(t)]
        for req in steps[0].requests:
            if isinstance(req, Snapshot):
                asked.append(f"words@{t:.0f}")
                steps.append(det.words_ready(req.gap, text))
            elif isinstance(req, AskModel):
                asked.append(f"model@{t:.0f}")
                answer = first is not None and "model@" not in " ".join(asked[:-1])
                steps.append(det.model_ready(req.gap, first) if answer else det.model_busy(req.gap))
        for s in steps:
            if s.end:
                return s, asked
    return None, asked


def test_a_model_too_busy_to_answer_leaves_the_turn_to_the_words_and_the_fixed_silence() -> None:
    # many calls' decisions queued on a short machine: the model is not asked again in this silence
    spec = TurnSpec(min_silence_ms=200, max_silence_ms=1500, end_of_turn_silence_ms=700)
    step, asked = silence_with_a_busy_model(EndOfTurnDetector(spec), 3000, "What time do you open?")
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "silence" and step.verdict.silence_ms == 700 and step.verdict.model_busy
    assert "too busy" in step.verdict.reason
    assert asked == [WORDS_AT, "model@200"]
    # words that say "wait" still wait their own limit
    step, _ = silence_with_a_busy_model(EndOfTurnDetector(spec), 3000, "I would like to book it for")
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "timeout" and step.verdict.silence_ms == 1500


def test_a_model_busy_after_its_first_doubt_keeps_that_doubt_to_the_doubt_limit() -> None:
    spec = TurnSpec(min_silence_ms=200, max_silence_ms=1500, end_of_turn_silence_ms=700)
    det = EndOfTurnDetector(spec)
    step, asked = silence_with_a_busy_model(det, 3000, "Can I book an appointment", first=0.2)
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "timeout" and step.verdict.silence_ms == spec.doubt_silence_ms == 800
    assert asked == [WORDS_AT, "model@200", "model@400"]  # asked again once, too busy: not again
    assert step.verdict.model_busy and step.verdict.probability == 0.2
    # and the next silence asks the model again
    det.speech()
    assert any(isinstance(r, AskModel) for r in det.silence(200).requests)


def test_the_time_left_is_what_the_silence_limit_leaves() -> None:
    det = EndOfTurnDetector(SPEC)
    det.silence(100)
    assert det.time_left_ms() == SPEC.max_silence_ms - 100  # no words yet: the longest wait
    det.words_ready(det.gap, "What time do you open?")
    det.silence(200)
    assert det.time_left_ms() == SPEC.doubt_silence_ms - 200


def test_the_silence_detector_ends_after_its_fixed_silence_and_still_fetches_words() -> None:
    spec = TurnSpec(detector="silence", end_of_turn_silence_ms=700)
    step, asked = run_silence(EndOfTurnDetector(spec), 3000, text="Hello", probabilities=[0.0])
    assert step is not None and step.verdict is not None
    assert step.verdict.kind == "silence" and step.verdict.silence_ms == 700
    assert asked == [WORDS_AT]


def test_a_key_ends_the_turn_at_once() -> None:
    det = EndOfTurnDetector(SPEC)
    det.silence(60)
    verdict = det.force_end("the caller pressed a key")
    assert verdict.ends_turn and verdict.silence_ms == 60
    assert det.silence(80).verdict is None  # nothing more for this turn


def test_the_combined_rule_in_words() -> None:
    assert judge_turn(0.9, judge("I need it for"), 0.5)[0] == "unfinished"
    assert judge_turn(0.9, judge("let me think"), 0.5)[0] == "hold"
    assert judge_turn(0.9, judge("What are your opening hours?"), 0.5)[0] == "finished"
    assert judge_turn(0.3, judge("What are your opening hours?"), 0.5)[0] == "unfinished"


def test_the_waits_must_be_ordered() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="min_silence_ms < max_silence_ms"):
        TurnSpec(min_silence_ms=800, max_silence_ms=600)
