"""The pure decisions of campaigns: numbers and zones, windows, retry by outcome, slots, CSV rows."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest

from parley.campaigns.config import CampaignConfig
from parley.campaigns.csv_import import CsvHeaderError, Recipient, RowError, read_recipients
from parley.campaigns.numbers import NumberError, normalise, zone_for
from parley.campaigns.policy import Done, RetryByOutcome, RetryLater, after_attempt, free_slots, outcome_of
from parley.campaigns.windows import Window, next_allowed, parse_days


def test_numbers_and_zones() -> None:
    assert normalise("+1 (415) 555-0123") == "+14155550123"
    with pytest.raises(NumberError, match="not an E.164"):
        normalise("0301234567")
    assert zone_for("+4930123456") == "Europe/Berlin"
    assert zone_for("+14155550123") == "America/Los_Angeles"
    assert zone_for("+12125550100") == "America/New_York"


def test_window_in_the_recipients_local_time() -> None:
    w = Window.parse("09:00-17:00", "mon-fri")
    monday_8utc = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    berlin = next_allowed(w, monday_8utc, "Europe/Berlin")  # 09:00 in Berlin: open
    assert berlin.open_now and berlin.at == monday_8utc
    ny = next_allowed(w, monday_8utc, "America/New_York")  # 03:00 in New York: opens 09:00 local = 14:00 UTC
    assert not ny.open_now and ny.at == datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    assert "outside 09:00-17:00" in ny.why
    friday_evening = datetime(2026, 12, 11, 17, 30, tzinfo=UTC)  # 17:30 London, Friday: next is Monday
    assert next_allowed(w, friday_evening, "Europe/London").at == datetime(2026, 12, 14, 9, 0, tzinfo=UTC)
    night = Window.parse("22:00-02:00")
    assert next_allowed(night, datetime(2026, 12, 7, 1, 0, tzinfo=UTC), "UTC").open_now
    assert not next_allowed(night, datetime(2026, 12, 7, 3, 0, tzinfo=UTC), "UTC").open_now
    ended = Window.parse(None, end_date=date(2026, 12, 1))
    assert next_allowed(ended, monday_8utc, "UTC").at is None
    assert parse_days("sat-mon") == frozenset({5, 6, 0})
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        Window.parse("9-5")
    with pytest.raises(ValueError, match="use mon"):
        parse_days("funday")


def test_retry_by_outcome() -> None:
    policy = RetryByOutcome.from_mapping({"busy": {"max_attempts": 3, "backoff_s": 60}, "failed": None})
    first = after_attempt("busy", 1, policy)
    assert isinstance(first, RetryLater) and first.delay_s == 60 and "attempt 2 of 3" in first.why
    assert isinstance(after_attempt("busy", 2, policy), RetryLater) and after_attempt("busy", 2, policy).delay_s == 120
    assert isinstance(after_attempt("busy", 3, policy), Done)
    assert isinstance(after_attempt("failed", 1, policy), Done)  # turned off
    assert after_attempt("completed", 1, policy) == Done("completed", "attempt 1 ended completed; completed is "
                                                                      "not retried")
    with pytest.raises(ValueError, match="outcomes that may be retried"):
        RetryByOutcome.from_mapping({"completed": {"max_attempts": 2}})
    with pytest.raises(ValueError, match="unknown key"):
        RetryByOutcome.from_mapping({"busy": {"tries": 2}})
    assert outcome_of("completed", {"amd": {"result": "machine"}}) == "voicemail"
    assert outcome_of("busy", {}) == "busy"


def test_free_slots() -> None:
    assert free_slots(max_concurrent=3, in_flight=3, calls_per_minute=None, started_last_minute=0).n == 0
    assert free_slots(max_concurrent=5, in_flight=1, calls_per_minute=None, started_last_minute=9).n == 4
    rate = free_slots(max_concurrent=5, in_flight=0, calls_per_minute=10, started_last_minute=8)
    assert rate.n == 2 and "10/min" in rate.why
    assert free_slots(max_concurrent=5, in_flight=0, calls_per_minute=10, started_last_minute=10).n == 0


def test_csv_rows_with_line_numbers() -> None:
    text = ("number,name,timezone,meta.crm_id\n"
            "+4930123456,Anna,,c1\n"
            "not-a-number,Bob,,c2\n"
            "\n"
            "+14155550123,Cleo,Mars/Olympus,c3\n"
            "+14155550124,\"Dan\nthe second\",,c4\n"
            "+14155550125,Eve\n"
            "+442071234567,Finn,Europe/London,c6\n")
    items = list(read_recipients(io.StringIO(text)))
    good = [i for i in items if isinstance(i, Recipient)]
    bad = [i for i in items if isinstance(i, RowError)]
    assert [(g.line, g.number) for g in good] == [(2, "+4930123456"), (6, "+14155550124"), (9, "+442071234567")]
    assert good[0].variables == {"name": "Anna"} and good[0].metadata == {"crm_id": "c1"}
    assert good[2].zone == "Europe/London"
    assert [(b.line, b.message.split(":")[0]) for b in bad] == [(3, "number"), (5, "timezone"), (8, "2 fields, the header has 4")]
    with pytest.raises(CsvHeaderError, match="no 'number' column"):
        list(read_recipients(io.StringIO("phone,name\n+4930123456,x\n")))
    with pytest.raises(CsvHeaderError, match="empty"):
        list(read_recipients(io.StringIO("")))


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="window"):
        CampaignConfig(window="9 to 5")
    with pytest.raises(ValueError, match="unknown time zone"):
        CampaignConfig(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="max_concurrent"):
        CampaignConfig(max_concurrent=0)
    assert CampaignConfig(window="09:00-17:00", days="mon-fri").schedule().describe() == "09:00-17:00, mon,tue,wed,thu,fri"
