"""Fixtures for SIP tests: a started `SipEndpoint` on a free port, audio helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from parley.sip.endpoint import SipEndpoint


@pytest.fixture
async def endpoint_factory() -> AsyncIterator[Callable[..., Awaitable[SipEndpoint]]]:
    """`await make(**kwargs)` -> a started SipEndpoint on 127.0.0.1 and an OS-chosen port."""
    made: list[SipEndpoint] = []

    async def make(**kwargs: Any) -> SipEndpoint:
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
        ep = SipEndpoint(**kwargs)
        await ep.start()
        made.append(ep)
        return ep

    yield make
    for ep in made:
        await ep.close()


@pytest.fixture
async def endpoint(endpoint_factory: Callable[..., Awaitable[SipEndpoint]]) -> SipEndpoint:
    return await endpoint_factory()


def tone(freq: float, seconds: float, rate: int = 8000, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def dominant_frequency(pcm: np.ndarray, rate: int = 8000) -> float:
    """The strongest frequency in `pcm` (Hann-windowed FFT)."""
    x = pcm.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spectrum[:5] = 0  # ignore DC
    return float(np.argmax(spectrum) * rate / len(x))


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0
