"""The SIP parser: grammar cases from RFC 3261/4475 and Hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley.sip.errors import SipParseError
from parley.sip.message import SipRequest, SipResponse, parse_message
from parley.sip.sdp import SessionDescription, build_answer, build_offer, negotiate
from parley.sip.uri import NameAddr, SipUri

COMPACT_INVITE = (
    b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n"
    b"v:  SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK-1;rport\r\n"
    b"v: SIP/2.0/TCP 192.0.2.3;branch=z9hG4bK-2, SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK-3\r\n"
    b"f: \"J \\\"Rosenberg\\\"\" <sip:jdrosen@example.com>;tag=98asjd8\r\n"
    b"t: <sip:vivekg@chair-dnrc.example.com>\r\n"
    b"i: 0ha0isndaksdj@192.0.2.1\r\n"
    b"CSeq: 8\r\n  INVITE\r\n"
    b"m: <sip:jdrosen@192.0.2.2>;expires=60, sip:second@192.0.2.9\r\n"
    b"Record-Route: <sip:p1.example.com;lr>\r\n"
    b"Record-Route: <sip:p2.example.com;lr>,<sip:p3.example.com;lr>\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"v=0\r\nextra bytes after Content-Length are ignored on UDP"
)


def test_compact_forms_folding_and_list_headers() -> None:
    msg = parse_message(COMPACT_INVITE)
    assert isinstance(msg, SipRequest)
    msg.validate()
    assert msg.method == "INVITE" and msg.cseq == (8, "INVITE")
    assert [v.branch for v in msg.vias] == ["z9hG4bK-1", "z9hG4bK-2", "z9hG4bK-3"]
    assert msg.from_.display_name == 'J "Rosenberg"' and msg.from_.tag == "98asjd8"
    assert msg.contact is not None and msg.contact.params["expires"] == "60"
    assert msg.headers.get_all("Record-Route") == [
        "<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>", "<sip:p3.example.com;lr>"]
    assert msg.body == b"v=0\r"
    assert msg.request_uri.params == {"unknownparam": None}


@pytest.mark.parametrize("data, why", [
    (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 50\r\n\r\nshort", "body shorter"),
    (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n", "bad Content-Length"),
    (b"INVITE sip:a@b SIP/3.0\r\n\r\n", "SIP version 3.0 not supported"),
    (b"SIP/2.0 999 Odd\r\n\r\n", "bad start line"),  # status codes are 100-699
    (b"INVITE sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n", "bad header line"),
    (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1\r\n", "no blank line"),
    (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n", None),
])
def test_malformed_messages_raise_parse_errors(data: bytes, why: str | None) -> None:
    if why is None:
        msg = parse_message(data)
        with pytest.raises(SipParseError, match="missing"):
            msg.validate()  # no Call-ID, From, To, CSeq, Via
        with pytest.raises(SipParseError, match="Content-Length"):
            parse_message(data.replace(b"Content-Length: 0\r\n", b""), stream=True)
        return
    with pytest.raises(SipParseError, match=why):
        parse_message(data)


def test_uri_and_name_addr_forms() -> None:
    uri = SipUri.parse("sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=hi")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == ("sips", "alice", "pw", "[2001:db8::1]", 5061)
    assert uri.transport == "tcp" and "lr" in uri.params and uri.headers == "subject=hi"
    assert str(SipUri.parse(str(uri))) == str(uri)
    tel = SipUri.parse("tel:+1-555-0100;phone-context=example.com")
    assert tel.scheme == "tel" and tel.user == "+1-555-0100"
    plain = NameAddr.parse("sip:bob@example.com;tag=abc")
    assert plain.tag == "abc" and plain.uri.params == {}
    with pytest.raises(SipParseError):
        NameAddr.parse('"unterminated <sip:a@b>')


def test_sdp_offer_answer_picks_first_common_codec_and_mirrors_direction() -> None:
    offer = build_offer("192.0.2.1", 4000, ["PCMA", "PCMU"], direction="sendonly")
    parsed = SessionDescription.parse(offer.to_bytes())
    neg = negotiate(parsed, ["PCMU", "PCMA"])
    assert neg is not None and neg.codec == "PCMA" and neg.telephone_event_pt == 101
    assert neg.direction == "recvonly" and neg.remote == ("192.0.2.1", 4000)
    answer = SessionDescription.parse(build_answer(parsed, neg, "192.0.2.9", 5000).to_bytes())
    assert answer.audio() is not None and [f.name for f in answer.audio().formats] == ["PCMA", "telephone-event"]
    assert negotiate(parsed, ["G722"]) is None  # -> 488


# --- properties ---------------------------------------------------------------------------------

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~", min_size=1, max_size=12)
value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)


@st.composite
def messages(draw: st.DrawFn) -> SipRequest | SipResponse:
    headers = [
        ("Via", f"SIP/2.0/UDP 192.0.2.{draw(st.integers(1, 254))}:5060;branch=z9hG4bK{draw(token)}"),
        ("From", f"<sip:{draw(token)}@example.com>;tag={draw(token)}"),
        ("To", f"<sip:{draw(token)}@example.com>"),
        ("Call-ID", draw(value)),
    ]
    method = draw(st.sampled_from(["INVITE", "BYE", "OPTIONS", "FOO"]))
    headers.append(("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"))  # a request's CSeq names its method
    headers += draw(st.lists(st.tuples(token.map(lambda t: "X-" + t), value), max_size=5))
    body = draw(st.binary(max_size=200))
    if draw(st.booleans()):
        msg: SipRequest | SipResponse = SipRequest(method=method,
                                                   uri=f"sip:{draw(token)}@example.com:{draw(st.integers(1, 65535))}")
    else:
        msg = SipResponse(status=draw(st.integers(100, 699)), reason=draw(value))
    for name, v in headers:
        msg.headers.add(name, v)
    msg.body = body
    return msg


@given(messages())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_serialise_parse_round_trip(msg: SipRequest | SipResponse) -> None:
    data = msg.to_bytes()
    parsed = parse_message(data, stream=True)
    parsed.validate()
    assert parsed.to_bytes() == data
    assert parsed.body == msg.body
    assert list(parsed.headers) == [(n, v) for n, v in msg.headers] + [("Content-Length", str(len(msg.body)))]


@given(st.binary(max_size=600))
@settings(max_examples=300)
def test_any_bytes_parse_or_raise_our_error(data: bytes) -> None:
    try:
        msg = parse_message(data)
        msg.validate()
    except SipParseError:
        pass


@given(st.lists(st.sampled_from([
    b"INVITE sip:a@b SIP/2.0\r\n", b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n", b"v: SIP/2.0/TCP [::1]:5\r\n",
    b"From: <sip:a@b>;tag=1\r\n", b"To: \"x\" <sip:c@d>\r\n", b"Call-ID: 1\r\n", b"CSeq: 1 INVITE\r\n",
    b"Content-Length: 3\r\n", b"l: 99999\r\n", b"\r\n", b" folded\r\n", b"abc", b"m: <sip:a@b;lr>, *\r\n",
    b"SIP/2.0 200 OK\r\n", b"\xff\xfe", b"Route: <sip:[bad\r\n", b"f: sip:x@y;tag\r\n",
]), max_size=14))
@settings(max_examples=300)
def test_structured_garbage_parses_or_raises_our_error(parts: list[bytes]) -> None:
    data = b"".join(parts)
    try:
        msg = parse_message(data)
        msg.validate()
        msg.vias, msg.contact, msg.headers.get_all("Route")  # noqa: B018 - accessors must not crash either
    except SipParseError:
        pass
