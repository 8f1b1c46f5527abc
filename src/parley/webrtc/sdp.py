"""Checks on a browser's SDP offer before it reaches the WebRTC stack: pure, with the reason in words.

aiortc raises bare `ValueError`s (or worse) on odd input; these checks turn the usual mistakes — not an
SDP at all, no audio m-line, audio rejected (port 0), inactive or receive-only (no microphone), no Opus, no ICE
credentials or DTLS fingerprint — into one sentence naming what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Largest offer accepted (a browser's audio + data channel offer is 2–6 kB).
MAX_SDP_BYTES = 64 * 1024


@dataclass(frozen=True)
class OfferProblem:
    """Why an offer cannot be answered."""

    message: str


def check_offer(sdp: str) -> OfferProblem | None:
    """None when `sdp` looks like an answerable audio offer, else the problem."""
    if not sdp.strip():
        return OfferProblem("is empty: send the browser's RTCPeerConnection offer (localDescription.sdp)")
    if len(sdp.encode()) > MAX_SDP_BYTES:
        return OfferProblem(f"is larger than {MAX_SDP_BYTES // 1024} kB")
    lines = [line.strip() for line in sdp.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines[0].startswith("v=0"):
        return OfferProblem("is not an SDP session description (it must start with 'v=0')")
    if any(len(line) < 2 or line[1] != "=" for line in lines):
        bad = next(line for line in lines if len(line) < 2 or line[1] != "=")
        return OfferProblem(f"has a line that is not '<type>=<value>': {bad[:60]!r}")
    sections = _media_sections(lines)
    audio = [s for s in sections if s[0].startswith("m=audio ")]
    if not audio:
        kinds = ", ".join(s[0].split()[0][2:] for s in sections) or "none"
        return OfferProblem(f"has no audio m-line (media sections: {kinds}); the page must add a microphone "
                            "track or an audio transceiver before creating the offer")
    m = audio[0]
    fields = m[0].split()
    if len(fields) < 4 or not fields[1].isdigit():
        return OfferProblem(f"has a malformed audio m-line: {m[0][:80]!r}")
    if fields[1] == "0":
        return OfferProblem("rejects audio (the audio m-line has port 0)")
    session = lines[: lines.index(sections[0][0])] if sections else lines
    if "a=inactive" in m:
        return OfferProblem("has the audio m-line inactive")
    if "a=recvonly" in m:
        return OfferProblem("only receives audio (a=recvonly): the page must send its microphone "
                            "(addTrack) — the call runs on the caller's audio")
    if not any(line.lower().startswith("a=rtpmap:") and "opus/48000" in line.lower() for line in m):
        return OfferProblem("offers no Opus (a=rtpmap:<pt> opus/48000/2) on the audio m-line")
    for attr, what in (("a=ice-ufrag:", "ICE credentials (a=ice-ufrag)"),
                       ("a=fingerprint:", "a DTLS fingerprint (a=fingerprint)")):
        if not any(line.startswith(attr) for line in (*session, *m)):
            return OfferProblem(f"has no {what}; WebRTC needs ICE and DTLS-SRTP")
    return None


def _media_sections(lines: list[str]) -> list[list[str]]:
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
    return sections
