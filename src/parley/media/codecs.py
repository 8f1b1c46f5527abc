"""RTP audio codecs: one small interface, a registry by name.

    codec = get_codec("pcmu")          # case-insensitive; KeyError names the known codecs
    codec.name, codec.payload_type, codec.clock_rate, codec.sample_rate, codec.channels
    payload = codec.encode(pcm)        # int16 mono numpy at codec.sample_rate -> bytes
    pcm = codec.decode(payload)        # bytes -> int16 mono numpy at codec.sample_rate
    codec.samples_per_frame(20)        # audio samples in 20 ms (160 for G.711, 320 for G.722)
    codec.timestamp_step(20)           # RTP timestamp units in 20 ms (160 for all three)
    codec.new()                        # an instance with fresh state (encode/decode state of G.722)

`CODECS` maps the upper-case name to a prototype: PCMU (static PT 0), PCMA (PT 8) and G722 (PT 9,
via the `G722` package, libg722). `clock_rate` is the RTP clock, `sample_rate` the audio rate:
they differ only for G.722, whose RTP clock is 8000 Hz by RFC 3551 while its audio is 16 kHz.
G.711 is stateless; a G.722 codec keeps separate encoder and decoder state, so each RTP session
takes its own `codec.new()` (RtpSession does this itself).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from parley.media import g711

__all__ = ["CODECS", "Codec", "G722Codec", "PcmaCodec", "PcmuCodec", "get_codec"]


class Codec(Protocol):
    """An RTP audio codec (mono)."""

    name: str
    payload_type: int
    clock_rate: int
    sample_rate: int
    channels: int

    def encode(self, pcm: np.ndarray) -> bytes:
        """int16 PCM at `sample_rate` -> RTP payload."""
        ...

    def decode(self, payload: bytes) -> np.ndarray:
        """RTP payload -> int16 PCM at `sample_rate`."""
        ...

    def samples_per_frame(self, ptime_ms: int = 20) -> int:
        """Audio samples in one frame of `ptime_ms`."""
        ...

    def timestamp_step(self, ptime_ms: int = 20) -> int:
        """RTP timestamp increment for one frame of `ptime_ms`."""
        ...

    def new(self) -> Codec:
        """A codec of the same kind with fresh coder state."""
        ...


class _BaseCodec:
    name = ""
    payload_type = -1
    clock_rate = 8000
    sample_rate = 8000
    channels = 1

    def samples_per_frame(self, ptime_ms: int = 20) -> int:
        return self.sample_rate * ptime_ms // 1000

    def timestamp_step(self, ptime_ms: int = 20) -> int:
        return self.clock_rate * ptime_ms // 1000

    def new(self) -> Codec:
        # G.711 coders keep no state: one shared object serves every call. _BaseCodec is not declared a
        # Codec (a Protocol with more members than this base implements), hence the ignore.
        return self  # type: ignore[return-value]  # see above

    def __repr__(self) -> str:
        return f"<Codec {self.name} pt={self.payload_type} {self.clock_rate}/{self.sample_rate}Hz>"


class PcmuCodec(_BaseCodec):
    """G.711 μ-law, static payload type 0."""

    name = "PCMU"
    payload_type = 0

    def encode(self, pcm: np.ndarray) -> bytes:
        return g711.ulaw_encode(pcm)

    def decode(self, payload: bytes) -> np.ndarray:
        return g711.ulaw_decode(payload)


class PcmaCodec(_BaseCodec):
    """G.711 A-law, static payload type 8."""

    name = "PCMA"
    payload_type = 8

    def encode(self, pcm: np.ndarray) -> bytes:
        return g711.alaw_encode(pcm)

    def decode(self, payload: bytes) -> np.ndarray:
        return g711.alaw_decode(payload)


class G722Codec(_BaseCodec):
    """G.722 at 64 kbit/s, static payload type 9: 16 kHz audio, 8 kHz RTP clock (RFC 3551 §4.5.2)."""

    name = "G722"
    payload_type = 9
    clock_rate = 8000
    sample_rate = 16000

    def __init__(self) -> None:
        import G722  # libg722; imported here so G.711-only users never load it

        self._enc = G722.G722(16000, 64000)
        self._dec = G722.G722(16000, 64000)

    def encode(self, pcm: np.ndarray) -> bytes:
        arr = np.asarray(pcm)
        if arr.dtype != np.int16:
            raise ValueError(f"G.722 encodes int16 PCM, got dtype {arr.dtype}")
        if len(arr) % 2:
            raise ValueError("G.722 encodes an even number of samples (two per byte)")
        return bytes(self._enc.encode(np.ascontiguousarray(arr)))

    def decode(self, payload: bytes) -> np.ndarray:
        return np.frombuffer(self._dec.decode(bytes(payload)), dtype=np.int16).copy()

    def new(self) -> Codec:
        return G722Codec()


def _g722_available() -> bool:
    try:
        import G722  # noqa: F401
    except ImportError:
        return False
    return True


CODECS: dict[str, Codec] = {"PCMU": PcmuCodec(), "PCMA": PcmaCodec()}
if _g722_available():
    CODECS["G722"] = G722Codec()


def get_codec(name: str) -> Codec:
    """The codec called `name` (case-insensitive, fresh state); KeyError listing the known names."""
    key = name.strip().upper().replace(".", "").replace("-", "")
    try:
        return CODECS[key].new()
    except KeyError:
        raise KeyError(f"unknown codec {name!r}; known: {', '.join(CODECS)}") from None
