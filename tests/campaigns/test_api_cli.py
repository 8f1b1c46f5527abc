"""The campaigns API and CLI through the real app and the real Typer app (no dialing here: the SIPp
tests dial). Bad input gets one readable error naming the field or line."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from parley.api import create_app
from tests.calls.test_cli import cli, run

KEY = {"X-API-Key": "test-key"}
CSV = "number,name\n+4930111222,Anna\nnope,Bob\n+4930111333,Cleo,extra\n+4930111444,Dan\n"


@pytest.fixture
async def client(settings) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley",
                                     headers=KEY) as c:
            yield c


async def test_create_list_show_command_and_dnc(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/campaigns", json={"name": "reminders", "agent": "receptionist", "csv": CSV,
                                                  "window": "09:00-17:00", "max_concurrent": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "draft" and body["counts"]["total"] == 2
    assert body["import"] == {"accepted": 2, "rejected": 2, "errors": [
        {"line": 3, "message": "number: 'nope' is not an E.164 number like +14155550123"},
        {"line": 4, "message": "3 fields, the header has 2"}]}
    cid = body["id"]
    more = await client.post(f"/api/campaigns/{cid}/recipients", content=b"number\n+4930111555\n",
                             headers={"Content-Type": "text/csv"})
    assert more.status_code == 200 and more.json()["accepted"] == 1
    listed = (await client.get("/api/campaigns")).json()["campaigns"]
    assert listed[0]["id"] == cid and listed[0]["counts"]["queued"] == 3
    shown = (await client.get(f"/api/campaigns/{cid}", params={"recipients": "true"})).json()
    assert [e["line"] for e in shown["import_errors"]] == [3, 4] and len(shown["recipients"]) == 3
    assert (await client.post(f"/api/campaigns/{cid}/start")).json()["state"] == "running"
    assert (await client.post(f"/api/campaigns/{cid}/pause")).json()["state"] == "paused"
    conflict = await client.post(f"/api/campaigns/{cid}/pause")
    assert conflict.status_code == 409 and "needs it running" in conflict.json()["message"]
    assert (await client.post(f"/api/campaigns/{cid}/cancel")).json()["outcomes"] == {"canceled": 3}
    assert (await client.get("/api/calls", params={"campaign": cid})).json()["calls"] == []

    assert (await client.post("/api/dnc", json={"numbers": ["+4930111222", "+4930111222"]})).json()["added"] == 1
    assert [n["number"] for n in (await client.get("/api/dnc")).json()["numbers"]] == ["+4930111222"]
    bad = await client.post("/api/dnc", json={"numbers": ["12"]})
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "numbers.0"  # the item, by its index
    assert (await client.delete("/api/dnc/+4930111222")).status_code == 200
    assert (await client.delete("/api/dnc/+4930111222")).status_code == 404


async def test_bad_requests_name_the_field(client: httpx.AsyncClient) -> None:
    cases = [({"csv": "phone\n+4930111\n"}, "csv"), ({"window": "9-5"}, "window"), ({"agent": "nobody"}, "agent"),
             ({"max_concurrent": 0}, "max_concurrent"), ({"retry": {"completed": {}}}, "retry"),
             ({"timezone": "Nowhere/City"}, "timezone"), ({"bogus": 1}, "bogus")]
    for payload, field in cases:
        r = await client.post("/api/campaigns", json=payload)
        assert r.status_code == 422, (payload, r.text)
        assert r.json()["error"] == "validation_error" and field in r.json()["message"], (payload, r.json())
    assert (await client.get("/api/campaigns/nope")).status_code == 404
    assert (await client.post("/api/campaigns/nope/start")).status_code == 404
    assert (await client.get("/api/campaigns", headers={"X-API-Key": "wrong"})).status_code == 401


def test_cli_create_show_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    csv = tmp_path / "people.csv"
    csv.write_text(CSV)
    made = run("campaigns", "create", "--csv", str(csv), "--agent", "receptionist", "--max-concurrent", "2",
               "--window", "09:00-17:00", data_dir=data)
    assert made.returncode == 0, made.stderr
    assert f"{csv}:3: number: 'nope' is not an E.164 number" in made.stderr
    assert f"{csv}:4: 3 fields, the header has 2" in made.stderr
    cid = made.stdout.strip().splitlines()[-1]
    assert "2 recipient(s) accepted, 2 refused" in made.stdout
    shown = json.loads(cli("campaigns", "show", cid, "--json", data_dir=data).stdout)
    assert shown["config"]["window"] == "09:00-17:00" and shown["config"]["max_concurrent"] == 2
    assert shown["state"] == "draft" and shown["counts"]["queued"] == 2
    bar = cli("campaigns", "show", cid, data_dir=data)
    assert bar.returncode == 0 and "queued 2" in bar.stdout
    assert "running" in cli("campaigns", "resume", cid, data_dir=data).stdout
    assert "paused" in cli("campaigns", "pause", cid, data_dir=data).stdout
    listed = cli("campaigns", "list", data_dir=data)
    assert cid in listed.stdout and "paused" in listed.stdout
    assert "canceled" in cli("campaigns", "cancel", cid, data_dir=data).stdout
    watched = cli("campaigns", "show", cid, "--watch", data_dir=data)  # ended: the bar shows it and returns
    assert watched.returncode == 0 and "canceled" in watched.stdout and "2/2" in watched.stdout
    again = cli("campaigns", "cancel", cid, data_dir=data)
    assert again.returncode == 1 and "is canceled; cancel needs it" in again.stderr
    assert cli("campaigns", "dnc", "add", "+4930111222", data_dir=data).returncode == 0
    assert "+4930111222" in cli("campaigns", "dnc", "list", data_dir=data).stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--csv", "missing.csv"], "--csv missing.csv: no such file"),
    (["--csv", "{csv}", "--agent", "nobody"], "--agent: "),
    (["--csv", "{csv}", "--window", "nine to five"], "--window: window 'nine to five'"),
    (["--csv", "{bad}"], "no 'number' column"),
    (["--csv", "{csv}", "--start-date", "12/01/2026"], "--start-date: '12/01/2026' is not a date like 2026-12-31"),
    (["--csv", "{csv}", "--end-date", "2026-02-30"], "--end-date: '2026-02-30' is not a date like 2026-12-31"),
    (["--csv", "{csv}", "--start-date", "2026-12-10", "--end-date", "2026-12-01"],
     "--end-date: 2026-12-01 is before --start-date 2026-12-10"),
])
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    csv = tmp_path / "ok.csv"
    csv.write_text(CSV)
    bad = tmp_path / "bad.csv"
    bad.write_text("phone\n+4930111\n")
    full = [a.format(csv=csv, bad=bad) for a in args]
    result = cli("campaigns", "create", *full, data_dir=tmp_path / "data")
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one readable line


def test_cli_start_and_end_dates_bound_the_campaign(tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("number\n+4930111222\n")
    data = tmp_path / "data"
    made = cli("campaigns", "create", "--csv", str(csv), "--start-date", "2026-12-01", "--end-date", "2026-12-24",
               data_dir=data)
    assert made.returncode == 0, made.stderr
    shown = json.loads(cli("campaigns", "show", made.stdout.strip().splitlines()[-1], "--json",
                           data_dir=data).stdout)
    assert shown["config"]["start_date"] == "2026-12-01" and shown["config"]["end_date"] == "2026-12-24"
    same_day = cli("campaigns", "create", "--csv", str(csv), "--start-date", "2026-12-24", "--end-date",
                   "2026-12-24", data_dir=data)
    assert same_day.returncode == 0, same_day.stderr
