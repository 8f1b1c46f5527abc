"""Memory and time while accepting a 100,000-row CSV into a campaign (the path `parley campaigns create`
and `POST /api/campaigns/{id}/recipients` use), on a SQLite file.

    PYTHONPATH=src python bench/campaigns/import_memory.py [--rows 100000]

Peak RSS is read from /proc/self/status (VmHWM, reset before the import via /proc/self/clear_refs), the
Python heap peak from tracemalloc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import tracemalloc
from pathlib import Path


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def main(rows: int) -> dict[str, float]:
    from parley.calls.store import Store
    from parley.campaigns.config import CampaignConfig
    from parley.campaigns.store import CampaignStore

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.csv"
        with path.open("w") as f:
            f.write("number,first_name,last_name,appointment,timezone\n")
            for i in range(rows):
                f.write(f"+4930{i:08d},Name{i},Family{i % 1000},2026-12-{1 + i % 28:02d} 10:00,\n")
        store = Store.from_url(f"sqlite+aiosqlite:///{d}/calls.db")
        await store.upgrade()
        campaigns = CampaignStore(store)
        campaign = await campaigns.create("bench", "receptionist", CampaignConfig())
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = rss_kb("VmRSS")
        tracemalloc.start()
        t0 = time.perf_counter()
        with path.open(encoding="utf-8") as f:
            report = await campaigns.import_csv(campaign.id, f)
        took = time.perf_counter() - t0
        _, heap_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peak = rss_kb("VmHWM")
        await store.close()
        return {"rows": report.accepted, "file_mb": round(path.stat().st_size / 1e6, 1), "seconds": round(took, 2),
                "rows_per_s": round(report.accepted / took), "rss_before_mb": round(before / 1024, 1),
                "rss_peak_growth_mb": round((peak - before) / 1024, 1),
                "python_heap_peak_mb": round(heap_peak / 1e6, 1)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    print(json.dumps(asyncio.run(main(ap.parse_args().rows)), indent=2))
