"""Sentence splitting for streamed TTS."""

from __future__ import annotations

from parley.providers.text import SentenceBuffer, first_clause_cut, speech_pieces, split_sentences


def test_split_keeps_abbreviations_decimals_and_initials() -> None:
    text = 'Dr. Smith sees you at 3.30 p.m. on Tuesday! Is that okay? "Great." J. R. R. Tolkien wrote it'
    assert split_sentences(text) == [
        "Dr. Smith sees you at 3.30 p.m. on Tuesday!",
        "Is that okay?",
        '"Great."',
        "J. R. R. Tolkien wrote it",
    ]


def test_split_merges_short_sentences() -> None:
    assert split_sentences("Hi. Ok. This is a longer one. Bye.", min_chars=10) == [
        "Hi. Ok. This is a longer one.",
        "Bye.",
    ]
    assert split_sentences("   ") == []


def test_buffer_releases_each_sentence_once_the_next_begins() -> None:
    buf = SentenceBuffer()
    released: list[str] = []
    for piece in ["Sure", ", I can", " book that.", " May I have", " your name", ", please?", " Thanks"]:
        released += buf.push(piece)
        if piece == " May I have":
            assert released == ["Sure, I can book that."]
    assert released == ["Sure, I can book that.", "May I have your name, please?"]
    assert buf.pending == "Thanks"
    assert buf.flush() == "Thanks"
    assert buf.flush() is None


def test_buffer_holds_back_short_fragments() -> None:
    buf = SentenceBuffer(min_chars=12)
    out: list[str] = []
    for word in "Hi. Ok. Your table is ready. Bye.".split():
        out += buf.push(word + " ")
    assert out == ["Hi. Ok. Your table is ready."]
    assert buf.flush() == "Bye."


def test_first_clause_cut_only_in_long_sentences() -> None:
    assert speech_pieces("Sure thing Bob, I can book that for you on Tuesday.") == [
        "Sure thing Bob,",
        "I can book that for you on Tuesday.",
    ]
    assert speech_pieces("I can help with that, but first I need your name. Thanks.") == [
        "I can help with that,",
        "but first I need your name.",
        "Thanks.",
    ]
    assert speech_pieces("Your visit is on Tuesday at ten and I will text you.") == [
        "Your visit is on Tuesday at ten",
        "and I will text you.",
    ]
    assert speech_pieces("Thanks for calling Acme — how can I help you today?") == [
        "Thanks for calling Acme —",
        "how can I help you today?",
    ]
    # a number's comma, a one-word rest after a long clause, a short sentence's late comma: one piece
    assert speech_pieces("It costs 1,000 dollars for the whole thing today.") == [
        "It costs 1,000 dollars for the whole thing today."
    ]
    assert speech_pieces("I will book that for you now, okay?") == ["I will book that for you now, okay?"]
    assert speech_pieces("We can do Tuesday, okay?") == ["We can do Tuesday, okay?"]
    assert speech_pieces("  ") == []
    assert first_clause_cut("Hello there") is None


def test_an_opening_phrase_is_its_own_piece_in_any_sentence() -> None:
    assert speech_pieces("Sure, I can book that. May I have your name, please?") == [
        "Sure,",
        "I can book that.",
        "May I have your name, please?",
    ]
    assert speech_pieces("Okay Bob, see you then.") == ["Okay Bob,", "see you then."]
    assert speech_pieces("Sorry — could you say that again?") == ["Sorry —", "could you say that again?"]
    assert speech_pieces("No problem. Which day was it?") == ["No problem.", "Which day was it?"]
    # streamed: out as soon as the word after the comma arrives, not when the sentence ends
    buf = SentenceBuffer(first_clause=True)
    assert buf.push("Sure") == []
    assert buf.push(",") == []
    assert buf.push(" I") == ["Sure,"]
    assert buf.push(" can book that.") == []
    assert buf.push(" May") == ["I can book that."]


def test_buffer_releases_the_first_clause_before_the_sentence_ends() -> None:
    buf = SentenceBuffer(first_clause=True)
    released: list[list[str]] = []
    for word in "Sure thing Bob, I can book that for you. Anything else, or is that all for today?".split():
        released.append(buf.push(word + " "))
    flat = [p for r in released for p in r]
    # the clause goes out as soon as the sentence is known to be long (seven words), not at its end
    assert released[6] == ["Sure thing Bob,"]
    # only the first sentence is cut
    assert flat == ["Sure thing Bob,", "I can book that for you.", "Anything else, or is that all for today?"]
    assert buf.flush() is None
    assert "".join(SentenceBuffer(first_clause=True).push("Hi. How are you? ")) == "Hi.How are you?"
