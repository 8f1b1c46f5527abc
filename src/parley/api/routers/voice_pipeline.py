"""`POST /api/voice-pipeline`: a WAV question in, the agent's spoken answer out.

The upload runs through a real `Conversation` over the file channel (VAD, STT, LLM, TTS — the same engine
as a phone call), faster than real time. Answers `audio/wav` by default (the original project's
behaviour) or, with `?format=json`, the transcript, reply text, base64 WAV and latency marks. Each
agent's providers are built once and kept (`api/voice_engines.py`).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import JSONResponse, Response

from parley.agents import AgentRegistry
from parley.api.deps import AgentsDep, SettingsDep, VoiceEnginesDep
from parley.api.errors import ApiError, ErrorBody
from parley.api.voice_engines import VoiceEngines
from parley.engine.session import Engines, talk_file
from parley.media.wav import AudioFormatError, read_wav, wav_bytes
from parley.providers.base import ProviderError

router = APIRouter(prefix="/api", tags=["voice"])

MAX_SECONDS = 60.0
MAX_BYTES = 24 * 1024 * 1024  # 60 s of 48 kHz stereo 16-bit is ~11.5 MB; room for headers and slack
#: Media clock speed of the file conversation: replies come back faster than real time.
SPEED = 4.0


async def _engines(cache: VoiceEngines, registry: AgentRegistry, name: str) -> Engines:
    try:
        agent = registry.get(name)
    except KeyError as exc:
        raise ApiError(404, "not_found", str(exc.args[0])) from None
    try:
        return await cache.for_agent(agent)
    except (ValueError, ProviderError) as exc:
        raise ApiError(503, "engine_unavailable", f"agent {agent.key!r}: {exc}") from None


@router.post(
    "/voice-pipeline",
    summary="Speak to an agent with a WAV file",
    response_class=Response,
    responses={
        200: {
            "content": {"audio/wav": {}, "application/json": {}},
            "description": "The agent's spoken reply (WAV), or JSON with `?format=json`.",
        },
        400: {"model": ErrorBody, "description": "Not a usable WAV file (the message says why)."},
        404: {"model": ErrorBody, "description": "Unknown agent."},
        413: {"model": ErrorBody, "description": "Audio longer than 60 s or file too large."},
        422: {"model": ErrorBody, "description": "No speech recognised, no reply, or invalid parameters."},
        503: {"model": ErrorBody, "description": "The agent's speech engines cannot be built."},
    },
)
async def voice_pipeline(
    cache: VoiceEnginesDep,
    registry: AgentsDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="Mono or stereo 16-bit PCM WAV, 8–48 kHz, at most 60 s.")],
    format: Annotated[Literal["wav", "json"], Query(description="`wav` (audio reply) or `json`.")] = "wav",
    agent: Annotated[str | None, Query(description="Agent key or name; default: DEFAULT_AGENT.")] = None,
) -> Response:
    data = await file.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ApiError(413, "audio_too_long", f"file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        pcm, rate = read_wav(data, max_seconds=MAX_SECONDS)
    except AudioFormatError as exc:
        status, code = (413, "audio_too_long") if "too long" in str(exc) else (400, "invalid_audio")
        raise ApiError(status, code, f"{file.filename or 'upload'}: {exc}") from None
    if rate > 48000:
        raise ApiError(400, "invalid_audio", f"sample rate {rate} Hz is not supported; use 8000–48000 Hz")
    engines = await _engines(cache, registry, agent or settings.default_agent)
    result = await talk_file(engines, pcm, rate, speed=SPEED, tail_s=60.0)
    user_text, reply_text = result.said("user"), result.said("agent")
    if not user_text:
        raise ApiError(422, "no_speech", "no speech was recognised in the audio")
    if result.audio.size == 0:
        raise ApiError(422, "no_reply", "the agent produced no spoken reply")
    audio = wav_bytes(result.audio, rate)
    if format == "wav":
        return Response(
            audio, media_type="audio/wav", headers={"Content-Disposition": 'attachment; filename="reply.wav"'}
        )
    latency: dict[str, Any] = result.metrics[0].to_dict() if result.metrics else {}
    latency.pop("type", None)
    body = {
        "agent": engines.agent.key,
        "transcript": user_text,
        "reply_text": reply_text,
        "entries": [e.to_dict() for e in result.transcript],
        "sample_rate": rate,
        "audio_base64": base64.b64encode(audio).decode("ascii"),
        "latency": latency,
        "end_reason": result.reason,
    }
    return JSONResponse(body)
