"""`parley api` (like `parley up`) prints where the dashboard is at start; with no API_KEYS set, the key it
generated and printed signs in there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from parley.cli.common import dashboard_line
from tests.conftest import ROOT, free_port
from tests.eventually import eventually_sync


def test_dashboard_line_names_a_reachable_address() -> None:
    assert dashboard_line("0.0.0.0", 8000, generated=True) == (
        "Dashboard: http://127.0.0.1:8000/ui/ (sign in with the generated key above (it lasts for this run))")
    assert dashboard_line("::1", 9000, generated=False) == (
        "Dashboard: http://[::1]:9000/ui/ (sign in with one of API_KEYS)")


def test_parley_api_prints_the_dashboard_url_and_the_generated_key_signs_in(tmp_path: Path) -> None:
    port = free_port(kind=1)
    env = {**os.environ, "API_PORT": str(port), "API_KEYS": "", "DATA_DIR": str(tmp_path / "data"),
           "LOG_LEVEL": "INFO", "LOG_FORMAT": "text", "PYTHONPATH": str(ROOT / "src"),
           "AGENTS_DIR": str(ROOT / "agents"), "PROMPTS_DIR": str(ROOT / "prompts")}
    log_path = tmp_path / "api.log"
    with log_path.open("w") as log_file:
        server = subprocess.Popen([sys.executable, "-m", "parley.cli.main", "api"], cwd=tmp_path, env=env,
                                  stdout=log_file, stderr=subprocess.STDOUT, text=True)
        try:
            def printed() -> str | None:
                assert server.poll() is None, f"parley api exited:\n{log_path.read_text()[-3000:]}"
                text = log_path.read_text()
                return text if "Dashboard:" in text and "generated_key" in text else None

            text = eventually_sync(printed, timeout_s=60, interval_s=0.2, what="parley api's start-up lines")
            url = re.search(r"Dashboard: (http://\S+/ui/)", text)
            key = re.search(r"generated_key=(\S+)", text)
            assert url and key, text
            assert url.group(1) == f"http://127.0.0.1:{port}/ui/"
            assert "generated key" in text.split("Dashboard:", 1)[1].splitlines()[0]
            with httpx.Client(follow_redirects=False, timeout=5) as c:
                def serving() -> httpx.Response | None:
                    try:
                        return c.get(url.group(1))
                    except httpx.TransportError:
                        return None

                page = eventually_sync(serving, timeout_s=30, interval_s=0.2, what="the dashboard serving")
                assert page.status_code == 303 and page.headers["location"].startswith("/ui/sign-in")
                signed = c.post(url.group(1) + "sign-in", data={"api_key": key.group(1).strip("'\"")})
                assert signed.status_code == 303 and "parley_session" in c.cookies
                assert c.get(url.group(1)).status_code == 200
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
