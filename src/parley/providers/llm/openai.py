"""Chat models behind the OpenAI API: OpenAI, Azure OpenAI, and any compatible server (Ollama, vLLM,
llama.cpp server, LM Studio, Groq), through the official `openai` SDK.

Tokens are streamed; tool calls arrive as argument fragments and are handed on only when complete.
Retries happen only before the first token; cancelling the consumer closes the HTTP stream at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from parley.logging import get_logger
from parley.providers.base import (
    LLM,
    Component,
    LLMChunk,
    Message,
    Provider,
    ProviderError,
    ToolCall,
    ToolDefinition,
)
from parley.providers.options import ProviderOptions, Script
from parley.providers.streaming import next_within, open_first, reason

try:
    import openai
except ImportError as exc:  # pragma: no cover - the 'cloud' extra is part of the normal install
    raise ImportError("the openai providers need the 'cloud' extra: pip install 'parley[cloud]'") from exc

if TYPE_CHECKING:
    from parley.settings import Settings

log = get_logger(__name__)

#: `model:` value on provider `openai` that means "use Azure OpenAI" (the original project's YAML).
AZURE_MODEL_ALIAS = "azure_openai"
#: HTTP statuses where retrying the same request cannot help.
_FATAL_STATUS = {400, 401, 403, 404, 422}


def classify_error(owner: Provider, exc: BaseException) -> ProviderError:
    """An `openai` SDK exception as `owner`'s `ProviderError`, saying what went wrong in words."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        reason = {
            401: "the API key was rejected (401)",
            403: "access denied (403)",
            404: "model, deployment or URL not found (404)",
            429: "rate limited or out of quota (429)",
        }.get(status, f"HTTP {status}")
        detail = _error_message(exc)
        return owner.error(f"{reason}: {detail}" if detail else reason, retryable=status not in _FATAL_STATUS)
    if isinstance(exc, openai.APITimeoutError):
        return owner.error("request timed out")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return owner.error(f"cannot reach the server: {cause}")
    return owner.error(f"{type(exc).__name__}: {exc}")


def _error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return ""


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Our messages in the chat-completions wire shape."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content})
            continue
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.role == "assistant" and m.tool_calls:
            item["content"] = m.content or None
            item["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in m.tool_calls
            ]
        if m.name and m.role == "user":
            item["name"] = m.name
        out.append(item)
    return out


def to_openai_tools(tools: list[ToolDefinition]) -> list[dict[str, Any]]:
    """Tool definitions in the function-calling wire shape."""
    return [
        {"type": "function",
         "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


class ToolCallAssembler:
    """Collects streamed `tool_calls` deltas (by index) into complete `ToolCall`s."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, Any]] = {}

    def add(self, delta_calls: list[Any]) -> None:
        """Absorb one chunk's `delta.tool_calls`."""
        for call in delta_calls:
            index = call.index if getattr(call, "index", None) is not None else self._index_for(call)
            part = self._parts.setdefault(index, {"id": "", "name": "", "arguments": ""})
            if call.id:
                part["id"] = call.id
            function = getattr(call, "function", None)
            if function is not None:
                if function.name and not part["name"]:
                    part["name"] = function.name
                if function.arguments:
                    part["arguments"] += function.arguments

    def _index_for(self, call: Any) -> int:
        # Servers that omit `index` (some llama.cpp builds) send one complete call per delta.
        if call.id and any(p["id"] == call.id for p in self._parts.values()):
            return next(i for i, p in self._parts.items() if p["id"] == call.id)
        return len(self._parts) if call.id or not self._parts else max(self._parts)

    def pending(self) -> bool:
        """True when fragments are waiting to be completed."""
        return bool(self._parts)

    def complete(self, provider: str) -> list[ToolCall]:
        """The assembled calls, in index order; clears the buffer (errors name `provider`)."""
        calls = []
        for index in sorted(self._parts):
            part = self._parts[index]
            raw = part["arguments"].strip() or "{}"
            try:
                arguments = json.loads(raw)
            except json.JSONDecodeError:
                raise ProviderError(provider, f"tool call {part['name']!r} had arguments that are not JSON: "
                                    f"{raw[:80]!r}", component="llm") from None
            if not isinstance(arguments, dict):
                arguments = {"value": arguments}
            calls.append(ToolCall(id=part["id"] or f"call_{index}", name=part["name"], arguments=arguments))
        self._parts.clear()
        return calls


def _useful(chunk: Any) -> bool:
    for choice in chunk.choices or []:
        delta = choice.delta
        if delta is not None and (delta.content or delta.tool_calls):
            return True
        if choice.finish_reason:
            return True
    return False


class OpenAICompatibleLLM(LLM):
    """A streaming chat model on any OpenAI-compatible endpoint (an `AsyncOpenAI`-style client)."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        model: str,
        name: str = "openai",
        temperature: float | None = None,
        max_tokens: int | None = None,
        first_token_timeout_s: float = 5.0,
        stream_timeout_s: float = 15.0,
        retries: int = 1,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.name = name
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.first_token_timeout_s = first_token_timeout_s
        self.stream_timeout_s = stream_timeout_s
        self.retries = retries
        self.extra_body = extra_body or {}

    def _params(self, messages: list[Message], tools: list[ToolDefinition] | None) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.model, "messages": to_openai_messages(messages), "stream": True}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if tools:
            params["tools"] = to_openai_tools(tools)
        if self.extra_body:
            params["extra_body"] = self.extra_body
        return params

    async def chat(
        self, messages: list[Message], tools: list[ToolDefinition] | None = None
    ) -> AsyncGenerator[LLMChunk, None]:
        """Stream the reply: text pieces as they come, each tool call once complete."""
        params = self._params(messages, tools)

        async def start() -> tuple[AsyncIterator[Any], Any]:
            stream = await self.client.chat.completions.create(**params)
            return stream.__aiter__(), stream.close

        opened = await open_first(
            self, start, timeout_s=self.first_token_timeout_s, retries=self.retries,
            classify=lambda exc: classify_error(self, exc), useful=_useful,
        )
        tools_buf = ToolCallAssembler()
        chars = 0
        try:
            for chunk in opened.head:
                for out in self._convert(chunk, tools_buf):
                    chars += len(out.text)
                    yield out
            if not opened.finished:
                while True:
                    try:
                        chunk = await next_within(opened.tail, self.stream_timeout_s, self)
                    except StopAsyncIteration:
                        break
                    except ProviderError as exc:
                        raise self.error(f"{reason(exc)} after {chars} characters") from exc
                    except Exception as exc:  # noqa: BLE001 - the SDK/transport raise many kinds
                        err = classify_error(self, exc)
                        raise self.error(f"stream broke after {chars} characters: {reason(err)}") from exc
                    for out in self._convert(chunk, tools_buf):
                        chars += len(out.text)
                        yield out
            if tools_buf.pending():
                for call in tools_buf.complete(self.name):
                    yield LLMChunk(tool_call=call)
        finally:
            await opened.close()

    def _convert(self, chunk: Any, tools_buf: ToolCallAssembler) -> list[LLMChunk]:
        out: list[LLMChunk] = []
        for choice in chunk.choices or []:
            if choice.index not in (0, None):
                continue
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    out.append(LLMChunk(text=delta.content))
                if delta.tool_calls:
                    tools_buf.add(delta.tool_calls)
            if choice.finish_reason and tools_buf.pending():
                out.extend(LLMChunk(tool_call=c) for c in tools_buf.complete(self.name))
        return out


# --- factories ------------------------------------------------------------------------------

def _secret(value: Any) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value or "")


def _key_from_env_option(provider: str, options: Mapping[str, Any], component: Component) -> str | None:
    env_name = options.get("api_key_env")
    if not env_name:
        return None
    value = os.environ.get(str(env_name), "")
    if not value:
        raise ProviderError(provider, f"api_key_env names {env_name}, but that environment variable is empty",
                            retryable=False, component=component)
    return value


def _tuning(spec: ProviderOptions) -> dict[str, Any]:
    o = spec.options
    return {
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
        "first_token_timeout_s": float(o.get("first_token_timeout_s", o.get("timeout_s", 5.0))),
        "stream_timeout_s": float(o.get("stream_timeout_s", 15.0)),
        "retries": int(o.get("retries", 1)),
        "extra_body": o.get("extra_body"),
    }


def openai_endpoint(provider: str, options: Mapping[str, Any], settings: Settings,
                    component: Component) -> tuple[str | None, str]:
    """Base URL and key for an OpenAI-compatible server, as the SDK would pick them (errors name `component`).

    `base_url` option, else `OPENAI_BASE_URL`; key from the variable named by `api_key_env`, else
    `OPENAI_API_KEY`; a local server (any `base_url`) may go without a key.
    """
    base_url = options.get("base_url") or settings.openai_base_url or os.environ.get("OPENAI_BASE_URL") or None
    key = (_key_from_env_option(provider, options, component) or _secret(settings.openai_api_key)
           or os.environ.get("OPENAI_API_KEY", ""))
    if not key:
        if not base_url:
            raise ProviderError(provider, "no API key: set OPENAI_API_KEY, or api_key_env, or base_url for a "
                                "local server", retryable=False, component=component)
        key = "not-needed"  # local servers (Ollama, llama.cpp, vLLM) accept any key
    return base_url, key


def create(spec: ProviderOptions, *, settings: Settings, script: Script | None = None) -> OpenAICompatibleLLM:
    """`provider: openai`: OpenAI or any compatible server; `model: azure_openai` selects Azure OpenAI.

    Options: `base_url` (else `OPENAI_BASE_URL`), `api_key_env` (name of the env var holding the key,
    else `OPENAI_API_KEY`), `first_token_timeout_s`, `stream_timeout_s`, `retries`, `extra_body`.
    """
    if spec.model == AZURE_MODEL_ALIAS:
        return create_azure(spec, settings=settings)
    base_url, key = openai_endpoint("openai", spec.options, settings, "llm")
    if not spec.model:
        raise ProviderError("openai", "no model given: set model: in the agent's llm component", retryable=False,
                            component="llm")
    client = openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=30.0)
    name = "openai" if not base_url else f"openai@{_host(base_url)}"
    return OpenAICompatibleLLM(client, model=spec.model, name=name, **_tuning(spec))


def create_azure(spec: ProviderOptions, *, settings: Settings, script: Script | None = None) -> OpenAICompatibleLLM:
    """`provider: azure_openai` (or `openai` with `model: azure_openai`): Azure OpenAI.

    Reads `AZURE_OPENAI_ENDPOINT`, `AZURE_OPENAI_API_KEY`, `AZURE_OPENAI_DEPLOYMENT_NAME` and
    `AZURE_OPENAI_API_VERSION`; options `endpoint`, `deployment`, `api_version`, `api_key_env` override.
    """
    options = spec.options
    endpoint = options.get("endpoint") or settings.azure_openai_endpoint
    key = _key_from_env_option("azure_openai", options, "llm") or _secret(settings.azure_openai_api_key)
    deployment = (
        options.get("deployment")
        or (spec.model if spec.model and spec.model != AZURE_MODEL_ALIAS else None)
        or settings.azure_openai_deployment_name
    )
    api_version = options.get("api_version") or settings.azure_openai_api_version
    missing = [n for n, v in [("AZURE_OPENAI_ENDPOINT", endpoint), ("AZURE_OPENAI_API_KEY", key),
                              ("AZURE_OPENAI_DEPLOYMENT_NAME", deployment)] if not v]
    if missing:
        raise ProviderError("azure_openai", f"not configured: set {', '.join(missing)}", retryable=False,
                            component="llm")
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=endpoint, api_key=key, api_version=api_version, max_retries=0, timeout=30.0
    )
    return OpenAICompatibleLLM(client, model=str(deployment), name="azure_openai", **_tuning(spec))


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or url
