"""Smart Turn v3.2: an audio end-of-turn model (does the caller *sound* finished?), ONNX on the CPU.

The model is Daily's Smart Turn v3.2 CPU build (`smart-turn-v3.2-cpu.onnx`, 8.7 MB, int8, BSD-2-Clause),
which ships inside the `pipecat-ai` 1.14.0 wheel. Parley does not depend on `pipecat-ai` (it would pull
numba/llvmlite and ~24 other packages and *downgrade* protobuf and soxr; docs/turn-detection.md): at install
time `fetch()` downloads that one pinned wheel with pip (`--require-hashes`), takes the model, pipecat's
feature extractor (kept only so the tests can compare ours with it) and the licence out of it, checks
every SHA-256 and puts them in `sys.prefix/share/parley/models/smart-turn-v3.2/`:

    python -m parley.providers.turn.smart_turn fetch      # once, at install (make install)

Nothing is downloaded at run time: `SmartTurnModel` only looks the file up (an explicit path,
`$PARLEY_SMART_TURN_MODEL`, the install folder, or the wheel's own files when `pipecat-ai` happens to be
installed — found through its distribution metadata, without importing pipecat) and refuses bytes whose
SHA-256 is not the pinned one.

`SmartTurnModel.shared()` is one onnxruntime session per process (1 intra-op thread, sequential), safe to
call from several threads. `predict(pcm16k)` takes the last 8 s of 16 kHz audio (left-padded with zeros
when shorter, as pipecat does) and returns the probability that the turn is complete. It is blocking CPU
work (~30–40 ms on this machine kind): call it with `asyncio.to_thread`.

Feature extraction (`log_mel`) is a numpy-only re-implementation of Whisper's log-mel spectrogram as
Smart Turn v3 expects it (80 mel bins × 800 frames over 8 s, waveform normalised to zero mean and unit
variance first). Origin: pipecat's `pipecat/audio/turn/smart_turn/_whisper_features.py` (Copyright (c)
2024-2026 Daily, BSD 2-Clause License), itself derived from Hugging Face Transformers'
`WhisperFeatureExtractor` and `audio_utils` (Copyright 2022-2023 The HuggingFace Inc. team and the librosa
& torchaudio authors, Apache License 2.0). The BSD-2-Clause notice: redistributions must retain the
copyright notice "Copyright (c) 2024–2026, Daily", this list of conditions and the disclaimer — the full
text is fetched with the model (`LICENSE` in the model folder). It matches pipecat's extractor to 1e-6
(tests/providers/test_smart_turn.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parley.providers.base import ProviderError

SAMPLE_RATE = 16000
WINDOW_S = 8
WINDOW = SAMPLE_RATE * WINDOW_S

#: The registry package the model comes from, and the SHA-256 of its wheel (pip checks it too).
WHEEL_REQUIREMENT = "pipecat-ai==1.14.0"
WHEEL_SHA256 = "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44"

MODEL_NAME = "smart-turn-v3.2-cpu.onnx"
MODEL_SIZE = 8679182
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
FOLDER_NAME = "smart-turn-v3.2"
ENV_PATH = "PARLEY_SMART_TURN_MODEL"


@dataclass(frozen=True)
class _Member:
    wheel_path: str
    size: int
    sha256: str


#: file in the model folder -> where it is in the wheel, its size and SHA-256
FILES: dict[str, _Member] = {
    MODEL_NAME: _Member(f"pipecat/audio/turn/smart_turn/data/{MODEL_NAME}", MODEL_SIZE, MODEL_SHA256),
    "_whisper_features.py": _Member(
        "pipecat/audio/turn/smart_turn/_whisper_features.py",
        7221,
        "139b047d10dee42ad5b4894489012e515a882d8f5e2bffe8ad27b30728fc9968",
    ),
    "LICENSE": _Member(
        "pipecat_ai-1.14.0.dist-info/licenses/LICENSE",
        1301,
        "e31a733ecb79cbffafd5474e964e5eca15e0a0876a42b1d7253b51b198eb61aa",
    ),
}

INSTALL_HINT = "python -m parley.providers.turn.smart_turn fetch"


# --- where the model is ----------------------------------------------------------------------

def default_dir() -> Path:
    """The install-time folder: `<sys.prefix>/share/parley/models/smart-turn-v3.2/`."""
    return Path(sys.prefix) / "share" / "parley" / "models" / FOLDER_NAME


def _pipecat_wheel_file() -> Path | None:
    """The model inside an installed `pipecat-ai` 1.14.0, found from its metadata (pipecat not imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("pipecat-ai")
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if str(file).replace("\\", "/") == FILES[MODEL_NAME].wheel_path:
            path = Path(str(dist.locate_file(file)))
            return path if path.is_file() else None
    return None


def locate(path: str | os.PathLike[str] | None = None) -> Path:
    """The model file: `path`, else `$PARLEY_SMART_TURN_MODEL`, else the install folder, else an installed
    pipecat-ai wheel. `ProviderError` naming the fix when there is none."""
    explicit = path or os.environ.get(ENV_PATH)
    if explicit:
        candidate = Path(explicit).expanduser()
        if candidate.is_dir():
            candidate = candidate / MODEL_NAME
        if not candidate.is_file():
            raise ProviderError("smart_turn", f"model file {candidate} does not exist", retryable=False,
                                component="turn")
        return candidate
    installed = default_dir() / MODEL_NAME
    if installed.is_file():
        return installed
    from_wheel = _pipecat_wheel_file()
    if from_wheel is not None:
        return from_wheel
    raise ProviderError(
        "smart_turn",
        f"the Smart Turn v3.2 model is not installed (looked in {default_dir()}); install it with: "
        f"{INSTALL_HINT}",
        retryable=False, component="turn")


# --- install time ----------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_fetched(folder: Path) -> bool:
    """True when `folder` holds every file with its pinned size, and the model its pinned SHA-256."""
    for name, member in FILES.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != member.size:
            return False
    return _sha256((folder / MODEL_NAME).read_bytes()) == MODEL_SHA256


def fetch(dest: Path | None = None, *, python: str = sys.executable, wheel: Path | None = None) -> Path:
    """Install-time step: the model folder `dest` (default `default_dir()`), filled from the pinned
    `pipecat-ai` wheel — downloaded by pip with `--require-hashes`, or `wheel` when given. Every file is
    checked against its pinned size and SHA-256 before the folder is renamed into place. Idempotent."""
    dest = Path(dest) if dest is not None else default_dir()
    if is_fetched(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".smart-turn.", dir=dest.parent) as tmp_name:
        tmp = Path(tmp_name)
        if wheel is None:
            wheel = _download_wheel(tmp / "download", python)
        got = _sha256(Path(wheel).read_bytes())
        if got != WHEEL_SHA256:
            raise ProviderError(
                "smart_turn", f"{wheel} has SHA-256 {got}, expected {WHEEL_SHA256}", retryable=False, component="turn")
        staging = tmp / FOLDER_NAME
        staging.mkdir()
        with zipfile.ZipFile(wheel) as archive:
            for name, member in FILES.items():
                data = archive.read(member.wheel_path)
                if len(data) != member.size or _sha256(data) != member.sha256:
                    raise ProviderError(
                        "smart_turn",
                        f"{member.wheel_path} in {Path(wheel).name} is not the pinned file "
                        f"(size {len(data)}, sha256 {_sha256(data)[:12]}…)",
                        retryable=False, component="turn")
                (staging / name).write_bytes(data)
        os.chmod(staging, 0o755)
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(staging, dest)
    return dest


def _download_wheel(folder: Path, python: str) -> Path:
    folder.mkdir(parents=True)
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{WHEEL_REQUIREMENT} --hash=sha256:{WHEEL_SHA256}\n")
    result = subprocess.run(
        [python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--require-hashes", "-r", str(requirements), "-d", str(folder)],
        capture_output=True, text=True,
    )
    wheels = sorted(folder.glob("pipecat_ai-*.whl"))
    if result.returncode != 0 or not wheels:
        raise ProviderError(
            "smart_turn",
            f"pip could not download {WHEEL_REQUIREMENT}: {(result.stderr or result.stdout).strip()[-500:]}",
            retryable=False, component="turn")
    return wheels[0]


# --- features --------------------------------------------------------------------------------

_N_FFT = 400
_HOP = 160
_N_MELS = 80
_MEL_FLOOR = 1e-10
_NORM_EPS = 1e-7


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.atleast_1d(np.asarray(freq, dtype=np.float64))
    mels = 3.0 * freq / 200.0
    high = freq >= 1000.0
    mels[high] = 15.0 + np.log(freq[high] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.atleast_1d(np.asarray(mels, dtype=np.float64))
    freq = 200.0 * mels / 3.0
    high = mels >= 15.0
    freq[high] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[high] - 15.0))
    return freq


def _mel_filters() -> np.ndarray:
    """(80, 201) Slaney-normalised triangular filters from 0 Hz to 8 kHz."""
    bins = _N_FFT // 2 + 1
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([8000.0]))[0],
                                   _N_MELS + 2))
    fft_freqs = np.linspace(0, SAMPLE_RATE // 2, bins)
    widths = np.diff(edges)
    slopes = edges[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= (2.0 / (edges[2:] - edges[:-2]))[None, :]
    return np.ascontiguousarray(filters.T)


_FILTERS = _mel_filters()
_HANN = np.hanning(_N_FFT + 1)[:-1]  # periodic Hann, as torch.hann_window


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Whisper-style log-mel features of 8 s of 16 kHz float audio: float32 (80, 800).

    Shorter input is zero-padded at the end, longer input cut to its first 8 s (`predict` has already
    kept the last 8 s and padded at the front)."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if x.size < WINDOW:
        x = np.pad(x, (0, WINDOW - x.size))
    x = x[:WINDOW]
    x = (x - x.mean()) / np.sqrt(x.var() + _NORM_EPS)  # in float32, as the reference does
    padded = np.pad(x.astype(np.float64), (_N_FFT // 2, _N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2  # (frames, bins)
    mel = np.log10(np.maximum(_MEL_FLOOR, _FILTERS @ power.T))[:, :-1]
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


def last_window(pcm16k: np.ndarray) -> np.ndarray:
    """The last 8 s of `pcm16k` as float32 in [-1, 1], zero-padded at the front when shorter.
    int16 input is scaled by 1/32768; float input is taken as already in [-1, 1]."""
    pcm = np.asarray(pcm16k).reshape(-1)
    audio = pcm.astype(np.float32) / 32768.0 if pcm.dtype == np.int16 else pcm.astype(np.float32)
    if audio.size >= WINDOW:
        return audio[-WINDOW:]
    return np.pad(audio, (WINDOW - audio.size, 0))


# --- the model -------------------------------------------------------------------------------

class SmartTurnModel:
    """One onnxruntime session over the Smart Turn v3.2 CPU model; thread-safe `predict`."""

    _shared: dict[Path, SmartTurnModel] = {}
    _shared_lock = threading.Lock()

    def __init__(self, path: str | os.PathLike[str] | None = None, *, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = locate(path)
        data = self.path.read_bytes()
        digest = _sha256(data)
        if digest != MODEL_SHA256:
            raise ProviderError(
                "smart_turn",
                f"{self.path} is not the pinned Smart Turn v3.2 CPU model (sha256 {digest[:12]}…, expected "
                f"{MODEL_SHA256[:12]}…); reinstall it: {INSTALL_HINT}",
                retryable=False, component="turn")
        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session: Any = ort.InferenceSession(data, sess_options=options,
                                                  providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    @classmethod
    def shared(cls, path: str | os.PathLike[str] | None = None) -> SmartTurnModel:
        """The process-wide model (loaded and verified on first use; blocking: call from a thread)."""
        key = locate(path).resolve()
        with cls._shared_lock:
            model = cls._shared.get(key)
            if model is None:
                model = cls._shared[key] = cls(key)
            return model

    def predict(self, pcm16k: np.ndarray) -> float:
        """Probability (0..1) that the turn is complete, from the last 8 s of 16 kHz audio (int16 or
        float in [-1, 1]). Blocking, ~30–40 ms: run it with `asyncio.to_thread`."""
        features = log_mel(last_window(pcm16k))[None, :, :]
        outputs = self._session.run(None, {self._input: features})
        return float(np.asarray(outputs[0]).reshape(-1)[0])


def main(argv: list[str] | None = None) -> int:
    """`python -m parley.providers.turn.smart_turn fetch [DEST]` (install time) or `where`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("fetch", "where"):
        print("usage: python -m parley.providers.turn.smart_turn fetch [DEST] | where", file=sys.stderr)
        return 2
    try:
        if args[0] == "fetch":
            print(fetch(Path(args[1]) if len(args) > 1 else None))
        else:
            print(locate())
    except ProviderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
