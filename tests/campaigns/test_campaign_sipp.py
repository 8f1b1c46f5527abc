"""Campaigns end to end against SIPp callees: a real `parley up`-style server (API, gateway, dialer,
campaign runner) dials through a trunk to one SIPp that answers (says hello, hangs up), is busy, or never
answers, by the called number. The runner's clock is a fake one the test moves (windows, backoffs)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.campaigns.conftest import FakeClock
from tests.campaigns.sipp_platform import SCENARIOS, amd_agents, campaign_done, hello, machine, peak_overlap
from tests.conftest import free_port
from tests.eventually import eventually
from tests.sip.sipp import sipp_server
from tests.telephony.conftest import webhook_receiver  # noqa: F401 - fixture

pytestmark = [pytest.mark.sip, pytest.mark.slow]
SCENARIO = SCENARIOS / "callees.xml"


async def test_campaign_against_sipp_callees(platform, speech_wav, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hello(tmp_path, speech_wav)
    trunk_port = free_port()
    # 3 answer + busy twice (one retry) + no answer once = 6 INVITEs; the DNC number is never dialed
    sipp = await sipp_server(SCENARIO, tmp_path, trunk_port, calls=6, timeout=120)
    clock = FakeClock(datetime(2026, 12, 7, 6, 0, tzinfo=UTC))  # Monday 07:00 in Berlin
    p = await platform(trunk_port, clock)
    csv = ("number,name\n+4940100001,Anna\n+4940100002,Ben\n+4940200001,Busy Bea\n+4940300001,Quiet Quinn\n"
           "+4940100003,Cleo\n+4940100099,Do Not Call\nnot-a-number,Broken\n")
    async with p.client() as client:
        assert (await client.post("/api/dnc", json={"numbers": ["+4940100099"], "reason": "asked"})).status_code == 200
        r = await client.post("/api/campaigns", json={
            "name": "sipp", "agent": "receptionist", "csv": csv, "window": "09:00-17:00", "days": "mon-fri",
            "max_concurrent": 2, "start": True,
            "retry": {"busy": {"max_attempts": 2, "backoff_s": 60}, "no_answer": None}})
        assert r.status_code == 200, r.text
        body = r.json()
        cid = body["id"]
        assert body["import"]["errors"] == [{"line": 8, "message": "number: 'not-a-number' is not an E.164 "
                                                                   "number like +14155550123"}]

        async def deferred() -> bool:  # outside the window: every row waits for 09:00 Berlin
            rows = (await client.get(f"/api/campaigns/{cid}", params={"recipients": True})).json()["recipients"]
            return all(r["next_at"] == "2026-12-07T08:00:00+00:00" for r in rows)

        await eventually(deferred, timeout_s=10, what="rows deferred to the window")
        assert (await client.get("/api/calls", params={"campaign": cid})).json()["calls"] == []

        clock.now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 09:00 Berlin: open

        async def busy_once() -> bool:
            rows = (await client.get(f"/api/campaigns/{cid}", params={"recipients": True})).json()["recipients"]
            busy = next(r for r in rows if r["number"] == "+4940200001")
            return busy["state"] == "pending" and busy["attempts"] == 1

        await eventually(busy_once, timeout_s=60, interval_s=0.2, what="the busy row waiting for its retry")
        clock.advance(minutes=2)  # past the 60 s backoff
        final = await campaign_done(client, cid, timeout=90)
        assert final["state"] == "completed"
        assert final["outcomes"] == {"completed": 3, "busy": 1, "no_answer": 1, "dnc": 1}, final
        calls = (await client.get("/api/calls", params={"campaign": cid, "limit": 100})).json()["calls"]
        assert sorted(c["to_number"] for c in calls) == sorted(
            ["+4940100001", "+4940100002", "+4940100003", "+4940200001", "+4940200001", "+4940300001"])
        assert all(c["metadata"]["campaign_id"] == cid for c in calls)
        assert peak_overlap(calls) <= 2
        listed = (await client.get("/api/campaigns")).json()["campaigns"][0]
        assert listed["id"] == cid and listed["counts"]["completed"] == 6
    result = await sipp
    assert result.code == 0, str(result)


async def test_restart_mid_campaign_resumes_without_double_dialing(platform, speech_wav,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    hello(tmp_path, speech_wav)
    trunk_port = free_port()
    # 4 rows; the one live when the server stops is hung up and dialed once more: 5 INVITEs in all
    sipp = await sipp_server(SCENARIO, tmp_path, trunk_port, calls=5, timeout=150)
    clock = FakeClock(datetime(2026, 12, 7, 10, 0, tzinfo=UTC))
    first = await platform(trunk_port, clock, drain_timeout_s=0)  # no drain: the live call is cut at the stop
    numbers = [f"+494010000{i}" for i in range(1, 5)]
    csv = "number,name\n" + "".join(f"{n},N{i}\n" for i, n in enumerate(numbers))
    async with first.client() as client:
        r = await client.post("/api/campaigns", json={"agent": "receptionist", "csv": csv, "max_concurrent": 1,
                                                      "start": True,
                                                      "retry": {"failed": {"max_attempts": 2, "backoff_s": 0}}})
        cid = r.json()["id"]

        async def second_live() -> bool:
            calls = (await client.get("/api/calls", params={"campaign": cid})).json()["calls"]
            by_number = {c["to_number"]: c["status"] for c in calls}
            return by_number.get(numbers[0]) == "completed" and by_number.get(numbers[1]) == "in_progress"

        await eventually(second_live, timeout_s=60, interval_s=0.1, what="row 1 done, row 2 talking")
    await first.stop()  # every process stops mid-campaign

    second = await platform(trunk_port, clock, sip_port=0)
    async with second.client() as client:
        final = await campaign_done(client, cid, timeout=90)
        assert final["outcomes"] == {"completed": 4}, final
        rows = {r["number"]: r for r in (await client.get(f"/api/campaigns/{cid}",
                                                          params={"recipients": True})).json()["recipients"]}
        assert [rows[n]["attempts"] for n in numbers] == [1, 2, 1, 1]
        calls = (await client.get("/api/calls", params={"campaign": cid})).json()["calls"]
        dialed = sorted(c["to_number"] for c in calls)
        assert dialed == sorted([*numbers, numbers[1]])  # row 1 never again; row 2 once more after the stop
        interrupted = [c for c in calls if c["to_number"] == numbers[1] and c["status"] == "failed"]
        assert len(interrupted) == 1 and "stopped" in interrupted[0]["end_reason"]
        assert peak_overlap(calls) <= 1
    result = await sipp
    assert result.code == 0, str(result)


async def test_voicemail_detected_and_message_left_after_the_beep(platform, speech_wav, webhook_receiver,  # type: ignore[no-untyped-def]  # noqa: F811
                                                                  tmp_path: Path) -> None:
    hello(tmp_path, speech_wav)
    beep_end_s = machine(tmp_path, speech_wav)
    trunk_port = free_port()
    sipp = await sipp_server(SCENARIO.with_name("voicemail.xml"), tmp_path, trunk_port, calls=2, timeout=100)
    clock = FakeClock(datetime(2026, 12, 7, 10, 0, tzinfo=UTC))
    p = await platform(trunk_port, clock, agents_dir=amd_agents(tmp_path), webhook_url=webhook_receiver.url)
    csv = "number,name\n+4940100001,Anna\n+4940400001,Mia\n"
    async with p.client() as client:
        r = await client.post("/api/campaigns", json={"agent": "receptionist", "csv": csv, "start": True,
                                                      "retry": {"voicemail": {"max_attempts": 1}}})
        cid = r.json()["id"]
        final = await campaign_done(client, cid, timeout=80)
        assert final["outcomes"] == {"completed": 1, "voicemail": 1}, final
        calls = {c["to_number"]: c for c in (await client.get("/api/calls", params={"campaign": cid})).json()["calls"]}
        human = calls["+4940100001"]
        assert human["metadata"]["amd"]["result"] == "human", human["metadata"]
        mia = (await client.get(f"/api/calls/{calls['+4940400001']['id']}")).json()
        amd = mia["metadata"]["amd"]
        assert amd["result"] == "machine" and amd["action"] == "leave_message", amd
        assert amd["decided_after_ms"] < 5000
        beep = next(e["data"] for e in mia["timeline"] if e["type"] == "amd.beep")
        assert beep["how"] == "beep" and beep["after_ms"] >= (beep_end_s - 0.5) * 1000, (beep, beep_end_s)
        said = [t["text"] for t in mia["transcript"] if t["role"] == "agent"]
        assert said == ["Hi Mia, this is Parley Dental about your appointment. Please call us back."]
        assert "message left after the beep" in mia["end_reason"]
    ended = await eventually(lambda: next((e for e in webhook_receiver.events if e.get("type") == "call.ended"
                                           and e["call"]["to_number"] == "+4940400001"), None), timeout_s=20)
    assert ended["call"]["metadata"]["amd"]["result"] == "machine"
    result = await sipp
    assert result.code == 0, str(result)


async def test_voicemail_hangup_is_retried_by_the_voicemail_rule(platform, speech_wav,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path) -> None:
    hello(tmp_path, speech_wav)
    machine(tmp_path, speech_wav)
    trunk_port = free_port()
    sipp = await sipp_server(SCENARIO.with_name("voicemail.xml"), tmp_path, trunk_port, calls=2, timeout=100)
    clock = FakeClock(datetime(2026, 12, 7, 10, 0, tzinfo=UTC))
    p = await platform(trunk_port, clock, agents_dir=amd_agents(tmp_path, "hangup"))
    async with p.client() as client:
        r = await client.post("/api/campaigns", json={
            "agent": "receptionist", "csv": "number,name\n+4940400002,Mia\n", "start": True,
            "retry": {"voicemail": {"max_attempts": 2, "backoff_s": 3600}}})
        cid = r.json()["id"]

        async def waiting() -> dict[str, Any] | None:
            rows = (await client.get(f"/api/campaigns/{cid}", params={"recipients": True})).json()["recipients"]
            return rows[0] if rows[0]["state"] == "pending" and rows[0]["attempts"] == 1 else None

        row = await eventually(waiting, timeout_s=40, interval_s=0.2, what="voicemail, retry scheduled")
        assert row["outcome"] == "voicemail" and "attempt 2 of 2 in 3600 s" in row["note"]
        assert row["next_at"] == "2026-12-07T11:00:00+00:00"
        clock.advance(hours=1)
        final = await campaign_done(client, cid, timeout=40)
        assert final["outcomes"] == {"voicemail": 1}
        calls = (await client.get("/api/calls", params={"campaign": cid})).json()["calls"]
        assert len(calls) == 2 and all(c["metadata"]["amd"]["action"] == "hangup" for c in calls)
        assert all("answering machine" in c["end_reason"] and "hung up" in c["end_reason"] for c in calls)
        assert all(c["duration_s"] < 6 for c in calls)  # hung up at the decision, not after the greeting
    result = await sipp
    assert result.code == 0, str(result)
