"""WAV reading/writing: round trips, stereo down-mix, and readable errors for bad files."""

from __future__ import annotations

import io
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from parley.media.wav import AudioFormatError, read_wav, wav_bytes, write_wav


def _wav(channels: int, width: int, rate: int, frames: bytes) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def test_round_trip_file_and_bytes(tmp_path: Path) -> None:
    pcm = (np.arange(-4000, 4000, 7)).astype(np.int16)
    path = write_wav(tmp_path / "a.wav", pcm, 8000)
    back, rate = read_wav(path)
    assert rate == 8000 and np.array_equal(back, pcm)
    back, rate = read_wav(wav_bytes(pcm, 22050))
    assert rate == 22050 and np.array_equal(back, pcm)
    with path.open("rb") as fh:
        assert np.array_equal(read_wav(fh)[0], pcm)


def test_stereo_is_mixed_down() -> None:
    left = np.full(100, 1000, np.int16)
    right = np.full(100, 3000, np.int16)
    frames = np.stack([left, right], axis=1).reshape(-1).tobytes()
    pcm, rate = read_wav(_wav(2, 2, 16000, frames))
    assert rate == 16000 and len(pcm) == 100 and int(pcm[0]) == 2000


def test_sox_written_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-b", "16", "-c", "1", str(path), "synth", "0.5", "sine", "440"],
        check=True,
    )
    pcm, rate = read_wav(path)
    assert rate == 16000 and len(pcm) == 8000 and np.abs(pcm).max() > 10000


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty"),
        (b"this is a text file, not audio", "not a WAV"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "WAV"),
        (_wav(1, 2, 16000, b""), "no audio"),
        (_wav(1, 1, 8000, b"\x80" * 800), "8-bit"),
        (_wav(1, 3, 8000, b"\x00" * 300), "24-bit"),
        (_wav(3, 2, 8000, b"\x00" * 600), "channel"),
        (_wav(1, 2, 4000, b"\x00" * 600), "sample rate"),
    ],
)
def test_bad_files_raise_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(AudioFormatError, match=message):
        read_wav(data)


def test_float_wav_and_length_limit(tmp_path: Path) -> None:
    path = tmp_path / "float.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "16000",
            "-e",
            "floating-point",
            "-b",
            "32",
            str(path),
            "synth",
            "0.1",
            "sine",
            "440",
        ],
        check=True,
    )
    with pytest.raises(AudioFormatError, match="32-bit float"):
        read_wav(path)
    long = wav_bytes(np.zeros(8000 * 5, np.int16), 8000)
    with pytest.raises(AudioFormatError, match="too long: 5.0 s"):
        read_wav(long, max_seconds=4)
    with pytest.raises(AudioFormatError, match="no such file"):
        read_wav(tmp_path / "missing.wav")


def test_write_refuses_non_int16(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int16"):
        write_wav(tmp_path / "x.wav", np.zeros(10, np.float32), 8000)
