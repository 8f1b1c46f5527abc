"""Calling windows (pure): may a recipient be called now, in their local time, and if not, when next?

A window is `HH:MM-HH:MM` local time (end exclusive; an end before the start runs past midnight) on the
given days of week (0 = Monday). `now` is always passed in, so tests drive a fake clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = frozenset(range(7))


@dataclass(frozen=True)
class Window:
    """Local calling hours on some days of week, plus optional first/last dates (local dates)."""

    start: time = time(0, 0)
    end: time = time(0, 0)  # equal to start: the whole day
    days: frozenset[int] = ALL_DAYS
    start_date: date | None = None
    end_date: date | None = None

    @classmethod
    def parse(cls, text: str | None, days: str | list[str] | list[int] | None = None, *,
              start_date: date | None = None, end_date: date | None = None) -> Window:
        """`"09:00-17:30"` and `"mon-fri"` / `"mon,wed,sat"` / `[0, 1]`; ValueError says what is wrong."""
        start = end = time(0, 0)
        if text:
            m = _WINDOW.match(text)
            if not m:
                raise ValueError(f"window {text!r}: use HH:MM-HH:MM, e.g. 09:00-17:00")
            h1, m1, h2, m2 = (int(g) for g in m.groups())
            if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
                raise ValueError(f"window {text!r}: hours 00-23 (24:00 as an end), minutes 00-59")
            start = time(h1, m1)
            end = time(0, 0) if h2 == 24 else time(h2, m2)
        if start_date and end_date and end_date < start_date:
            raise ValueError("end date is before start date")
        return cls(start, end, parse_days(days), start_date, end_date)

    def describe(self) -> str:
        hours = "all day" if self.start == self.end else f"{self.start:%H:%M}-{self.end:%H:%M}"
        days = "every day" if self.days == ALL_DAYS else ",".join(DAY_NAMES[d] for d in sorted(self.days))
        return f"{hours}, {days}"

    def _open_at(self, local: datetime) -> bool:
        t = local.time()
        if self.start == self.end:
            in_hours, day = True, local.date()
        elif self.start < self.end:
            in_hours, day = self.start <= t < self.end, local.date()
        else:  # past midnight: the part after midnight belongs to the previous day's window
            in_hours = t >= self.start or t < self.end
            day = local.date() if t >= self.start else local.date() - timedelta(days=1)
        if not in_hours or day.weekday() not in self.days:
            return False
        return not ((self.start_date and day < self.start_date) or (self.end_date and day > self.end_date))


def parse_days(days: str | list[str] | list[int] | None) -> frozenset[int]:
    """Days of week from `mon-fri`, `mon,wed`, `sat-sun` or a list of names / numbers (0 = Monday)."""
    if days is None or days == "" or days == []:
        return ALL_DAYS
    items: list[str | int] = list(days.split(",")) if isinstance(days, str) else list(days)
    out: set[int] = set()
    for item in items:
        if isinstance(item, int):
            if not 0 <= item <= 6:
                raise ValueError(f"day {item}: use 0 (Monday) to 6 (Sunday)")
            out.add(item)
            continue
        part = item.strip().lower()
        if "-" in part:
            a, b = (_day(p) for p in part.split("-", 1))
            span = range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)]
            out.update(span)
        else:
            out.add(_day(part))
    if not out:
        raise ValueError("days: name at least one day")
    return frozenset(out)


def _day(name: str) -> int:
    key = name.strip().lower()[:3]
    if key not in DAY_NAMES:
        raise ValueError(f"day {name!r}: use mon, tue, wed, thu, fri, sat or sun")
    return DAY_NAMES.index(key)


@dataclass(frozen=True)
class WindowDecision:
    """`at` is the first allowed moment (== now when open now); None when the window never opens again."""

    at: datetime | None
    why: str

    @property
    def open_now(self) -> bool:
        return self.why.startswith("open")


def next_allowed(window: Window, now: datetime, zone: str) -> WindowDecision:
    """When a recipient in `zone` may be called, from `now` (aware, any zone) on; minute resolution."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    if window._open_at(local):
        return WindowDecision(now, f"open: {local:%a %H:%M} in {zone} is inside {window.describe()}")
    if window.end_date and local.date() > window.end_date + timedelta(days=1):
        return WindowDecision(None, f"closed for good: the campaign's last day {window.end_date} has passed in {zone}")
    # step to the next window start (each of the next 8 local days, plus the start date)
    candidates = []
    for offset in range(0, 9):
        day = local.date() + timedelta(days=offset)
        start = datetime.combine(day, window.start, tz)
        if start > local and window._open_at(start):
            candidates.append(start)
    if window.start_date:
        start = datetime.combine(window.start_date, window.start, tz)
        if start > local and window._open_at(start):
            candidates.append(start)
    if not candidates:
        return WindowDecision(None, f"closed for good: no allowed day ahead in {zone} ({window.describe()})")
    at = min(candidates).astimezone(UTC)
    return WindowDecision(at, f"closed: {local:%a %H:%M} in {zone} is outside {window.describe()}; "
                              f"opens {min(candidates):%a %Y-%m-%d %H:%M} local")
