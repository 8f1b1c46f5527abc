"""`parley twilio …` and `parley doctor` run as a user runs them, against the Twilio REST stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.twilio.conftest import ACCOUNT_SID, AUTH_TOKEN

NUMBER = "+15005550006"


def parley(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parley.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "250", **env})


def _env(twilio_api, tmp_path: Path, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"DATA_DIR": str(tmp_path / "data"), "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_BASE_URL": twilio_api.url, "TWILIO_PUBLIC_URL": "https://parley.example.com",
            "SIP_PUBLIC_HOST": "203.0.113.10", "SIP_PORT": "5080", "SIP_TRUNK_USERNAME": "parley",
            "SIP_TRUNK_PASSWORD": "trunk-secret", "TWILIO_PHONE_NUMBER": NUMBER, **extra}


def test_trunk_ensure_twice_makes_one_trunk(twilio_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = _env(twilio_api, tmp_path)
    first = parley("twilio", "trunk", "ensure", env=env)
    assert first.returncode == 0, first.stderr
    assert "created trunk 'parley'" in first.stdout
    assert "added origination URI sip:203.0.113.10:5080" in first.stdout
    assert "added credential 'parley'" in first.stdout and "added IP address 203.0.113.10" in first.stdout
    assert len(twilio_api.trunks) == 1
    trunk = next(iter(twilio_api.trunks.values()))
    assert [o["sip_url"] for o in trunk["_origination_urls"].values()] == ["sip:203.0.113.10:5080"]
    assert len(trunk["_credential_lists"]) == 1 and len(trunk["_ip_access_control_lists"]) == 1
    assert "trunk-secret" not in first.stdout
    writes = len(twilio_api.writes())

    second = parley("twilio", "trunk", "ensure", env=env)
    assert second.returncode == 0, second.stderr
    assert "nothing to change" in second.stdout and "changed" not in second.stdout.replace("unchanged", "")
    assert len(twilio_api.trunks) == 1 and len(twilio_api.writes()) == writes  # not one write the second time

    # a new public SIP address: the origination URI is updated in place
    moved = parley("twilio", "trunk", "ensure", env={**env, "SIP_PUBLIC_HOST": "203.0.113.20"})
    assert "origination URI sip:203.0.113.10:5080 → sip:203.0.113.20:5080" in moved.stdout, moved.stdout
    assert len(twilio_api.trunks) == 1 and len(trunk["_origination_urls"]) == 1


def test_numbers_connect_list_status_and_doctor(twilio_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = _env(twilio_api, tmp_path)
    pn = twilio_api.add_number(NUMBER)
    listed = json.loads(parley("twilio", "numbers", "list", "--json", env=env).stdout)
    assert listed == [{"sid": pn["sid"], "number": NUMBER, "voice_url": "", "trunk_sid": None, "mode": "none"}]

    status = parley("twilio", "status", env=env)
    assert status.returncode == 1 and "has no voice URL and no trunk" in status.stdout, status.stdout
    doctor = parley("doctor", "--no-providers", "--no-trunks", env=env)
    assert "ok   twilio credentials: account 'Parley test account' (active)" in doctor.stdout, doctor.stdout
    assert "FAIL twilio number: +15005550006 has no voice URL" in doctor.stdout
    assert "fix: parley twilio numbers connect +15005550006" in doctor.stdout

    connected = parley("twilio", "numbers", "connect", "+1 500 555 0006", "--mode", "stream", env=env)
    assert connected.returncode == 0, connected.stderr
    assert "voice URL (none) → https://parley.example.com/twilio/voice" in connected.stdout
    assert pn["voice_url"] == "https://parley.example.com/twilio/voice" and pn["voice_method"] == "POST"
    assert pn["status_callback"] == "https://parley.example.com/twilio/status"
    again = parley("twilio", "numbers", "connect", NUMBER, "--mode", "stream", env=env)
    assert "already sends calls to" in again.stdout and "nothing to change" in again.stdout
    assert parley("twilio", "status", env=env).returncode == 0
    assert "ok   twilio number: +15005550006 sends its calls to Parley" in \
        parley("doctor", "--no-providers", "--no-trunks", env=env).stdout

    no_trunk = parley("twilio", "numbers", "connect", NUMBER, "--mode", "sip", env=env)
    assert no_trunk.returncode == 1 and "run `parley twilio trunk ensure` first" in no_trunk.stderr
    assert parley("twilio", "trunk", "ensure", env=env).returncode == 0
    sip = parley("twilio", "numbers", "connect", NUMBER, "--mode", "sip", env=env)
    assert sip.returncode == 0 and "attached to trunk 'parley'" in sip.stdout, sip.stdout + sip.stderr
    assert json.loads(parley("twilio", "numbers", "list", "--json", env=env).stdout)[0]["mode"] == "sip"
    back = parley("twilio", "numbers", "connect", NUMBER, "--mode", "stream", env=env)
    assert "detached from trunk" in back.stdout and pn["trunk_sid"] is None


def test_bad_credentials_and_input_are_one_line(twilio_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = _env(twilio_api, tmp_path, TWILIO_AUTH_TOKEN="wrong-token")
    r = parley("twilio", "numbers", "list", env=env)
    assert r.returncode == 1 and "Twilio answered 401 (error 20003)" in r.stderr
    assert "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in r.stderr and "Traceback" not in r.stderr
    doctor = parley("doctor", "--no-providers", "--no-trunks", env=env)
    assert "FAIL twilio credentials" in doctor.stdout and doctor.returncode == 1
    r = parley("twilio", "numbers", "connect", "12345", env=_env(twilio_api, tmp_path))
    assert r.returncode == 1 and "is not an E.164 number" in r.stderr
    r = parley("twilio", "numbers", "connect", "+14155550999", env=_env(twilio_api, tmp_path))
    assert r.returncode == 1 and "+14155550999 is not a number of this Twilio account" in r.stderr
    r = parley("twilio", "numbers", "connect", NUMBER, "--mode", "carrier-pigeon", env=_env(twilio_api, tmp_path))
    assert r.returncode == 1 and "--mode must be stream or sip" in r.stderr
    unset = {k: "" for k in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")}
    r = parley("twilio", "trunk", "ensure", env={**_env(twilio_api, tmp_path), **unset})
    assert r.returncode == 1 and "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in r.stderr
