"""`parley trunk ensure|list|status|delete` and `parley doctor`, run as a user runs them, against SIPp as
the trunk's registrar (OPTIONS answered, REGISTER challenged and digest-checked)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.eventually import eventually, udp_port_bound
from tests.sip.sipp import run_sipp

pytestmark = [pytest.mark.sip]
SCENARIOS = Path(__file__).parent / "scenarios"


async def parley(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "parley.cli.main", *args, cwd=ROOT, env={**os.environ, "COLUMNS": "250", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


def _trunks_yaml(path: Path, port: int, password: str) -> Path:
    path.write_text(f"""trunks:
  - name: carrier
    outbound: {{host: 127.0.0.1, port: {port}, username: parley, password: {password},
               caller_id: "+4930123456", from_user: username,
               headers: {{P-Asserted-Identity: "<sip:+4930123456@127.0.0.1>"}}}}
    inbound: {{allowed_addresses: [127.0.0.1], numbers: ["+4930123456"], max_concurrent_calls: 2}}
dispatch_rules:
  - {{name: main, numbers: ["+4930123456"], agent: receptionist}}
""")
    return path


async def test_trunk_commands_round_trip(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    conf = _trunks_yaml(tmp_path / "trunks.yaml", 5999, "secret")
    code, out, err = await parley("trunk", "ensure", "--file", str(conf), env=env)
    assert code == 0, err
    assert "ensured carrier" in out and "ensured main" in out
    code, out, _ = await parley("trunk", "ensure", "--file", str(conf), env=env)
    assert "unchanged carrier" in out and "unchanged main" in out  # idempotent
    code, out, _ = await parley("trunk", "list", "--json", env=env)
    listed = json.loads(out)
    assert listed["trunks"][0]["outbound"]["password"] == "********" and "secret" not in out
    assert listed["dispatch_rules"][0]["agent"] == "receptionist"
    code, out, err = await parley("trunk", "status", "--json", env=env)
    status = json.loads(out)[0]
    assert code == 0 and status["name"] == "carrier" and status["reachable"] is False, out + err
    assert "no answer to OPTIONS from 127.0.0.1:5999" in status["options"] and status["active_calls"] == 0
    code, _, err = await parley("trunk", "delete", "nothere", env=env)
    assert code == 1 and "no trunk named 'nothere'" in err
    code, out, _ = await parley("trunk", "delete", "carrier", env=env)
    assert code == 0
    code, out, _ = await parley("trunk", "list", "--json", env=env)
    assert json.loads(out)["trunks"] == []


async def test_trunk_ensure_from_original_env_names(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data"), "SIP_TRUNK_HOST": "example.pstn.twilio.com",
           "SIP_TRUNK_USERNAME": "acme", "SIP_TRUNK_PASSWORD": "pw", "SIP_TRUNK_NUMBER": "+4930123456"}
    code, out, err = await parley("trunk", "ensure", env=env)
    assert code == 0, err
    code, out, _ = await parley("trunk", "list", "--json", env=env)
    trunk = json.loads(out)["trunks"][0]
    assert trunk["name"] == "default" and trunk["outbound"]["host"] == "example.pstn.twilio.com"
    assert trunk["outbound"]["caller_id"] == "+4930123456"


async def test_bad_trunk_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("trunks:\n  - name: x\n    outbound: {host: h, caller_id: '12'}\n")
    code, _, err = await parley("trunk", "ensure", "--file", str(bad), env={"DATA_DIR": str(tmp_path / "d")})
    assert code == 1 and "trunks.0.outbound.caller_id" in err and "E.164" in err


@pytest.mark.parametrize(("password", "ok"), [("secret", True), ("wrong", False)])
async def test_doctor_probes_trunk(tmp_path: Path, password: str, ok: bool) -> None:
    port = free_port()
    env = {"DATA_DIR": str(tmp_path / "data"), "API_KEYS": "k", "API_PORT": str(free_port(kind=1)),
           "SIP_PORT": str(free_port())}
    code, _, err = await parley("trunk", "ensure", "--file", str(_trunks_yaml(tmp_path / "t.yaml", port, password)),
                                env=env)
    assert code == 0, err
    sipp = asyncio.create_task(run_sipp(SCENARIOS / "registrar.xml", None, tmp_path, port, calls=2, timeout=30))
    await eventually(lambda: udp_port_bound(port), what="SIPp listening as the trunk")
    code, out, err = await parley("doctor", "--no-providers", env=env)
    await sipp
    assert "ok   trunk carrier reachability: reachable: OPTIONS answered 200" in out, out + err
    if ok:
        assert "ok   trunk carrier credentials: credentials accepted" in out, out
    else:
        assert "FAIL trunk carrier credentials: 403" in out and "check username/password" in out, out
    assert "ok   agents: 2 valid" in out and "ok   database" in out


async def test_doctor_explains_unreachable_trunk_and_busy_port(tmp_path: Path) -> None:
    import socket

    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    env = {"DATA_DIR": str(tmp_path / "data"), "API_PORT": str(holder.getsockname()[1]),
           "SIP_PORT": str(free_port())}
    await parley("trunk", "ensure", "--file", str(_trunks_yaml(tmp_path / "t.yaml", free_port(), "x")), env=env)
    try:
        code, out, _ = await parley("doctor", "--no-providers", env=env)
    finally:
        holder.close()
    assert code == 1
    assert "FAIL port API" in out and "is Parley already running?" in out
    assert "FAIL trunk carrier reachability: no answer to OPTIONS" in out and "fix:" in out
    assert "FAIL API keys" in out
