"""Sentence splitting for streamed speech: send each sentence to TTS as soon as it is complete.

`split_sentences(text)` splits a whole text; `SentenceBuffer` takes an LLM's streamed pieces and hands
back each sentence once the text after it shows it has ended (so "Dr. Smith" and "3.5" stay whole).
`first_clause_cut(text)` finds where a first sentence can be cut after its opening phrase ("Sure,") or, in
a long one, after its first clause, so that piece is synthesized on its own and heard sooner
(`SentenceBuffer(first_clause=True)`, `speech_pieces`).
"""

from __future__ import annotations

import re

#: Lower-cased words that end with a dot without ending the sentence.
ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "mt",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "no",
        "nr",
        "approx",
        "dept",
        "inc",
        "ltd",
        "co",
        "corp",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
        "z.b",
        "bzw",
        "ca",
        "usw",
        "tel",
    }
)

# Sentence-ending punctuation (with closing quotes/brackets) followed by whitespace.
_BOUNDARY = re.compile(r"([.!?…。！？]+[\"'”’)\]]*)(\s+)")
_LAST_WORD = re.compile(r"(\S+)$")
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")


def _is_abbreviation(before: str) -> bool:
    match = _LAST_WORD.search(before)
    if not match:
        return False
    word = match.group(1).rstrip(".").lower().lstrip("\"'(“‘[")
    if word in ABBREVIATIONS:
        return True
    # Initials and dotted short forms ("J. Smith", "U.S.", "p.m.") are not sentence ends.
    return (len(word) == 1 and word.isalpha()) or _DOTTED.fullmatch(word) is not None


def _cut_points(text: str) -> list[int]:
    """Offsets just after each sentence end that is followed by whitespace."""
    cuts: list[int] = []
    for match in _BOUNDARY.finditer(text):
        end_punct = match.end(1)
        if match.group(1).startswith(".") and len(match.group(1).rstrip("\"'”’)]")) == 1:
            if _is_abbreviation(text[: match.start(1)]):
                continue
        cuts.append(end_punct)
    return cuts


def split_sentences(text: str, *, min_chars: int = 0) -> list[str]:
    """Split `text` into sentences (whitespace-trimmed, empty ones dropped).

    `min_chars` joins a sentence shorter than that with the next one (avoids tiny TTS calls)."""
    out: list[str] = []
    start = 0
    for cut in _cut_points(text):
        out.append(text[start:cut].strip())
        start = cut
    out.append(text[start:].strip())
    return _merge_short([s for s in out if s], min_chars)


def _merge_short(sentences: list[str], min_chars: int) -> list[str]:
    if min_chars <= 0:
        return sentences
    merged: list[str] = []
    pending = ""
    for sentence in sentences:
        pending = f"{pending} {sentence}".strip() if pending else sentence
        if len(pending) >= min_chars:
            merged.append(pending)
            pending = ""
    if pending:
        merged.append(pending)
    return merged


#: A clause ends after a comma, semicolon or colon, or at a dash, when text follows.
_CLAUSE_PUNCT = re.compile(r"[,;:](?=\s+\S)|\s[-–—]+(?=\s+\S)")
#: ... or before "and" / "but" (the conjunction starts the next piece).
_CLAUSE_WORD = re.compile(r"\s+(?=(?:and|but)\s+\S)", re.IGNORECASE)
_WORD = re.compile(r"\S+")

CLAUSE_MIN_WORDS = 3  # in a long sentence, a first clause shorter than this is not cut off ...
CLAUSE_MIN_REST = 2  # ... nor one that leaves a rest shorter than this
LONG_SENTENCE_WORDS = 7  # only sentences of at least this many words are cut after a longer first clause
#: An opening phrase of at most this many words before a comma, semicolon, colon or dash ("Sure,",
#: "Okay Bob,") is its own piece in any sentence, released as soon as the next word arrives: synthesized
#: alone it is heard ~100 ms sooner, with the same pause after it (piper pauses ~300 ms at a comma inside a
#: sentence too).
OPENER_WORDS = 2


#: Phrases LLM replies often open with, per language, as `speech_pieces` cuts them off ("Sure, I can…" →
#: "Sure,"): an agent whose LLM writes its replies keeps each one's audio in its TTS cache once said.
COMMON_OPENERS: dict[str, tuple[str, ...]] = {
    "en": (
        "Sure,", "Sure.", "Sure!", "Okay,", "Okay.", "OK,", "Of course,", "Of course.", "Of course!",
        "Certainly,", "Certainly.", "Absolutely,", "Absolutely.", "Great,", "Great.", "Great!", "Perfect,",
        "Perfect.", "Got it,", "Got it.", "No problem,", "No problem.", "Sorry,", "Yes,", "Yes.", "Alright,",
        "Thanks,", "Thanks!", "Thank you,", "Thank you.", "Thank you!", "Hello,", "Hi,", "Hi there,",
    ),
}


def common_openers(language: str) -> tuple[str, ...]:
    """`COMMON_OPENERS` of a language ("en", "en-US", "en_GB" → English); none for the others."""
    return COMMON_OPENERS.get(language.replace("_", "-").split("-")[0].lower(), ())


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def first_clause_cut(
    text: str,
    *,
    min_words: int = CLAUSE_MIN_WORDS,
    min_rest: int = CLAUSE_MIN_REST,
    long_words: int = LONG_SENTENCE_WORDS,
) -> int | None:
    """Offset at which to cut the start of `text` (a sentence, maybe still incomplete) after its first
    clause: an opening phrase of up to `OPENER_WORDS` words before a comma, semicolon, colon or dash that a
    word follows ("Sure, I…" → "Sure,"), in any sentence; else, when `text` has at least `long_words`
    words, the first such boundary or " and " / " but " that has at least `min_words` words before it and
    `min_rest` after it. None: no cut (short, or no boundary). `text[:cut].strip()` + `text[cut:].strip()`
    is the sentence."""
    opening = _CLAUSE_PUNCT.search(text)
    if opening is not None and _words(text[: opening.end()]) <= OPENER_WORDS:
        return opening.end()
    if _words(text) < long_words:
        return None
    cuts = [m.end() for m in _CLAUSE_PUNCT.finditer(text)] + [m.start() for m in _CLAUSE_WORD.finditer(text)]
    for cut in sorted(cuts):
        if _words(text[:cut]) >= min_words:
            return cut if _words(text[cut:]) >= min_rest else None
    return None


def speech_pieces(text: str) -> list[str]:
    """`text` as the TTS requests a streamed reply of it becomes: its sentences, the first one cut after
    its opening phrase or, when long, its first clause (what `SentenceBuffer(first_clause=True)` releases
    for the same text)."""
    buf = SentenceBuffer(first_clause=True)
    pieces = buf.push(text.strip() + " ")
    rest = buf.flush()
    return [*pieces, rest] if rest else pieces


class SentenceBuffer:
    """Collects streamed text and releases complete sentences.

    >>> buf = SentenceBuffer()
    >>> buf.push("Hello there. How ar")
    ['Hello there.']
    >>> buf.push("e you?")
    []
    >>> buf.flush()
    'How are you?'

    With `first_clause`, a first sentence is released in two pieces when `first_clause_cut` finds a cut:
    its opening phrase as soon as the next word has arrived, or a long one's first clause as soon as the
    clause and two more words have, then the rest of it.
    """

    def __init__(self, *, min_chars: int = 0, first_clause: bool = False) -> None:
        self._text = ""
        self._min_chars = min_chars
        self._clause_pending = first_clause  # the first sentence may still be cut after its first clause

    def push(self, piece: str) -> list[str]:
        """Add streamed text; return the sentences (or first clause) it completed (maybe none)."""
        self._text += piece
        clause = self._first_clause() if self._clause_pending else []
        cuts = _cut_points(self._text)
        if not cuts:
            return clause
        self._clause_pending = False
        bounds = [0, *cuts]
        sentences = [self._text[a:b].strip() for a, b in zip(bounds, bounds[1:], strict=False)]
        rest = self._text[cuts[-1] :].lstrip()
        ready = _merge_short([s for s in sentences if s], self._min_chars)
        if self._min_chars and ready and len(ready[-1]) < self._min_chars:
            rest = f"{ready.pop()} {rest}"  # too short alone: join it with what follows
        self._text = rest
        return clause + ready

    def _first_clause(self) -> list[str]:
        cuts = _cut_points(self._text)
        sentence = self._text[: cuts[0]] if cuts else self._text
        cut = first_clause_cut(sentence)
        if cut is None:
            return []
        self._clause_pending = False
        clause = self._text[:cut].strip()
        self._text = self._text[cut:].lstrip()
        return [clause]

    def flush(self) -> str | None:
        """End of stream: the remaining text (None when there is none)."""
        rest = self._text.strip()
        self._text = ""
        return rest or None

    @property
    def pending(self) -> str:
        """Text received but not yet released."""
        return self._text
