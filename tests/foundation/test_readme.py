"""Every command the README shows is run: the quick ones here, in-process, exactly as written; the ones that
need servers or peers by the tests named in `ELSEWHERE` (this test fails when a new README command is in
neither place)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parley.cli.main import app
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
COMMANDS = [c.split("  #")[0].strip() for c in re.findall(r"^\$ (.+?)\s*\\?$", README, re.M)]

#: Commands exercised by other tests (they need a server, a SIP peer or the whole suite).
ELSEWHERE = {
    "make run": "tests/telephony/test_up_baresip.py runs `parley up`, the command `make run` starts",
    "make test": ".ci/run",
    "curl -s localhost:8000/health": "tests/foundation/test_cli.py::test_api_serves_health_and_guards_routes",
    'baresip -e "/dial sip:+4930123456@127.0.0.1:5060"': "tests/telephony/test_up_baresip.py",
    "curl -s -X POST localhost:8000/api/outbound-call": "tests/telephony/test_outbound.py",
    ".venv/bin/parley trunk status": "tests/telephony/test_trunk_cli_doctor.py",
    ".venv/bin/parley doctor": "tests/telephony/test_trunk_cli_doctor.py",
    ".venv/bin/parley api --host 127.0.0.1 --port 8000": "tests/foundation/test_cli.py",
    ".venv/bin/parley sip echo": "tests/sip/test_sip_cli.py",
    ".venv/bin/parley talk": "tests/engine/test_offline.py",
    ".venv/bin/parley chat": "tests/engine/test_offline.py",
    'curl -H "X-API-Key: $KEY" -F file=@question.wav': "tests/engine/test_offline.py",
}


def _elsewhere(command: str) -> bool:
    return any(command == key or command.startswith(key + " ") for key in ELSEWHERE)


def test_every_readme_command_is_exercised() -> None:
    assert len(COMMANDS) > 10
    runnable = [c for c in COMMANDS if not _elsewhere(c)]
    assert all(c.startswith(".venv/bin/parley ") for c in runnable), runnable
    for where in ELSEWHERE.values():
        assert (ROOT / where.split("::")[0].split(" ")[0]).exists(), where


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch checkout: the shipped agents/prompts/docs, a fresh data dir, no tasks.json yet."""
    for name in ("agents", "prompts", "docs"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TASK_FILE", raising=False)
    trunks = re.search(r"```yaml\n(# trunks.yaml\n.*?)```", README, re.S)
    assert trunks, "the README's trunks.yaml example is missing"
    (tmp_path / "trunks.yaml").write_text(trunks.group(1))
    return tmp_path


def test_readme_commands_run_as_written(workdir: Path) -> None:
    runner = CliRunner()
    for command in COMMANDS:
        if _elsewhere(command):
            continue
        args = shlex.split(command)[1:]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"`{command}` exited {result.exit_code}:\n{result.output}"
