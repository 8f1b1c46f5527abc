"""The pure parts of signalling: offer checks in words, ICE servers and the 1:1 NAT candidates."""

from __future__ import annotations

from parley.settings import Settings
from parley.webrtc.ice import add_public_candidates, ice_servers, local_addresses, validate_ice_settings
from parley.webrtc.sdp import check_offer

OFFER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=sendrecv",
    "a=rtpmap:111 opus/48000/2", "a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdefghijkl",
    "a=fingerprint:sha-256 AA:BB", "a=setup:actpass", "",
])


def test_a_plain_audio_offer_passes() -> None:
    assert check_offer(OFFER) is None


def test_each_problem_is_named() -> None:
    cases = {
        "": "empty",
        "hello": "'v=0'",
        OFFER.replace("m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video 9 UDP/TLS/RTP/SAVPF 96"): "no audio m-line",
        OFFER.replace("m=audio 9 ", "m=audio 0 "): "port 0",
        OFFER.replace("a=sendrecv", "a=inactive"): "inactive",
        OFFER.replace("a=sendrecv", "a=recvonly"): "microphone",
        OFFER.replace("opus/48000/2", "PCMU/8000"): "Opus",
        OFFER.replace("a=ice-ufrag:abcd\r\n", ""): "a=ice-ufrag",
        OFFER.replace("a=fingerprint:sha-256 AA:BB\r\n", ""): "fingerprint",
        OFFER.replace("m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=audio x"): "malformed audio m-line",
        OFFER + "garbage\r\n": "not '<type>=<value>'",
        "v=0\r\n" + "a=x\r\n" * 20000: "larger than",
    }
    for sdp, words in cases.items():
        problem = check_offer(sdp)
        assert problem is not None and words in problem.message, (words, problem)


def _settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg, arg-type]


def test_ice_settings_default_to_nothing_outside_the_machine() -> None:
    s = _settings()
    assert ice_servers(s) == []
    assert local_addresses(s)[0] == "127.0.0.1"
    assert local_addresses(_settings(webrtc_ice_addresses="10.0.0.5, 127.0.0.1")) == ["10.0.0.5", "127.0.0.1"]
    assert validate_ice_settings(s) == []


def test_stun_and_turn_servers_and_bad_values() -> None:
    s = _settings(webrtc_ice_servers="stun:stun.example.org:3478,turn:turn.example.org:3478?transport=tcp",
                  webrtc_turn_username="u", webrtc_turn_password="p")
    stun, turn = ice_servers(s)
    assert stun.urls == "stun:stun.example.org:3478" and stun.username is None
    assert turn.username == "u" and turn.credential == "p"
    bad = validate_ice_settings(_settings(webrtc_ice_servers="http://x", webrtc_public_address="my-host",
                                          webrtc_ice_addresses="lo0"))
    assert len(bad) == 3 and any("WEBRTC_PUBLIC_ADDRESS" in b for b in bad)


def test_a_public_address_is_offered_next_to_each_private_host_candidate() -> None:
    sdp = "\r\n".join(["m=audio 5000 UDP/TLS/RTP/SAVPF 111",
                       "a=candidate:abc 1 udp 2130706431 10.0.0.5 5000 typ host",
                       "a=candidate:def 1 udp 2130706431 127.0.0.1 5001 typ host", ""])
    out = add_public_candidates(sdp, "203.0.113.7")
    assert "a=candidate:abcn 1 udp 2130706175 203.0.113.7 5000 typ srflx raddr 10.0.0.5 rport 5000" in out
    assert out.count("203.0.113.7") == 1  # not for loopback
    assert add_public_candidates(sdp, "") == sdp
