"""The dashboard in real Chromium against `parley up`'s API and SIP gateway: a real call made with SIPp (speech
in, the offline agent answering) shows up live on the Calls page, then its detail page renders the
transcript, the per-turn latency chart, the timeline, the recording and the delivered webhooks; the Agents,
agent, Talk and Queue pages work with a keyboard and on a phone-sized screen. Screenshots go to the
artifacts folder (see conftest)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.dashboard.conftest import API_KEY, LiveServer, sign_in, start_server, stop_server
from tests.eventually import eventually_sync
from tests.sip.sipp import SippResult, rtp_stream, run_sipp, uac_scenario
from tests.telephony.conftest import ulaw_file

pytestmark = [pytest.mark.sip, pytest.mark.slow]
expect: Any = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

#: Every focusable control's accessible name, roughly as a screen reader computes it; [] when all have one.
UNNAMED_CONTROLS_JS = """() => {
  const named = (el) => {
    if (el.getAttribute('aria-label')) return true;
    const by = el.getAttribute('aria-labelledby');
    if (by && by.split(' ').some((id) => (document.getElementById(id)?.textContent || '').trim())) return true;
    if (el.labels && [...el.labels].some((l) => l.textContent.trim())) return true;
    return !!(el.textContent || '').trim() || !!el.title;
  };
  return [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, audio[controls], [tabindex]')]
    .filter((el) => !named(el)).map((el) => el.outerHTML.slice(0, 120));
}"""

OVERFLOW_JS = "() => document.documentElement.scrollWidth - window.innerWidth"

#: Text whose colour has less than 4.5:1 contrast against its (first opaque) background (WCAG AA).
LOW_CONTRAST_JS = """() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const bad = [];
  for (const el of document.querySelectorAll('body *')) {
    if (el instanceof SVGElement || !el.offsetParent || el.disabled) continue;
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const fg = rgb(getComputedStyle(el).color).slice(0, 3);
    const [a, b] = [lum(fg), lum(background(el))].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < 4.5) bad.push(`${el.tagName}.${el.className} ${ratio.toFixed(2)}: ${el.textContent.trim().slice(0, 40)}`);
  }
  return bad;
}"""


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory, webhook_sink: Any) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("dash-phone"), phone=True, webhook_url=webhook_sink.url,
                          webhook_allow_loopback=True)  # the receiver is on 127.0.0.1
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def browser_context(chromium: Any, phone: LiveServer) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15000)
    yield context
    context.close()


def _call_over_sip(phone: LiveServer, audio: Path, folder: Path, box: dict[str, SippResult]) -> None:
    scenario = uac_scenario("PCMU", actions=rtp_stream(audio, 0), pause_ms=15000)
    box["result"] = asyncio.run(run_sipp(scenario, f"127.0.0.1:{phone.sip_port}", folder, port=free_port(),
                                         extra=["-s", "+4930123456"], timeout=45))


def test_a_sip_call_live_then_in_detail(phone: LiveServer, browser_context: Any, artifacts: Path, speech_wav: Any,
                                        tmp_path: Path) -> None:
    page = browser_context.new_page()
    page.goto(f"{phone.url}/ui/")
    expect(page).to_have_url(f"{phone.url}/ui/sign-in?next=/ui/")  # signed out: the sign-in page
    page.screenshot(path=artifacts / "sign-in.png")
    sign_in(page, phone.url)
    expect(page.locator("#live-calls")).to_contain_text("No live calls")

    wav = speech_wav("I would like to book an appointment for Tuesday.", engine="piper")
    audio = ulaw_file(wav, tmp_path / "caller.ulaw", lead_silence_s=6.0, tail_silence_s=0.5)
    box: dict[str, SippResult] = {}
    caller = threading.Thread(target=_call_over_sip, args=(phone, audio, tmp_path, box), daemon=True)
    caller.start()
    # pushed by the server while the call lasts: no reload
    expect(page.locator("#live-calls")).to_contain_text("in progress", timeout=30000)
    expect(page.locator("#live-calls")).to_contain_text("receptionist")
    page.screenshot(path=artifacts / "calls-live.png", full_page=True)
    caller.join(60)
    assert box["result"].code == 0, str(box["result"])
    expect(page.locator("#live-calls")).to_contain_text("No live calls", timeout=30000)
    expect(page.locator("#recent-calls")).to_contain_text("completed", timeout=10000)

    calls, _ = phone.run(phone.state.calls.list_calls(limit=5))
    call = calls[0]
    assert call.status == "completed" and call.recording_path
    eventually_sync(lambda: [w["status"] for w in phone.run(phone.state.calls.store.webhooks_for(call.id))]
                    == ["delivered"] * 3, timeout_s=20, what="the call's three webhooks delivered")

    # filters: inbound calls of the receptionist show it, outbound ones do not
    page.get_by_label("Direction").select_option("outbound")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#recent-calls")).to_contain_text("No calls match")
    assert "direction=outbound" in page.url
    page.get_by_label("Direction").select_option("inbound")
    page.get_by_label("Agent").select_option("receptionist")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#recent-calls")).to_contain_text("completed")
    assert page.evaluate(UNNAMED_CONTROLS_JS) == []
    page.screenshot(path=artifacts / "calls.png", full_page=True)
    page.get_by_label("From").fill((datetime.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#recent-calls")).to_contain_text("No calls match")  # the time range applies
    page.get_by_label("From").fill((datetime.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#recent-calls")).to_contain_text("completed")

    page.get_by_role("link", name=f"Open call {call.id}").first.click()
    expect(page).to_have_url(f"{phone.url}/ui/calls/{call.id}")
    transcript = page.locator("#transcript")
    expect(transcript).to_contain_text("appointment")
    expect(transcript).to_contain_text("Parley Dental")
    turns = [e for e in phone.run(phone.state.calls.get(call.id)).timeline if e.type == "turn_metrics"]
    assert turns
    expect(page.locator("#latency-chart rect").first).to_be_visible()
    bars = page.locator("#latency-chart rect")
    assert bars.count() >= 3 * len(turns), "the chart lacks the turn's latency steps"
    assert page.locator("#latency-chart title").first.text_content().endswith(" ms")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("conversation started")
    expect(timeline).to_contain_text("turn metrics")
    expect(timeline).to_contain_text("in_progress → completed")
    webhooks = page.get_by_role("table", name="Webhooks")
    expect(webhooks).to_contain_text("call.ended")
    assert webhooks.locator(".badge.delivered").count() == 3
    assert "hook-secret" not in page.content()  # the webhook URL's token is not shown
    player = page.get_by_label("Call recording")
    expect(player).to_be_visible()
    recording = page.request.get(f"{phone.url}{player.get_attribute('src')}")
    assert recording.status == 200 and recording.headers["content-type"] == "audio/wav"
    assert recording.body()[:4] == b"RIFF"
    assert page.evaluate(UNNAMED_CONTROLS_JS) == []
    assert page.evaluate(LOW_CONTRAST_JS) == []
    page.screenshot(path=artifacts / "call-detail.png", full_page=True)

    # keyboard: the first Tab reaches "Skip to content", which moves focus to the page's content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    # a phone-sized screen: nothing sticks out sideways
    phone_page = browser_context.new_page()
    phone_page.set_viewport_size({"width": 390, "height": 844})
    phone_page.goto(f"{phone.url}/ui/calls/{call.id}")
    expect(phone_page.locator("#transcript")).to_contain_text("appointment")
    assert phone_page.evaluate(OVERFLOW_JS) <= 1
    phone_page.screenshot(path=artifacts / "call-detail-phone.png", full_page=True)
    phone_page.goto(f"{phone.url}/ui/")
    expect(phone_page.locator("#recent-calls")).to_contain_text("completed")
    assert phone_page.evaluate(OVERFLOW_JS) <= 1
    phone_page.screenshot(path=artifacts / "calls-phone.png", full_page=True)
    phone_page.close()
    page.close()


def test_agents_agent_and_talk_pages(phone: LiveServer, browser_context: Any, artifacts: Path) -> None:
    page = browser_context.new_page()
    page.goto(f"{phone.url}/ui/agents")
    if "sign-in" in page.url:
        sign_in(page, phone.url, next_path="/ui/agents")
    expect(page.locator("#agent-problems")).to_contain_text("no problems")
    talk = page.get_by_role("link", name="Talk to Receptionist")
    assert talk.get_attribute("href") == "/ui/talk/receptionist"
    assert page.evaluate(UNNAMED_CONTROLS_JS) == []
    assert page.evaluate(LOW_CONTRAST_JS) == []
    page.screenshot(path=artifacts / "agents.png", full_page=True)

    # a broken agent file on disk is explained in words
    broken = Path(phone.settings.agents_dir) / "broken.yaml"
    broken.write_text("name: Broken\ncomponents: {stt: {provider: whisper}}\nfirst_speaker: nobody\n")
    try:
        page.reload()
        problems = page.locator("#agent-problems")
        expect(problems).to_contain_text("broken.yaml")
        expect(problems).to_contain_text("first_speaker")
        page.screenshot(path=artifacts / "agents-problems.png", full_page=True)
    finally:
        broken.unlink()

    page.get_by_role("link", name="Receptionist", exact=True).click()
    expect(page).to_have_url(f"{phone.url}/ui/agents/receptionist")
    yaml_text = page.locator("#agent-yaml")
    expect(yaml_text).to_contain_text("recording: true")
    expect(yaml_text).to_contain_text("Authorization: (hidden)")
    assert "tool-secret" not in page.content()
    expect(page.get_by_label("inbound system prompt")).not_to_be_empty()
    expect(page.locator("main")).to_contain_text("Hello, you've reached Parley Dental")
    page.screenshot(path=artifacts / "agent.png", full_page=True)

    page.get_by_role("link", name="Talk to Receptionist").click()
    expect(page).to_have_url(f"{phone.url}/ui/talk/receptionist")
    expect(page.get_by_role("button", name="Start call")).to_be_enabled()
    expect(page.get_by_role("button", name="End call")).to_be_disabled()
    assert page.evaluate(UNNAMED_CONTROLS_JS) == []
    page.screenshot(path=artifacts / "talk.png", full_page=True)
    page.close()


def test_queue_place_see_and_cancel(phone: LiveServer, browser_context: Any, artifacts: Path) -> None:
    page = browser_context.new_page()
    page.goto(f"{phone.url}/ui/queue")
    if "sign-in" in page.url:
        sign_in(page, phone.url, next_path="/ui/queue")
    expect(page.locator("#queued-calls")).to_contain_text("No calls are waiting")
    number = page.get_by_label("Number to call")
    number.fill("12")
    page.get_by_role("button", name="Place call").click()
    expect(number).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#to_number-error")).not_to_be_empty()  # the API's reason, next to the field

    when = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    number.fill("+14155550123")
    page.get_by_label("Name of the person called").fill("Dana Example")
    page.get_by_label("Call at").fill(when)
    page.get_by_label("Agent").select_option("receptionist")
    page.get_by_role("button", name="Place call").press("Enter")  # the keyboard places it too
    expect(page.locator("#place-result")).to_contain_text("queued")
    queued = page.locator("#queued-calls")
    expect(queued).to_contain_text("+14155550123")
    expect(queued).to_contain_text("Dana Example")
    calls, _ = phone.run(phone.state.calls.list_calls(status="queued"))
    assert len(calls) == 1 and calls[0].schedule_at is not None and calls[0].caller_name == "Dana Example"
    assert page.evaluate(UNNAMED_CONTROLS_JS) == []
    assert page.evaluate(LOW_CONTRAST_JS) == []
    page.screenshot(path=artifacts / "queue.png", full_page=True)

    page.get_by_role("button", name="Cancel the call to +14155550123").click()
    expect(queued).to_contain_text("No calls are waiting")
    assert phone.run(phone.state.calls.get_call(calls[0].id)).status == "canceled"
    page.close()


def test_calls_pages_with_a_cursor(phone: LiveServer, browser_context: Any) -> None:
    """27 queued calls: page 1 shows 25, "Older calls" the last 2, "Newer calls" goes back."""
    import httpx

    tomorrow = (datetime.now().astimezone() + timedelta(days=1)).isoformat()
    with httpx.Client(base_url=phone.url, headers={"X-API-Key": API_KEY}) as api:
        ids = [api.post("/api/outbound-call", json={"to_number": f"+1415555{n:04d}", "schedule_at": tomorrow}
                        ).json()["call_id"] for n in range(27)]
        try:
            page = browser_context.new_page()
            page.goto(f"{phone.url}/ui/?status=queued")
            if "sign-in" in page.url:
                sign_in(page, phone.url, next_path="/ui/?status=queued")
            rows = page.locator("#recent-calls tbody tr")
            expect(rows).to_have_count(25)
            expect(rows.first).to_contain_text(ids[-1][:8])  # newest first
            expect(page.get_by_role("button", name="Newer calls")).to_be_disabled()
            page.get_by_role("button", name="Older calls").click()
            expect(rows).to_have_count(2)
            expect(rows.last).to_contain_text(ids[0][:8])
            expect(page.get_by_role("button", name="Older calls")).to_be_disabled()
            page.get_by_role("button", name="Newer calls").click()
            expect(rows).to_have_count(25)
            page.close()
        finally:
            for call_id in ids:
                api.post(f"/api/calls/{call_id}/cancel")


def test_sign_out_in_the_browser(chromium: Any, phone: LiveServer) -> None:
    context = chromium.new_context()
    page = context.new_page()
    sign_in(page, phone.url)
    cookie = next(c for c in context.cookies() if c["name"] == "parley_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the session
    assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"
    assert API_KEY not in page.content()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{phone.url}/ui/sign-in")
    page.goto(f"{phone.url}/ui/queue")
    expect(page).to_have_url(f"{phone.url}/ui/sign-in?next=/ui/queue")
    # the old cookie, replayed: refused
    thief = chromium.new_context()
    thief.add_cookies([cookie])
    started = time.monotonic()
    response = thief.request.get(f"{phone.url}/api/calls")
    assert response.status == 401 and time.monotonic() - started < 5
    thief.close()
    context.close()
