"""`parley db upgrade`, `parley calls list | show | export`. One run of each kind goes through a real
subprocess as a user runs it; the rest use Typer's in-process runner (same code, faster start)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from parley.calls.db import head_revision
from parley.calls.store import Store
from tests.conftest import ROOT

PARLEY = [sys.executable, "-m", "parley.cli.main"]


def cli(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """In-process run; returns the same shape as `run`."""
    import pytest
    from typer.testing import CliRunner

    from parley.cli.main import app
    from parley.settings import get_settings

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(data_dir.parent)
        mp.delenv("DATABASE_URL", raising=False)
        for key, value in {"DATA_DIR": str(data_dir), "AGENTS_DIR": str(ROOT / "agents"),
                           "PROMPTS_DIR": str(ROOT / "prompts"), "COLUMNS": "250", **env}.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        result = CliRunner().invoke(app, list(args))
        get_settings.cache_clear()
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def run(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "250", "DATA_DIR": str(data_dir), "AGENTS_DIR": str(ROOT / "agents"),
                "PROMPTS_DIR": str(ROOT / "prompts"), **env}
    if "DATABASE_URL" not in env:
        full_env.pop("DATABASE_URL", None)
    return subprocess.run([*PARLEY, *args], capture_output=True, text=True, env=full_env, cwd=data_dir.parent, check=False,
                          timeout=60)


async def _seed(db: Path) -> list[str]:
    store = Store.from_url(f"sqlite+aiosqlite:///{db}")
    await store.upgrade()
    ids = []
    for i in range(3):
        call = await store.add_call({"direction": "outbound", "status": "queued", "agent": "receptionist",
                                     "to_number": f"+1555000{i:04d}", "meta": {"row": i}})
        ids.append(call.id)
    await store.transition(ids[0], "canceled", reason="changed plans")
    await store.add_transcript(ids[1], "agent", "Hello, Ada.")
    await store.close()
    return ids


def test_db_upgrade_then_up_to_date(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = run("db", "upgrade", data_dir=data)
    assert r.returncode == 0, r.stderr
    head = head_revision()
    assert f"upgraded: empty -> {head}" in r.stdout and (data / "parley.db").is_file()
    r = cli("db", "upgrade", data_dir=data)
    assert r.returncode == 0 and f"up to date (revision {head})" in r.stdout
    bad = cli("db", "upgrade", data_dir=data, DATABASE_URL="postgresql://u:pw@127.0.0.1:1/none")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "cannot upgrade" in bad.stderr and "pw" not in bad.stderr


def test_calls_list_show_and_export(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = asyncio.run(_seed(data / "parley.db"))

    r = cli("calls", "list", "--json", data_dir=data)
    assert r.returncode == 0, r.stderr
    listed = [json.loads(line) for line in r.stdout.splitlines()]
    assert [c["id"] for c in listed] == list(reversed(ids))
    r = cli("calls", "list", "--status", "canceled", data_dir=data)
    assert r.returncode == 0 and ids[0] in r.stdout and ids[1] not in r.stdout and "changed plans" in r.stdout

    out = tmp_path / "calls.csv"
    r = run("calls", "export", "--since", "1d", "--format", "csv", "-o", str(out), data_dir=data)
    assert r.returncode == 0, r.stderr
    assert "wrote 3 call(s)" in r.stderr and "exporting calls" in r.stderr
    rows = list(csv.DictReader(out.open()))
    assert [row["id"] for row in rows] == ids and rows[0]["status"] == "canceled"
    assert json.loads(rows[2]["metadata"]) == {"row": 2}

    r = cli("calls", "export", "--since", "2020-01-01", "--format", "jsonl", "--transcripts", "-o", "-",
            data_dir=data)
    assert r.returncode == 0, r.stderr
    exported = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["id"] for e in exported] == ids
    assert [t["text"] for t in exported[1]["transcript"]] == ["Hello, Ada."]

    r = cli("calls", "export", "--since", "2999-01-01", "-o", "-", data_dir=data)
    assert r.returncode == 0 and r.stdout == ""


def test_calls_cli_errors_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for args, words in [
        (("calls", "export", "--since", "last week"), "--since 'last week'"),
        (("calls", "export", "--since", "1d", "--format", "xml"), "--format 'xml'"),
        (("calls", "export", "--since", "1d", "-o", str(tmp_path / "missing" / "x.csv")), "does not exist"),
        (("calls", "list", "--status", "flying"), "unknown status 'flying'"),
        (("calls", "show", "nope"), "no call with id 'nope'"),
    ]:
        r = cli(*args, data_dir=data)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
