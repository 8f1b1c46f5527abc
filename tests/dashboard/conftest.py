"""Fixtures for the dashboard: the real API served by uvicorn on a free port (optionally with the SIP gateway
of `parley up`), real Chromium driven by Playwright (Debian's /usr/bin/chromium, never a downloaded browser),
a webhook receiver, and a folder for screenshots.

Screenshots go to `$PARLEY_TEST_ARTIFACTS/dashboard` (default: the system temp folder's
`parley-artifacts/dashboard`); they are for a person to look at and are never committed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.conftest import ROOT

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
API_KEY = "dash-test-key-7f3a9c"
#: A secret in an agent's HTTP tool header: no page may ever show it.
TOOL_SECRET = "Bearer tool-secret-5b1e0d"


@dataclass
class LiveServer:
    """The API running in a thread with its own event loop."""

    url: str
    app: Any
    loop: asyncio.AbstractEventLoop
    settings: Any
    server: Any
    thread: threading.Thread

    @property
    def state(self) -> Any:
        from parley.api import ApiState

        return ApiState.of(self.app)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `coro` on the server's loop (where its calls service lives) and return the result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def sip_port(self) -> int:
        gateway = self.state.gateway
        assert gateway is not None, "this server runs no SIP gateway"
        return int(gateway.endpoint.port)


@dataclass
class Hooks:
    """A real HTTP server on 127.0.0.1 that accepts webhook POSTs."""

    url: str
    events: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def webhook_sink() -> Iterator[Hooks]:
    box: dict[str, Hooks] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)) or 0)
            box["h"].events.append(json.loads(body or b"{}"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["h"] = Hooks(f"http://127.0.0.1:{server.server_address[1]}/hooks?token=hook-secret-91c2")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box["h"]
    server.shutdown()
    server.server_close()


def test_agents(folder: Path) -> Path:
    """The shipped agents, the receptionist recording its calls and holding an HTTP tool with a secret header."""
    agents = folder / "agents"
    shutil.copytree(ROOT / "agents", agents)
    path = agents / "receptionist.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["recording"] = True
    spec["tools"].append({"name": "crm_lookup", "type": "http", "description": "Look the caller up.",
                          "url": "http://127.0.0.1:9/crm", "headers": {"Authorization": TOOL_SECRET}})
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return agents


test_agents.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def start_server(folder: Path, *, phone: bool = False, dial: bool = False,
                 edit_agents: Callable[[Path], None] | None = None, **updates: Any) -> LiveServer:
    """Start the API (with `parley up`'s SIP gateway when `phone`, and its dialer and campaign runner when also
    `dial`) on a free port; returns once it serves. `edit_agents(folder)` may change the test agents first."""
    import uvicorn

    from parley.api import create_app
    from parley.api.runtime import gateway_startup
    from parley.settings import Settings

    agents = test_agents(folder)
    if edit_agents is not None:
        edit_agents(agents)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=folder / "data",
        agents_dir=agents,
        prompts_dir=ROOT / "prompts",
        api_keys=API_KEY,  # type: ignore[arg-type]
        sip_host="127.0.0.1",
        **updates,
    ).model_copy(update={"sip_port": 0})  # a free port (model_copy: the setting itself wants 1-65535)
    box: dict[str, asyncio.AbstractEventLoop] = {}

    async def remember_loop(state: Any, stack: Any) -> None:
        box["loop"] = asyncio.get_running_loop()

    hooks = [remember_loop] + ([gateway_startup(dial=dial, warm=True)] if phone else [])
    app = create_app(settings, startup=hooks)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=3))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="dashboard-api")
    thread.start()
    from tests.eventually import eventually_sync

    eventually_sync(lambda: server.started or not thread.is_alive(), timeout_s=120, what="the API to start")
    if not server.started:
        raise RuntimeError("the API did not start (see the log above)")
    return LiveServer(f"http://127.0.0.1:{port}", app, box["loop"], settings, server, thread)


def stop_server(live: LiveServer) -> None:
    live.server.should_exit = True
    live.thread.join(20)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    base = Path(os.environ.get("PARLEY_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "parley-artifacts")
    folder = base / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per module (Debian's; Playwright never downloads one here)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (scripts/system-deps.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream"])
        yield browser
        browser.close()


def sign_in(page: Any, url: str, key: str = API_KEY, next_path: str = "/ui/") -> None:
    """Sign in through the form, as a person would."""
    page.goto(f"{url}/ui/sign-in?next={next_path}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}{next_path}")
