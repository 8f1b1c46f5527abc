"""The shipped deployment files are valid: compose (checked by Debian's docker-compose, offline — no Docker
daemon runs here), the Dockerfile's promises, Prometheus's config, the Grafana dashboard's metrics (each
one exists in Parley's registry), and the Kamailio config (Kamailio's own `-c` check)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from parley.calls import metrics
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose is not installed (make test installs it: scripts/system-deps.sh)")
    return subprocess.run(["docker-compose", "-f", str(DEPLOY / "compose.yaml"), *args], capture_output=True,
                          text=True, timeout=60, env={"PATH": os.environ["PATH"], **(env or {})}, cwd=DEPLOY)


def test_compose_file_is_valid_and_has_the_whole_topology() -> None:
    out = _compose("config", env={"API_KEYS": "k1"})
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    services = config["services"]
    assert set(services) == {"postgres", "redis", "api", "worker", "kamailio", "dispatcher", "prometheus",
                             "grafana"}
    for name in ("postgres", "redis", "kamailio", "dispatcher"):
        assert "healthcheck" in services[name], name
    # api and worker share the image, whose Dockerfile has the health check
    assert services["api"]["image"] == services["worker"]["image"] == "parley:latest"
    assert services["worker"]["command"][:2] == ["parley", "worker"] and "ports" not in services["worker"]
    assert services["api"]["command"][:2] == ["parley", "api"]
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"  # migrations first
    assert services["worker"]["environment"]["REDIS_URL"].startswith("redis://redis")
    assert services["kamailio"]["volumes"] and services["dispatcher"]["volumes"]


def test_compose_refuses_to_start_without_api_keys() -> None:
    out = _compose("config")
    assert out.returncode != 0 and "set API_KEYS" in out.stderr


def test_dockerfile_is_slim_non_root_with_health_check() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "HEALTHCHECK" in text and "/health" in text
    assert "smart_turn fetch" in text  # the turn model baked in at build time


def test_prometheus_scrapes_api_and_workers() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["parley-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["parley-workers"]["dns_sd_configs"][0]["port"] == 9100


def test_grafana_dashboard_uses_metrics_parley_exports() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "parley.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(parley_[a-z_]+)", e)}
    exported = set()
    for collector in metrics.REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(collector.type, [""])
        exported |= {collector.name + suffix for suffix in suffixes}
    missing = sorted(used - exported)
    assert not missing, f"dashboard queries metrics Parley does not export: {missing}"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for wanted in ("calls by state", "per worker", "setup", "turn latency", "late", "queue", "webhook"):
        assert wanted in titles, wanted


def test_kamailio_config_passes_kamailio_check(tmp_path: Path) -> None:
    if not shutil.which("kamailio") and not Path("/usr/sbin/kamailio").exists():
        pytest.skip("kamailio is not installed (make test installs it)")
    (tmp_path / "d.list").write_text("1 sip:127.0.0.1:5071 0 0\n")
    out = subprocess.run(
        [shutil.which("kamailio") or "/usr/sbin/kamailio", "-c", "-f", str(DEPLOY / "kamailio" / "kamailio.cfg"),
         "-A", f'DS_LIST="{tmp_path / "d.list"}"', "-A", f'CTL_SOCKET="unix:{tmp_path / "ctl"}"',
         "-A", f'JSONRPC_FIFO="{tmp_path / "rpc.fifo"}"', "-A", "SIP_LISTEN=udp:127.0.0.1:5099"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr[-2000:]
    text = (DEPLOY / "kamailio" / "kamailio.cfg").read_text()
    for needed in ("ds_select_dst", "ds_ping_interval", "record_route()", "pike_check_req", "rl_check",
                   "is_in_subnet", "TRUNK_NETS"):
        assert needed in text, needed


async def test_kamailio_takes_a_changed_worker_list_within_about_a_second(tmp_path: Path) -> None:
    """The sync reloads the dispatcher list whenever the worker set changes; Kamailio's default rate limit
    (one reload per 5 s) refused the list naming the first worker for up to 5 s after the sync's first
    (empty) one, and every INVITE of that time got 503 "no destination sets". With `reload_delta` 1 the
    next reload goes through within ~1 s."""
    from tests.eventually import eventually

    kamailio = shutil.which("kamailio") or "/usr/sbin/kamailio"
    kamcmd = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
    if not Path(kamailio).exists() or not Path(kamcmd).exists():
        pytest.skip("kamailio is not installed (make test installs it)")
    ds_list, ctl = tmp_path / "d.list", tmp_path / "ctl"
    ds_list.write_text("# no worker yet\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [kamailio, "-DD", "-E", "-m", "64", "-M", "8", "-f", str(DEPLOY / "kamailio" / "kamailio.cfg"),
         "-A", f'DS_LIST="{ds_list}"', "-A", f'CTL_SOCKET="unix:{ctl}"',
         "-A", f'JSONRPC_FIFO="{tmp_path / "rpc.fifo"}"', "-A", f'JSONRPC_REPLY_DIR="{tmp_path}"',
         "-A", f"SIP_LISTEN=udp:127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def rpc(*args: str) -> str:
            out = subprocess.run([kamcmd, "-s", f"unix:{ctl}", *args], capture_output=True, text=True, timeout=10)
            return out.stdout + out.stderr

        await eventually(lambda: ctl.exists() and "error" not in rpc("core.version"), timeout_s=20,
                         what="Kamailio's control socket")
        await eventually(lambda: "error" not in rpc("dispatcher.reload").lower(), timeout_s=10,
                         interval_s=0.2, what="a first dispatcher reload")  # the sync's first (empty) list
        ds_list.write_text("1 sip:127.0.0.1:5071 0 0\n")  # then the first worker registers
        started = time.monotonic()
        await eventually(lambda: "error" not in rpc("dispatcher.reload").lower(), timeout_s=10,
                         interval_s=0.2, what="a second dispatcher reload Kamailio accepts")
        assert time.monotonic() - started < 2.5, "Kamailio refused the worker list for seconds"
        assert "sip:127.0.0.1:5071" in rpc("dispatcher.list")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
