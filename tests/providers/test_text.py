"""Sentence splitting for streamed TTS."""

from __future__ import annotations

from parley.providers.text import SentenceBuffer, split_sentences


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
