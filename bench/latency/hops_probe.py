"""`parley` with wall-clock probes at each media hop, for `bench/latency/hops.py` (measurement only).

    python bench/latency/hops_probe.py up        # same as `parley up`, plus a JSON-lines log in $PARLEY_HOPS_LOG

Nothing in src/ is changed: this wraps four methods at run time and logs `time.time()` (the clock the
packet capture's kernel timestamps use) with what passed:

* `rx`  — `RtpReceiver.receive`: an audio datagram reached the application (RTP seq, timestamp);
* `jb`  — `JitterBuffer._next_chunk`: a packet left the jitter buffer as a frame (extended seq);
* `in`  — `SipChannel.inbound`: the engine was handed the frame of media time `t`;
* `wr`  — `SipChannel.write`: the engine queued agent audio (samples, peak);
* `tx`  — `RtpSender.tick`: a packet left on a pacer tick (seq, RTP timestamp, whether it carried queued audio).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src")]

_log = open(os.environ.get("PARLEY_HOPS_LOG", "/tmp/parley-hops.jsonl"), "w", buffering=1)  # noqa: SIM115


def _emit(kind: str, **fields: Any) -> None:
    _log.write(json.dumps({"k": kind, "w": time.time(), **fields}) + "\n")


def install() -> None:
    import numpy as np

    from parley.engine.channel import AudioFrame
    from parley.sip.jitter import JitterBuffer
    from parley.sip.rtp import parse_rtp
    from parley.sip.rtp_receiver import RtpReceiver
    from parley.sip.rtp_sender import RtpSender
    from parley.telephony.sip_channel import SipChannel

    receive = RtpReceiver.receive

    def probed_receive(self: RtpReceiver, data: bytes, addr: tuple[str, int]) -> None:
        try:
            pkt = parse_rtp(data)
            _emit("rx", seq=pkt.sequence, ts=pkt.timestamp)
        except Exception:  # noqa: BLE001  # the receiver itself counts garbage
            pass
        receive(self, data, addr)

    next_chunk = JitterBuffer._next_chunk

    def probed_next_chunk(self: JitterBuffer, now: float) -> Any:
        played = self.played
        chunk = next_chunk(self, now)
        if self.played != played and self._next is not None:
            _emit("jb", ext=self._next - 1)
        return chunk

    inbound = SipChannel.inbound

    async def probed_inbound(self: SipChannel) -> Any:
        async for item in inbound(self):
            if isinstance(item, AudioFrame):
                _emit("in", t=item.timestamp)
            yield item

    write = SipChannel.write

    async def probed_write(self: SipChannel, pcm: np.ndarray) -> None:
        _emit("wr", n=int(pcm.size), peak=int(np.abs(pcm.astype(np.int32)).max()) if pcm.size else 0)
        await write(self, pcm)

    tick = RtpSender.tick

    def probed_tick(self: RtpSender, deadline: float) -> None:
        queued, sent = self._out_samples, self.packets_sent
        tick(self, deadline)
        if self.packets_sent != sent:
            _emit("tx", seq=(self._seq - 1) & 0xFFFF, ts=self.last_sent_ts, audio=queued > 0)

    RtpReceiver.receive = probed_receive  # type: ignore[method-assign]  # a run-time probe, by design
    JitterBuffer._next_chunk = probed_next_chunk  # type: ignore[method-assign]  # a run-time probe, by design
    SipChannel.inbound = probed_inbound  # type: ignore[method-assign]  # a run-time probe, by design
    SipChannel.write = probed_write  # type: ignore[method-assign]  # a run-time probe, by design
    RtpSender.tick = probed_tick  # type: ignore[method-assign]  # a run-time probe, by design


if __name__ == "__main__":
    install()
    from parley.cli.main import main

    sys.argv[0] = "parley"
    main()
