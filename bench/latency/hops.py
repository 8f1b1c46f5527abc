"""Where the time between the wire and the engine's `voice_to_voice_ms` goes: a timestamp at each hop.

    sudo PYTHONPATH=src .venv/bin/python bench/latency/hops.py [--calls 1] [--turns 10]

The wire harness (bench/latency/wire.py: baresip calls `parley up`, RTP captured on `lo` with kernel
timestamps), but `parley up` runs under bench/latency/hops_probe.py, which logs `time.time()` at each media
hop without changing src/. Per turn, on one clock:

    wire_end   the caller's packet carrying the utterance's last sample leaves baresip (capture)
    rx         that packet reaches `RtpReceiver.receive`
    jb         it leaves the jitter buffer as a frame
    in         the engine is handed that frame (`SipChannel.inbound`; its media time `t`)
    eot        the engine is handed the frame of its `end_of_turn` mark (the decision is taken on it)
    write      the engine's first `SipChannel.write` of the reply (≈ its `first_frame_out`)
    tx         the first packet carrying queued reply audio leaves on a pacer tick
    heard      the first reply packet on the wire with speech energy (RMS > 500, as wire.py)

and the engine's own marks for the turn (`speech_end`, `end_of_turn`, `voice_to_voice_ms`). The engine's
`speech_end` is the VAD's last voiced media time; the caller's true end is `in`'s media time plus the
end sample's place in its frame, so `vad_late` = speech_end − true end (positive: the VAD's end is later
than the audio's, which the engine's waited silence then does not count).

    wire − engine ≈ (in − wire_end) + vad_late + (heard − write), less the rounding of the decision to
    the 20 ms frame grid
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.latency import wire  # noqa: E402

RATE = wire.RATE
FRAME = wire.FRAME


def _load(path: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"rx": [], "jb": [], "in": [], "wr": [], "tx": []}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[entry["k"]].append(entry)
    return out


def analyse(script: wire.Script, capture: wire.LoopbackCapture, ports: range, detail: dict[str, Any],
            log: Path, rows: list[dict[str, Any]]) -> None:
    hops = _load(log)
    sent = sorted((p for p in capture.packets if p.sport in ports and p.pt in (0, 8)), key=lambda p: p.ts)
    received = sorted((p for p in capture.packets if p.dport in ports and p.pt in (0, 8)), key=lambda p: p.t)
    if not sent or not received:
        return
    t_call0, t_call1 = sent[0].t - 1, sent[-1].t + 1
    c_times, c_index, c_levels = wire._stream(sent)
    lag = wire._align(script, c_index, c_levels)
    ts0 = sent[0].ts
    rx = {e["seq"]: e["w"] for e in hops["rx"] if t_call0 < e["w"] < t_call1}
    jb = {e["ext"] & 0xFFFF: e["w"] for e in hops["jb"] if t_call0 < e["w"] < t_call1}
    frames = [(e["w"], e["t"]) for e in hops["in"] if t_call0 < e["w"] < t_call1]
    f_wall = np.array([w for w, _ in frames])
    f_media = np.array([t for _, t in frames])
    writes = [e for e in hops["wr"] if t_call0 < e["w"] < t_call1 and e["n"] > 0]
    txs = [e for e in hops["tx"] if t_call0 < e["w"] < t_call1 and e["audio"]]
    r_times = np.array([p.t for p in received])
    r_levels = np.array([wire._rms(wire._decode(p.pt, p.payload)) for p in received])
    metrics = wire._turn_metrics(detail)
    offset = wire._call_offset(metrics, script)
    for turn in script.turns:
        sample = turn.end + lag
        i = int(np.searchsorted(c_index, sample, side="right")) - 1
        packet = sent[max(0, i)]
        within = sample - ((packet.ts - ts0) % (1 << 32))  # samples into that packet
        wire_end = wire._wire_time(sample, c_times, c_index)
        if packet.seq not in rx or packet.seq not in jb:
            continue
        k = int(np.searchsorted(f_wall, jb[packet.seq] - 1e-4))
        if k >= len(f_wall):
            continue
        in_wall, in_media = float(f_wall[k]), float(f_media[k])
        true_end_media = in_media + within / RATE
        mark = None
        if offset is not None:
            mark = min(metrics, key=lambda m: abs(float(m.get("speech_end", -1e9)) - (turn.end / RATE + offset)))
            if abs(float(mark.get("speech_end", -1e9)) - (turn.end / RATE + offset)) > 0.15:
                mark = None
        if mark is None or mark.get("end_of_turn") is None:
            continue
        e = int(np.searchsorted(f_media, float(mark["end_of_turn"]) - 1e-6))
        if e >= len(f_wall):
            continue
        eot_wall = float(f_wall[e])
        first_write = next((w["w"] for w in writes if w["w"] >= eot_wall - 0.05), None)
        if first_write is None:
            continue
        first_tx = next((t["w"] for t in txs if t["w"] >= first_write), None)
        loud = np.nonzero((r_times > wire_end) & (r_levels > wire.SPEECH_RMS))[0]
        if first_tx is None or not len(loud):
            continue
        first_audio_pkt = next((p.t for p in received if p.t >= first_tx - 1e-3), first_tx)
        heard = float(r_times[loud[0]])
        rows.append({
            "voice": turn.voice, "text": turn.text,
            "wire_ms": (heard - wire_end) * 1000,
            "engine_ms": float(mark.get("voice_to_voice_ms") or float("nan")),
            "kernel_to_app_ms": (rx[packet.seq] - wire_end - (FRAME - within) / RATE) * 1000,
            "jitter_buffer_ms": (jb[packet.seq] - rx[packet.seq]) * 1000,
            "jb_to_engine_ms": (in_wall - jb[packet.seq]) * 1000,
            "inbound_ms": (in_wall - wire_end) * 1000,
            "vad_late_ms": (float(mark["speech_end"]) - true_end_media) * 1000,
            "waited_media_ms": (float(mark["end_of_turn"]) - float(mark["speech_end"])) * 1000,
            "waited_wall_ms": (eot_wall - in_wall) * 1000,
            "eot_to_write_ms": (first_write - eot_wall) * 1000,
            "engine_first_frame_out_ms": float(mark.get("first_frame_out_ms") or float("nan")),
            "write_to_tx_ms": (first_tx - first_write) * 1000,
            "tx_to_wire_ms": (first_audio_pkt - first_tx) * 1000,
            "quiet_head_ms": (heard - first_audio_pkt) * 1000,
        })


COLUMNS = ["wire_ms", "engine_ms", "inbound_ms", "kernel_to_app_ms", "jitter_buffer_ms", "jb_to_engine_ms",
           "vad_late_ms", "waited_media_ms", "waited_wall_ms", "eot_to_write_ms", "engine_first_frame_out_ms",
           "write_to_tx_ms", "tx_to_wire_ms", "quiet_head_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the capture on lo uses AF_PACKET")
    workdir = Path(tempfile.mkdtemp(prefix="parley-hops-"))
    log = workdir / "hops.jsonl"
    print(f"work folder {workdir}; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
          flush=True)
    parley = wire.ParleyUp(workdir, {"PARLEY_HOPS_LOG": str(log)},
                           command=[sys.executable, str(ROOT / "bench" / "latency" / "hops_probe.py"), "up"])
    rows: list[dict[str, Any]] = []
    loads = []
    try:
        parley.wait_healthy()
        for call in range(args.calls):
            wire.run_call(parley, workdir, "normal", args.turns, 13 + call, call * args.turns,
                          on_capture=lambda s, c, p, d: analyse(s, c, p, d, log, rows))
            loads.append(os.getloadavg()[0])
    finally:
        parley.stop()
    print(f"load average after each call: {' '.join(f'{x:.2f}' for x in loads)}")
    print(f"{'voice':15s} " + " ".join(f"{c.removesuffix('_ms')[:10]:>10s}" for c in COLUMNS))
    for r in rows:
        print(f"{r['voice']:15s} " + " ".join(f"{r[c]:10.0f}" for c in COLUMNS))
    if rows:
        print(f"{'median':15s} " + " ".join(f"{statistics.median(r[c] for r in rows):10.0f}" for c in COLUMNS))
        print(f"{'min':15s} " + " ".join(f"{min(r[c] for r in rows):10.0f}" for c in COLUMNS))
        print(f"{'max':15s} " + " ".join(f"{max(r[c] for r in rows):10.0f}" for c in COLUMNS))
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
