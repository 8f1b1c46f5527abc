"""SIP and tel URIs (RFC 3261 §19.1, RFC 3966): parse, serialise, compare by parts."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from parley.sip.errors import SipParseError

_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(?::([0-9]{1,5}))?$")
_DISPLAY_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")


def parse_params(text: str) -> dict[str, str | None]:
    """`;a=1;b` -> {"a": "1", "b": None}. Names are lower-cased; values keep their case."""
    params: dict[str, str | None] = {}
    parts = text.split(";")
    if parts and not parts[0].strip():
        parts = parts[1:]  # the text usually starts with the first ';'
    for part in parts:
        part = part.strip()
        if not part:
            raise SipParseError("empty parameter")  # `;;` (RFC 4475 badinv01)
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not name:
            raise SipParseError("empty parameter name")
        params[name] = value.strip() if sep else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass
class SipUri:
    """A `sip:`/`sips:` URI, or any other scheme kept as opaque text in `user` (e.g. `tel:+1555`)."""

    scheme: str = "sip"
    user: str | None = None
    host: str = ""
    port: int | None = None
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None

    @classmethod
    def parse(cls, text: str) -> "SipUri":
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        if not sep or not scheme or not rest:
            raise SipParseError(f"bad URI {text[:80]!r}")
        scheme = scheme.lower()
        if not re.fullmatch(r"[a-z][a-z0-9+.\-]*", scheme):
            raise SipParseError(f"bad URI scheme {scheme[:20]!r}")
        if scheme not in ("sip", "sips"):
            number, _, ptext = rest.partition(";")
            return cls(scheme=scheme, user=number, params=parse_params(ptext) if ptext else {})
        # the user part may hold '?', ';' and ',' (RFC 4475 intmeth); '@' never appears unescaped after it
        userinfo, at, hostpart = rest.rpartition("@")
        hostpart, _, headers = hostpart.partition("?")
        user = password = None
        if at:
            if not userinfo:
                raise SipParseError("empty user part in URI")
            user, psep, pw = userinfo.partition(":")
            password = pw if psep else None
        hostport, _, ptext = hostpart.partition(";")
        m = _HOST_RE.match(hostport)
        if not m:
            raise SipParseError(f"bad host in URI {hostport[:80]!r}")
        port = int(m.group(2)) if m.group(2) else None
        if port is not None and not 0 < port < 65536:
            raise SipParseError(f"bad port {port}")
        return cls(
            scheme=scheme,
            user=user,
            host=m.group(1),
            port=port,
            password=password,
            params=parse_params(ptext) if ptext else {},
            headers=headers or None,
        )

    def __str__(self) -> str:
        if self.scheme not in ("sip", "sips"):
            return f"{self.scheme}:{self.user or ''}{format_params(self.params)}"
        out = f"{self.scheme}:"
        if self.user is not None:
            out += self.user
            if self.password is not None:
                out += ":" + self.password
            out += "@"
        out += self.host
        if self.port is not None:
            out += f":{self.port}"
        out += format_params(self.params)
        if self.headers:
            out += "?" + self.headers
        return out

    @property
    def transport(self) -> str:
        value = self.params.get("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def address(self) -> tuple[str, int]:
        """Where to send (host, port) when no DNS SRV is involved (RFC 3263 fallback)."""
        maddr = self.params.get("maddr")
        host = maddr or self.host
        return host.strip("[]"), self.port or (5061 if self.scheme == "sips" else 5060)

    def copy(self, **changes: Any) -> "SipUri":
        """A copy with the given fields replaced; `params` is copied, never shared with the original."""
        changes.setdefault("params", dict(self.params))
        return dataclasses.replace(self, **changes)


@dataclass
class NameAddr:
    """`"Display" <uri>;param=…` as in From, To, Contact, Route (RFC 3261 §20.10)."""

    uri: SipUri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "NameAddr":
        text = text.strip()
        display: str | None = None
        if "<" in text:
            before, _, after = text.partition("<")
            uri_text, close, tail = after.partition(">")
            if not close:
                raise SipParseError("unclosed '<' in address")
            if uri_text != uri_text.strip():
                raise SipParseError("whitespace inside <> (RFC 4475 badaspec)")
            before = before.strip()
            if before.startswith('"'):
                if len(before) < 2 or not before.endswith('"'):
                    raise SipParseError("bad quoted display name")
                display = re.sub(r"\\(.)", r"\1", before[1:-1])
            elif before:
                if not all(_DISPLAY_TOKEN.match(w) for w in before.split()):
                    raise SipParseError("unquoted display name with non-token characters")
                display = before
            tail = tail.strip()
            if tail and not tail.startswith(";"):
                raise SipParseError("garbage after address")
            return cls(SipUri.parse(uri_text), display, parse_params(tail) if tail else {})
        # addr-spec form: parameters after the URI belong to the header, not the URI
        uri_text, _, ptext = text.partition(";")
        if "?" in uri_text or "," in uri_text:
            raise SipParseError("addr-spec with '?' or ',' must use <>")
        return cls(SipUri.parse(uri_text), None, parse_params(ptext) if ptext else {})

    def __str__(self) -> str:
        out = ""
        if self.display_name:
            escaped = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            out = f'"{escaped}" '
        return f"{out}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


@dataclass
class Via:
    """One Via value: `SIP/2.0/UDP host:port;branch=…;rport;received=…`."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "Via":
        text = text.strip()
        m = re.match(r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+([^;\s]+)\s*(.*)$", text, re.S | re.A)
        if not m:
            raise SipParseError(f"bad Via {text[:80]!r}")
        hostport = m.group(2)
        hm = _HOST_RE.match(hostport)
        if not hm:
            raise SipParseError(f"bad Via sent-by {hostport[:80]!r}")
        port = int(hm.group(2)) if hm.group(2) else None
        if port is not None and not 0 < port < 65536:
            raise SipParseError("bad Via port")
        tail = m.group(3).strip()
        if tail and not tail.startswith(";"):
            raise SipParseError("garbage in Via")
        return cls(m.group(1).upper(), hm.group(1), port, parse_params(tail) if tail else {})

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int]:
        return self.host.strip("[]"), self.port or 5060

    def response_address(self) -> tuple[str, int]:
        """RFC 3261 §18.2.2 + RFC 3581: `received`/`rport` win over sent-by."""
        host = self.params.get("received") or self.host.strip("[]")
        rport = self.params.get("rport")
        if rport and re.fullmatch(r"[0-9]{1,5}", rport):
            return host, int(rport)
        return host, self.port or 5060
