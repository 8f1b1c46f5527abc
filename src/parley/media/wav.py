"""Read and write mono 16-bit PCM WAV files (uploads, the file transport, tests).

`read_wav` accepts a path, bytes or a binary file and returns `(pcm, rate)` with `pcm` a 1-D int16
array; stereo is down-mixed to mono. Anything else — not a WAV, no audio, compressed or float
samples, a sample width other than 16 bits, more than two channels — raises `AudioFormatError`
whose message says what is wrong in words a caller can act on.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np

Pcm = np.ndarray

MIN_RATE = 8000
MAX_RATE = 192000


class AudioFormatError(ValueError):
    """The audio is not a WAV we can use; the message says why."""


def read_wav(
    source: str | Path | bytes | bytearray | BinaryIO, *, max_seconds: float | None = None
) -> tuple[Pcm, int]:
    """Decode a mono (or stereo, down-mixed) 16-bit PCM WAV into `(int16 samples, sample rate)`."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise AudioFormatError("the file is empty")
        fh: BinaryIO = io.BytesIO(bytes(source))
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise AudioFormatError(f"no such file: {path}")
        if path.stat().st_size == 0:
            raise AudioFormatError(f"{path} is empty")
        fh = io.BytesIO(path.read_bytes())
    else:
        fh = source
    try:
        with wave.open(fh, "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            frames = wav.getnframes()
            if width != 2:
                raise AudioFormatError(f"unsupported sample width: {width * 8}-bit; 16-bit PCM is required")
            if channels not in (1, 2):
                raise AudioFormatError(f"unsupported channel count {channels}; mono or stereo is required")
            if not MIN_RATE <= rate <= MAX_RATE:
                raise AudioFormatError(
                    f"unsupported sample rate {rate} Hz; {MIN_RATE}–{MAX_RATE} Hz is required"
                )
            if max_seconds is not None and frames > max_seconds * rate:
                raise AudioFormatError(
                    f"audio is too long: {frames / rate:.1f} s; at most {max_seconds:g} s is accepted"
                )
            data = wav.readframes(frames)
    except AudioFormatError:
        raise
    except wave.Error as exc:
        raise AudioFormatError(_explain(str(exc))) from None
    except EOFError:
        raise AudioFormatError("not a WAV file: the header is truncated") from None
    usable = len(data) - len(data) % (2 * channels)
    pcm = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
    if channels == 2:
        pcm = pcm.reshape(-1, 2).astype(np.int32).sum(axis=1) // 2
        pcm = pcm.astype(np.int16)
    if pcm.size == 0:
        raise AudioFormatError("the WAV file contains no audio samples")
    return pcm, rate


def _explain(message: str) -> str:
    if "RIFF" in message or "WAVE" in message:
        return "not a WAV file (no RIFF/WAVE header)"
    if "unknown format" in message:
        code = message.rsplit(":", 1)[-1].strip()
        kinds = {
            "3": "32-bit float",
            "6": "A-law",
            "7": "μ-law",
            "65534": "WAVE_FORMAT_EXTENSIBLE",
            "85": "MP3",
        }
        kind = kinds.get(code, f"format code {code}")
        return f"unsupported WAV encoding ({kind}); 16-bit PCM is required"
    if "fmt chunk" in message or "data chunk" in message:
        return f"broken WAV file ({message})"
    return f"invalid WAV file: {message}"


def wav_bytes(pcm: Pcm, rate: int) -> bytes:
    """Encode mono int16 samples as a complete WAV file in memory."""
    buf = io.BytesIO()
    _write(buf, pcm, rate)
    return buf.getvalue()


def write_wav(path: str | Path, pcm: Pcm, rate: int) -> Path:
    """Write mono int16 samples to `path` as a WAV file; returns the path."""
    path = Path(path)
    with path.open("wb") as fh:
        _write(fh, pcm, rate)
    return path


def _write(fh: BinaryIO, pcm: Pcm, rate: int) -> None:
    arr = np.asarray(pcm)
    if arr.dtype != np.int16 or arr.ndim != 1:
        raise ValueError(f"expected mono int16 PCM, got dtype {arr.dtype} shape {arr.shape}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"sample rate {rate} out of range {MIN_RATE}–{MAX_RATE}")
    with wave.open(fh, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(arr.astype("<i2", copy=False).tobytes())
