"""Talking to an agent from the dashboard in real Chromium over WebRTC: the browser's microphone is a WAV file
(`--use-file-for-fake-audio-capture`) holding a synthesised question after a pause for the greeting. Sign
in, open the talk page, "Start call", the page shows the caller's words and the agent's reply, "End call"; the stored call is a `webrtc` call with its transcript and latency marks, and the Calls
page filters it by channel."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import synth_piper
from tests.dashboard.conftest import CHROMIUM, LiveServer, sign_in, start_server, stop_server

pytestmark = [pytest.mark.slow]
sync_api: Any = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect

GREETING_S = 10.0  # the receptionist's greeting lasts about 6 s from the call's start; the question comes after it


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("dash-talk"))
    yield server
    stop_server(server)


def mic_wav(folder: Path, text: str, lead_s: float, tail_s: float) -> Path:
    """A 48 kHz WAV for Chromium's fake microphone: `lead_s` of digital silence, `text` spoken by piper,
    `tail_s` of silence. Chromium sends no audio packets while the microphone is all zeros; the call's
    media clock runs anyway (the greeting must not wait for the caller's first word)."""
    stem = folder / f"mic-{abs(hash((text, lead_s, tail_s)))}"
    raw = synth_piper(text, stem.with_suffix(".raw.wav"))
    out = stem.with_suffix(".wav")
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(out), "pad", str(lead_s),
                    str(tail_s)], check=True)
    return out


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (scripts/system-deps.sh installs it)")
    with sync_api.sync_playwright() as p:
        yield p


def launch(playwright: Any, mic: Path) -> Any:
    """Chromium whose microphone plays `mic` once."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream",
              "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={mic}%noloop",
              "--autoplay-policy=no-user-gesture-required"])


@pytest.fixture(scope="module")
def talking_browser(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium asking for an appointment once the greeting is over."""
    mic = mic_wav(tmp_path_factory.mktemp("talk-speech"), "I would like to book an appointment for Tuesday.",
                  GREETING_S, 4)
    browser = launch(playwright, mic)
    yield browser
    browser.close()


def test_talk_to_the_agent_from_the_page(web: LiveServer, talking_browser: Any, artifacts: Path) -> None:
    context = talking_browser.new_context(permissions=["microphone"])
    context.set_default_timeout(15000)
    page = context.new_page()
    sign_in(page, web.url, next_path="/ui/talk/receptionist")
    start = page.get_by_role("button", name="Start call")
    end = page.get_by_role("button", name="End call")
    expect(end).to_be_disabled()
    start.click()
    expect(end).to_be_enabled(timeout=20000)
    transcript = page.locator("#live-transcript")
    expect(transcript.locator("li.caller")).to_contain_text(["appointment"], timeout=40000)
    expect(transcript.locator("li.agent").last).to_contain_text("Tuesday", timeout=30000)
    assert page.locator("#agent-audio").evaluate("a => a.srcObject !== null && a.srcObject.getAudioTracks().length")
    page.screenshot(path=artifacts / "talk-call.png", full_page=True)
    call_id = transcript.get_attribute("data-call-id")
    assert call_id
    end.click()
    expect(page.locator("#call-state")).to_contain_text("ended")
    expect(start).to_be_enabled()

    def ended() -> Any:
        call = web.run(web.state.calls.get_call(call_id))
        return call if call and call.status in {"completed", "failed", "canceled"} else None

    from tests.eventually import eventually_sync

    call = eventually_sync(ended, timeout_s=20, what="the browser call stored as ended")
    assert call.channel == "webrtc" and call.agent == "receptionist"
    detail = web.run(web.state.calls.get(call_id))
    caller = " ".join(e.text for e in detail.transcript if e.role == "caller").lower()
    assert "appointment" in caller, caller
    assert any(e.type == "turn_metrics" for e in detail.timeline)
    greeting = next(e for e in detail.transcript if e.role == "agent")
    assert not greeting.metadata.get("interrupted"), f"the greeting waited for the caller's first word: {greeting}"

    page.get_by_role("link", name="Open this call's record").click()
    expect(page.locator("main dl")).to_contain_text("webrtc")
    expect(page.locator("#latency-chart rect").first).to_be_visible()
    page.goto(f"{web.url}/ui/?channel=webrtc")
    expect(page.locator("#recent-calls")).to_contain_text(call_id[:8])
    page.goto(f"{web.url}/ui/?channel=sip")
    expect(page.locator("#recent-calls")).to_contain_text("No calls match")
    context.close()


def test_barge_in_from_the_browser_stops_the_agent(web: LiveServer, playwright: Any, tmp_path: Path,
                                                   artifacts: Path) -> None:
    """The caller asks while the agent is still greeting: the agent stops, then answers the question."""
    from tests.eventually import eventually_sync

    browser = launch(playwright, mic_wav(tmp_path, "What are your opening hours?", 2.0, 8))
    try:
        page = browser.new_context(permissions=["microphone"]).new_page()
        page.set_default_timeout(15000)
        sign_in(page, web.url, next_path="/ui/talk/receptionist")
        page.get_by_role("button", name="Start call").click()
        transcript = page.locator("#live-transcript")
        expect(transcript.locator("li.caller")).to_contain_text(["hours"], timeout=40000)
        expect(transcript.locator("li.agent").last).to_contain_text("Monday", timeout=30000)
        call_id = transcript.get_attribute("data-call-id")
        page.screenshot(path=artifacts / "talk-barge-in.png", full_page=True)
        page.get_by_role("button", name="End call").click()
        expect(page.locator("#call-state")).to_contain_text("ended")
    finally:
        browser.close()

    def stored() -> Any:
        detail = web.run(web.state.calls.get(call_id))
        return detail if detail and detail.call.status in {"completed", "failed", "canceled"} else None

    detail = eventually_sync(stored, timeout_s=20, what="the browser call stored as ended")
    kinds = [e.data.get("kind") for e in detail.timeline if e.type == "interruption"]
    assert "barge_in" in kinds, kinds
    greeting = next(e for e in detail.transcript if e.role == "agent")
    assert greeting.metadata.get("interrupted") is True, greeting
    assert "help you today" not in greeting.text.lower(), greeting.text  # only what was heard before the stop
