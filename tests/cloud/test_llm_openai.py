"""The `openai` / `azure_openai` LLM through the real `openai` SDK against the OpenAI-compatible stand-in."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import pytest

from parley.agents.spec import LLMSpec
from parley.providers.base import Message, ProviderError, ToolDefinition
from parley.providers.factory import build_llm

from .standins.server import Reply

pytestmark = pytest.mark.realtime  # timeouts of seconds: make test runs it in the foreground half


HELLO = [Message("system", "You are a receptionist."), Message("user", "Hello?")]


async def collect(llm, messages=HELLO, tools=None):  # type: ignore[no-untyped-def]
    text, calls = "", []
    async for chunk in llm.chat(messages, tools):
        text += chunk.text
        if chunk.tool_call is not None:
            calls.append(chunk.tool_call)
    return text, calls


def spec(**extra):  # type: ignore[no-untyped-def]
    # a first-token budget far above anything the stand-in needs, so a loaded CI machine cannot flake a
    # test that expects an answer; tests about the timeout pass their own small value
    extra.setdefault("first_token_timeout_s", 15.0)
    return LLMSpec(provider="openai", model="standin-model", **extra)


async def test_streams_tokens_and_sends_the_conversation(cloud_settings, openai_server) -> None:
    openai_server.plan("chat", Reply(text="We open at nine tomorrow.", chunk_delay_s=0.02))
    llm = build_llm(spec(temperature=0.3), cloud_settings)
    pieces, arrival = [], []
    started = time.monotonic()
    async for chunk in llm.chat(HELLO):
        pieces.append(chunk.text)
        arrival.append(time.monotonic() - started)
    assert "".join(pieces) == "We open at nine tomorrow."
    assert len(pieces) >= 4, "tokens must arrive one by one, not as one block"
    assert arrival[0] < arrival[-1], "the first token is handed on before the stream ends"
    body = openai_server.requests_of("chat")[0]["body"]
    assert body["model"] == "standin-model" and body["stream"] is True and body["temperature"] == 0.3
    assert body["messages"] == [{"role": "system", "content": "You are a receptionist."},
                                {"role": "user", "content": "Hello?"}]


async def test_tool_call_fragments_are_assembled_into_complete_calls(cloud_settings, openai_server) -> None:
    openai_server.plan("chat", Reply(text="Transferring you now.", tool_calls=[
        {"id": "call_a", "name": "transfer_call", "arguments": '{"target": "sip:frontdesk@127.0.0.1", "reason": "asked for a person"}'},
        {"id": "call_b", "name": "send_dtmf", "arguments": '{"digits": "1234#"}'},
    ]))
    tools = [ToolDefinition("transfer_call", "Transfer the caller.", {"type": "object", "properties": {"target": {"type": "string"}}}),
             ToolDefinition("send_dtmf", "Send digits.", {"type": "object", "properties": {"digits": {"type": "string"}}})]
    text, calls = await collect(build_llm(spec(), cloud_settings), tools=tools)
    assert text == "Transferring you now."
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_a", "transfer_call", {"target": "sip:frontdesk@127.0.0.1", "reason": "asked for a person"}),
        ("call_b", "send_dtmf", {"digits": "1234#"}),
    ]
    sent = openai_server.requests_of("chat")[0]["body"]["tools"]
    assert [t["function"]["name"] for t in sent] == ["transfer_call", "send_dtmf"]
    assert sent[0]["type"] == "function" and sent[0]["function"]["parameters"]["type"] == "object"


async def test_tool_results_go_back_in_the_wire_shape(cloud_settings, openai_server) -> None:
    from parley.providers.base import ToolCall

    history = [*HELLO,
               Message("assistant", "", tool_calls=[ToolCall("call_1", "lookup", {"day": "monday"})]),
               Message("tool", '{"open": true}', tool_call_id="call_1")]
    text, _ = await collect(build_llm(spec(), cloud_settings), history)
    assert text
    sent = openai_server.requests_of("chat")[0]["body"]["messages"]
    assert sent[2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"day": "monday"}'}}]}
    assert sent[3] == {"role": "tool", "tool_call_id": "call_1", "content": '{"open": true}'}


async def test_wrong_key_fails_at_once_in_words(cloud_settings, openai_server, monkeypatch) -> None:
    monkeypatch.setenv("WRONG_KEY", "sk-wrong")
    llm = build_llm(spec(api_key_env="WRONG_KEY", retries=3), cloud_settings)
    with pytest.raises(ProviderError, match="API key was rejected") as info:
        await collect(llm)
    assert info.value.retryable is False
    assert len(openai_server.requests) == 0  # rejected before the handler recorded a chat request
    assert "Incorrect API key" in str(info.value)


async def test_server_error_is_retried_before_the_first_token(cloud_settings, openai_server) -> None:
    openai_server.plan("chat", Reply(status=500, error_message="The server had an error"), Reply(text="Second try works."))
    text, _ = await collect(build_llm(spec(retries=1), cloud_settings))
    assert text == "Second try works."
    assert len(openai_server.requests_of("chat")) == 2


async def test_rate_limit_gives_up_after_the_retries(cloud_settings, openai_server) -> None:
    openai_server.plan("chat", *[Reply(status=429, error_message="Rate limit reached")] * 3)
    with pytest.raises(ProviderError, match="rate limited") as info:
        await collect(build_llm(spec(retries=2), cloud_settings))
    assert info.value.retryable is True
    assert len(openai_server.requests_of("chat")) == 3


async def test_slow_first_token_times_out_and_the_retry_answers(cloud_settings, openai_server) -> None:
    openai_server.plan("chat", Reply(text="Too late.", first_delay_s=10), Reply(text="Right on time."))
    llm = build_llm(spec(first_token_timeout_s=2.0, retries=1), cloud_settings)  # generous: loaded CI machines
    started = time.monotonic()
    text, _ = await collect(llm)
    assert text == "Right on time."
    assert time.monotonic() - started < 8, "the slow attempt was abandoned at the first-token timeout"
    hangup = await asyncio.to_thread(openai_server.wait_hangup, "chat", 5)
    assert hangup is not None and hangup.chunks_sent == 0, "the slow stream's connection was closed"


async def test_slow_first_token_without_retries_raises_timeout(cloud_settings, openai_server) -> None:
    openai_server.plan("chat", Reply(text="Too late.", first_delay_s=5))
    with pytest.raises(ProviderError, match="no response within 0.3 s"):
        await collect(build_llm(spec(first_token_timeout_s=0.3, retries=0), cloud_settings))


async def test_dropped_stream_mid_answer_is_not_retried(cloud_settings, openai_server) -> None:
    openai_server.plan("chat", Reply(text="Our opening hours are nine to five on weekdays.", drop_after=4))
    llm = build_llm(spec(retries=2), cloud_settings)
    received = ""
    with pytest.raises(ProviderError, match="stream broke after") as info:
        async for chunk in llm.chat(HELLO):
            received += chunk.text
    assert received.startswith("Our opening")  # what came before the drop was handed on
    assert f"after {len(received)} characters" in str(info.value)
    assert len(openai_server.requests_of("chat")) == 1, "no retry once tokens were handed on"


async def test_stalled_stream_raises_instead_of_hanging(cloud_settings, openai_server) -> None:
    openai_server.plan("chat", Reply(text="one two three four five", stall_after=3))
    llm = build_llm(spec(stream_timeout_s=0.5), cloud_settings)
    with pytest.raises(ProviderError, match="stalled"):
        await collect(llm)
    assert await asyncio.to_thread(openai_server.wait_hangup, "chat", 3) is not None


async def test_barge_in_cancel_closes_the_http_connection_at_once(cloud_settings, openai_server) -> None:
    openai_server.plan("chat", Reply(text=" ".join(["word"] * 200), chunk_delay_s=0.05))
    llm = build_llm(spec(), cloud_settings)
    got = asyncio.Event()

    async def speak() -> None:
        async for _chunk in llm.chat(HELLO):
            got.set()

    task = asyncio.create_task(speak())
    await asyncio.wait_for(got.wait(), 5)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    hangup = await asyncio.to_thread(openai_server.wait_hangup, "chat", 3)
    assert hangup is not None, "the server must see the connection close"
    assert 0 <= hangup.at - cancelled_at < 2.0
    assert hangup.chunks_sent < 100 and "chat" not in openai_server.completed


async def test_consumer_closing_the_stream_closes_the_connection(cloud_settings, openai_server) -> None:
    openai_server.plan("chat", Reply(text=" ".join(["word"] * 200), chunk_delay_s=0.05))
    llm = build_llm(spec(), cloud_settings)
    async with aclosing(llm.chat(HELLO)) as chunks:
        async for _chunk in chunks:
            break
    hangup = await asyncio.to_thread(openai_server.wait_hangup, "chat", 3)
    assert hangup is not None and hangup.chunks_sent < 100


async def test_original_yaml_selects_azure_openai(cloud_settings, openai_server, root) -> None:
    from parley.agents import AgentRegistry

    agent = AgentRegistry.load(root / "agents", root / "prompts").get("german_assistant")
    assert agent.spec.components.llm.model == "azure_openai"
    openai_server.plan("azure_chat", Reply(text="Guten Tag, wie kann ich helfen?"))
    llm = build_llm(agent.spec.components.llm, cloud_settings)
    assert llm.name == "azure_openai"
    text, _ = await collect(llm)
    assert text == "Guten Tag, wie kann ich helfen?"
    request = openai_server.requests_of("azure_chat")[0]
    assert request["deployment"] == "gpt-4o-parley"  # AZURE_OPENAI_DEPLOYMENT_NAME
    assert openai_server.requests_of("chat") == []


async def test_azure_openai_provider_with_wrong_key(cloud_settings, openai_server) -> None:
    settings = cloud_settings.model_copy(update={"azure_openai_api_key": type(cloud_settings.azure_openai_api_key)("nope")})
    llm = build_llm(LLMSpec(provider="azure_openai"), settings)
    with pytest.raises(ProviderError, match="API key was rejected"):
        await collect(llm)


def test_azure_openai_without_configuration_names_the_variables(settings, monkeypatch) -> None:
    for name in ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ProviderError, match="AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY, AZURE_OPENAI_DEPLOYMENT_NAME"):
        build_llm(LLMSpec(provider="openai", model="azure_openai"), settings)


async def test_local_server_from_yaml_base_url_and_key_env(settings, openai_server, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("LOCAL_LLM_KEY", "sk-test")
    llm = build_llm(spec(base_url=openai_server.base_url + "/v1", api_key_env="LOCAL_LLM_KEY"), settings)
    text, _ = await collect(llm)
    assert text.startswith("Hello from the stand-in")


async def test_openai_env_variables_are_honoured(openai_server, monkeypatch, tmp_path) -> None:
    from parley.settings import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url + "/v1")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    text, _ = await collect(build_llm(spec(), settings))
    assert text.startswith("Hello from the stand-in")


def test_missing_key_for_the_official_api_is_a_clear_error(settings, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ProviderError, match="set OPENAI_API_KEY"):
        build_llm(spec(), settings)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    with pytest.raises(ProviderError, match="LLM_KEY_NOT_SET"):
        build_llm(spec(api_key_env="LLM_KEY_NOT_SET"), settings)


def test_tool_calls_from_servers_that_send_them_whole() -> None:
    """Ollama sends each call complete in one delta; some llama.cpp builds also leave out `index`."""
    from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction

    from parley.providers.llm.openai import ToolCallAssembler

    whole = ToolCallAssembler()
    whole.add([ChoiceDeltaToolCall.model_validate(
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "end_call", "arguments": '{"reason": "done"}'}})])
    assert [(c.id, c.name, c.arguments) for c in whole.complete("t")] == [("call_1", "end_call", {"reason": "done"})]

    no_index = ToolCallAssembler()
    for n, (name, args) in enumerate([("send_dtmf", '{"digits": "12"}'), ("end_call", "")]):
        no_index.add([ChoiceDeltaToolCall.model_construct(
            index=None, id=f"call_{n}", type="function",
            function=ChoiceDeltaToolCallFunction(name=name, arguments=args))])
    assert [(c.name, c.arguments) for c in no_index.complete("t")] == [("send_dtmf", {"digits": "12"}), ("end_call", {})]

    broken = ToolCallAssembler()
    broken.add([ChoiceDeltaToolCall.model_validate(
        {"index": 0, "id": "c", "function": {"name": "send_dtmf", "arguments": '{"digits": '}})])
    with pytest.raises(ProviderError, match="not JSON"):
        broken.complete("t")
