"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760): MD5 and SHA-256, qop=auth.

UAC side: `answer_challenge()` builds an Authorization/Proxy-Authorization value for a 401/407;
`DigestRetry` is the one retry policy for a request that was challenged (INVITE, REGISTER, BYE ...).
UAS side: `DigestChallenger` issues HMAC-signed nonces bound to the requester's address and
checks answers: the nonce must be ours, fresh (else `stale=true`) and from the same address, the
digest `uri` must be the request's, and `nc` must grow (a replayed answer is refused).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from parley.sip.errors import SipParseError
from parley.sip.guard import BoundedDict
from parley.sip.message import SipRequest, SipResponse
from parley.sip.uri import SipUri

_ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_CLOCK_SLACK_S = 1.0  # a wall clock stepped back this far still accepts its own fresh nonces


@dataclass(frozen=True)
class Credentials:
    """A SIP username and password (the username is not always the number being called)."""

    username: str
    password: str
    realm: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='********')"


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """`Digest realm="x", nonce="y", qop="auth"` -> ("Digest", {...}); keys lower-cased."""
    scheme, _, rest = value.strip().partition(" ")
    if not scheme:
        raise SipParseError("empty authentication header")
    params: dict[str, str] = {}
    for m in re.finditer(r'\s*([A-Za-z0-9_\-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)\s*,?', rest):
        key = m.group(1).lower()
        params[key] = m.group(3) if m.group(3) is not None else m.group(2)
    return scheme, params


def _h(algorithm: str, text: str) -> str:
    base = algorithm.upper().removesuffix("-SESS")
    fn = _ALGORITHMS.get(base)
    if fn is None:
        raise ValueError(f"unsupported digest algorithm {algorithm}")
    return fn(text.encode("utf-8")).hexdigest()


def digest_response(
    algorithm: str, username: str, realm: str, password: str, method: str, uri: str, nonce: str,
    qop: str | None = None, nc: str = "00000001", cnonce: str = "", body: bytes = b"",
) -> str:
    """The `response` value of RFC 7616 §3.4.1 (qop auth or none; -sess variants)."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = _h(algorithm, f"{method}:{uri}:{_h(algorithm, body.decode('latin-1'))}")
    else:
        ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


def answer_challenge(challenge: str, credentials: Credentials, method: str, uri: str, nc: int = 1) -> str:
    """The Authorization header value answering one WWW-/Proxy-Authenticate challenge."""
    scheme, p = parse_auth_header(challenge)
    if scheme.lower() != "digest":
        raise ValueError(f"unsupported authentication scheme {scheme}")
    algorithm = p.get("algorithm", "MD5")
    realm = p.get("realm", "")
    nonce = p.get("nonce", "")
    qops = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    cnonce = os.urandom(8).hex()
    nc_text = f"{nc:08x}"
    response = digest_response(
        algorithm, credentials.username, realm, credentials.password, method, uri, nonce,
        qop=qop, nc=nc_text, cnonce=cnonce,
    )
    parts = [
        f'username="{credentials.username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
        f'response="{response}"', f"algorithm={algorithm}",
    ]
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f'cnonce="{cnonce}"']
    if "opaque" in p:
        parts.append(f'opaque="{p["opaque"]}"')
    return "Digest " + ", ".join(parts)


def pick_challenge(values: list[str]) -> str | None:
    """Prefer SHA-256 over MD5 when a server offers both (RFC 8760 §2.4)."""
    digests = [v for v in values if v.strip().lower().startswith("digest")]
    for v in digests:
        if parse_auth_header(v)[1].get("algorithm", "MD5").upper().startswith("SHA-256"):
            return v
    for v in digests:
        if parse_auth_header(v)[1].get("algorithm", "MD5").upper().removesuffix("-SESS") in _ALGORITHMS:
            return v
    return None


class DigestRetry:
    """Answers the digest challenges to one request (RFC 3261 §22.2): at most twice, the second
    time only when the server says our nonce went stale (a second plain 401 means a wrong password)."""

    MAX_TRIES = 2

    def __init__(self, credentials: Credentials | None) -> None:
        self.credentials = credentials
        self.tries = 0

    def authorize(self, request: SipRequest, response: SipResponse) -> bool:
        """When `response` is a 401/407 we should answer: add the (Proxy-)Authorization header to
        `request`, step its CSeq by one and return True (send it again). False: `response` is final."""
        status = response.status
        if status not in (401, 407) or self.credentials is None or self.tries >= self.MAX_TRIES:
            return False
        header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        challenge = pick_challenge(response.headers.get_all(header))
        if challenge is None:
            return False
        if self.tries and "stale=true" not in challenge.replace(" ", "").lower():
            return False
        self.tries += 1
        name = "Authorization" if status == 401 else "Proxy-Authorization"
        request.headers.remove(name)
        request.headers.add(name, answer_challenge(challenge, self.credentials, request.method, request.uri))
        number, method = request.cseq
        request.headers.set("CSeq", f"{number + 1} {method}")
        return True


def same_uri(digest_uri: str, request_uri: str) -> bool:
    """The digest `uri` names the Request-URI (RFC 7616 §3.4.6): equal text, or the same scheme,
    host and port with the same user (some clients, SIPp among them, leave the user out)."""
    if digest_uri == request_uri:
        return True
    try:
        a, b = SipUri.parse(digest_uri), SipUri.parse(request_uri)
    except SipParseError:
        return False
    return (a.scheme, a.host.lower(), a.port) == (b.scheme, b.host.lower(), b.port) and a.user in (None, b.user)


class DigestChallenger:
    """UAS-side digest: nonces signed with a per-process key and the requester's IP, valid for
    `nonce_ttl` s; the highest `nc` seen per nonce is remembered (bounded) to refuse replays.

    One challenge per algorithm; MD5 is listed first because many deployed phones (and SIPp) answer
    only the first challenge and know only MD5. Clients that know SHA-256 may pick that one."""

    def __init__(self, realm: str, algorithms: tuple[str, ...] = ("MD5", "SHA-256"), nonce_ttl: float = 300.0,
                 max_nonces: int = 20000):
        self.realm = realm
        self.algorithms = algorithms
        self.nonce_ttl = nonce_ttl
        self._key = os.urandom(16)
        self._nc: BoundedDict[str, int] = BoundedDict(max_nonces)

    def _sign(self, stamp: str, source: str) -> str:
        return hmac.new(self._key, f"{stamp}|{source}".encode(), hashlib.sha256).hexdigest()[:24]

    def new_nonce(self, source: str = "") -> str:
        """A nonce for a requester at IP `source` (only answers from there will be accepted)."""
        stamp = f"{math.floor(time.time() * 1000) / 1000:.3f}"  # rounded down: never younger than now
        return f"{stamp}.{self._sign(stamp, source)}"

    def nonce_state(self, nonce: str, source: str = "") -> str:
        """'ok', 'stale' (signed by us for `source` but expired) or 'bad' (not ours, or another source's)."""
        stamp, _, sig = nonce.rpartition(".")
        if not stamp or not hmac.compare_digest(sig, self._sign(stamp, source)):
            return "bad"
        try:
            age = time.time() - float(stamp)
        except ValueError:
            return "bad"
        return "ok" if -_CLOCK_SLACK_S <= age <= self.nonce_ttl else "stale"

    def challenges(self, stale: bool = False, source: str = "") -> list[str]:
        nonce = self.new_nonce(source)
        extra = ", stale=true" if stale else ""
        return [
            f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={alg}, qop="auth"{extra}'
            for alg in self.algorithms
        ]

    def check(
        self, header_value: str, method: str, lookup: Callable[[str], str | None],
        request_uri: str | None = None, source: str = "",
    ) -> tuple[str, str | None]:
        """Check an Authorization value of a request to `request_uri` from IP `source`. Returns
        (verdict, username): verdict is 'ok', 'stale' (expired or already used nonce: challenge
        again with stale=true), 'missing' (not for our realm, not our nonce / unusable) or 'wrong'
        (bad password/user, or a digest for another Request-URI)."""
        try:
            scheme, p = parse_auth_header(header_value)
        except SipParseError:
            return "missing", None
        if scheme.lower() != "digest" or p.get("realm") != self.realm:
            return "missing", None
        username = p.get("username", "")
        nonce = p.get("nonce", "")
        state = self.nonce_state(nonce, source)
        if state != "ok":
            return ("stale" if state == "stale" else "missing"), username
        if request_uri is not None and not same_uri(p.get("uri", ""), request_uri):
            return "wrong", username
        algorithm = p.get("algorithm", "MD5")
        if algorithm.upper().removesuffix("-SESS") not in _ALGORITHMS:
            return "missing", username
        password = lookup(username)
        if password is None:
            return "wrong", username
        qop = p.get("qop")
        if qop not in (None, "auth"):
            return "missing", username
        expected = digest_response(
            algorithm, username, self.realm, password, method, p.get("uri", ""), p["nonce"],
            qop=qop, nc=p.get("nc", "00000001"), cnonce=p.get("cnonce", ""),
        )
        if not hmac.compare_digest(expected, p.get("response", "")):
            return "wrong", username
        nc_text = p.get("nc", "00000001") if qop else "00000001"
        try:
            nc = int(nc_text, 16) if len(nc_text) == 8 and nc_text.isascii() else -1
        except ValueError:
            nc = -1
        if nc < 1:
            return "wrong", username
        last = self._nc.get(nonce)
        if last is not None and nc <= last:
            return "stale", username  # a replayed (or reordered) answer: ask for a fresh nonce
        self._nc.put(nonce, nc)
        return "ok", username
