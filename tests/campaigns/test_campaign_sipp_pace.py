"""A campaign's pace and its no-answer retries against SIPp callees (`scenarios/callees.xml`): the rate
(`calls_per_minute`) spaces the dial attempts, and a callee who rings and never answers is retried by the
`no_answer` rule with its backoff until the attempts are used up. The runner's clock is a fake one the test
moves, so minutes and backoffs pass in seconds; SIP, RTP, the dialer and the database are real."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.calls.states import TERMINAL
from tests.campaigns.conftest import FakeClock
from tests.campaigns.sipp_platform import SCENARIOS, campaign_done, hello, recipients
from tests.conftest import free_port
from tests.eventually import eventually
from tests.sip.sipp import sipp_server

pytestmark = [pytest.mark.sip, pytest.mark.slow]
T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # a Monday, 11:00 in Berlin


async def _calls(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = (await client.get("/api/calls", params={"campaign": cid, "limit": 100})).json()[
        "calls"]
    return sorted(calls, key=lambda c: c["created_at"])


async def _ended(client: httpx.AsyncClient, cid: str, at_least: int) -> list[dict[str, Any]] | None:
    """The campaign's calls once there are `at_least` and all of them have ended."""
    calls = await _calls(client, cid)
    return calls if len(calls) >= at_least and all(c["status"] in TERMINAL for c in calls) else None


def _utc(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def test_calls_per_minute_spaces_the_dial_attempts(platform, speech_wav, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hello(tmp_path, speech_wav)
    trunk_port = free_port()
    sipp = await sipp_server(SCENARIOS / "callees.xml", tmp_path, trunk_port, calls=5, timeout=150)
    clock = FakeClock(T0)
    p = await platform(trunk_port, clock)
    numbers = [f"+494010000{i}" for i in range(1, 6)]
    csv = "number,name\n" + "".join(f"{n},N{i}\n" for i, n in enumerate(numbers))
    async with p.client() as client:
        r = await client.post("/api/campaigns", json={"agent": "receptionist", "csv": csv, "max_concurrent": 5,
                                                      "calls_per_minute": 2, "start": True})
        assert r.status_code == 200, r.text
        cid = r.json()["id"]

        first = await eventually(lambda: _ended(client, cid, 2), timeout_s=40, what="the first calls ended")
        # the cap (5) would start every row; the rate holds the rest while the (fake) minute lasts
        await p.runner.tick()
        clock.advance(seconds=59)
        await p.runner.tick()
        assert len(await _calls(client, cid)) == 2, "more than 2 calls started within a minute"
        second_minute = datetime.now(UTC)
        clock.advance(seconds=2)  # T0 + 61 s: the first two are more than a minute old
        second = await eventually(lambda: _ended(client, cid, 4), timeout_s=40, what="the next calls ended")
        await p.runner.tick()
        assert len(await _calls(client, cid)) == 4, "more than 2 calls started within a minute"
        clock.advance(seconds=61)  # T0 + 122 s
        final = await campaign_done(client, cid, timeout=40)
        assert final["outcomes"] == {"completed": 5}, final
        calls = await _calls(client, cid)

    starts = sorted(_utc(a["started_at"]) for a in await p.runner.store.attempts(cid))
    s = timedelta(seconds=1)
    assert starts == [T0, T0, T0 + 61 * s, T0 + 61 * s, T0 + 122 * s], starts
    assert all(sum(t <= u < t + 60 * s for u in starts) <= 2 for t in starts)  # never 3 in any minute
    # the calls themselves (real time): the third and fourth were created only once the minute had passed
    assert len(first) == 2 and all(_utc(c["created_at"]) < second_minute for c in first)
    later = [c for c in second if c["id"] not in {f["id"] for f in first}]
    assert len(later) == 2 and all(_utc(c["created_at"]) > second_minute for c in later)
    assert sorted(c["to_number"] for c in calls) == numbers and all(c["status"] == "completed" for c in calls)
    result = await sipp
    assert result.code == 0, str(result)


async def test_no_answer_is_retried_with_backoff_then_given_up(platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "callee.ulaw").write_bytes(b"\xff" * 8000)  # SIPp loads it at start; nobody answers here
    trunk_port = free_port()
    sipp = await sipp_server(SCENARIOS / "callees.xml", tmp_path, trunk_port, calls=3, timeout=90)
    clock = FakeClock(T0)
    p = await platform(trunk_port, clock, ring_timeout_s=1.0)
    number = "+4940300002"  # rings (180) and never answers: we CANCEL after the ring timeout
    async with p.client() as client:
        r = await client.post("/api/campaigns", json={
            "agent": "receptionist", "csv": f"number,name\n{number},Quinn\n", "start": True,
            "retry": {"no_answer": {"max_attempts": 3, "backoff_s": 60, "multiplier": 2}}})
        assert r.status_code == 200, r.text
        cid = r.json()["id"]

        async def waiting(attempts: int) -> dict[str, Any] | None:
            row = (await recipients(client, cid))[number]
            return row if row["state"] == "pending" and row["attempts"] == attempts else None

        row = await eventually(lambda: waiting(1), timeout_s=30, what="no answer, retry scheduled")
        assert row["outcome"] == "no_answer" and "attempt 2 of 3 in 60 s" in row["note"], row
        assert _utc(row["next_at"]) == T0 + timedelta(seconds=60)
        clock.advance(seconds=59)
        await p.runner.tick()
        assert len(await _calls(client, cid)) == 1, "dialed again before the backoff was over"
        clock.advance(seconds=1)

        row = await eventually(lambda: waiting(2), timeout_s=30, what="no answer again, second retry scheduled")
        assert row["outcome"] == "no_answer" and "attempt 3 of 3 in 120 s" in row["note"], row  # doubled
        assert _utc(row["next_at"]) == T0 + timedelta(seconds=180)
        clock.advance(seconds=119)
        await p.runner.tick()
        assert len(await _calls(client, cid)) == 2, "dialed again before the backoff was over"
        clock.advance(seconds=1)

        final = await campaign_done(client, cid, timeout=30)
        assert final["outcomes"] == {"no_answer": 1}, final
        row = (await recipients(client, cid))[number]
        assert row["attempts"] == 3 and "all 3 attempts used" in row["note"], row
        calls = await _calls(client, cid)
        assert [c["status"] for c in calls] == ["no_answer"] * 3
        assert [c["metadata"]["campaign_attempt"] for c in calls] == [1, 2, 3]
        assert all(c["answered_at"] is None for c in calls)
    result = await sipp
    assert result.code == 0, str(result)
