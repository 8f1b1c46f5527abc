"""On-the-wire latency: a real softphone (baresip) calls `parley up`; a packet capture on `lo` times turns.

    PYTHONPATH=src .venv/bin/python bench/latency/wire.py [--calls 3] [--turns 12] [--pauses 20]
    PYTHONPATH=src .venv/bin/python bench/latency/wire.py --llm openai-standin --first-token-ms 300 --pauses 0

`--llm openai-standin`: the receptionist with its LLM replaced by `provider: openai` pointed at the
OpenAI-compatible stand-in (tests/cloud/standins/openai_server.py, started in this process on a free port):
every chat request is answered, streamed, with the receptionist's own short reply for the caller's words
(chosen by its keywords), the first content token `--first-token-ms` after the role chunk, then a word
every 20 ms. The agent comes from a temporary agents folder (`AGENTS_DIR` of `parley up`); agents/ is not
touched.

What it does:

1. starts `parley up` (the shipped receptionist: Whisper base, scripted LLM, piper) on free ports with a
   fresh data dir, and waits for `/health`;
2. per call, writes the softphone's microphone: 8 kHz WAV with the greeting's silence, then utterances
   in rotating voices (espeak-ng ×3, piper ×2; bench/latency/speech.py), each followed by a gap long
   enough for the reply;
3. baresip (headless: aufile microphone, sndfile recorder, `aubridge` as its player — on `alsa,null`
   Debian's baresip 1.0 busy-loops a whole core, which on 2 cores slows the engine under test) dials
   `parley up`; meanwhile an AF_PACKET socket on `lo` (root) captures every RTP packet to and from
   baresip's RTP ports with kernel timestamps (SO_TIMESTAMPNS);
4. per turn: **end of caller speech** = the wire time of the caller's packet carrying the utterance's last
   sample (the microphone script is aligned with the caller's RTP stream by cross-correlating their
   20 ms energy envelopes); **first reply audio** = the first packet from Parley after that whose decoded
   μ-law has speech energy (RMS > 500, as the suite's `speech_energy_seconds`). The difference is the
   silence the caller hears on the line, before the softphone's own jitter buffer (baresip's playout adds
   its buffer on top; the figure is what any phone receives).

Modes: `normal` (complete utterances, `--turns` per call) → p50/p90 of the latency, with the engine's
own `voice_to_voice_ms` for the same turns beside it (from the call record's `turn_metrics`, matched on
`speech_end`), so the part lost between the wire and the engine shows; `pause` (sentences with a
400–800 ms pause after "for", "and", "because", "my number is", …) → cut-in rate: a sentence is cut into
when the engine ended the caller's turn during the pause (an `end_of_turn` mark between the pause and
300 ms after the caller resumed) or reply audio reached the line then. The load average is printed
before, after each call, and after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.latency.receptionist_script import REQUESTS, reply_for  # noqa: E402
from bench.latency.speech import VOICES, Voice, say  # noqa: E402
from parley.media.g711 import alaw_decode, ulaw_decode  # noqa: E402

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
SPEECH_RMS = 500.0

#: Complete requests for `normal` mode (see bench/latency/receptionist_script.py).
WIRE_UTTERANCES = REQUESTS

#: Sentences with a pause for `pause` mode: (before the pause, after it); same intents as above.
WIRE_PAUSED = [
    ("I would like to book an appointment for", "next Tuesday morning."),
    ("I need to cancel my appointment and", "book a new one next week."),
    ("I am calling because", "I want to cancel my appointment."),
    ("My number is", "five five five, one two three four, and I want to book an appointment."),
    ("I wanted to ask about", "your opening hours on Sunday."),
    ("Can you tell me when", "you are open on Saturday?"),
]

#: The engine's turn_metrics summarised after a normal run.
ENGINE_MARKS = ["silence_waited_ms", "stt_final_ms", "llm_first_token_ms", "tts_first_audio_ms", "first_frame_out_ms"]

GREETING_WAIT_S = 7.0
GAP_S = 10.0  # after each utterance: latency + the reply (≤ ~5 s) + quiet below the 8 s idle reminder


# --- capture ---------------------------------------------------------------------------------

SO_TIMESTAMPNS = 35


@dataclass
class Packet:
    t: float  # kernel receive time on lo (CLOCK_REALTIME, seconds)
    sport: int
    dport: int
    pt: int
    seq: int
    ts: int
    payload: bytes


class LoopbackCapture:
    """Every UDP packet on `lo` with a source or destination port in `ports` (needs root)."""

    def __init__(self, ports: range) -> None:
        self.ports = ports
        self.packets: list[Packet] = []
        self._stop = threading.Event()
        try:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        except PermissionError:
            sys.exit("the capture on lo needs root (AF_PACKET)")
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, ancillary, _, addr = self._sock.recvmsg(65535, socket.CMSG_SPACE(16))
            except OSError:
                continue
            if addr[2] == socket.PACKET_OUTGOING or len(data) < 14 + 20 + 8 + 12:
                continue
            stamp = next((struct.unpack("qq", c[:16]) for lvl, typ, c in ancillary
                          if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS), None)
            t = stamp[0] + stamp[1] / 1e9 if stamp else time.time()
            ip = data[14:]
            if ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 0x0F) * 4
            sport, dport = struct.unpack("!HH", ip[ihl: ihl + 4])
            if sport not in self.ports and dport not in self.ports:
                continue
            rtp = ip[ihl + 8:]
            if len(rtp) < 12 or rtp[0] >> 6 != 2:
                continue
            header = 12 + 4 * (rtp[0] & 0x0F)
            if rtp[0] & 0x10 and len(rtp) >= header + 4:
                header += 4 + 4 * struct.unpack("!H", rtp[header + 2: header + 4])[0]
            seq, ts = struct.unpack("!HI", rtp[2:8])
            self.packets.append(Packet(t, sport, dport, rtp[1] & 0x7F, seq, ts, rtp[header:]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


def _decode(pt: int, payload: bytes) -> np.ndarray:
    if pt == 0:
        return ulaw_decode(payload)
    if pt == 8:
        return alaw_decode(payload)
    return np.zeros(0, np.int16)


def _rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


# --- the caller's script ---------------------------------------------------------------------

@dataclass
class Turn:
    text: str
    voice: str
    start: int  # samples into the microphone file
    end: int  # last sample of speech (the caller stops here)
    pause_at: int | None = None  # pause mode: where the pause starts
    resume_at: int | None = None  # and where speech resumes


@dataclass
class Script:
    pcm: np.ndarray
    turns: list[Turn] = field(default_factory=list)


def _at_8k(text: str, voice: Voice) -> np.ndarray:
    return say(text, voice, rate=RATE)


def build_script(mode: str, count: int, seed: int, offset: int) -> Script:
    rng = random.Random(seed)
    parts: list[np.ndarray] = [np.zeros(int(GREETING_WAIT_S * RATE), np.int16)]
    position = len(parts[0])
    script = Script(np.zeros(0, np.int16))
    for i in range(count):
        voice = VOICES[(offset + i) % len(VOICES)]
        if mode == "normal":
            text = WIRE_UTTERANCES[(offset + i) % len(WIRE_UTTERANCES)]
            speech = _at_8k(text, voice)
            script.turns.append(Turn(text, voice.name, position, position + len(speech)))
        else:
            first, rest = WIRE_PAUSED[(offset + i) % len(WIRE_PAUSED)]
            pause_s = rng.uniform(0.4, 0.8)
            a, b = _at_8k(first, voice), _at_8k(rest, voice)
            gap = np.zeros(int(pause_s * RATE), np.int16)
            speech = np.concatenate([a, gap, b])
            script.turns.append(Turn(f"{first} [{pause_s * 1000:.0f} ms] {rest}", voice.name, position,
                                     position + len(speech), position + len(a), position + len(a) + len(gap)))
        parts += [speech, np.zeros(int(GAP_S * RATE), np.int16)]
        position += len(speech) + int(GAP_S * RATE)
    script.pcm = np.concatenate(parts)
    return script


def _write_wav(path: Path, pcm: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype(np.int16).tobytes())


# --- processes -------------------------------------------------------------------------------

def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ParleyUp:
    """`parley up` in a subprocess on free ports with a fresh data dir."""

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None,
                 command: list[str] | None = None) -> None:
        self.sip_port, self.api_port = _free_port(), _free_port(socket.SOCK_STREAM)
        self.log_path = workdir / "parley-up.log"
        env = {**os.environ, "SIP_PORT": str(self.sip_port), "API_PORT": str(self.api_port),
               "API_KEYS": "bench", "DATA_DIR": str(workdir / "data"), "LOG_LEVEL": "INFO",
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               **(extra_env or {})}
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(command or [sys.executable, "-m", "parley.cli.main", "up"], cwd=ROOT, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def api(self, path: str) -> dict:  # type: ignore[type-arg]
        request = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}", headers={"X-API-Key": "bench"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if self.api("/health"):
                    return
            except OSError:
                pass
            time.sleep(0.3)
        sys.exit(f"parley up did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def baresip_config(folder: Path, mic: Path, player: str = "aubridge,x") -> tuple[Path, range]:
    folder.mkdir(parents=True)
    sip = _free_port()
    rtp_lo = _free_port() & ~1
    (folder / "config").write_text(f"""poll_method epoll
sip_listen 127.0.0.1:{sip}
audio_player {player}
audio_source aufile,{mic}
audio_alert alsa,null
rtp_ports {rtp_lo}-{rtp_lo + 40}
net_interface 127.0.0.1
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module alsa.so
module sndfile.so
module account.so
module_app menu.so
""")
    (folder / "accounts").write_text("<sip:bench@127.0.0.1>;regint=0;answermode=auto\n")
    return folder, range(rtp_lo, rtp_lo + 41)


# --- the LLM: the shipped scripted one, or the OpenAI provider against the stand-in ----------

#: The stand-in's reply when no keyword matches: short, so the caller's next request does not barge in.
STANDIN_FALLBACK = "Sorry, could you say that again?"


def start_openai_standin(first_token_ms: float) -> tuple[Any, str]:
    """The OpenAI-compatible stand-in (tests/cloud/standins) on a free port, answering every chat request with
    the receptionist's reply for the caller's last words after a `first_token_ms` first-token delay."""
    from tests.cloud.standins.openai_server import OpenAIStandIn
    from tests.cloud.standins.server import Reply

    def respond(body: dict[str, Any]) -> Reply:
        said = next((str(m.get("content") or "") for m in reversed(body["messages"]) if m.get("role") == "user"), "")
        return Reply(text=reply_for(said, STANDIN_FALLBACK), first_delay_s=first_token_ms / 1000.0, chunk_delay_s=0.02)

    server = OpenAIStandIn(api_key="sk-bench")
    server.chat_responder = respond
    return server, server.start() + "/v1"


def standin_agents_dir(workdir: Path, base_url: str) -> Path:
    """A temporary agents folder: the shipped receptionist with its LLM replaced by `provider: openai` at
    `base_url` (agents/ is not touched)."""
    import yaml

    agent = yaml.safe_load((ROOT / "agents" / "receptionist.yaml").read_text())
    agent["components"]["llm"] = {"provider": "openai", "model": "standin-model", "base_url": base_url,
                                  "api_key_env": "BENCH_STANDIN_KEY"}
    folder = workdir / "agents"
    folder.mkdir()
    (folder / "receptionist.yaml").write_text(yaml.safe_dump(agent, sort_keys=False))
    return folder


# --- analysis --------------------------------------------------------------------------------

@dataclass
class TurnResult:
    turn: Turn
    latency_ms: float | None  # normal mode
    cut_in: bool = False  # pause mode: reply audio during the pause
    note: str = ""
    engine_ms: float | None = None  # the engine's own voice_to_voice_ms for this turn
    turn_ended_in_pause: bool = False  # pause mode: the engine ended the caller's turn during the pause
    marks: dict[str, Any] | None = None  # the engine's turn_metrics for this turn


def _turn_metrics(detail: object, kind: str = "turn_metrics", key: str = "end_of_turn") -> list[dict]:  # type: ignore[type-arg]
    """Every `kind` event's data in a call's detail (wherever the detail lists its events)."""
    found: list[dict] = []  # type: ignore[type-arg]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == kind:
                data = node.get("data", node)
                if isinstance(data, dict) and key in data:
                    found.append(data)
                    return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(detail)
    return found


def _call_offset(metrics: list[dict], script: Script) -> float | None:  # type: ignore[type-arg]
    """Seconds to add to a microphone-file time to get the engine's call-relative time: the shift that
    lines up most of the engine's `speech_end` marks with the script's utterance ends."""
    ends = [t.end / RATE for t in script.turns]
    marks = [float(m["speech_end"]) for m in metrics if "speech_end" in m]
    best, offset = 0, None
    for mark in marks:
        for end in ends:
            candidate = mark - end
            score = sum(any(abs(m - (e + candidate)) < 0.15 for e in ends) for m in marks)
            if score > best:
                best, offset = score, candidate
    return offset


def attach_engine_marks(results: list[TurnResult], metrics: list[dict], script: Script,  # type: ignore[type-arg]
                        decisions: list[dict] = []) -> None:  # type: ignore[type-arg]  # noqa: B006
    offset = _call_offset(metrics, script)
    if offset is None:
        return
    for r in results:
        turn = r.turn
        nearest = min(metrics, key=lambda m: abs(float(m.get("speech_end", -1e9)) - (turn.end / RATE + offset)))
        if abs(float(nearest.get("speech_end", -1e9)) - (turn.end / RATE + offset)) < 0.15:
            value = nearest.get("voice_to_voice_ms")
            r.engine_ms = float(value) if value is not None else None
            r.marks = nearest
        for m in metrics:
            if turn.pause_at is not None and turn.resume_at is not None:
                if turn.pause_at / RATE + offset - 0.05 <= float(m["end_of_turn"]) <= turn.resume_at / RATE + offset + 0.3:
                    r.turn_ended_in_pause = True
        if turn.pause_at is not None and turn.resume_at is not None and (r.cut_in or r.turn_ended_in_pause):
            why = [d for d in decisions
                   if turn.pause_at / RATE + offset - 0.05 <= float(d["t"]) <= turn.resume_at / RATE + offset + 0.3]
            r.note += "".join(f"\n      {d['kind']} at {d['silence_ms']:.0f} ms: {d['reason']}; words {d.get('text')!r}"
                              f" (end p {d.get('sentence_end_p')})" for d in why)


def _stream(packets: list[Packet]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, first sample index, per-packet rms) of one direction, in RTP-timestamp order."""
    packets = sorted(packets, key=lambda p: p.ts)
    ts0 = packets[0].ts
    times = np.array([p.t for p in packets])
    index = np.array([(p.ts - ts0) % (1 << 32) for p in packets])
    levels = np.array([_rms(_decode(p.pt, p.payload)) for p in packets])
    return times, index, levels


def _align(script: Script, index: np.ndarray, levels: np.ndarray) -> int:
    """Sample lag of the caller's RTP stream against the microphone script (envelope cross-correlation)."""
    frames = len(script.pcm) // FRAME
    mic = np.array([_rms(script.pcm[i * FRAME:(i + 1) * FRAME]) for i in range(frames)])
    wire = np.zeros(max(frames, int(index.max() // FRAME) + 1))
    wire[(index // FRAME).astype(int)] = levels
    mic_on, wire_on = (mic > SPEECH_RMS).astype(float), (wire[:frames] > SPEECH_RMS).astype(float)
    best, lag = -1.0, 0
    for shift in range(-150, 151):  # ±3 s
        a = mic_on[max(0, -shift): frames - max(0, shift)]
        b = wire_on[max(0, shift): frames - max(0, -shift)]
        score = float(np.dot(a[: len(b)], b[: len(a)]))
        if score > best:
            best, lag = score, shift
    return lag * FRAME


def _wire_time(sample: int, times: np.ndarray, index: np.ndarray) -> float:
    """When the packet carrying `sample` left the caller, minus the audio after it in that packet."""
    i = int(np.searchsorted(index, sample, side="right")) - 1
    i = max(0, min(i, len(index) - 1))
    return float(times[i] - (index[i] + FRAME - sample) / RATE)


def analyse(script: Script, capture: LoopbackCapture, caller_ports: range, mode: str) -> list[TurnResult]:
    sent = [p for p in capture.packets if p.sport in caller_ports and p.pt in (0, 8)]
    received = [p for p in capture.packets if p.dport in caller_ports and p.pt in (0, 8)]
    if not sent or not received:
        return []
    c_times, c_index, c_levels = _stream(sent)
    lag = _align(script, c_index, c_levels)
    r_sorted = sorted(received, key=lambda p: p.t)
    r_times = np.array([p.t for p in r_sorted])
    r_levels = np.array([_rms(_decode(p.pt, p.payload)) for p in r_sorted])
    results = []
    for turn in script.turns:
        if mode == "normal":
            end_t = _wire_time(turn.end + lag, c_times, c_index)
            after = np.nonzero((r_times > end_t) & (r_levels > SPEECH_RMS))[0]
            at_end = np.nonzero((np.abs(r_times - end_t) < 0.06) & (r_levels > SPEECH_RMS))[0]
            if len(at_end):
                results.append(TurnResult(turn, None, note="agent audio overlapping the end of speech"))
            elif not len(after) or r_times[after[0]] - end_t > GAP_S:
                results.append(TurnResult(turn, None, note="no reply"))
            else:
                results.append(TurnResult(turn, (r_times[after[0]] - end_t) * 1000))
        else:
            assert turn.pause_at is not None and turn.resume_at is not None
            pause_t = _wire_time(turn.pause_at + lag, c_times, c_index)
            resume_t = _wire_time(turn.resume_at + lag, c_times, c_index)
            loud = np.nonzero((r_times > pause_t) & (r_times < resume_t + 0.3) & (r_levels > SPEECH_RMS))[0]
            note = f"reply audio {1000 * (r_times[loud[0]] - pause_t):.0f} ms into the pause" if len(loud) else ""
            results.append(TurnResult(turn, None, cut_in=bool(len(loud)), note=note))
    return results


# --- run -------------------------------------------------------------------------------------

def run_call(parley: ParleyUp, workdir: Path, mode: str, count: int, seed: int, offset: int,
             player: str = "aubridge,x",
             on_capture: Callable[[Script, LoopbackCapture, range, dict[str, Any]], None] | None = None,
             ) -> tuple[list[TurnResult], list[str]]:
    script = build_script(mode, count, seed, offset)
    folder = workdir / f"call-{mode}-{offset}"
    mic = workdir / f"mic-{mode}-{offset}.wav"
    _write_wav(mic, script.pcm)
    conf, ports = baresip_config(folder, mic, player)
    seconds = len(script.pcm) / RATE
    capture = LoopbackCapture(ports)
    phone = subprocess.Popen(["baresip", "-f", str(conf), "-t", str(int(seconds + 4)),
                              "-e", f"/dial sip:+4930123456@127.0.0.1:{parley.sip_port}"],
                             cwd=conf, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        phone.wait(seconds + 40)
    finally:
        if phone.poll() is None:
            phone.kill()
            phone.wait()
        time.sleep(0.5)
        capture.stop()
    results = analyse(script, capture, ports, mode)
    caller_turns: list[str] = []
    try:
        time.sleep(1.0)  # the event writer stores the last events off the audio path
        calls = parley.api("/api/calls?limit=1")["calls"]
        if calls:
            detail = parley.api(f"/api/calls/{calls[0]['id']}")
            caller_turns = [t["text"] for t in detail.get("transcript", []) if t.get("role") == "caller"]
            attach_engine_marks(results, _turn_metrics(detail), script,
                                _turn_metrics(detail, "turn_decision", "reason"))
            if on_capture is not None:
                on_capture(script, capture, ports, detail)
    except OSError:
        pass
    return results, caller_turns


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3, help="calls in normal mode")
    parser.add_argument("--turns", type=int, default=12, help="utterances per normal call")
    parser.add_argument("--pauses", type=int, default=20, help="paused sentences (0 = skip pause mode)")
    parser.add_argument("--pauses-per-call", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (recordings, logs)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--player", default="aubridge,x",
                        help="baresip's audio player (alsa,null busy-loops a core; aubridge,x does not)")
    parser.add_argument("--llm", choices=["scripted", "openai-standin"], default="scripted",
                        help="the receptionist's own scripted LLM, or the OpenAI provider against the stand-in")
    parser.add_argument("--first-token-ms", type=float, default=300.0,
                        help="openai-standin: the stand-in's first-token delay")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the capture on lo uses AF_PACKET")
    for tool in ("baresip", "espeak-ng", "sox"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    workdir = Path(tempfile.mkdtemp(prefix="parley-wire-"))
    print(f"work folder {workdir}; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    standin = None
    extra_env: dict[str, str] = {}
    if args.llm == "openai-standin":
        standin, base_url = start_openai_standin(args.first_token_ms)
        extra_env = {"AGENTS_DIR": str(standin_agents_dir(workdir, base_url)), "BENCH_STANDIN_KEY": "sk-bench"}
        print(f"LLM: provider openai at the stand-in {base_url}, first token after {args.first_token_ms:.0f} ms")
    parley = ParleyUp(workdir, extra_env)
    loads: list[float] = []
    try:
        parley.wait_healthy()
        normal: list[TurnResult] = []
        for call in range(args.calls):
            results, _ = run_call(parley, workdir, "normal", args.turns, args.seed + call, call * args.turns,
                                  args.player)
            loads.append(os.getloadavg()[0])
            normal += results
            for r in results:
                figure = f"{r.latency_ms:6.0f} ms" if r.latency_ms is not None else f"  ({r.note})"
                engine = f"  engine {r.engine_ms:6.0f} ms" if r.engine_ms is not None else ""
                print(f"  normal call {call + 1} [{r.turn.voice:14s}] {r.turn.text[:50]:50s} {figure}{engine}",
                      flush=True)
        paused: list[TurnResult] = []
        splits = 0
        done = 0
        while done < args.pauses:
            n = min(args.pauses_per_call, args.pauses - done)
            results, caller_turns = run_call(parley, workdir, "pause", n, args.seed + 100 + done, done,
                                             args.player)
            loads.append(os.getloadavg()[0])
            paused += results
            splits += max(0, len(caller_turns) - len(results))
            for r in results:
                verdict = "CUT IN: " + r.note if r.cut_in else ("turn ended in the pause" if r.turn_ended_in_pause
                                                               else "ok")
                print(f"  pause [{r.turn.voice:14s}] {r.turn.text[:72]:72s} {verdict}", flush=True)
            print(f"    caller turns recorded: {len(caller_turns)} for {len(results)} sentences")
            done += n
    finally:
        parley.stop()
        if standin is not None:
            chats = standin.requests_of("chat")
            print(f"stand-in: {len(chats)} chat requests")
            standin.stop()
    latencies = [r.latency_ms for r in normal if r.latency_ms is not None]
    print()
    print(f"load average during the runs (1 min, after each call): {' '.join(f'{x:.2f}' for x in loads)}; "
          f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if latencies:
        print(f"end of caller speech → first reply audio on the wire: p50 {_percentile(latencies, 0.5):.0f} ms, "
              f"p90 {_percentile(latencies, 0.9):.0f} ms, min {min(latencies):.0f}, max {max(latencies):.0f} "
              f"over {len(latencies)} turns ({len(normal) - len(latencies)} without a measurable reply)")
        by_voice: dict[str, list[float]] = {}
        for r in normal:
            if r.latency_ms is not None:
                by_voice.setdefault(r.turn.voice, []).append(r.latency_ms)
        for voice, values in sorted(by_voice.items()):
            print(f"    {voice:14s} p50 {statistics.median(values):.0f} ms over {len(values)}")
        pairs = [(r.latency_ms, r.engine_ms) for r in normal if r.latency_ms is not None and r.engine_ms is not None]
        if pairs:
            engine = [e for _, e in pairs]
            extra = [w - e for w, e in pairs]
            print(f"  the engine's own voice_to_voice_ms on the same turns: p50 {_percentile(engine, 0.5):.0f} ms, "
                  f"p90 {_percentile(engine, 0.9):.0f} ms; wire minus engine: p50 {_percentile(extra, 0.5):.0f} ms "
                  f"(min {min(extra):.0f}, max {max(extra):.0f}) over {len(pairs)} turns")
        marked = [r.marks for r in normal if r.latency_ms is not None and r.marks is not None]
        if marked:
            parts = []
            for key in ENGINE_MARKS:
                values = [float(m[key]) for m in marked if m.get(key) is not None]
                if values:
                    parts.append(f"{key} {statistics.median(values):.0f}")
            verdicts: dict[str, int] = {}
            for m in marked:
                verdicts[str(m.get("detector", ""))] = verdicts.get(str(m.get("detector", "")), 0) + 1
            print(f"  the engine's marks, medians (ms; STT/LLM/TTS counted from the end of turn): {', '.join(parts)}; "
                  f"detector verdicts {verdicts}")
    if paused:
        cut = sum(r.cut_in for r in paused)
        ended = sum(r.cut_in or r.turn_ended_in_pause for r in paused)
        print(f"mid-sentence pauses of 400–800 ms ({len(paused)}): cut-in (turn ended in the pause, answered "
              f"mid-sentence) {ended} = {100 * ended / len(paused):.0f} %; of those, reply audio already on the "
              f"line during the pause or ≤ 300 ms after the caller resumed: {cut}; extra caller turns in the "
              f"call records: {splits}")
        for lo, hi in ((0.4, 0.6), (0.6, 0.8)):
            band = [r for r in paused if r.turn.pause_at is not None and r.turn.resume_at is not None
                    and lo <= (r.turn.resume_at - r.turn.pause_at) / RATE < hi]
            if band:
                n = sum(r.cut_in or r.turn_ended_in_pause for r in band)
                print(f"    pauses {lo * 1000:.0f}–{hi * 1000:.0f} ms: {n} of {len(band)} cut in")
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
