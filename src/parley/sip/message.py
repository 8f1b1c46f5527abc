"""SIP messages (RFC 3261 §7, §20, §25): parse and serialise requests and responses.

Header names are normalised (compact forms expanded, canonical case), repeated and comma-joined
list headers are both understood, Content-Length is checked, and size limits bound the work one
datagram or stream frame can cause. Anything that does not parse raises `SipParseError`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from parley.sip.errors import SipParseError
from parley.sip.uri import NameAddr, SipUri, Via

MAX_MESSAGE_BYTES = 65535
MAX_HEADERS = 200
MAX_HEADER_LINE = 8192

COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
    "r": "Refer-To", "b": "Referred-By", "o": "Event", "u": "Allow-Events", "x": "Session-Expires",
}
_CANONICAL = {
    n.lower(): n
    for n in (
        "Call-ID", "CSeq", "WWW-Authenticate", "Proxy-Authenticate", "Proxy-Authorization",
        "Authorization", "Authentication-Info", "MIME-Version", "Max-Forwards", "Record-Route",
        "Content-Length", "Content-Type", "User-Agent", "P-Asserted-Identity", "Min-SE",
        "RSeq", "RAck", "Refer-To", "Referred-By", "Allow-Events", "Session-Expires",
        "Subscription-State", "Alert-Info", "Call-Info", "Error-Info", "In-Reply-To",
        "Reply-To", "Min-Expires", "Retry-After", "Unsupported", "Proxy-Require",
    )
}
#: Headers whose values are comma-separated lists (RFC 3261 §7.3.1); others keep commas.
LIST_HEADERS = frozenset(
    {"via", "route", "record-route", "contact", "allow", "supported", "require", "proxy-require",
     "unsupported", "accept", "accept-encoding", "accept-language", "allow-events", "content-encoding"}
)

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) ([^\x00-\x20\x7f]+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9]{2})(?: (.*))?$")
_ASCII_DIGITS = re.compile(r"[0-9]{1,10}")
#: Headers that may appear at most once (RFC 3261 §20; RFC 4475 multi01, mcl01).
SINGLE_HEADERS = ("Call-ID", "CSeq", "From", "To", "Content-Length", "Max-Forwards", "Content-Type",
                  "Expires", "Date")
_DATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$"
)


def request_line_version(line: str) -> str | None:
    """The SIP version of a request-looking line (a method token, words, `SIP/x.y` last), else None.
    Split, not a regex: a backtracking pattern over runs of blanks would be quadratic or worse."""
    parts = line.split()
    if len(parts) >= 2 and _TOKEN.match(parts[0]) and parts[-1].startswith("SIP/"):
        return parts[-1][4:]
    return None


def ascii_int(text: str, what: str, maximum: int = 2**31 - 1) -> int:
    """A non-negative integer written in ASCII digits only (`int()` also takes '²' or '٣'), at most
    `maximum`; anything else is a `SipParseError` naming `what`."""
    text = text.strip()
    if not _ASCII_DIGITS.fullmatch(text):
        raise SipParseError(f"bad {what} {text[:20]!r}")
    value = int(text)
    if value > maximum:
        raise SipParseError(f"{what} too large")
    return value


@lru_cache(maxsize=1024)
def canonical_name(name: str) -> str:
    """`v` -> `Via`, `call-id` -> `Call-ID`, `x-foo-bar` -> `X-Foo-Bar`."""
    low = name.lower()
    if low in COMPACT:
        return COMPACT[low]
    if low in _CANONICAL:
        return _CANONICAL[low]
    return "-".join(p[:1].upper() + p[1:] for p in low.split("-"))


def split_list(value: str) -> list[str]:
    """Split a list header value on commas outside quotes and <>."""
    if '"' not in value and "<" not in value:  # the common case, without a character loop
        return [p for p in (part.strip() for part in value.split(",")) if p]
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return [v for v in out if v]


class Headers:
    """Ordered, case-insensitive multi-map of header lines."""

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in (items or [])]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: str) -> bool:
        key = canonical_name(name)
        return any(n == key for n, _ in self._items)

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical_name(name)
        for n, v in self._items:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value, with list headers split at top-level commas."""
        key = canonical_name(name)
        values = [v for n, v in self._items if n == key]
        if key.lower() in LIST_HEADERS:
            return [part for v in values for part in split_list(v)]
        return values

    def add(self, name: str, value: str, first: bool = False) -> None:
        item = (canonical_name(name), str(value))
        if first:
            self._items.insert(0, item)
        else:
            self._items.append(item)

    def set(self, name: str, value: str) -> None:
        key = canonical_name(name)
        for i, (n, _) in enumerate(self._items):
            if n == key:
                self._items[i] = (key, str(value))
                self._items = [it for j, it in enumerate(self._items) if j <= i or it[0] != key]
                return
        self._items.append((key, str(value)))

    def replace_first(self, name: str, value: str) -> None:
        """Replace the first value of a list header (e.g. the top Via), keeping the others."""
        key = canonical_name(name)
        for i, (n, v) in enumerate(self._items):
            if n == key:
                parts = split_list(v)
                self._items[i] = (key, ", ".join([value, *parts[1:]]))
                return
        self._items.append((key, value))

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._items = [it for it in self._items if it[0] != key]

    def copy(self) -> "Headers":
        h = Headers()
        h._items = list(self._items)
        return h


@dataclass
class SipMessage(ABC):
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    # typed accessors -----------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.headers.get("CSeq") or ""
        num, _, method = value.strip().partition(" ")
        method = method.strip()
        if not _TOKEN.match(method):
            raise SipParseError(f"bad CSeq {value[:40]!r}")
        return ascii_int(num, "CSeq"), method

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise SipParseError("missing Via")
        return Via.parse(values[0])

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self._required("From"))

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self._required("To"))

    @property
    def contact(self) -> NameAddr | None:
        values = self.headers.get_all("Contact")
        if not values or values[0].strip() == "*":
            return None
        return NameAddr.parse(values[0])

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name}")
        return value

    def validate(self) -> None:
        """Check the mandatory headers of RFC 3261 §8.1.1 so handlers can trust the accessors."""
        if not self.call_id:
            raise SipParseError("missing Call-ID")
        seen: set[str] = set()
        for n, _ in self.headers:
            if n in SINGLE_HEADERS:
                if n in seen:
                    raise SipParseError(f"more than one {n}")
                seen.add(n)
        self.cseq
        self.from_
        self.to
        if not self.headers.get_all("Via"):
            raise SipParseError("missing Via")
        for value in self.headers.get_all("Via"):
            Via.parse(value)
        for value in self.headers.get_all("Contact"):
            if value.strip() != "*":
                NameAddr.parse(value)
        for name in ("Max-Forwards", "Expires"):
            number = self.headers.get(name)
            if number is not None:
                ascii_int(number, name, 2**32 - 1 if name == "Expires" else 255)
        date = self.headers.get("Date")
        if date is not None and not _DATE.match(date.strip()):
            raise SipParseError("bad Date (RFC 1123, GMT only)")

    # serialise -----------------------------------------------------------------------------
    @abstractmethod
    def start_line(self) -> str:
        """The request line or status line."""

    def to_bytes(self) -> bytes:
        lines = [self.start_line()]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass
class SipRequest(SipMessage):
    method: str = "OPTIONS"
    uri: str = "sip:invalid"

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def validate(self) -> None:
        """As for any message, and the CSeq method must be the request's (RFC 4475 mismatch01)."""
        super().validate()
        if self.cseq[1] != self.method:
            raise SipParseError(f"CSeq method {self.cseq[1][:20]!r} is not the request method")

    @property
    def request_uri(self) -> SipUri:
        return SipUri.parse(self.uri)

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri} call-id={self.call_id}>"


@dataclass
class SipResponse(SipMessage):
    status: int = 200
    reason: str = "OK"

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason} call-id={self.call_id}>"


def header_end(data: bytes | bytearray) -> int:
    """Index just past the blank line that ends the headers, or -1 if not yet complete."""
    idx = data.find(b"\r\n\r\n")
    if idx >= 0:
        return idx + 4
    idx = data.find(b"\n\n")
    return idx + 2 if idx >= 0 else -1


def content_length_of(head: bytes) -> int | None:
    """Content-Length from raw header bytes (for stream framing), None if absent."""
    m = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([0-9]{1,9})[ \t]*\r?$", head)
    return int(m.group(1)) if m else None


def parse_message(data: bytes, stream: bool = False) -> SipRequest | SipResponse:
    """Parse one message. On a stream transport Content-Length is mandatory (RFC 3261 §18.3)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("message too large")
    # leading CRLFs (keep-alives) are allowed before a message
    data = data.lstrip(b"\r\n")
    end = header_end(data)
    if end < 0:
        raise SipParseError("no blank line after headers")
    try:
        head = data[:end].decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("headers are not UTF-8") from None
    body = data[end:]
    raw_lines = head.replace("\r\n", "\n").split("\n")
    while raw_lines and raw_lines[-1] == "":
        raw_lines.pop()
    if not raw_lines:
        raise SipParseError("empty message")
    first, header_lines = raw_lines[0], raw_lines[1:]
    if len(first) > MAX_HEADER_LINE:
        raise SipParseError("start line too long")

    items: list[tuple[str, str]] = []
    for line in header_lines:
        if len(line) > MAX_HEADER_LINE:
            raise SipParseError("header line too long")
        if line[:1] in (" ", "\t"):
            if not items:
                raise SipParseError("continuation line before any header")
            name, value = items[-1]
            items[-1] = (name, value + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.match(name):
            raise SipParseError(f"bad header line {line[:60]!r}")
        items.append((name, value.strip()))
        if len(items) > MAX_HEADERS:
            raise SipParseError("too many headers")
    headers = Headers(items)

    declared_all = [v for n, v in headers if n == "Content-Length"]
    if len(declared_all) > 1:
        raise SipParseError("more than one Content-Length")
    declared = declared_all[0] if declared_all else None
    if declared is not None:
        length = ascii_int(declared, "Content-Length")
        if length > len(body):
            raise SipParseError("body shorter than Content-Length")
        body = body[:length]
    elif stream:
        raise SipParseError("missing Content-Length on a stream transport")

    m = _REQUEST_LINE.match(first)
    if m:
        # methods are case-sensitive tokens (RFC 3261 §7.1; RFC 4475 intmeth): unknown ones get 405/501
        msg: SipRequest | SipResponse = SipRequest(headers=headers, body=bytes(body), method=m.group(1), uri=m.group(2))
        uri = SipUri.parse(m.group(2))
        if uri.headers is not None:
            raise SipParseError("escaped headers in the Request-URI")  # RFC 4475 escruri
        return msg
    m = _STATUS_LINE.match(first)
    if m:
        return SipResponse(headers=headers, body=bytes(body), status=int(m.group(1)), reason=m.group(2) or "")
    version = request_line_version(first)
    if version is not None and version != "2.0" and re.fullmatch(r"[0-9]{1,3}\.[0-9]{1,3}", version):
        raise SipParseError(f"SIP version {version} not supported", status=505)
    raise SipParseError(f"bad start line {first[:60]!r}")


REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    200: "OK", 202: "Accepted", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Timeout", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


def make_response(
    request: SipRequest, status: int, reason: str | None = None, to_tag: str | None = None,
    body: bytes = b"", content_type: str | None = None, extra: dict[str, str] | None = None,
) -> SipResponse:
    """A response copying Via, From, To (adding `to_tag` if To has none), Call-ID, CSeq (§8.2.6)."""
    headers = Headers()
    for name, value in request.headers:
        if name in ("Via", "From", "Call-ID", "CSeq"):
            headers.add(name, value)
        elif name == "To":
            if to_tag and ";tag=" not in value.replace(" ", "").lower():
                value = f"{value};tag={to_tag}"
            headers.add(name, value)
        elif name == "Record-Route" and 100 < status < 300:
            headers.add(name, value)
    for name, value in (extra or {}).items():
        headers.add(name, value)
    if body:
        headers.set("Content-Type", content_type or "application/sdp")
    return SipResponse(headers=headers, body=body, status=status, reason=reason or REASONS.get(status, ""))
