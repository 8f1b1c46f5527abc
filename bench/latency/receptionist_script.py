"""What the benchmark's caller asks the shipped receptionist, and its replies as a stand-in LLM gives them.

No imports beyond the standard library: Pipecat's worker (bench/latency/pipecat_side.py, in its own venv)
uses it too.
"""

from __future__ import annotations

#: Complete requests. Each matches one of the scripted receptionist's intents with a short reply: the
#: fallback reply is ~7 s long and the caller's next utterance would barge into it; a request for a person
#: or a goodbye would end the call.
REQUESTS = [
    "I would like to book an appointment for next Tuesday.",
    "What are your opening hours on Saturday?",
    "I need to cancel my appointment.",
    "Can I make an appointment for Friday?",
    "When are you open?",
    "I want to cancel my booking for Wednesday.",
    "Could I schedule a visit for tomorrow?",
    "Are you open today?",
    "Please cancel my appointment on Friday.",
    "What time do you close on Thursday?",
    "I need to see the dentist on Monday.",
    "Is the clinic open on Sunday?",
]

#: The receptionist's short replies (agents/receptionist.yaml), chosen by its keywords, first match wins.
REPLIES = [
    (("cancel",), "No problem. Which day was your appointment?"),
    (("hours", "open", "opening", "close", "closing"),
     "We're open Monday to Friday, from nine in the morning to five in the afternoon."),
    (("book", "appointment", "schedule", "booking", "see", "visit"),
     "Sure, I can book that. May I have your name, please?"),
]
#: The receptionist's own fallback (long).
FALLBACK = "Sorry, I didn't catch that. You can book an appointment, ask our opening hours, or speak to a person."


def reply_for(said: str, fallback: str = FALLBACK) -> str:
    """The receptionist's reply to the caller's words `said` (`fallback` when no keyword matches)."""
    lowered = said.lower()
    return next((reply for keys, reply in REPLIES if any(k in lowered for k in keys)), fallback)
