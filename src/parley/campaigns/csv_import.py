"""Recipients from CSV, streamed: one row at a time, never the whole file in memory.

The header row must have a `number` column (E.164). A `timezone` column (IANA name) overrides the zone
taken from the number's country code; columns named `meta.X` go to the call's metadata; every other
column becomes a call variable (for the agent's prompt and greeting templates). A bad row is reported
with its line number and skipped; the good rows still run.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from parley.campaigns.numbers import NumberError, check_zone, normalise

MAX_FIELD = 4096
MAX_COLUMNS = 200


class CsvHeaderError(ValueError):
    """The header row is unusable (no `number` column, duplicates); nothing is imported."""


@dataclass(frozen=True)
class Recipient:
    """One good row."""

    line: int
    number: str
    zone: str | None
    variables: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowError:
    """One bad row: its line number in the file and what is wrong."""

    line: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}


def _header(row: list[str]) -> list[str]:
    names = [c.strip().lstrip("\ufeff").strip() for c in row]
    lowered = [n.lower() for n in names]
    if "number" not in lowered:
        raise CsvHeaderError(f"line 1: the header has no 'number' column (found: {', '.join(names) or 'nothing'})")
    if len(names) > MAX_COLUMNS:
        raise CsvHeaderError(f"line 1: {len(names)} columns; at most {MAX_COLUMNS}")
    seen: set[str] = set()
    for n in lowered:
        if not n:
            raise CsvHeaderError("line 1: a column has an empty name")
        if n in seen:
            raise CsvHeaderError(f"line 1: column {n!r} appears twice")
        seen.add(n)
    return [n if n.lower() not in ("number", "timezone") else n.lower() for n in names]


def read_recipients(lines: Iterable[str]) -> Iterator[Recipient | RowError]:
    """Good rows as `Recipient`, bad ones as `RowError`, in file order. Raises `CsvHeaderError` when the
    header is unusable. `lines` is any iterable of text lines (an open file, `request.stream()` decoded)."""
    reader = csv.reader(iter(lines))
    try:
        header = _header(next(reader))
    except StopIteration:
        raise CsvHeaderError("the file is empty; it needs a header row with a 'number' column") from None
    except csv.Error as exc:
        raise CsvHeaderError(f"line 1: {exc}") from None
    width = len(header)
    while True:
        line = reader.line_num + 1  # a row's first line (a quoted field may span several)
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowError(line, f"not valid CSV: {exc}")
            continue
        if not row or all(not c.strip() for c in row):
            continue  # blank line
        if len(row) != width:
            yield RowError(line, f"{len(row)} fields, the header has {width}")
            continue
        if any(len(c) > MAX_FIELD for c in row):
            yield RowError(line, f"a field is longer than {MAX_FIELD} characters")
            continue
        values = dict(zip(header, row, strict=True))
        try:
            number = normalise(values.pop("number"))
        except NumberError as exc:
            yield RowError(line, f"number: {exc}")
            continue
        zone = values.pop("timezone", "").strip() or None
        if zone:
            try:
                check_zone(zone)
            except ValueError as exc:
                yield RowError(line, f"timezone: {exc}")
                continue
        meta = {k[5:]: v for k, v in values.items() if k.startswith("meta.")}
        variables = {k: v for k, v in values.items() if not k.startswith("meta.")}
        yield Recipient(line, number, zone, variables, meta)
