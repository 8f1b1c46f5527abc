"""G.711 μ-law and A-law (ITU-T G.711) with numpy lookup tables.

The tables are built once at import with the classic Sun/CCITT reference algorithm, the same one
CPython's `audioop` uses, so `ulaw_encode`/`alaw_encode`/`*_decode` give byte-for-byte the results of
`audioop.lin2ulaw`, `lin2alaw`, `ulaw2lin` and `alaw2lin` (width 2) on every input. Encoding is one
table lookup per sample on the int16 bit pattern (a 64 KiB table per law); decoding indexes a
256-entry table.

    ulaw_encode(pcm: np.ndarray[int16]) -> bytes      ulaw_decode(data: bytes) -> np.ndarray[int16]
    alaw_encode(pcm: np.ndarray[int16]) -> bytes      alaw_decode(data: bytes) -> np.ndarray[int16]
"""

from __future__ import annotations

import numpy as np

__all__ = ["alaw_decode", "alaw_encode", "ulaw_decode", "ulaw_encode"]

_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_AEND = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
_BIAS = 0x84
_CLIP = 8159


def _segment(magnitude: np.ndarray, seg_end: np.ndarray) -> np.ndarray:
    """Index of the first segment end >= magnitude (8 when above all of them)."""
    return np.searchsorted(seg_end, magnitude, side="left").astype(np.int32)


def _build_ulaw_encode() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 14-bit input, as audioop does
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _CLIP) + (_BIAS >> 2)
    seg = _segment(mag, _SEG_UEND)
    uval = (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F ^ mask, uval ^ mask).astype(np.uint8)
    return _by_bit_pattern(code)


def _build_alaw_encode() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3  # 13-bit input
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = _segment(mag, _SEG_AEND)
    s = np.minimum(seg, 7)
    quant = np.where(s < 2, (mag >> 1) & 0xF, (mag >> np.maximum(s, 1)) & 0xF)
    aval = (s << 4) | quant
    code = np.where(seg >= 8, 0x7F ^ mask, aval ^ mask).astype(np.uint8)
    return _by_bit_pattern(code)


def _by_bit_pattern(code_by_value: np.ndarray) -> np.ndarray:
    """Re-index a table built for values -32768..32767 by the uint16 bit pattern of the sample."""
    return np.roll(code_by_value, -32768)


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENC = _build_ulaw_encode()
_ALAW_ENC = _build_alaw_encode()
_ULAW_DEC = _build_ulaw_decode()
_ALAW_DEC = _build_alaw_decode()


def _pcm_bits(pcm: np.ndarray) -> np.ndarray:
    arr = np.asarray(pcm)
    if arr.dtype != np.int16:
        raise ValueError(f"G.711 encodes int16 PCM, got dtype {arr.dtype}")
    return arr.reshape(-1).view(np.uint16)


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 PCM -> μ-law bytes (one byte per sample)."""
    return _ULAW_ENC[_pcm_bits(pcm)].tobytes()


def alaw_encode(pcm: np.ndarray) -> bytes:
    """int16 PCM -> A-law bytes (one byte per sample)."""
    return _ALAW_ENC[_pcm_bits(pcm)].tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """μ-law bytes -> int16 PCM."""
    return _ULAW_DEC[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """A-law bytes -> int16 PCM."""
    return _ALAW_DEC[np.frombuffer(data, dtype=np.uint8)]
