"""Symmetric RTP (RFC 4961 in spirit): send media where the peer's media really comes from.

    latch = SourceLatch()
    latch.set_sdp(("203.0.113.5", 40000))            # from the peer's SDP; None: no address (hold)
    latch.accept(addr, ssrc, seq, now) -> bool       # one valid packet; False: drop it (a foreign source)
    latch.remote, latch.latched, latch.sdp

A pure decision with time passed in. The first accepted packet latches `remote` onto its source
address. While latched, packets from another address are refused, until the latched source has been
silent for `RELATCH_AFTER` s and the new one has sent `RELATCH_PACKETS` packets in sequence (same SSRC,
consecutive sequence numbers; the one that completes the run is accepted and moves `remote`). A
different SDP address (re-INVITE moving the media) resets the latch; the same address again keeps it.
"""

from __future__ import annotations

__all__ = ["RELATCH_AFTER", "RELATCH_PACKETS", "SourceLatch"]

Address = tuple[str, int]

RELATCH_AFTER = 1.0  # seconds the latched source must be silent before another may take over
RELATCH_PACKETS = 3  # packets in sequence a new source must send to take over


class SourceLatch:
    """Where media goes: the SDP address until a packet arrives, then the latched source."""

    def __init__(self) -> None:
        self.sdp: Address | None = None
        self.remote: Address | None = None
        self.latched = False
        self._last_at = 0.0  # arrival of the latest packet from the latched source
        self._candidate: tuple[Address, int, int, int] | None = None  # addr, ssrc, last seq, packets

    def set_sdp(self, addr: Address | None) -> bool:
        """The peer's SDP address; True when it moved the media (latching starts over)."""
        if addr == self.sdp and addr is not None:
            return False  # the same address again (re-INVITE for hold/resume): keep the latched source
        self.sdp = self.remote = addr
        self.latched = False
        self._candidate = None
        return True

    def accept(self, addr: Address, ssrc: int, seq: int, now: float) -> bool:
        """Whether a valid packet from `addr` is taken, latching onto `addr` when that is due."""
        if self.latched:
            if addr == self.remote:
                self._last_at = now
                return True
            if now - self._last_at < RELATCH_AFTER:
                return False  # someone else while the latched peer is still talking
            cand = self._candidate
            if cand is not None and cand[0] == addr and cand[1] == ssrc and cand[2] == (seq - 1) & 0xFFFF:
                self._candidate = (addr, ssrc, seq, cand[3] + 1)
            else:
                self._candidate = (addr, ssrc, seq, 1)
            if self._candidate[3] < RELATCH_PACKETS:
                return False
        self._candidate = None
        self.remote = addr
        self.latched = True
        self._last_at = now
        return True
