"""Exports: calls as JSON lines or CSV, and one JSON conversation file per finished call."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from parley.calls.records import Call, CallDetail
from parley.calls.store import Store

FORMATS = ("jsonl", "csv")

#: CSV columns, in order.
CSV_FIELDS = [
    "id", "direction", "status", "agent", "from_number", "to_number", "caller_name", "trunk", "attempt",
    "created_at", "dialed_at", "answered_at", "ended_at", "duration_s", "end_reason", "sip_call_id",
    "variables", "metadata",
]


def csv_row(call: Call) -> dict[str, Any]:
    """One CSV row; nested values as compact JSON."""
    data = call.to_dict()
    row = {k: data.get(k) for k in CSV_FIELDS}
    row["variables"] = json.dumps(call.variables, ensure_ascii=False, separators=(",", ":"))
    row["metadata"] = json.dumps(call.metadata, ensure_ascii=False, separators=(",", ":"))
    return row


async def export_calls(
    store: Store,
    out: IO[str],
    fmt: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    with_transcripts: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write calls created in [since, until) to `out`, oldest first; returns how many were written.
    `jsonl` rows can carry the transcript (`with_transcripts`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
        writer.writeheader()
    n = 0
    async for call in store.iter_calls(since=since, until=until):
        if writer is not None:
            writer.writerow(csv_row(call))
        else:
            data = call.to_dict()
            if with_transcripts:
                data["transcript"] = [t.to_dict() for t in await store.transcript(call.id)]
            out.write(json.dumps(data, ensure_ascii=False) + "\n")
        n += 1
        if progress:
            progress(1)
    return n


def conversation_path(data_dir: Path, call_id: str) -> Path:
    """Where a call's conversation file lives."""
    return data_dir / "conversations" / f"{call_id}.json"


def write_conversation(data_dir: Path, detail: CallDetail) -> Path:
    """Write `conversations/<call id>.json` (call, timeline and transcript) atomically; returns its path."""
    path = conversation_path(data_dir, detail.call.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(detail.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path
