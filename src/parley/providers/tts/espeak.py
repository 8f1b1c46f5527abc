"""espeak-ng text-to-speech: the Debian `espeak-ng` program, run as an async subprocess.

Robotic but instant, and it speaks about a hundred languages: a fallback voice and a test-speech
source. Audio is read from the program's standard output as it is produced (22.05 kHz, 16-bit mono).
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import numpy as np

from parley.providers.base import TTS, Capabilities, Pcm, ProviderError
from parley.providers.options import ProviderOptions

if TYPE_CHECKING:
    from parley.settings import Settings

PROGRAM = "espeak-ng"
HEADER = 44  # espeak-ng writes a canonical 44-byte WAV header on --stdout
BLOCK = 4410 * 2  # read about 200 ms at a time
DEFAULT_WPM = 175


def program() -> str:
    """Path of espeak-ng, or `ProviderError` saying how to install it."""
    path = shutil.which(PROGRAM)
    if path is None:
        raise ProviderError(
            "espeak", "espeak-ng is not installed (apt-get install espeak-ng)", retryable=False, component="tts"
        )
    return path


@functools.lru_cache(maxsize=1)
def known_voices() -> frozenset[str]:
    """Lower-cased language codes, voice names and voice files that `espeak-ng -v` accepts."""
    out = subprocess.run([program(), "--voices"], capture_output=True, text=True, timeout=10).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            names.update(
                {cols[1].lower(), cols[3].lower(), cols[4].lower(), cols[4].rsplit("/", 1)[-1].lower()}
            )
    return frozenset(names)


class EspeakTTS(TTS):
    """The `espeak` TTS provider: 22.05 kHz, audio read as the program writes it."""

    name = "espeak"
    sample_rate = 22050
    capabilities = Capabilities(streaming=True)

    def __init__(self, *, voice: str = "en-us", wpm: int = DEFAULT_WPM, pitch: int | None = None) -> None:
        self._program = program()
        base = voice.split("+", 1)[0].lower()
        if base not in known_voices():
            raise ValueError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices`)")
        if not 80 <= wpm <= 500:
            raise ValueError(f"espeak rate must be 80..500 words per minute, got {wpm}")
        if pitch is not None and not 0 <= pitch <= 99:
            raise ValueError(f"espeak pitch must be 0..99, got {pitch}")
        self.voice = voice
        self._args = ["-v", voice, "-s", str(wpm), "--stdout", "--stdin"]
        if pitch is not None:
            self._args += ["-p", str(pitch)]

    async def synthesize(self, text: str) -> AsyncGenerator[Pcm, None]:
        """Yield int16 chunks of about 200 ms as espeak-ng produces them."""
        if not text.strip():
            return
        proc = await asyncio.create_subprocess_exec(
            self._program,
            *self._args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin and proc.stdout and proc.stderr
        try:
            proc.stdin.write(text.encode("utf-8") + b"\n")
            await proc.stdin.drain()
            proc.stdin.close()
            header = await proc.stdout.readexactly(HEADER)
            if header[:4] != b"RIFF":
                raise self.error("espeak-ng did not write WAV audio")
            carry = b""
            while block := await proc.stdout.read(BLOCK):
                block = carry + block
                usable = len(block) - len(block) % 2
                carry = block[usable:]
                if usable:
                    yield np.frombuffer(block[:usable], dtype="<i2").astype(np.int16)
            if await proc.wait() != 0:
                err = (await proc.stderr.read()).decode(errors="replace").strip()
                raise self.error(f"espeak-ng failed: {err or proc.returncode}")
        except asyncio.IncompleteReadError:
            err = (await proc.stderr.read()).decode(errors="replace").strip()
            raise self.error(f"espeak-ng produced no audio: {err}") from None
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def create(spec: ProviderOptions, *, settings: Settings) -> EspeakTTS:
    """Factory used by the registry: `voice` (or `language`), `speed` (× 175 wpm); options `wpm`, `pitch`."""
    opts = spec.options
    unknown = set(opts) - {"wpm", "pitch"}
    if unknown:
        raise ValueError(f"espeak: unknown option(s) {', '.join(sorted(unknown))}")
    speed = float(spec.speed or 1.0)
    wpm = int(opts.get("wpm", round(DEFAULT_WPM * speed)))
    voice = spec.voice or (spec.language or "en-us").lower()
    if voice == "en":
        voice = "en-us"
    return EspeakTTS(voice=voice, wpm=wpm, pitch=int(opts["pitch"]) if "pitch" in opts else None)
