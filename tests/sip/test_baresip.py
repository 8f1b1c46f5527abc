"""baresip, a real softphone, in both directions; two-way audio checked from both recordings.

baresip sends a 600 Hz tone (its `aufile` microphone) and records what it hears (`sndfile`
writes dump-*-dec.wav into its working directory); we send 1000 Hz and record what we hear.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from parley.sip.call import Call, IncomingCall
from tests.conftest import free_port
from tests.eventually import eventually, udp_port_bound
from tests.sip.conftest import dominant_frequency, tone

pytestmark = [pytest.mark.sip, pytest.mark.slow]


def baresip_config(tmp_path: Path, sip_port: int, seconds: float = 3.0, codec: str = "g711") -> Path:
    if not shutil.which("baresip"):
        pytest.skip("baresip is not installed (make test installs it)")
    conf = tmp_path / "baresip"
    conf.mkdir()
    mic = conf / "tone600.wav"
    rate = "16000" if codec == "g722" else "8000"
    subprocess.run(["sox", "-n", "-r", rate, "-c", "1", "-b", "16", str(mic), "synth", str(seconds),
                    "sine", "600", "vol", "0.5"], check=True)
    rtp_lo = free_port() & ~1
    (conf / "config").write_text(f"""poll_method epoll
sip_listen 127.0.0.1:{sip_port}
audio_player alsa,null
audio_source aufile,{mic}
audio_alert alsa,null
rtp_ports {rtp_lo}-{rtp_lo + 40}
net_interface 127.0.0.1
module_path /usr/lib/baresip/modules
module {codec}.so
module aufile.so
module alsa.so
module sndfile.so
module account.so
module_app menu.so
""")
    (conf / "accounts").write_text("<sip:baresip@127.0.0.1>;regint=0;answermode=auto\n")
    return conf


def heard_by_baresip(conf: Path) -> tuple[np.ndarray, int]:
    dumps = sorted(conf.glob("dump-*-dec.wav"))
    assert dumps, "baresip recorded nothing"
    with wave.open(str(dumps[-1])) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16), w.getframerate()


def recording_closed(conf: Path) -> bool:
    """baresip has closed its recording: the WAV header of the dump then counts the frames written."""
    dumps = sorted(conf.glob("dump-*-dec.wav"))
    if not dumps:
        return False
    try:
        with wave.open(str(dumps[-1])) as w:
            return w.getnframes() > 0
    except (wave.Error, EOFError):
        return False


def assert_tone(pcm: np.ndarray, freq: float, rate: int = 8000, min_seconds: float = 1.0) -> None:
    loud = np.abs(pcm) > 1000
    assert loud.sum() > min_seconds * rate * 0.5, f"less than {min_seconds}s of audio"
    start = int(np.argmax(loud))
    assert abs(dominant_frequency(pcm[start:start + rate], rate) - freq) < 20


async def collect(call: Call, frames: list[np.ndarray]) -> None:
    while (frame := await call.rtp.read_frame()) is not None:
        frames.append(frame)


async def test_baresip_calls_us_two_way_audio(endpoint, tmp_path: Path) -> None:
    conf = baresip_config(tmp_path, free_port())
    heard: list[np.ndarray] = []
    calls: list[Call] = []

    async def handler(incoming: IncomingCall) -> None:
        assert incoming.called_number == "100"
        call = await incoming.accept()
        calls.append(call)
        call.rtp.write(tone(1000, 3.0))
        await collect(call, heard)

    endpoint.on_incoming = handler
    proc = await asyncio.create_subprocess_exec(
        "timeout", "15", "baresip", "-f", str(conf), "-t", "6", "-e", f"/dial sip:100@127.0.0.1:{endpoint.port}",
        cwd=str(conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()
    assert calls and calls[0].end_reason == "remote_bye"  # baresip hangs up when its file ends
    assert_tone(np.concatenate(heard), 600)
    assert_tone(heard_by_baresip(conf)[0], 1000)


@pytest.mark.parametrize(("codec", "rate"), [("g711", 8000), ("g722", 16000)])
async def test_we_call_baresip_two_way_audio(endpoint, tmp_path: Path, codec: str, rate: int) -> None:
    port = free_port()
    conf = baresip_config(tmp_path, port, seconds=6.0, codec=codec)
    proc = await asyncio.create_subprocess_exec(
        "timeout", "15", "baresip", "-f", str(conf), "-t", "10",
        cwd=str(conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await eventually(lambda: proc.returncode is not None or udp_port_bound(port),
                         what="baresip listening")
        out = await endpoint.invite(f"sip:baresip@127.0.0.1:{port}", from_="sip:+15550100@127.0.0.1",
                                    display_name="Parley", timeout=10)
        call = await out.answered()
        assert call.negotiated.codec == ("G722" if codec == "g722" else "PCMU")
        call.rtp.write(tone(1000, 2.0, rate=rate))
        heard: list[np.ndarray] = []
        collector = asyncio.ensure_future(collect(call, heard))
        await eventually(lambda: call.rtp.output_queued_ms == 0 and len(heard) >= 100, timeout_s=10,
                         what="our 2 s tone sent and 2 s of baresip's heard")
        await call.hangup()
        await collector
        await eventually(lambda: recording_closed(conf), what="baresip closed its recording after our BYE")
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
    assert_tone(np.concatenate(heard), 600, rate)
    pcm, recorded_rate = heard_by_baresip(conf)
    assert_tone(pcm, 1000, recorded_rate)
