"""Stand-in for the OpenAI REST API (and servers that copy it: Ollama, vLLM, llama.cpp) and for Azure
OpenAI's deployment routes, for tests on 127.0.0.1 — the real services cannot be reached from here.

It speaks the documented wire protocol of:
* `POST /v1/chat/completions` and Azure's `POST /openai/deployments/{deployment}/chat/completions
  ?api-version=…` with `stream: true`: `text/event-stream` of `chat.completion.chunk` objects
  (`data: {...}` lines, a role delta first, content deltas, `tool_calls` deltas with `index`/`id`/
  `function.name` then `function.arguments` fragments, a `finish_reason` chunk, then `data: [DONE]`);
* `POST /v1/audio/transcriptions` (multipart: `file`, `model`, `language`, `prompt`) -> `{"text": …}`;
* `POST /v1/audio/speech` (JSON `model`, `voice`, `input`, `response_format: "pcm"`) -> raw 24 kHz
  16-bit mono PCM, chunked; the audio is real speech of `input` made with espeak-ng;
* errors as `{"error": {"message", "type", "code"}}` with the HTTP status (401 for a wrong key,
  `api-key` header for Azure, `Authorization: Bearer` otherwise).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from parley.media.wav import read_wav

from .server import Reply, StandInServer, asgi_stream, espeak_pcm

DEFAULT_TEXT = "Hello from the stand-in. How can I help?"
SPEECH_RATE = 24000


class OpenAIStandIn(StandInServer):
    """The server; `plan("chat"|"transcribe"|"speech", Reply(...))` scripts the next answers.

    `chat_responder`, when set, makes the chat answer for any request nothing was planned for, from the
    request body (a benchmark's scripted conversation: its text and its `first_delay_s`, the first token's
    delay after the role chunk).
    """

    def __init__(self, api_key: str = "sk-test", azure_key: str = "azure-test") -> None:
        self.api_key = api_key
        self.azure_key = azure_key
        self.default_transcript = "hello world"
        self.chat_responder: Callable[[dict[str, Any]], Reply] | None = None
        routes = [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/openai/deployments/{deployment}/chat/completions", self._azure_chat, methods=["POST"]),
            Route("/v1/audio/transcriptions", self._transcribe, methods=["POST"]),
            Route("/v1/audio/speech", self._speech, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ]
        super().__init__(Starlette(routes=routes))

    # --- auth and errors --------------------------------------------------------------------
    def _authorised(self, request: Request, azure: bool = False) -> bool:
        if azure:
            return request.headers.get("api-key") == self.azure_key
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    @staticmethod
    def error(status: int, message: str, code: str = "") -> JSONResponse:
        kind = {401: "invalid_request_error", 429: "rate_limit_error"}.get(status, "server_error")
        headers = {"retry-after": "0"} if status == 429 else None
        return JSONResponse({"error": {"message": message, "type": kind, "code": code or None, "param": None}},
                            status_code=status, headers=headers)

    async def _models(self, request: Request) -> Response:
        if not self._authorised(request):
            return self.error(401, "Incorrect API key provided.", "invalid_api_key")
        return JSONResponse({"object": "list", "data": [{"id": "standin-model", "object": "model"}]})

    # --- chat -------------------------------------------------------------------------------
    async def _azure_chat(self, request: Request) -> Response:
        if "api-version" not in request.query_params:
            return self.error(400, "api-version query parameter is required")
        if not self._authorised(request, azure=True):
            return self.error(401, "Access denied due to invalid subscription key or wrong API endpoint.", "401")
        return await self._chat_reply(request, "azure_chat", request.path_params["deployment"])

    async def _chat(self, request: Request) -> Response:
        if not self._authorised(request):
            return self.error(401, "Incorrect API key provided.", "invalid_api_key")
        return await self._chat_reply(request, "chat", None)

    async def _chat_reply(self, request: Request, kind: str, deployment: str | None) -> Any:
        body = await request.json()
        if not isinstance(body.get("messages"), list) or not body.get("messages"):
            return self.error(400, "'messages' is a required property")
        self.record(kind, body=body, deployment=deployment)
        default = self.chat_responder(body) if self.chat_responder is not None else Reply(text=DEFAULT_TEXT)
        reply = self.next_reply(kind, default)
        if reply.status != 200:
            return self.error(reply.status, reply.error_message or f"stand-in error {reply.status}")
        if not body.get("stream"):
            return JSONResponse(_completion(body.get("model") or deployment or "", reply))
        head, chunks = _sse_chunks(body.get("model") or deployment or "", reply)
        app = asgi_stream(self, kind, reply, chunks, "text/event-stream", head=head)
        return _Raw(app)

    # --- audio ------------------------------------------------------------------------------
    async def _transcribe(self, request: Request) -> Response:
        if not self._authorised(request):
            return self.error(401, "Incorrect API key provided.", "invalid_api_key")
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return self.error(400, "file is required")
        data = await upload.read()
        try:
            pcm, rate = read_wav(data)
        except ValueError as exc:
            return self.error(400, f"Invalid file format: {exc}")
        reply = self.next_reply("transcribe", Reply(text=self.default_transcript))
        self.record("transcribe", model=form.get("model"), language=form.get("language"),
                    prompt=form.get("prompt"), rate=rate, seconds=len(pcm) / rate, filename=upload.filename)
        if reply.first_delay_s:
            import asyncio

            await asyncio.sleep(reply.first_delay_s)
        if reply.status != 200:
            return self.error(reply.status, reply.error_message or f"stand-in error {reply.status}")
        return JSONResponse({"text": reply.text if reply.text is not None else self.default_transcript})

    async def _speech(self, request: Request) -> Any:
        if not self._authorised(request):
            return self.error(401, "Incorrect API key provided.", "invalid_api_key")
        body = await request.json()
        if not body.get("input"):
            return self.error(400, "input is required")
        if body.get("response_format") != "pcm":
            return self.error(400, "this stand-in only sends response_format 'pcm'")
        self.record("speech", body=body)
        reply = self.next_reply("speech", Reply())
        if reply.status != 200:
            return self.error(reply.status, reply.error_message or f"stand-in error {reply.status}")
        pcm = await espeak_pcm(body["input"], SPEECH_RATE)
        step = SPEECH_RATE * 2 // 10  # 100 ms per chunk
        chunks = [pcm[i:i + step] for i in range(0, len(pcm), step)]
        return _Raw(asgi_stream(self, "speech", reply, chunks, "audio/pcm"))


class _Raw(Response):
    """Hands the request over to a raw ASGI app (for hand-paced streaming)."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _sse_chunks(model: str, reply: Reply) -> tuple[list[bytes], list[bytes]]:
    cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    created = int(time.time())

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "system_fingerprint": "fp_standin",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return f"data: {json.dumps(chunk)}\n\n".encode()

    head = [event({"role": "assistant", "content": ""})]
    chunks: list[bytes] = []
    text = reply.text or ""
    words = text.split(" ")
    for i, word in enumerate(words):
        if word or i:
            chunks.append(event({"content": word if i == 0 else " " + word}))
    for index, call in enumerate(reply.tool_calls):
        args = call.get("arguments", "{}")
        chunks.append(event({"tool_calls": [{"index": index, "id": call.get("id", f"call_{uuid.uuid4().hex[:8]}"),
                                             "type": "function",
                                             "function": {"name": call["name"], "arguments": ""}}]}))
        for start in range(0, len(args), 7):
            chunks.append(event({"tool_calls": [{"index": index, "function": {"arguments": args[start:start + 7]}}]}))
    chunks.append(event({}, "tool_calls" if reply.tool_calls else "stop"))
    chunks.append(b"data: [DONE]\n\n")
    return head, chunks


def _completion(model: str, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.get("id", f"call_{i}"), "type": "function",
             "function": {"name": c["name"], "arguments": c.get("arguments", "{}")}}
            for i, c in enumerate(reply.tool_calls)
        ]
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": message,
                                         "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
