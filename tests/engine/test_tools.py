"""The tool registry: each tool name finds its runner, and every outcome is told to the LLM in words.

The built-ins act on a real `FileChannel` (the reference line); the HTTP tool calls a local server.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from parley.engine.file_channel import FileChannel
from parley.engine.tools import ToolBox, ToolContext
from parley.providers.base import ToolCall
from tests.engine.fakes import agent_spec

pytestmark = pytest.mark.realtime  # conversations paced in real time: make test runs it in the foreground half


def line(transfer_result: bool = True) -> FileChannel:
    return FileChannel(np.zeros(800, np.int16), 8000, transfer_result=transfer_result)


def box(*tools: dict[str, Any]) -> ToolBox:
    return ToolBox(agent_spec(tools=list(tools)).tools if tools else agent_spec().tools)


def tool_call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(f"call-{name}", name, arguments)


async def test_end_call_waits_for_the_goodbye_to_be_heard_then_ends_the_call() -> None:
    order: list[str] = []

    async def played() -> None:
        order.append("played")

    outcome = await box().run(tool_call("end_call"), ToolContext(line(), played=played))
    assert (outcome.ok, outcome.result, outcome.ends_call) == (True, "call ended", "agent_ended")
    assert order == ["played"]


async def test_transfer_goes_to_the_asked_target_else_the_configured_one() -> None:
    channel = line()
    tools = box()
    outcome = await tools.run(tool_call("transfer_call"), ToolContext(channel))
    assert (outcome.result, outcome.ends_call) == ("transferred to sip:desk@127.0.0.1", "transferred")
    other = line()
    await tools.run(tool_call("transfer_call", target="sip:sales@127.0.0.1"), ToolContext(other))
    assert channel.transfers == ["sip:desk@127.0.0.1"] and other.transfers == ["sip:sales@127.0.0.1"]


async def test_failed_or_impossible_transfer_is_an_error_and_the_call_goes_on() -> None:
    failed = await box().run(tool_call("transfer_call"), ToolContext(line(transfer_result=False)))
    assert not failed.ok and failed.ends_call is None and failed.result.startswith("error: transfer to")
    untargeted = await box({"name": "transfer_call"}).run(tool_call("transfer_call"), ToolContext(line()))
    assert untargeted.result == "error: no transfer target given or configured"


async def test_send_dtmf_presses_valid_keys_and_refuses_others_without_touching_the_line() -> None:
    channel = line()
    sent = await box().run(tool_call("send_dtmf", digits="1 2#"), ToolContext(channel))
    refused = await box().run(tool_call("send_dtmf", digits="12x"), ToolContext(channel))
    assert (sent.ok, sent.result) == (True, "sent 12#")
    assert not refused.ok and "invalid DTMF digits '12x'" in refused.result
    assert channel.sent_dtmf == ["12#"]


async def test_unknown_tool_is_an_error_told_to_the_llm() -> None:
    outcome = await box().run(tool_call("book_flight"), ToolContext(line()))
    assert not outcome.ok and outcome.result == "error: unknown tool 'book_flight'"


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        payload = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


async def test_http_tool_is_found_by_its_name_and_returns_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "true")  # the tool's server is on 127.0.0.1
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/q"
        spec = {"name": "lookup", "type": "http", "method": "GET", "url": url}
        outcome = await box(spec).run(tool_call("lookup", order="A 7"), ToolContext(line()))
    finally:
        server.shutdown()
        server.server_close()
    assert outcome.ok and outcome.result == "/q?order=A+7" and outcome.ends_call is None


def test_goodbyes_and_hand_overs_are_said_to_their_end() -> None:
    tools = box({"name": "end_call"}, {"name": "lookup", "type": "http", "url": "http://127.0.0.1:9/"})
    assert tools.is_final("end_call") and tools.is_final("transfer_call")
    assert not tools.is_final("send_dtmf") and not tools.is_final("lookup") and not tools.is_final("nope")


def test_definitions_offer_the_agent_tools_with_default_wording() -> None:
    tools = box({"name": "end_call"}, {"name": "end_call_message", "type": "http", "url": "http://x/"})
    assert [d.name for d in tools.definitions or []] == ["end_call", "end_call_message"]
    assert tools.definitions and tools.definitions[0].description == "End the call after saying goodbye."
    assert tools.message("end_call") == ""
    assert box({"name": "end_call", "message": "Goodbye!"}).message("end_call") == "Goodbye!"
