"""The word rules of end of turn, as specifications: what the transcript so far says about the turn.

`unfinished` cases carry a fragment of the reason the policy will log; `no_opinion` cases are sentences
that end a turn (or that the words cannot judge), where a wrong `unfinished` would make the caller wait.
"""

from __future__ import annotations

import pytest

from parley.engine.turn.words import EN, RULES, LanguageRules, WordVerdict, judge, register, rules_for

UNFINISHED: list[tuple[str, str]] = [
    # conjunctions
    ("I need to change my appointment and", "conjunction 'and'"),
    ("I'm calling because", "conjunction 'because'"),
    ("Can we do Tuesday or", "conjunction 'or'"),
    ("I would pay today but", "conjunction 'but'"),
    ("I was wondering if", "conjunction 'if'"),
    ("It's more expensive than", "conjunction 'than'"),
    ("I'll wait until", "conjunction 'until'"),
    ("I need it so that", "'so that'"),
    ("I went there and then", "'and then'"),
    ("I think that", "'think that'"),
    ("Something cheap, such as", "'such as'"),
    ("I want the red one, cause", "conjunction 'cause'"),
    # prepositions
    ("I would like to book a table for", "preposition 'for'"),
    ("I would like to book a table for.", "preposition 'for'"),  # Whisper puts a full stop on cut speech
    ("I'd like to", "preposition 'to'"),
    ("Can you put me through to", "preposition 'to'"),
    ("I'm calling about", "preposition 'about'"),
    ("I'm having a problem with", "preposition 'with'"),
    ("The appointment on", "preposition 'on'"),
    ("I'm interested in", "preposition 'in'"),
    ("I'd like something like", "preposition 'like'"),
    ("I'm calling from", "preposition 'from'"),
    ("Let's meet at", "preposition 'at'"),
    ("a refund of", "preposition 'of'"),
    # articles, possessives and words that need their noun
    ("I want to speak to the", "article 'the'"),
    ("I'd like a", "article 'a'"),
    ("Is there an", "article 'an'"),
    ("What's your", "'your'"),
    ("I lost my", "'my'"),
    ("Can you check our", "'our'"),
    ("Thank you very", "'very'"),
    # announcements
    ("My number is", "'my number is'"),
    ("my phone number is", "'my phone number is'"),
    ("The address is", "'the address is'"),
    ("My name's", "'name's'"),
    ("The problem is", "'the problem is'"),
    ("My email address was", "'my email address was'"),
    ("The problem is that", "'problem is that'"),
    ("The thing is that", "'thing is that'"),
    ("The reason I'm calling is", "'the reason i'm … is' announces"),
    ("My date of birth is", "'my date of … is' announces"),
    ("The problem I have is", "'the problem i … is' announces"),
    # "since" counting from a time still to come
    ("I have been waiting since", "ends on 'since'"),
    ("I've been a patient here since", "ends on 'since'"),
    # an indefinite pronoun right before the preposition is its object, not a relative clause
    ("I need to talk to someone about", "preposition 'about'"),
    ("Can I ask you something about", "preposition 'about'"),
    # dangling subjects and contractions
    ("Yes and I", "subject 'i'"),
    ("Well I", "subject 'i'"),
    ("It's", "contraction 'it's'"),
    ("Yes, I'm", "contraction 'i'm'"),
    ("So what's", "contraction 'what's'"),
    ("There's", "contraction 'there's'"),
    # open lists
    ("I need milk, eggs and", "open list ('milk, eggs and')"),
    ("I need milk, eggs, and", "open list ('milk, eggs, and')"),
    ("Monday, Tuesday or", "open list"),
    ("We have a dog, two cats, a parrot and", "open list"),
    # numbers being spelled
    ("My number is 5 5 5", "being spelled: 3 digits so far after 'number'"),
    ("my phone number is five five five one", "4 digits so far after 'phone'"),
    ("My phone number is 555-123", "6 digits so far after 'phone'"),
    ("call me back on 0 7 7 0 0", "after 'on'"),
    ("My account number is 1 2 3 4 5 6 7 8", "8 digits so far after 'number'"),
    ("The order number is double five seven", "3 digits so far"),
    ("It's 5 5 5 1 2", "5 digits so far after 'it's'"),
    ("My zip code is 9 4 1", "3 digits so far after 'zip'"),
    ("The card number is 4111 1111", "8 digits so far after 'card'"),
    ("My phone number is oh seven", "2 digits"),
    # fillers and requests for time
    ("Um", "filler 'um'"),
    ("I'd like, uh", "filler 'uh'"),
    ("I need to book an appointment um", "filler 'um'"),
    ("Hmm.", "filler 'hmm'"),
    ("I want erm", "filler 'erm'"),
    ("Hold on.", "'hold on' asks for time"),
    ("Hold on a second please.", "'hold on' asks for time"),
    ("Hold on, please.", "'hold on' asks for time"),
    ("Oh, hang on.", "'hang on'"),
    ("Wait.", "'wait' asks for time"),
    ("Wait a minute.", "'wait'"),
    ("Okay, one moment.", "'one moment'"),
    ("Sorry, just a second.", "'just a second'"),
    ("Give me a minute.", "'give me a minute'"),
    ("Let me think.", "'let me think'"),
    ("Let me see.", "'let me see'"),
    ("Hold on, let me check my calendar.", "'let me check'"),
    ("Um, let me think about that.", "'let me think'"),
    ("Bear with me.", "'bear with me'"),
    # a question announced but not yet asked (Whisper hears a cut "tell me when" as a question)
    ("Can you tell me when?", "'tell me when' opens a question"),
    ("Could you show me where", "'show me where'"),
    ("I was wondering whether", "'wondering whether'"),
    # trailing off (STT punctuation)
    ("I was going to say...", "trails off"),
    ("So the thing is, you know,", "trails off"),
    ("I wanted -", "trails off"),
]

NO_OPINION: list[str] = [
    "I would like to book a table for two people tonight.",
    "I need to change my appointment and cancel the other one.",
    "Thank you.",
    "Yes.",
    "No, that's all.",
    "What time do you close?",
    "Bye.",
    "I can't wait.",
    "Can you wait?",  # "wait" is not the whole clause
    "Who am I speaking with?",
    "What is this about?",
    "Where are you calling from?",
    "Which one are you talking about?",
    "What are you looking for?",
    "What if?",
    "Please log me in.",
    "Come in.",
    "Can you turn it on?",
    "I'm already checked in.",
    "The light is on.",
    "Go on.",
    "I don't want to.",
    "You don't have to.",
    "Do you want to?",
    "I'll take plan a.",
    "We're at gate a.",
    "It's not very.",
    "I'd like that.",
    "I'd like some.",
    "What's this?",
    "What is that?",
    "What was that?",
    "Who said that?",
    "I didn't say that.",
    "I know that.",
    "I mean that.",
    "My phone number is 555-123-4567.",
    "My phone number is 1 555 123 4567",
    "My zip code is 9 4 1 0 3.",
    "My PIN is 1 2 3 4.",
    "A table for two.",
    "At 5.",
    "Let's say at 10 30.",
    "It's 2025.",
    "Oh.",
    "Is that okay?",
    "That's it.",
    "I'll come in the morning.",
    "As well.",
    "When?",
    "Can you tell me when you are open?",
    "I don't know why.",
    "Tell me what you need.",
    "I know what the problem is.",
    "That's what my name is.",
    "I haven't seen him since.",
    "I've been here ever since.",
    "It hasn't worked since.",
    "I need someone to talk to.",
    "Is there anyone I can speak to?",
    "Something to write with.",
    "Monday, Tuesday or Wednesday.",
    "",
    "   ",
    "...",
]


@pytest.mark.parametrize(("text", "reason"), UNFINISHED, ids=[t for t, _ in UNFINISHED])
def test_unfinished(text: str, reason: str) -> None:
    verdict = judge(text, "en")
    assert verdict.kind == "unfinished", verdict
    assert verdict.unfinished
    assert reason.lower() in verdict.reason.lower(), verdict.reason
    assert verdict.rule


@pytest.mark.parametrize("text", NO_OPINION)
def test_no_opinion(text: str) -> None:
    verdict = judge(text, "en")
    assert verdict.kind == "no_opinion", verdict
    assert not verdict.unfinished


def test_verdict_reasons_name_the_rule() -> None:
    assert judge("Who am I speaking with?").rule == "question"
    assert judge("Please log me in.").rule == "particle"
    assert judge("My phone number is 555-123-4567").reason == "a number of 10 digits after 'phone' looks complete"
    assert judge("").reason == "nothing said yet"
    assert judge("I'd like a table for").reason == "ends on the preposition 'for'"


def test_case_quotes_and_whitespace_do_not_matter() -> None:
    assert judge("I WANT TO BOOK A TABLE FOR").unfinished
    assert judge("  my number is  \n").unfinished
    assert judge("It\u2019s").unfinished  # typographic apostrophe
    assert judge("I’m calling about, ").unfinished


def test_the_words_only_look_at_the_end() -> None:
    assert not judge("Hold on. Actually, I'd like a table for two.").unfinished
    assert judge("I'd like a table for two. And").unfinished
    assert not judge("My number is 5 5 5. Thanks, that's all.").unfinished


@pytest.mark.parametrize("code", ["en", "en-US", "en_GB", "EN", None])
def test_language_codes(code: str | None) -> None:
    assert rules_for(code) is EN
    assert judge("I need to book a table for", code).unfinished


def test_unknown_language_has_no_opinion() -> None:
    verdict = judge("Ich möchte einen Tisch für", "de-DE")
    assert verdict == WordVerdict("no_opinion", "no word rules for language 'de-DE'", "language")


def test_another_language_plugs_in_with_its_own_table() -> None:
    from dataclasses import replace

    spanish = replace(
        EN,
        code="es",
        fillers=frozenset({"eh", "este", "mmm"}),
        pause_phrases=frozenset({("un", "momento"), ("espera",), ("espere",)}),
        courtesy=frozenset({"por", "favor"}),
        interjections=frozenset({"sí", "vale", "bueno"}),
        thinking_openers=frozenset({("déjame",)}),
        thinking_verbs=frozenset({"pensar", "ver"}),
        conjunctions=frozenset({"y", "o", "pero", "porque"}),
        conjunction_phrases=frozenset(),
        list_conjunctions=frozenset({"y", "o"}),
        prepositions=frozenset({"para", "de", "con", "a", "en"}),
        particles=frozenset(),
        question_words=frozenset({"qué", "quién", "dónde"}),
        to_ellipsis=frozenset(),
        determiners=frozenset({"el", "la", "los", "las", "un", "una", "mi"}),
        dangling=frozenset(),
        announcing_nouns=frozenset({"número", "nombre"}),
        copulas=frozenset({"es"}),
        digit_words={"uno": 1, "dos": 1, "tres": 1, "cinco": 1},
        digit_multipliers={},
        number_cues={"teléfono": (9,), "número": ()},
    )
    register(spanish)
    try:
        assert judge("Quiero reservar una mesa para", "es").reason == "ends on the preposition 'para'"
        assert judge("Un momento, por favor.", "es").unfinished
        assert judge("Mi número es", "es").unfinished
        assert not judge("Quiero reservar una mesa para dos.", "es").unfinished
        assert judge("I need a table for", "en").unfinished  # English untouched
    finally:
        RULES.pop("es", None)
    assert rules_for("es") is None


def test_rules_table_is_a_plain_dataclass() -> None:
    assert isinstance(EN, LanguageRules)
    assert "for" in EN.prepositions and "and" in EN.conjunctions and "um" in EN.fillers
    assert EN.number_cues["phone"] == (10, 11)
