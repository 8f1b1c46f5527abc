"""A stand-in for Twilio's REST API (which cannot be reached from here), for the official `twilio` SDK.

It speaks what Twilio documents: requests form-encoded (`application/x-www-form-urlencoded`, repeated keys
for lists), HTTP Basic auth with the Account SID and Auth Token (else 401 with Twilio's error JSON,
code 20003), JSON answers with snake_case fields, list pages in the v2010 shape (`{"<key>": [...],
"next_page_uri": …}`) and the v1 shape (`{"<key>": [...], "meta": {"key": …}}`), 404 as error 20404.
Covered: Api 2010-04-01 Accounts (fetch), Calls (create / update / fetch / list), IncomingPhoneNumbers
(list / update), SIP CredentialLists (+ Credentials) and IpAccessControlLists (+ IpAddresses); Trunking v1
Trunks with OriginationUrls, CredentialLists, IpAccessControlLists and PhoneNumbers. Resources live in
memory; `requests` records every call for the tests. The SDK reaches it through Parley's
`TWILIO_API_BASE_URL` (a custom `HttpClient`, the SDK's own extension point).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def _now() -> str:
    return datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, list[str]]


@dataclass
class TwilioStandIn:
    """The server's state: the account, its resources, and every request seen."""

    account_sid: str
    auth_token: str
    url: str = ""
    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    trunks: dict[str, dict[str, Any]] = field(default_factory=dict)
    credential_lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    ip_acls: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: CallSid → status Twilio answers on create (default "queued")
    create_error: dict[str, Any] | None = None

    def add_number(self, number: str, **fields: Any) -> dict[str, Any]:
        sid = _sid("PN")
        self.numbers[sid] = {"sid": sid, "account_sid": self.account_sid, "phone_number": number,
                             "friendly_name": number, "voice_url": "", "voice_method": "POST",
                             "status_callback": "", "trunk_sid": None, "voice_application_sid": "",
                             "capabilities": {"voice": True, "sms": True}, "date_created": _now(),
                             "uri": f"/2010-04-01/Accounts/{self.account_sid}/IncomingPhoneNumbers/{sid}.json",
                             **fields}
        return self.numbers[sid]

    def add_inbound_call(self, call_sid: str, to: str, from_: str) -> dict[str, Any]:
        """A call Twilio is running because someone dialled one of the account's numbers."""
        self.calls[call_sid] = {"sid": call_sid, "account_sid": self.account_sid, "to": to, "from": from_,
                                "status": "in-progress", "direction": "inbound", "date_created": _now(),
                                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call_sid}.json"}
        return self.calls[call_sid]

    def writes(self, path_part: str = "") -> list[Recorded]:
        """The POST and DELETE requests seen (optionally only those whose path contains `path_part`)."""
        return [r for r in self.requests if r.method != "GET" and path_part in r.path]

    # --- resources ---------------------------------------------------------------------------------

    def _page_2010(self, key: str, items: list[dict[str, Any]], path: str) -> dict[str, Any]:
        return {key: items, "first_page_uri": path, "next_page_uri": None, "previous_page_uri": None,
                "page": 0, "page_size": 50, "start": 0, "end": max(0, len(items) - 1), "uri": path}

    def _page_v1(self, key: str, items: list[dict[str, Any]], url: str) -> dict[str, Any]:
        return {key: items, "meta": {"key": key, "page": 0, "page_size": 50, "first_page_url": url,
                                     "previous_page_url": None, "next_page_url": None, "url": url}}

    def handle(self, method: str, path: str, form: dict[str, list[str]]) -> tuple[int, Any]:
        one = {k: v[-1] for k, v in form.items()}
        acct = f"/2010-04-01/Accounts/{self.account_sid}"
        m = re.fullmatch(r"/2010-04-01/Accounts/(AC\w+)\.json", path)
        if m and method == "GET":
            if m.group(1) != self.account_sid:
                return _not_found(path)
            return 200, {"sid": self.account_sid, "friendly_name": "Parley test account", "status": "active",
                         "type": "Full", "date_created": _now()}
        if path.startswith("/2010-04-01/Accounts/") and not path.startswith(acct):
            return _not_found(path)
        if path == f"{acct}/Calls.json":
            if method == "POST":
                return self._create_call(one, form)
            return 200, self._page_2010("calls", list(self.calls.values()), path)
        m = re.fullmatch(rf"{acct}/Calls/(CA\w+)\.json", path)
        if m:
            call = self.calls.get(m.group(1))
            if call is None:
                return _not_found(path)
            if method == "POST":
                if "Twiml" in one:
                    call["twiml"] = one["Twiml"]
                    call.setdefault("twiml_updates", []).append(one["Twiml"])
                if "Status" in one:
                    call["status"] = one["Status"]
            return 200, call
        if path == f"{acct}/IncomingPhoneNumbers.json":
            items = list(self.numbers.values())
            if "PhoneNumber" in one:
                items = [n for n in items if n["phone_number"] == one["PhoneNumber"]]
            return 200, self._page_2010("incoming_phone_numbers", items, path)
        m = re.fullmatch(rf"{acct}/IncomingPhoneNumbers/(PN\w+)\.json", path)
        if m:
            number = self.numbers.get(m.group(1))
            if number is None:
                return _not_found(path)
            if method == "POST":
                for key, attr in (("VoiceUrl", "voice_url"), ("VoiceMethod", "voice_method"),
                                  ("StatusCallback", "status_callback"), ("TrunkSid", "trunk_sid"),
                                  ("VoiceApplicationSid", "voice_application_sid")):
                    if key in one:
                        number[attr] = one[key] or (None if attr == "trunk_sid" else "")
            return 200, number
        for kind, store, key in (("CredentialLists", self.credential_lists, "credential_lists"),
                                 ("IpAccessControlLists", self.ip_acls, "ip_access_control_lists")):
            if path == f"{acct}/SIP/{kind}.json":
                if method == "POST":
                    sid = _sid("CL" if kind == "CredentialLists" else "AL")
                    store[sid] = {"sid": sid, "account_sid": self.account_sid,
                                  "friendly_name": one.get("FriendlyName", ""), "date_created": _now(),
                                  "_entries": {}}
                    return 201, _public(store[sid])
                return 200, self._page_2010(key, [_public(v) for v in store.values()], path)
            m = re.fullmatch(rf"{acct}/SIP/{kind}/(\w+)/(Credentials|IpAddresses)\.json", path)
            if m:
                parent = store.get(m.group(1))
                if parent is None:
                    return _not_found(path)
                entries = parent["_entries"]
                if method == "POST":
                    sid = _sid("CR" if kind == "CredentialLists" else "IP")
                    entry = {"sid": sid, "account_sid": self.account_sid, "date_created": _now()}
                    if kind == "CredentialLists":
                        entry["username"] = one.get("Username", "")  # the password is never returned
                    else:
                        entry.update(friendly_name=one.get("FriendlyName", ""), ip_address=one.get("IpAddress", ""),
                                     cidr_prefix_length=int(one.get("CidrPrefixLength", 32)))
                    entries[sid] = entry
                    return 201, entry
                return 200, self._page_2010("credentials" if kind == "CredentialLists" else "ip_addresses",
                                            list(entries.values()), path)
        return self._trunking(method, path, one)

    def _create_call(self, one: dict[str, str], form: dict[str, list[str]]) -> tuple[int, Any]:
        if self.create_error is not None:
            return self.create_error["status"], self.create_error
        if not one.get("To") or not one.get("From"):
            return 400, {"code": 21201, "message": "No 'To' number is specified", "status": 400,
                         "more_info": "https://www.twilio.com/docs/errors/21201"}
        sid = _sid("CA")
        self.calls[sid] = {"sid": sid, "account_sid": self.account_sid, "to": one["To"], "from": one["From"],
                           "status": "queued", "direction": "outbound-api", "twiml": one.get("Twiml", ""),
                           "status_callback": one.get("StatusCallback"),
                           "status_callback_event": form.get("StatusCallbackEvent", []),
                           "machine_detection": one.get("MachineDetection"),
                           "async_amd": one.get("AsyncAmd"), "date_created": _now(),
                           "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json"}
        return 201, self.calls[sid]

    def _trunking(self, method: str, path: str, one: dict[str, str]) -> tuple[int, Any]:
        url = self.url + path
        if path == "/v1/Trunks":
            if method == "POST":
                sid = _sid("TK")
                self.trunks[sid] = {"sid": sid, "account_sid": self.account_sid,
                                    "friendly_name": one.get("FriendlyName", ""),
                                    "domain_name": one.get("DomainName"), "secure": False,
                                    "date_created": _now(), "url": f"{self.url}/v1/Trunks/{sid}",
                                    "_origination_urls": {}, "_credential_lists": {}, "_ip_access_control_lists": {},
                                    "_phone_numbers": {}}
                return 201, _public(self.trunks[sid])
            return 200, self._page_v1("trunks", [_public(t) for t in self.trunks.values()], url)
        m = re.fullmatch(r"/v1/Trunks/(TK\w+)", path)
        if m:
            trunk = self.trunks.get(m.group(1))
            if trunk is None:
                return _not_found(path)
            if method == "DELETE":
                del self.trunks[m.group(1)]
                return 204, None
            if method == "POST":
                for key, attr in (("FriendlyName", "friendly_name"), ("DomainName", "domain_name")):
                    if key in one:
                        trunk[attr] = one[key]
            return 200, _public(trunk)
        m = re.fullmatch(r"/v1/Trunks/(TK\w+)/(OriginationUrls|CredentialLists|IpAccessControlLists|PhoneNumbers)"
                         r"(?:/(\w+))?", path)
        if not m:
            return _not_found(path)
        trunk = self.trunks.get(m.group(1))
        if trunk is None:
            return _not_found(path)
        kind, sub = m.group(2), m.group(3)
        key = {"OriginationUrls": "origination_urls", "CredentialLists": "credential_lists",
               "IpAccessControlLists": "ip_access_control_lists", "PhoneNumbers": "phone_numbers"}[kind]
        items: dict[str, dict[str, Any]] = trunk["_" + key]
        if sub is None:
            if method == "POST":
                return self._attach(trunk, kind, items, one)
            return 200, self._page_v1(key, list(items.values()), url)
        item = items.get(sub)
        if item is None:
            return _not_found(path)
        if method == "DELETE":
            del items[sub]
            if kind == "PhoneNumbers" and sub in self.numbers:
                self.numbers[sub]["trunk_sid"] = None
            return 204, None
        if method == "POST" and kind == "OriginationUrls":
            for k, attr, conv in (("SipUrl", "sip_url", str), ("Priority", "priority", int), ("Weight", "weight", int),
                                  ("Enabled", "enabled", lambda v: v.lower() == "true"),
                                  ("FriendlyName", "friendly_name", str)):
                if k in one:
                    item[attr] = conv(one[k])
        return 200, item

    def _attach(self, trunk: dict[str, Any], kind: str, items: dict[str, Any], one: dict[str, str]) -> tuple[int, Any]:
        base = {"account_sid": self.account_sid, "trunk_sid": trunk["sid"], "date_created": _now()}
        if kind == "OriginationUrls":
            sid = _sid("OU")
            items[sid] = {**base, "sid": sid, "sip_url": one.get("SipUrl", ""), "friendly_name": one.get("FriendlyName", ""),
                          "priority": int(one.get("Priority", 10)), "weight": int(one.get("Weight", 10)),
                          "enabled": one.get("Enabled", "true").lower() == "true"}
            return 201, items[sid]
        ref = {"CredentialLists": ("CredentialListSid", self.credential_lists),
               "IpAccessControlLists": ("IpAccessControlListSid", self.ip_acls),
               "PhoneNumbers": ("PhoneNumberSid", self.numbers)}[kind]
        sid = one.get(ref[0], "")
        target = ref[1].get(sid)
        if target is None:
            return 400, {"code": 21212 if kind == "PhoneNumbers" else 20404,
                         "message": f"{ref[0]} {sid} is not valid", "status": 400}
        if sid in items:
            return 409, {"code": 21227, "message": f"{sid} is already associated with this trunk", "status": 409}
        if kind == "PhoneNumbers":
            target["trunk_sid"] = trunk["sid"]
            items[sid] = {**base, "sid": sid, "phone_number": target["phone_number"]}
        else:
            items[sid] = {**base, "sid": sid, "friendly_name": target["friendly_name"]}
        return 201, items[sid]


def _public(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if not k.startswith("_")}


def _not_found(path: str) -> tuple[int, Any]:
    return 404, {"code": 20404, "message": f"The requested resource {path} was not found",
                 "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}


def serve(account_sid: str, auth_token: str) -> tuple[TwilioStandIn, ThreadingHTTPServer]:
    """Start the stand-in on a free 127.0.0.1 port (a daemon thread); `shutdown()` the server after."""
    state = TwilioStandIn(account_sid, auth_token)

    class Handler(BaseHTTPRequestHandler):
        def _do(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            form = parse_qs(body, keep_blank_values=True)
            for k, v in parse_qs(parts.query, keep_blank_values=True).items():
                form.setdefault(k, v)
            auth = self.headers.get("Authorization", "")
            expected = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
            if auth != expected:
                status, payload = 401, {"code": 20003, "message": "Authenticate", "status": 401,
                                        "more_info": "https://www.twilio.com/docs/errors/20003"}
            else:
                with state.lock:
                    state.requests.append(Recorded(self.command, parts.path, form))
                    status, payload = state.handle(self.command, parts.path, form)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _do  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state, server
