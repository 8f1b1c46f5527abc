"""`parse-prd --llm` through the real `openai` provider and SDK, against a local OpenAI-compatible server.

`ChatServer` is a stand-in for a cloud or self-hosted model server (OpenAI, Ollama, vLLM …): it speaks the
documented wire protocol — `POST /v1/chat/completions` answered with server-sent `chat.completion.chunk`
events and `data: [DONE]` — on 127.0.0.1, and answers with the text each test gives it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from parley.settings import get_settings
from tests.conftest import ROOT
from tests.tasks.conftest import CLI, NESTED_PRD, read_tasks, run


class ChatServer(ThreadingHTTPServer):
    """Streams `answer` in small chunks for every chat completion; keeps the request bodies it got."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = ""
        self.status = 200
        self.requests: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        self.server.requests.append({"path": self.path, "body": body})
        if self.path != "/v1/chat/completions" or self.server.status != 200:
            status = 404 if self.path != "/v1/chat/completions" else self.server.status
            payload = json.dumps(
                {"error": {"message": "model is overloaded", "type": "server_error"}}
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        answer = self.server.answer
        pieces = [answer[i : i + 16] for i in range(0, len(answer), 16)]
        base = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": body.get("model"),
        }
        first = {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
        self._event(first)
        for piece in pieces:
            self._event(
                {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            )
        self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _event(self, data: dict[str, Any]) -> None:
        self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def project(tmp_path: Path, chat_server: ChatServer) -> tuple[Path, dict[str, str]]:
    (tmp_path / "agents").mkdir()
    spec = {
        "name": "Planner",
        "components": {"llm": {"provider": "openai", "model": "planner-1", "base_url": chat_server.base_url}},
    }
    (tmp_path / "agents" / "planner.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "prd.md").write_text(NESTED_PRD)
    env = {"AGENTS_DIR": str(tmp_path / "agents"), "PROMPTS_DIR": str(ROOT / "prompts"), "OPENAI_API_KEY": ""}
    return tmp_path, env


def test_openai_compatible_server_proposes_the_tasks(  # type: ignore[no-untyped-def]
    chat_server: ChatServer, project
) -> None:
    folder, env = project
    chat_server.answer = json.dumps(
        {
            "tasks": [
                {"id": 1, "title": "Make a widget", "priority": "high", "section": "Phase 1: Basics"},
                {"id": 2, "title": "Ship widgets", "dependencies": [1], "section": "Phase 2: Scale"},
            ]
        }
    )
    r = run("tasks", "parse-prd", "prd.md", "--llm", "--agent", "planner", cwd=folder, env=env)
    assert r.returncode == 0, r.stderr
    assert "tasks proposed by agent 'planner' (LLM openai)" in r.stdout
    tasks = read_tasks(folder / "tasks.json")
    assert [(t["id"], t["title"], t["dependencies"]) for t in tasks] == [
        (1, "Make a widget", []),
        (2, "Ship widgets", [1]),
    ]
    (request,) = chat_server.requests
    assert request["path"] == "/v1/chat/completions" and request["body"]["model"] == "planner-1"
    assert request["body"]["stream"] is True and request["body"]["messages"][1]["content"] == NESTED_PRD


def test_server_error_and_prose_answers_fall_back_offline(  # type: ignore[no-untyped-def]
    chat_server: ChatServer, project, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, env = project
    monkeypatch.chdir(folder)
    monkeypatch.delenv("TASK_FILE", raising=False)
    chat_server.answer = "I think you should start with the widget."
    get_settings.cache_clear()
    r = cli("tasks", "parse-prd", "prd.md", "--llm", "--agent", "planner", env=env)
    assert r.exit_code == 0
    assert "holds no JSON object; using the offline parser instead" in r.stderr
    assert len(read_tasks(folder / "tasks.json")) == 6
    chat_server.status = 400
    r = cli("tasks", "parse-prd", "prd.md", "--llm", "--agent", "planner", env=env)
    assert r.exit_code == 0
    port = chat_server.server_address[1]
    expected = f"warning: the model failed: openai@127.0.0.1:{port}: HTTP 400: model is overloaded; using the"
    assert r.stderr.strip().splitlines() == [f"{expected} offline parser instead"]
