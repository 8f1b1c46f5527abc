"""Sentence splitting for streamed speech: send each sentence to TTS as soon as it is complete.

`split_sentences(text)` splits a whole text; `SentenceBuffer` takes an LLM's streamed pieces and hands
back each sentence once the text after it shows it has ended (so "Dr. Smith" and "3.5" stay whole).
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


class SentenceBuffer:
    """Collects streamed text and releases complete sentences.

    >>> buf = SentenceBuffer()
    >>> buf.push("Hello there. How ar")
    ['Hello there.']
    >>> buf.push("e you?")
    []
    >>> buf.flush()
    'How are you?'
    """

    def __init__(self, *, min_chars: int = 0) -> None:
        self._text = ""
        self._min_chars = min_chars

    def push(self, piece: str) -> list[str]:
        """Add streamed text; return the sentences it completed (maybe none)."""
        self._text += piece
        cuts = _cut_points(self._text)
        if not cuts:
            return []
        bounds = [0, *cuts]
        sentences = [self._text[a:b].strip() for a, b in zip(bounds, bounds[1:], strict=False)]
        rest = self._text[cuts[-1] :].lstrip()
        ready = _merge_short([s for s in sentences if s], self._min_chars)
        if self._min_chars and ready and len(ready[-1]) < self._min_chars:
            rest = f"{ready.pop()} {rest}"  # too short alone: join it with what follows
        self._text = rest
        return ready

    def flush(self) -> str | None:
        """End of stream: the remaining text (None when there is none)."""
        rest = self._text.strip()
        self._text = ""
        return rest or None

    @property
    def pending(self) -> str:
        """Text received but not yet released."""
        return self._text
