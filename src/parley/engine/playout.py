"""Which of the agent's words the caller actually heard.

`SpeechTrack` records, for one agent utterance, where each sentence's audio (each TTS request: a long
first sentence is two, its first clause and the rest) sits in the channel's output
sample count (`MediaChannel.played_samples` space). After a barge-in, `heard(played)` gives the text
up to the last word whose audio was played (by the sentence's share of samples), and `unheard(played)`
the sentences to say again if the interruption turns out to be false.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Speaking-rate guess for a sentence whose audio is still being synthesised (seconds per character).
_SECONDS_PER_CHAR = 0.065


@dataclass
class SentenceSpan:
    """One sentence (or piece of one) and its samples `[start, end)` in the output count; `complete` once
    fully written. A `filler` (an acknowledgement) is heard but never said again on a resume."""

    text: str
    start: int
    end: int
    complete: bool = False
    filler: bool = False


class SpeechTrack:
    """The sentences of one agent utterance and their place in the output stream."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.spans: list[SentenceSpan] = []
        self.pending: list[str] = []  # sentences known but not yet (fully) written

    def begin(self, text: str, at_sample: int, *, filler: bool = False) -> SentenceSpan:
        """A sentence starts being written at output sample `at_sample`."""
        span = SentenceSpan(text, at_sample, at_sample, filler=filler)
        self.spans.append(span)
        return span

    @property
    def written_text(self) -> str:
        return " ".join(s.text for s in self.spans)

    def heard(self, played: int) -> tuple[str, bool]:
        """(text heard when `played` samples had been played, True when every written sentence was heard)."""
        parts: list[str] = []
        for span in self.spans:
            if played >= span.end and span.complete:
                parts.append(span.text)
                continue
            if played > span.start:
                total = span.end - span.start
                if not span.complete:
                    total = max(total, int(len(span.text) * _SECONDS_PER_CHAR * self.sample_rate))
                parts.append(_words_within(span.text, (played - span.start) / max(total, 1)))
            return " ".join(p for p in parts if p), False
        return " ".join(parts), True

    def unheard(self, played: int) -> list[str]:
        """Sentences not fully heard (from the interrupted one on), plus those never written."""
        out = [s.text for s in self.spans if not (s.filler or (s.complete and played >= s.end))]
        return out + list(self.pending)


def _words_within(text: str, fraction: float) -> str:
    """The whole words of `text` inside its first `fraction` (by characters)."""
    if fraction >= 1.0:
        return text
    if fraction <= 0.0:
        return ""
    cut = int(len(text) * fraction)
    if cut < len(text) and not text[cut].isspace():
        cut = text.rfind(" ", 0, cut)
        if cut < 0:
            return ""
    return text[:cut].rstrip()
