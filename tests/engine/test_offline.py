"""Real offline engines end to end: synthesised speech over an 8 kHz path through Whisper, the scripted
receptionist, piper and silero — via the engine, `POST /api/voice-pipeline` and `parley talk`."""

from __future__ import annotations

import asyncio
import base64
import io
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from parley.api.app import create_app
from parley.engine.events import TurnMetrics
from parley.engine.session import Engines, talk_file
from parley.media.wav import read_wav, wav_bytes
from parley.settings import Settings

QUESTION = "I would like to book an appointment for Tuesday"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def speech_seconds(pcm: np.ndarray, rate: int) -> float:
    """Seconds of 20 ms blocks louder than -40 dBFS."""
    n = rate // 50
    blocks = pcm[: pcm.size - pcm.size % n].reshape(-1, n).astype(np.float32)
    return float(np.count_nonzero(np.sqrt((blocks**2).mean(axis=1)) > 330)) * 0.02


@pytest.mark.parametrize("voice", ["espeak", "piper"])
async def test_booking_question_over_8khz_gets_the_booking_answer(
    voice: str,
    speech_wav,
    receptionist: Engines,  # type: ignore[no-untyped-def]
) -> None:
    pcm, rate = read_wav(speech_wav(QUESTION, engine=voice, rate=8000))
    assert rate == 8000
    result = await talk_file(receptionist, pcm, rate, speed=4.0)

    heard = result.said("user").lower()
    assert "appointment" in heard and "tuesday" in heard, heard
    reply = result.said("agent")
    assert reply == "Sure, I can book that for Tuesday. May I have your name, please?"
    assert result.reason == "completed"
    assert result.audio.size / rate > 2.0
    assert speech_seconds(result.audio, rate) > 1.5, "the reply WAV carries speech"
    (marks,) = [m for m in result.metrics if isinstance(m, TurnMetrics)]
    assert marks.stt_final_ms is not None and marks.first_frame_out_ms is not None
    assert marks.stt_final_ms <= marks.first_frame_out_ms < 30000
    # the agent's audio is intelligible: Whisper hears the booking confirmation in it
    check = await receptionist.stt.transcribe(result.audio, rate)
    assert "tuesday" in check.text.lower(), check.text


@pytest.fixture
def api(offline_settings: Settings, receptionist: Engines) -> httpx.AsyncClient:
    app = create_app(offline_settings, agents=None, api_keys=["test-key"],
                     voice_engines={"receptionist": receptionist})  # built by the fixture already
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://127.0.0.1",
        headers={"X-API-Key": "test-key"},
        timeout=120,
    )


async def test_voice_pipeline_answers_a_wav_with_a_wav(api: httpx.AsyncClient, speech_wav) -> None:  # type: ignore[no-untyped-def]
    data = speech_wav(QUESTION, engine="piper", rate=16000).read_bytes()
    # two callers at once: the WAV answer and the JSON answer
    response, as_json = await asyncio.gather(
        api.post("/api/voice-pipeline", files={"file": ("q.wav", data, "audio/wav")}),
        api.post("/api/voice-pipeline?format=json", files={"file": ("q.wav", data, "audio/wav")}),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(response.content)) as wav:
        assert wav.getframerate() == 16000 and wav.getnchannels() == 1
    pcm, rate = read_wav(response.content)
    assert speech_seconds(pcm, rate) > 1.5

    assert as_json.status_code == 200, as_json.text
    body = as_json.json()
    assert "appointment" in body["transcript"].lower()
    assert body["reply_text"] == "Sure, I can book that for Tuesday. May I have your name, please?"
    reply_pcm, reply_rate = read_wav(base64.b64decode(body["audio_base64"]))
    assert reply_rate == 16000 and speech_seconds(reply_pcm, reply_rate) > 1.5
    assert (
        body["latency"]["stt_final_ms"] > 0
        and body["latency"]["first_frame_out_ms"] >= body["latency"]["stt_final_ms"]
    )


async def test_voice_pipeline_rejects_bad_audio_with_reasons(api: httpx.AsyncClient) -> None:
    async def post(data: bytes, **kw: str) -> httpx.Response:
        return await api.post("/api/voice-pipeline", files={"file": ("x.wav", data, "audio/wav")}, params=kw)

    r = await post(b"this is not audio at all")
    assert r.status_code == 400 and "not a WAV file" in r.json()["message"]
    r = await post(b"")
    assert r.status_code == 400 and "empty" in r.json()["message"]
    r = await post(wav_bytes(np.zeros(8000 * 61, np.int16), 8000))
    assert r.status_code == 413 and "too long" in r.json()["message"]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(16000)
        w.writeframes(b"\0" * 3000)
    r = await post(buf.getvalue())
    assert r.status_code == 400 and "24-bit" in r.json()["message"]
    r = await post(wav_bytes(np.zeros(16000, np.int16), 16000))
    assert r.status_code == 422 and r.json()["error"] == "no_speech"
    r = await post(wav_bytes(np.zeros(16000, np.int16), 16000), agent="nobody")
    assert r.status_code == 404 and "nobody" in r.json()["message"]
    r = await post(b"x", format="mp3")
    assert r.status_code == 422
    r = await api.post("/api/voice-pipeline")
    assert r.status_code == 422 and "file" in r.json()["message"]
    r = await api.post("/api/voice-pipeline", files={"file": ("q.wav", b"x")}, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401


def test_parley_talk_prints_transcript_and_writes_the_reply(
    speech_wav,
    offline_settings: Settings,
    receptionist: Engines,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from parley.cli.main import app

    monkeypatch.setenv("DATA_DIR", str(offline_settings.data_dir))
    monkeypatch.setenv("AGENTS_DIR", str(offline_settings.agents_dir))
    monkeypatch.setenv("PROMPTS_DIR", str(offline_settings.prompts_dir))
    question = speech_wav("What are your opening hours?", engine="piper", rate=8000)
    out = tmp_path / "reply.wav"
    runner = CliRunner()
    result = runner.invoke(
        app, ["talk", "--agent", "receptionist", "--in", str(question), "--out", str(out), "--speed", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "opening hours" in result.output.lower()
    assert "We're open Monday to Friday" in result.output
    assert "stt final" in result.output and "first frame out" in result.output
    pcm, rate = read_wav(out)
    assert rate == 8000 and speech_seconds(pcm, rate) > 2.0

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....nope")
    result = runner.invoke(app, ["talk", "--agent", "receptionist", "--in", str(bad), "--out", str(out)])
    assert result.exit_code == 1
    assert (
        "not a WAV file" in result.output or "broken WAV" in result.output or "invalid WAV" in result.output
    )
    result = runner.invoke(app, ["talk", "--agent", "nobody", "--in", str(question)])
    assert result.exit_code == 1 and "unknown agent 'nobody'" in result.output


def test_parley_chat_types_turns_with_the_scripted_agent(
    offline_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from parley.cli.main import app

    monkeypatch.setenv("AGENTS_DIR", str(offline_settings.agents_dir))
    monkeypatch.setenv("PROMPTS_DIR", str(offline_settings.prompts_dir))
    result = CliRunner().invoke(
        app,
        ["chat", "--agent", "receptionist"],
        input="can I book an appointment for friday\nthat's all, goodbye\n",
    )
    assert result.exit_code == 0, result.output
    assert "Parley Dental" in result.output  # the greeting
    assert "Sure, I can book that for Friday." in result.output
    assert "end_call()" in result.output and "conversation ended (agent_ended)" in result.output
