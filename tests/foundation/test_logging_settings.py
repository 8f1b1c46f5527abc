"""Structured logs carry the call id and hide secrets; settings come from env and .env."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from parley.logging import bind_call, configure, get_logger
from parley.settings import Settings


def test_json_logs_bind_call_id_and_mask_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure(level="INFO", json=True)
    log = get_logger("parley.test")
    with bind_call("call-123", agent="receptionist"):
        log.info("answered", password="hunter2")
    log.info("outside")
    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    inside, outside = lines[-2], lines[-1]
    assert inside["event"] == "answered" and inside["call_id"] == "call-123"
    assert inside["agent"] == "receptionist" and inside["password"] == "********"
    assert "call_id" not in outside
    logging.getLogger().handlers.clear()


def test_settings_from_dotenv_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("AZURE_SPEECH_REGION=westeurope\nNUM_AGENTS=7\nSIP_PORT=5080\n")
    monkeypatch.setenv("SIP_PORT", "5090")
    s = Settings()
    assert s.azure_speech_region == "westeurope" and s.num_agents == 7
    assert s.sip_port == 5090  # the environment wins over .env
    assert s.effective_database_url.startswith("sqlite+aiosqlite:///")


def test_env_example_lists_every_setting(root: Path) -> None:
    text = (root / ".env.example").read_text()
    names = {line.split("=", 1)[0].lstrip("# ").strip() for line in text.splitlines() if "=" in line}
    missing = [f.upper() for f in Settings.model_fields if f.upper() not in names]
    assert not missing, f".env.example lacks {missing}"


def test_env_example_is_a_valid_env_file(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text((root / ".env.example").read_text())
    s = Settings()
    assert s.sip_transport == "both" and s.database_url == "" and s.api_port == 8000
