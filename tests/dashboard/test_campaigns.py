"""Campaigns and what their calls carry, in real Chromium against `parley up` (API, SIP gateway, dialer and
campaign runner in one server):

* a campaign created over the API dials a real SIPp callee through a trunk — one number answered by a person,
  one by a voicemail greeting with a beep — and the Campaigns page follows its progress and outcomes without
  a reload; its detail page lists the calls, each linking to its record;
* the Pause / Resume / Cancel buttons move a campaign (kept outside its calling window, so nothing is dialed)
  and the page shows each state;
* the call detail page shows the answering-machine check (who answered, how decided, time to decision) and
  the post-call analysis (summary, verdict, structured data) in words, and "Re-run analysis" runs it again;
* a SIPp caller to an agent whose LLM server is down (the scripted fallback answers: a provider failover) who
  says goodbye (the agent's `end_call` tool) sees both on the call's timeline in words, not as JSON.

Screenshots go to the artifacts folder (see conftest)."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from tests.campaigns.sipp_platform import SCENARIOS
from tests.campaigns.sipp_platform import hello as _hello
from tests.campaigns.sipp_platform import machine as _machine
from tests.conftest import free_port, synth_espeak
from tests.dashboard.conftest import API_KEY, LiveServer, sign_in, start_server, stop_server
from tests.dashboard.test_pages import LOW_CONTRAST_JS, OVERFLOW_JS, UNNAMED_CONTROLS_JS
from tests.eventually import eventually_sync, udp_port_bound
from tests.sip.sipp import SippResult, rtp_stream, run_sipp, uac_scenario
from tests.telephony.conftest import ulaw_file

pytestmark = [pytest.mark.sip, pytest.mark.slow]
expect: Any = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

KEY = {"X-API-Key": API_KEY}
SCHEMA = {"type": "object", "properties": {"appointment_day": {"type": "string"},
                                           "callback_requested": {"type": "boolean"}}}


def _edit_agents(folder: Path) -> None:
    """`helpdesk` (inbound default): its LLM server is down, the scripted LLM takes over; `outreach`
    (campaigns): answering-machine detection that leaves a message, and post-call analysis."""
    base = yaml.safe_load((folder / "receptionist.yaml").read_text())
    helpdesk = {**base, "name": "Helpdesk", "recording": False, "greeting": {"inbound": "Hello.", "outbound": "Hello."},
                "components": {**base["components"], "llm": {
                    "provider": "openai", "model": "llama3.2", "base_url": f"http://127.0.0.1:{free_port(kind=1)}/v1",
                    "fallbacks": [{"provider": "scripted"}]}}}
    (folder / "helpdesk.yaml").write_text(yaml.safe_dump(helpdesk, sort_keys=False))
    outreach = {**base, "name": "Outreach", "recording": False,
                "tools": [t for t in base["tools"] if t.get("type") != "http"],
                "amd": {"enabled": True, "action": "leave_message",
                        "message": "Hi {{ name }}, this is Parley Dental about your appointment. Please call us back."},
                "analysis": {"summary_prompt": "Summarise the call.", "schema": SCHEMA,
                             "success_rubric": "An appointment was booked.", "success_intents": ["book_appointment"]}}
    (folder / "outreach.yaml").write_text(yaml.safe_dump(outreach, sort_keys=False))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("dash-campaigns"), phone=True, dial=True, edit_agents=_edit_agents,
                          default_agent="helpdesk", ring_timeout_s=5.0)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def browser_context(chromium: Any, platform: LiveServer) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15000)
    yield context
    context.close()


def _open(context: Any, live: LiveServer, path: str) -> Any:
    page = context.new_page()
    page.goto(f"{live.url}{path}")
    if "sign-in" in page.url:
        sign_in(page, live.url, next_path=path)
    return page


def _speech(folder: Path) -> Any:
    """`speech_wav(text, engine="espeak")` for the campaign suite's helpers, writing into `folder`."""
    return lambda text, engine="espeak": synth_espeak(text, folder / f"speech-{uuid.uuid4().hex[:8]}.wav")


def _callee(live: LiveServer, folder: Path, calls: int) -> tuple[threading.Thread, dict[str, SippResult]]:
    """SIPp answering as the carrier (voicemail.xml: +49404… is a voicemail with a beep, others a person saying
    hello), and the trunk `carrier` pointing at it."""
    port = free_port()
    box: dict[str, SippResult] = {}

    def run() -> None:
        box["result"] = asyncio.run(run_sipp(SCENARIOS / "voicemail.xml", None, folder, port, calls=calls,
                                             timeout=150))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    eventually_sync(lambda: udp_port_bound(port) or not thread.is_alive(), timeout_s=10, what="SIPp listening")
    assert thread.is_alive(), str(box.get("result"))
    trunk = {"name": "carrier", "outbound": {"host": "127.0.0.1", "port": port, "caller_id": "+4930123456"}}
    r = httpx.put(f"{live.url}/api/trunks/carrier", json=trunk, headers=KEY)
    assert r.status_code == 200, r.text
    return thread, box


def test_a_campaign_runs_live_on_the_page_then_its_calls_in_detail(platform: LiveServer, browser_context: Any,
                                                                   artifacts: Path, tmp_path: Path) -> None:
    speech = _speech(tmp_path)
    _hello(tmp_path, speech)
    _machine(tmp_path, speech)
    sipp, box = _callee(platform, tmp_path, calls=2)

    page = _open(browser_context, platform, "/ui/campaigns")
    expect(page.get_by_role("link", name="Campaigns", exact=True)).to_have_attribute("aria-current", "page")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    with httpx.Client(base_url=platform.url, headers=KEY, timeout=30) as api:
        r = api.post("/api/campaigns", json={
            "name": "Appointment reminders", "agent": "outreach", "start": True, "max_concurrent": 1,
            "csv": "number,name\n+4940100001,Anna\n+4940400001,Mia\nnot-a-number,Broken\n",
            "retry": {"voicemail": {"max_attempts": 1}}})
        assert r.status_code == 200, r.text
        cid = r.json()["id"]
        listed = page.locator("#campaigns")
        expect(listed).to_contain_text("Appointment reminders")  # polled: no reload
        expect(listed).to_contain_text("2 of 2 done (100 %)", timeout=120000)
        expect(listed).to_contain_text("completed 1")
        expect(listed).to_contain_text("voicemail 1")
        expect(listed.locator(".badge.completed").first).to_be_visible()
        assert page.evaluate("window.sameDocument") is True
        assert page.get_by_role("progressbar", name="Progress of Appointment reminders").get_attribute("value") == "2"
        assert page.evaluate(UNNAMED_CONTROLS_JS) == []
        assert page.evaluate(LOW_CONTRAST_JS) == []
        page.screenshot(path=artifacts / "campaigns.png", full_page=True)

        calls = {c["to_number"]: c for c in api.get("/api/calls", params={"campaign": cid}).json()["calls"]}
        assert set(calls) == {"+4940100001", "+4940400001"}
        for call in calls.values():  # the analysis runs just after each answered call
            eventually_sync(lambda c=call: "analysis" in api.get(f"/api/calls/{c['id']}").json()["metadata"],
                            timeout_s=30, what=f"the analysis of the call to {call['to_number']}")

        page.get_by_role("link", name="Open campaign Appointment reminders").click()
        expect(page).to_have_url(f"{platform.url}/ui/campaigns/{cid}")
        expect(page.locator("#campaign-state")).to_contain_text("completed")
        table = page.get_by_role("region", name="Calls of this campaign")
        expect(table.locator("tbody tr")).to_have_count(2)
        expect(table).to_contain_text("answering machine")
        expect(table).to_contain_text("person")
        expect(page.locator("#import-errors")).to_contain_text("is not an E.164 number")
        for name in ("Start", "Pause", "Resume", "Cancel campaign"):  # a finished campaign takes no command
            expect(page.get_by_role("button", name=name)).to_be_disabled()
        assert page.evaluate(UNNAMED_CONTROLS_JS) == []
        assert page.evaluate(LOW_CONTRAST_JS) == []
        page.screenshot(path=artifacts / "campaign.png", full_page=True)

        # the voicemail: who answered, how it was decided, how fast, and the message left after the beep
        machine = calls["+4940400001"]
        page.get_by_role("link", name=f"Open call {machine['id']} to +4940400001").click()
        expect(page).to_have_url(f"{platform.url}/ui/calls/{machine['id']}")
        amd = page.locator("#amd")
        expect(amd).to_contain_text("Answered by")
        expect(amd).to_contain_text("an answering machine")
        stored = api.get(f"/api/calls/{machine['id']}").json()["metadata"]["amd"]
        expect(amd).to_contain_text(stored["reason"])
        expect(amd).to_contain_text(re.compile(r"Time to decision\s*\d+\.\d s"))
        shown = float(re.search(r"Time to decision\s*(\d+\.\d) s", amd.inner_text()).group(1))  # type: ignore[union-attr]
        assert abs(shown - stored["decided_after_ms"] / 1000) <= 0.051, (shown, stored)
        expect(amd).to_contain_text("left a message after the beep")
        expect(page.locator("#timeline")).to_contain_text("answering-machine check")
        expect(page.locator("#analysis")).to_be_visible()
        page.screenshot(path=artifacts / "call-voicemail.png", full_page=True)

        # the person: the analysis in words, and "Re-run analysis"
        human = calls["+4940100001"]
        page.goto(f"{platform.url}/ui/calls/{human['id']}")
        expect(page.locator("#amd")).to_contain_text("a person")
        analysis = page.locator("#analysis")
        before = api.get(f"/api/calls/{human['id']}").json()["metadata"]["analysis"]
        expect(page.locator("#analysis-summary")).to_have_text(before["summary"])
        expect(page.locator("#analysis-verdict")).to_contain_text("not successful")
        expect(page.locator("#analysis-verdict")).to_contain_text("none of book_appointment was heard")
        data = page.locator("#analysis-data")
        expect(data).to_contain_text("callback_requested")
        expect(data).not_to_contain_text("{")  # words, not JSON
        assert page.evaluate(UNNAMED_CONTROLS_JS) == []
        assert page.evaluate(LOW_CONTRAST_JS) == []
        page.screenshot(path=artifacts / "call-analysis.png", full_page=True)
        analysis.get_by_role("button", name="Re-run analysis").press("Enter")
        expect(page.locator("#status")).to_contain_text("Analysis re-run.")
        after = api.get(f"/api/calls/{human['id']}").json()["metadata"]["analysis"]
        assert after["analyzed_at"] > before["analyzed_at"]
        expect(page.locator("#analysis")).to_contain_text("not successful")

        # a phone-sized screen: nothing sticks out sideways
        phone = browser_context.new_page()
        phone.set_viewport_size({"width": 390, "height": 844})
        for path, ready in ((f"/ui/campaigns/{cid}", "#campaign-calls tbody tr"), ("/ui/campaigns", "#campaigns tr")):
            phone.goto(f"{platform.url}{path}")
            expect(phone.locator(ready).first).to_be_visible()
            assert phone.evaluate(OVERFLOW_JS) <= 1, path
        phone.screenshot(path=artifacts / "campaigns-phone.png", full_page=True)
        phone.close()
    page.close()
    sipp.join(60)
    assert box["result"].code == 0, str(box["result"])


def test_pause_resume_and_cancel_from_the_campaign_page(platform: LiveServer, browser_context: Any,
                                                        artifacts: Path) -> None:
    """A campaign whose calling window opens hours from now (nothing is dialed) is paused, resumed and
    canceled with the page's buttons, by keyboard; the page and the API agree on each state."""
    hour = datetime.now(ZoneInfo("Europe/Berlin")).hour  # the recipient's local time (+49)
    window = f"{(hour + 6) % 24:02d}:00-{(hour + 7) % 24:02d}:00"
    with httpx.Client(base_url=platform.url, headers=KEY, timeout=30) as api:
        r = api.post("/api/campaigns", json={"name": "Later", "agent": "outreach", "start": True, "window": window,
                                             "csv": "number,name\n+4940100007,Noah\n"})
        assert r.status_code == 200, r.text
        cid = r.json()["id"]

        def state() -> str:
            return str(api.get(f"/api/campaigns/{cid}").json()["state"])

        page = _open(browser_context, platform, f"/ui/campaigns/{cid}")
        expect(page.locator("#campaign-state")).to_contain_text("running")
        expect(page.locator("#campaign-settings")).to_contain_text(f"{window} (each recipient's local time)")
        expect(page.get_by_role("button", name="Resume")).to_be_disabled()
        page.get_by_role("button", name="Pause").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#command-result")).to_have_text("Campaign paused.")
        expect(page.locator("#campaign-state")).to_contain_text("paused")
        assert state() == "paused"
        expect(page.get_by_role("button", name="Pause")).to_be_disabled()
        # the keyboard is now on the next command that applies: Resume
        assert page.evaluate("document.activeElement.textContent") == "Resume"
        page.keyboard.press("Enter")
        expect(page.locator("#campaign-state")).to_contain_text("running")
        assert state() == "running"
        page.screenshot(path=artifacts / "campaign-commands.png", full_page=True)
        page.get_by_role("button", name="Cancel campaign").click()
        expect(page.locator("#campaign-state")).to_contain_text("canceled")
        expect(page.locator("#campaign-outcomes")).to_contain_text("canceled 1")
        assert state() == "canceled"
        for name in ("Start", "Pause", "Resume", "Cancel campaign"):
            expect(page.get_by_role("button", name=name)).to_be_disabled()
        expect(page.locator("#campaign-calls")).to_contain_text("No calls yet.")
        assert api.get("/api/calls", params={"campaign": cid}).json()["calls"] == []
        page.close()


def test_tool_calls_and_failovers_on_the_timeline(platform: LiveServer, browser_context: Any, artifacts: Path,
                                                 speech_wav: Any, tmp_path: Path) -> None:
    """A real SIPp call to `helpdesk`, whose LLM server is down: the scripted fallback answers the caller's
    goodbye (a provider failover) and ends the call with its `end_call` tool; the timeline says both in words."""
    audio = ulaw_file(speech_wav("That's all, thank you. Goodbye.", engine="piper"), tmp_path / "bye.ulaw",
                      lead_silence_s=1.5, tail_silence_s=0.5)
    scenario = uac_scenario("PCMU", actions=rtp_stream(audio, 0), pause_ms=0, bye="remote")
    box: dict[str, SippResult] = {}
    caller = threading.Thread(target=lambda: box.setdefault("result", asyncio.run(run_sipp(  # Playwright owns this
        scenario, f"127.0.0.1:{platform.sip_port}", tmp_path, port=free_port(), timeout=45))), daemon=True)  # loop
    caller.start()
    caller.join(60)
    result = box["result"]
    assert result.code == 0, str(result)  # the agent hung up (SIPp waited for our BYE)
    calls, _ = platform.run(platform.state.calls.list_calls(agent="helpdesk", limit=1))
    call = calls[0]
    detail = eventually_sync(lambda: (d := platform.run(platform.state.calls.get(call.id))) is not None
                             and d.call.status == "completed" and d, timeout_s=20, what="the call completed")
    kinds = [e.type for e in detail.timeline]
    assert "provider_failover" in kinds and "tool_call" in kinds, [(e.type, e.data) for e in detail.timeline]

    page = _open(browser_context, platform, f"/ui/calls/{call.id}")
    timeline = page.locator("#timeline")
    tool = timeline.locator("li", has_text="tool call")
    expect(tool).to_contain_text("end_call")
    expect(tool).to_contain_text("succeeded")
    failover = timeline.locator("li", has_text="provider failover")
    expect(failover.first).to_contain_text(re.compile(r"llm provider openai\S* failed \(.+\); scripted takes over"))
    for row in (tool, failover.first):
        assert not re.search(r"[{}\[\]\"]", row.inner_text()), row.inner_text()  # words, not JSON
    expect(page.locator("#transcript")).to_contain_text("Goodbye")
    page.screenshot(path=artifacts / "call-timeline-tools.png", full_page=True)
    page.close()
