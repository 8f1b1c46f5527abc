"""Turn-taking: when the caller's turn ends and what the agent does about it.

* `segmenter.SpeechSegmenter` — the detector: VAD probabilities → speech onset, confirmation, and the
  end of turn after a fixed silence (`turn.end_of_turn_silence_ms`).
* `policy.TurnPolicy` — the decisions, pure: it is told what happened (caller speech started,
  confirmed, going on, ended; a transcript; a key; the clock ticking) with the media time and a snapshot
  of the agent's side (`AgentState`), and returns `Action`s, each with its reason in words. The
  `Conversation` carries them out.

* `words` — word rules per language: does the transcript so far say the caller has not finished?

Where new turn detection plugs in: another end-of-turn detector (a Smart Turn model, word rules) replaces
or refines the segmenter's silence rule and reports `TurnPolicy.speech_ended`; interim transcripts and
preemptive generation become further event methods on the policy returning further actions.
"""
