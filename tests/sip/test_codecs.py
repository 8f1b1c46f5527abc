"""G.711 against CPython's audioop on every input; the codec registry; G.722 through libg722."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from parley.media import g711
from parley.media.codecs import CODECS, get_codec

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the reference implementation (deprecated, still in 3.11/3.12)

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def test_ulaw_encode_equals_audioop_on_all_65536_samples() -> None:
    assert g711.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)


def test_alaw_encode_equals_audioop_on_all_65536_samples() -> None:
    assert g711.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)


def test_ulaw_and_alaw_decode_equal_audioop_on_all_256_codes() -> None:
    assert g711.ulaw_decode(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)
    assert g711.alaw_decode(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_g711_decode_of_encode_is_idempotent_for_every_code() -> None:
    for enc, dec in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        levels = dec(ALL_CODES)
        assert dec(enc(levels)).tolist() == levels.tolist()


def test_g711_rejects_non_int16_input() -> None:
    with pytest.raises(ValueError, match="int16"):
        g711.ulaw_encode(np.zeros(160, dtype=np.float32))


def test_registry_names_payload_types_and_rates() -> None:
    assert {name: c.payload_type for name, c in CODECS.items()} == {"PCMU": 0, "PCMA": 8, "G722": 9}
    g722 = get_codec("g722")
    assert (g722.clock_rate, g722.sample_rate) == (8000, 16000)  # RFC 3551: 8 kHz RTP clock, 16 kHz audio
    assert (g722.samples_per_frame(20), g722.timestamp_step(20)) == (320, 160)
    pcmu = get_codec("pcmu")
    assert (pcmu.samples_per_frame(20), pcmu.timestamp_step(20), pcmu.samples_per_frame(30)) == (
        160,
        160,
        240,
    )


def test_get_codec_is_case_insensitive_and_names_known_codecs_on_error() -> None:
    assert get_codec("PcMa").name == "PCMA"
    with pytest.raises(KeyError, match="PCMU, PCMA, G722"):
        get_codec("opus")


def test_pcmu_codec_round_trip_keeps_a_tone_within_g711_error() -> None:
    t = np.arange(1600) / 8000
    pcm = (10000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    for name in ("PCMU", "PCMA"):
        codec = get_codec(name)
        payload = codec.encode(pcm)
        assert len(payload) == len(pcm)
        out = codec.decode(payload)
        assert out.dtype == np.int16
        assert np.max(np.abs(out.astype(int) - pcm)) < 10000 * 0.04  # G.711 step size near the peak


def test_g722_carries_a_wideband_tone() -> None:
    """A 5 kHz tone (above the 4 kHz a G.711 call can carry) survives G.722 in 20 ms packets."""
    codec = get_codec("G722")
    t = np.arange(16000) / 16000
    pcm = (8000 * np.sin(2 * np.pi * 5000 * t)).astype(np.int16)
    payloads = [codec.encode(pcm[i : i + 320]) for i in range(0, len(pcm), 320)]
    assert {len(p) for p in payloads} == {160}  # 64 kbit/s: 160 octets per 20 ms
    decoder = get_codec("G722")  # a fresh instance: separate state, as the far end would have
    out = np.concatenate([decoder.decode(p) for p in payloads])
    assert len(out) == len(pcm) and out.dtype == np.int16
    tail = out[4000:].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(tail * np.hanning(len(tail))))
    assert abs(np.argmax(spectrum) * 16000 / len(tail) - 5000) < 10
    rms_in = np.sqrt(np.mean(pcm[4000:].astype(np.float64) ** 2))
    rms_out = np.sqrt(np.mean(tail**2))
    assert 0.8 < rms_out / rms_in < 1.2


def test_g722_instances_do_not_share_state() -> None:
    a, b = get_codec("G722"), get_codec("G722")
    noise = np.random.default_rng(1).integers(-20000, 20000, 320).astype(np.int16)
    a.encode(noise)  # moves a's encoder state
    silence = np.zeros(320, dtype=np.int16)
    assert b.encode(silence) == get_codec("G722").encode(silence)
