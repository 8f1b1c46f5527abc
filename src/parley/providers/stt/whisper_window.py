"""Whisper on a short encoder window: a telephone utterance decoded in ~70 ms instead of ~340 ms.

faster-whisper always pads the audio to Whisper's 30 s window, and the encoder's cost grows faster than
the window (self-attention): tiny.en int8 on one core encodes 30 s in ~340 ms but 10 s in ~30 ms. An
utterance that fits in `window_s` (with `MARGIN_S` of padding after it) is therefore encoded on that
window and decoded by CTranslate2 directly, with the same prompt, suppressed tokens and beam as
faster-whisper would use. Whisper was trained on 30 s windows, and on a shorter one it sometimes loops
(the sentence again and again): the new-token budget is capped by the audio's length, and a result that
still looks wrong — repetitive (gzip compression ratio above `MAX_COMPRESSION`) or unlikely (average
log-probability below `MIN_AVG_LOGPROB`) — is refused (`None`), and the caller decodes on the full
window. Measured in `bench/latency/stt_window.py` (figures in docs/turn-detection.md).

`decode_window` is blocking CPU work: call it from a worker thread.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

#: Padding kept after the utterance inside the window (Whisper expects silence after the speech).
MARGIN_S = 1.0
#: The window grows in these steps for longer utterances, up to Whisper's own 30 s.
STEP_S = 5.0
FULL_WINDOW_S = 30.0
#: A result above this gzip compression ratio repeats itself (faster-whisper's own fallback threshold).
MAX_COMPRESSION = 2.4
#: A result whose tokens average below this log-probability is a guess (faster-whisper's threshold).
MIN_AVG_LOGPROB = -1.0
#: Tokens that end a sentence (what Whisper writes when it thinks the caller finished).
SENTENCE_ENDS = frozenset({".", "?", "!", "...", "?!"})
#: New tokens allowed per second of audio (fast speech is ~3 words, ~4 tokens a second), plus a floor.
TOKENS_PER_S = 6.0
MIN_TOKENS = 10
FRAMES_PER_S = 100  # Whisper's mel frames (10 ms hop)


@dataclass(frozen=True)
class WindowResult:
    """A short-window decode that passed the checks."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    window_s: float
    #: P(the final "." / "?" / "!") per the decoder; None when the text does not end with one.
    sentence_end_p: float | None = None


def window_for(duration_s: float, window_s: float) -> float | None:
    """The encoder window for an utterance of `duration_s` (a multiple of `STEP_S`, at least `window_s`),
    or None when it would be the full 30 s window anyway (then faster-whisper's own path is used)."""
    if window_s <= 0:
        return None
    needed = duration_s + MARGIN_S
    window = max(window_s, np.ceil(needed / STEP_S) * STEP_S)
    return float(window) if window < FULL_WINDOW_S else None


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def decode_window(
    model: WhisperModel,
    audio: np.ndarray,
    language: str,
    *,
    beam_size: int,
    window_s: float,
    initial_prompt: str | None = None,
) -> WindowResult | None:
    """Decode float32 16 kHz `audio` on a short encoder window; None when the utterance does not fit
    or the result fails the checks (decode it on the full window then)."""
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_ctranslate2_storage, get_suppressed_tokens

    duration = len(audio) / 16000.0
    window = window_for(duration, window_s)
    if window is None:
        return None
    features = model.feature_extractor(audio)
    frames = int(window * FRAMES_PER_S)
    content = min(features.shape[-1], frames)
    padded = np.zeros((features.shape[0], frames), dtype=np.float32)
    padded[:, :content] = features[:, :content]

    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                          language=language)
    prompt: list[int] = []
    if initial_prompt:
        prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + initial_prompt.strip())]
    prompt += [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    budget = int(duration * TOKENS_PER_S) + MIN_TOKENS
    encoded = model.model.encode(get_ctranslate2_storage(padded[None]), to_cpu=False)
    result = model.model.generate(
        encoded,
        [prompt],
        beam_size=beam_size,
        max_length=min(len(prompt) + budget, 448),
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, (-1,)),
    )[0]
    tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
    text = tokenizer.decode(tokens).strip()
    avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
    if len(tokens) >= budget:
        return None  # it ran out of budget: a loop, or speech faster than any caller's
    if compression_ratio(text) > MAX_COMPRESSION or avg_logprob < MIN_AVG_LOGPROB:
        return None
    end_p = None
    if tokens and tokenizer.decode(tokens[-1:]).strip() in SENTENCE_ENDS:
        aligned = model.model.align(encoded, tokenizer.sot_sequence, [tokens], content)[0]
        probs = aligned.text_token_probs
        end_p = float(probs[-1]) if len(probs) == len(tokens) else None
    return WindowResult(text, float(avg_logprob), float(result.no_speech_prob), window, end_p)
