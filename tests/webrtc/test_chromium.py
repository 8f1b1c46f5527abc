"""A real browser: Debian's Chromium, driven by Playwright (never a downloaded browser), with a WAV file
as its microphone (`--use-file-for-fake-audio-capture`), loads a tiny test page from the API's origin
(`talk_page.html`, X-API-Key in fetch), starts a call, shows both sides' words, and ends the call; and
barges in over the greeting. What the page measured with WebAudio (voice-to-voice) is printed.
Screenshots go to the test's tmp dir (not committed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parley.media.wav import write_wav
from tests.eventually import eventually

pytestmark = [pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
PAGE = Path(__file__).with_name("talk_page.html")
KEY = "test-key"


def _mic_file(tmp_path: Path, speech: np.ndarray, lead_s: float, tail_s: float = 40.0) -> Path:
    quiet = lambda s: np.zeros(int(s * 48000), np.int16)  # noqa: E731
    return write_wav(tmp_path / "mic.wav", np.concatenate([quiet(lead_s), speech, quiet(tail_s)]), 48000)


async def _browser(mic: Path) -> Any:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (scripts/system-deps.sh installs it)")
    playwright_api = pytest.importorskip("playwright.async_api")
    pw = await playwright_api.async_playwright().start()
    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}%noloop", "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
    ])
    return pw, browser


async def _open_page(browser: Any, url: str) -> Any:
    page = await browser.new_page()

    async def serve(route: Any) -> None:
        await route.fulfill(status=200, content_type="text/html", body=PAGE.read_text())

    await page.route(f"{url}/test/talk", serve)  # the page comes from the API's origin: same-origin fetch
    await page.goto(f"{url}/test/talk")
    return page


async def _messages(page: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate("window.messages")
    return result


def _said(messages: list[dict[str, Any]], role: str, words: str) -> dict[str, Any] | None:
    return next((m for m in messages if m["type"] == "transcript" and m["role"] == role
                 and words in m["text"].lower()), None)


def voice_to_voice_ms(levels: list[list[float]], heard_at: float, threshold: float = 0.01) -> float | None:
    """In-page voice-to-voice: the last microphone frame above `threshold` before the page got the caller's
    transcript (`heard_at`, sent at the end of the turn) → the first agent frame above `threshold` after it."""
    t = np.array([lv[0] for lv in levels])
    mic = np.array([lv[1] for lv in levels])
    agent = np.array([lv[2] for lv in levels])
    before = np.nonzero((mic > threshold) & (t < heard_at))[0]
    if not before.size:
        return None
    speech_end = t[before[-1]]
    after = np.nonzero((agent > threshold) & (t > speech_end))[0]
    return float(t[after[0]] - speech_end) if after.size else None


async def test_chromium_talks_to_the_agent(web_server, speech48, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    web = await web_server()
    mic = _mic_file(tmp_path, speech48("What are your opening hours?"), lead_s=9.0)
    pw, browser = await _browser(mic)
    try:
        page = await _open_page(browser, web.url)
        started = await page.evaluate("key => window.startCall(key)", KEY)
        assert started["status"] == 200, started
        assert "opus/48000" in started["offer"].lower()  # the browser offered Opus
        reply = await eventually(lambda: _reply(page), timeout_s=45, what="the agent's reply in the page")
        messages = await _messages(page)
        caller = _said(messages, "caller", "hour") or _said(messages, "caller", "open")  # Whisper's variants
        assert caller, await _messages(page)
        text = await page.inner_text("#transcript")
        assert "caller: " in text and "monday" in text.lower(), text
        await page.screenshot(path=str(tmp_path / "talk-page.png"))
        levels = await page.evaluate("window.levels")
        v2v = voice_to_voice_ms(levels, caller["at"])
        peak = max(lv[2] for lv in levels)
        print(f"in-page voice-to-voice: {v2v} ms (agent peak rms {peak:.3f}, {len(levels)} level samples)")
        print("page getStats (inbound audio):", await page.evaluate("window.audioStats()"))
        assert v2v is not None and v2v > 100, v2v  # measured (its size depends on the machine's load)
        await page.evaluate("window.endCall()")
        call = await web.wait_status(started["call_id"], {"completed"})
    finally:
        await browser.close()
        await pw.stop()
    assert call.channel == "webrtc" and call.end_reason == "caller_hangup"
    detail = await web.state.calls.get(call.id)
    assert detail is not None
    assert any("hour" in e.text.lower() or "open" in e.text.lower()
               for e in detail.transcript if e.role == "caller"), detail.transcript
    assert any("monday" in e.text.lower() for e in detail.transcript if e.role == "agent")
    marks = [e.data for e in detail.timeline if e.type == "turn_metrics" and e.data.get("stt_final_ms") is not None]
    assert marks and marks[0]["voice_to_voice_ms"], marks
    print("server turn marks:", [{k: m.get(k) for k in ("voice_to_voice_ms", "silence_waited_ms", "stt_final_ms",
                                                          "first_frame_out_ms", "detector")} for m in marks])
    assert any(e.type == "webrtc.connected" for e in detail.timeline)


async def _reply(page: Any) -> dict[str, Any] | None:
    return _said(await _messages(page), "agent", "monday")


async def test_chromium_barges_in_over_the_greeting(web_server, speech48, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    web = await web_server()
    mic = _mic_file(tmp_path, speech48("I want to cancel my appointment."), lead_s=2.5)
    pw, browser = await _browser(mic)
    try:
        page = await _open_page(browser, web.url)
        started = await page.evaluate("key => window.startCall(key)", KEY)
        assert started["status"] == 200, started
        await eventually(lambda: _said_async(page, "agent", "which day"), timeout_s=45,
                         what="the answer to the caller's words")
        messages = await _messages(page)
        interrupted = [m for m in messages if m["type"] == "state" and m["state"] == "interrupted"]
        assert interrupted, messages
        levels = np.array(await page.evaluate("window.levels"))
        t_int = interrupted[0]["at"]
        reply = _said(messages, "agent", "which day")
        assert reply is not None
        # after the interruption (and 300 ms for the last frames in flight and the jitter buffer), the
        # agent is silent while the caller still speaks
        mic_on = levels[(levels[:, 0] > t_int) & (levels[:, 1] > 0.01)]
        assert mic_on.size, "the caller stopped speaking before the interruption was reported"
        window = levels[(levels[:, 0] > t_int + 300) & (levels[:, 0] < mic_on[-1, 0])]
        loud = float((window[:, 2] > 0.01).sum() * 0.02) if window.size else 0.0
        assert loud <= 0.1, f"{loud:.2f} s of agent audio after the interruption"
        await page.screenshot(path=str(tmp_path / "talk-barge-in.png"))
        await page.evaluate("window.endCall()")
        call = await web.wait_status(started["call_id"], {"completed"})
    finally:
        await browser.close()
        await pw.stop()
    detail = await web.state.calls.get(call.id)
    assert detail is not None
    kinds = [e.data["kind"] for e in detail.timeline if e.type == "interruption"]
    assert kinds and kinds[0] == "barge_in", kinds
    # the greeting stays cut, unless the engine judged it a false interruption (no words in time: on a
    # loaded machine the transcript can come later than false_interruption_timeout_ms after the caller's
    # turn ended) and resumed it
    greeting = next(e for e in detail.transcript if e.role == "agent")
    assert greeting.metadata["interrupted"] is True or "resumed" in kinds, (greeting, kinds)
    assert any("cancel" in e.text.lower() for e in detail.transcript if e.role == "caller"), detail.transcript


async def _said_async(page: Any, role: str, words: str) -> dict[str, Any] | None:
    return _said(await _messages(page), role, words)

