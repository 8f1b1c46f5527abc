"""Numbers and the Elastic SIP trunk on the Twilio account: what `parley twilio …` and `parley doctor` do.

Synchronous (the SDK is): the CLI calls these directly, `parley doctor` in a thread. Every function says what
it changed or found in words. `Expected` is what Parley wants on the account, derived from settings:
  * stream mode — a number's voice URL is `<public URL>/twilio/voice` (POST), its status callback
    `<public URL>/twilio/status`;
  * SIP mode — the number belongs to the trunk `TWILIO_TRUNK_NAME`, whose origination URI is our public SIP
    address, whose termination accepts our SIP_TRUNK_USERNAME/PASSWORD (a credential list) and our address
    (an IP access control list).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from parley.settings import Settings
from parley.telephony.twilio.config import STATUS_PATH, VOICE_PATH, TwilioConfig
from parley.telephony.twilio.rest import describe

Mode = Literal["stream", "sip"]


class AdminError(RuntimeError):
    """Something the account or the settings do not allow, in one readable line."""


@dataclass(frozen=True)
class Expected:
    """What Parley expects on the Twilio account."""

    voice_url: str | None
    status_callback: str | None
    trunk_name: str
    domain_name: str
    origination_uri: str | None
    ip_address: str | None
    username: str | None
    password: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Expected:
        config = TwilioConfig.from_settings(settings)
        host = settings.sip_public_host or ("" if settings.sip_host in ("0.0.0.0", "127.0.0.1", "::") else
                                            settings.sip_host)
        port = "" if settings.sip_port == 5060 else f":{settings.sip_port}"
        transport = ";transport=tcp" if settings.sip_transport == "tcp" else ""
        ip = None
        try:
            ip = str(ipaddress.ip_address(host)) if host else None
        except ValueError:
            ip = None
        suffix = config.account_sid[2:10].lower() if config.account_sid else "account"
        return cls(
            voice_url=config.public(VOICE_PATH), status_callback=config.public(STATUS_PATH),
            trunk_name=config.trunk_name,
            domain_name=f"{re.sub(r'[^a-z0-9-]', '-', config.trunk_name.lower())}-{suffix}.pstn.twilio.com",
            origination_uri=f"sip:{host}{port}{transport}" if host else None, ip_address=ip,
            username=settings.sip_trunk_username or None,
            password=settings.sip_trunk_password.get_secret_value() or None,
        )


@dataclass
class NumberView:
    sid: str
    number: str
    voice_url: str
    trunk_sid: str | None
    mode: str  # stream | sip | other | none

    def to_dict(self) -> dict[str, Any]:
        return {"sid": self.sid, "number": self.number, "voice_url": self.voice_url, "trunk_sid": self.trunk_sid,
                "mode": self.mode}


@dataclass
class Report:
    """What a command changed (`changes`) and what it left as it was (`unchanged`)."""

    changes: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    trunk_sid: str | None = None


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except TwilioException as exc:
        raise AdminError(f"{what}: {describe(exc)}") from None
    except OSError as exc:
        raise AdminError(f"{what}: {describe(exc)}") from None


def check_credentials(client: Client, config: TwilioConfig) -> str:
    """The account's name and status; AdminError when the SID/token are refused."""
    account = _call("checking the credentials", client.api.v2010.accounts(config.account_sid).fetch)
    return f"account {account.friendly_name!r} ({account.status})"


def _view(n: Any, expected: Expected, trunk_sid: str | None) -> NumberView:
    voice_url = n.voice_url or ""
    if n.trunk_sid:
        mode = "sip" if trunk_sid is not None and n.trunk_sid == trunk_sid else "other"
    elif expected.voice_url and voice_url == expected.voice_url:
        mode = "stream"
    else:
        mode = "other" if voice_url else "none"
    return NumberView(n.sid, n.phone_number, voice_url, n.trunk_sid, mode)


def find_trunk(client: Client, expected: Expected) -> Any | None:
    trunks = _call("listing trunks", client.trunking.v1.trunks.list)
    return next((t for t in trunks if t.friendly_name == expected.trunk_name), None)


def list_numbers(client: Client, expected: Expected) -> list[NumberView]:
    """The account's numbers and where each one points (`stream`: our webhook, `sip`: our trunk)."""
    trunk = find_trunk(client, expected)
    numbers = _call("listing numbers", client.incoming_phone_numbers.list)
    return [_view(n, expected, trunk.sid if trunk else None) for n in numbers]


def _number(client: Client, number: str) -> Any:
    found = _call("looking up the number", client.incoming_phone_numbers.list, phone_number=number)
    if not found:
        raise AdminError(f"{number} is not a number of this Twilio account (`parley twilio numbers list` shows "
                         "them)")
    return found[0]


def connect_number(client: Client, number: str, mode: Mode, expected: Expected) -> Report:
    """Point `number` at Parley: its voice URL at our webhook (stream), or attach it to our trunk (sip)."""
    report = Report()
    n = _number(client, number)
    if mode == "stream":
        if not expected.voice_url or not expected.status_callback:
            raise AdminError("set TWILIO_PUBLIC_URL (or PUBLIC_URL) to the https:// address Twilio reaches "
                             "Parley at: the number's voice URL is built from it")
        wanted = {"voice_url": expected.voice_url, "voice_method": "POST",
                  "status_callback": expected.status_callback}
        if n.trunk_sid:
            wanted["trunk_sid"] = ""
        current = {"voice_url": n.voice_url, "voice_method": n.voice_method, "status_callback": n.status_callback}
        if all(current.get(k) == v for k, v in wanted.items() if k != "trunk_sid") and not n.trunk_sid:
            report.unchanged.append(f"{number} already sends calls to {expected.voice_url}")
            return report
        _call(f"updating {number}", client.incoming_phone_numbers(n.sid).update, **wanted)
        if n.trunk_sid:
            report.changes.append(f"{number} detached from trunk {n.trunk_sid}")
        report.changes.append(f"{number} voice URL {n.voice_url or '(none)'} → {expected.voice_url} (POST), "
                              f"status callback → {expected.status_callback}")
        return report
    trunk = find_trunk(client, expected)
    if trunk is None:
        raise AdminError(f"no trunk named {expected.trunk_name!r} on the account: run `parley twilio trunk "
                         "ensure` first")
    report.trunk_sid = trunk.sid
    if n.trunk_sid == trunk.sid:
        report.unchanged.append(f"{number} already on trunk {expected.trunk_name!r}")
        return report
    _call(f"attaching {number} to the trunk", client.trunking.v1.trunks(trunk.sid).phone_numbers.create,
          phone_number_sid=n.sid)
    report.changes.append(f"{number} attached to trunk {expected.trunk_name!r} ({trunk.sid})")
    return report


def ensure_trunk(client: Client, expected: Expected) -> Report:
    """Create or update the Elastic SIP trunk (idempotent: a second run changes nothing)."""
    if not expected.origination_uri:
        raise AdminError("set SIP_PUBLIC_HOST to the address Twilio can send calls to (the trunk's origination "
                         "URI is built from it and SIP_PORT)")
    report = Report()
    trunking = client.trunking.v1
    trunk = find_trunk(client, expected)
    if trunk is None:
        trunk = _call("creating the trunk", trunking.trunks.create, friendly_name=expected.trunk_name,
                      domain_name=expected.domain_name)
        report.changes.append(f"created trunk {expected.trunk_name!r} ({trunk.sid}), termination URI "
                              f"{expected.domain_name}")
    else:
        report.unchanged.append(f"trunk {expected.trunk_name!r} ({trunk.sid})")
    report.trunk_sid = trunk.sid
    this = trunking.trunks(trunk.sid)

    origins = _call("listing origination URIs", this.origination_urls.list)
    ours = [o for o in origins if o.friendly_name == "parley"]
    if any(o.sip_url == expected.origination_uri for o in origins):
        report.unchanged.append(f"origination URI {expected.origination_uri}")
    elif ours:
        _call("updating the origination URI", this.origination_urls(ours[0].sid).update,
              sip_url=expected.origination_uri)
        report.changes.append(f"origination URI {ours[0].sip_url} → {expected.origination_uri}")
    else:
        _call("adding the origination URI", this.origination_urls.create, weight=10, priority=10, enabled=True,
              friendly_name="parley", sip_url=expected.origination_uri)
        report.changes.append(f"added origination URI {expected.origination_uri}")

    if expected.username and expected.password:
        _ensure_credentials(client, this, expected, report)
    else:
        report.unchanged.append("termination credentials skipped: SIP_TRUNK_USERNAME/SIP_TRUNK_PASSWORD not set")
    if expected.ip_address:
        _ensure_ip_acl(client, this, expected, report)
    else:
        report.unchanged.append("IP access list skipped: SIP_PUBLIC_HOST is not an IP address")
    return report


def _ensure_credentials(client: Client, trunk: Any, expected: Expected, report: Report) -> None:
    name = f"{expected.trunk_name}-termination"
    lists = _call("listing credential lists", client.sip.credential_lists.list)
    cl = next((c for c in lists if c.friendly_name == name), None)
    if cl is None:
        cl = _call("creating the credential list", client.sip.credential_lists.create, friendly_name=name)
        report.changes.append(f"created credential list {name!r}")
    creds = _call("listing credentials", client.sip.credential_lists(cl.sid).credentials.list)
    if any(c.username == expected.username for c in creds):
        report.unchanged.append(f"credential {expected.username!r} (Twilio never shows passwords back)")
    else:
        _call("adding the credential", client.sip.credential_lists(cl.sid).credentials.create,
              username=expected.username, password=expected.password)
        report.changes.append(f"added credential {expected.username!r} to {name!r}")
    attached = _call("listing the trunk's credential lists", trunk.credentials_lists.list)
    if any(a.sid == cl.sid for a in attached):
        report.unchanged.append(f"credential list {name!r} on the trunk")
    else:
        _call("attaching the credential list", trunk.credentials_lists.create, credential_list_sid=cl.sid)
        report.changes.append(f"attached credential list {name!r} to the trunk")


def _ensure_ip_acl(client: Client, trunk: Any, expected: Expected, report: Report) -> None:
    name = f"{expected.trunk_name}-parley"
    acls = _call("listing IP access lists", client.sip.ip_access_control_lists.list)
    acl = next((a for a in acls if a.friendly_name == name), None)
    if acl is None:
        acl = _call("creating the IP access list", client.sip.ip_access_control_lists.create, friendly_name=name)
        report.changes.append(f"created IP access list {name!r}")
    addresses = _call("listing IP addresses", client.sip.ip_access_control_lists(acl.sid).ip_addresses.list)
    if any(a.ip_address == expected.ip_address for a in addresses):
        report.unchanged.append(f"IP address {expected.ip_address} in {name!r}")
    else:
        _call("adding the IP address", client.sip.ip_access_control_lists(acl.sid).ip_addresses.create,
              friendly_name="parley", ip_address=expected.ip_address, cidr_prefix_length=32)
        report.changes.append(f"added IP address {expected.ip_address} to {name!r}")
    attached = _call("listing the trunk's IP access lists", trunk.ip_access_control_lists.list)
    if any(a.sid == acl.sid for a in attached):
        report.unchanged.append(f"IP access list {name!r} on the trunk")
    else:
        _call("attaching the IP access list", trunk.ip_access_control_lists.create,
              ip_access_control_list_sid=acl.sid)
        report.changes.append(f"attached IP access list {name!r} to the trunk")


def status(client: Client, expected: Expected, number: str | None) -> list[str]:
    """What Twilio has that differs from what Parley expects, one sentence each (empty: all as expected).
    A missing trunk is a difference unless the number uses Media Streams (which needs no trunk)."""
    out: list[str] = []
    trunk = find_trunk(client, expected)
    view = None
    if number:
        n = _number(client, number)
        view = _view(n, expected, trunk.sid if trunk else None)
        if view.mode == "none":
            out.append(f"{number} has no voice URL and no trunk: calls to it reach nobody "
                       "(`parley twilio numbers connect`)")
        elif view.mode == "other":
            out.append(f"{number} points at {view.voice_url or 'trunk ' + str(view.trunk_sid)}, not Parley "
                       f"({expected.voice_url or 'set TWILIO_PUBLIC_URL'})")
        elif view.mode == "stream" and n.status_callback != expected.status_callback:
            out.append(f"{number} sends status callbacks to {n.status_callback or 'nowhere'}, not "
                       f"{expected.status_callback}")
    if trunk is None:
        if view is None or view.mode != "stream":
            out.append(f"no trunk named {expected.trunk_name!r} (SIP mode needs one: `parley twilio trunk ensure`)")
    else:
        this = client.trunking.v1.trunks(trunk.sid)
        origins = [o.sip_url for o in _call("listing origination URIs", this.origination_urls.list)]
        if expected.origination_uri and expected.origination_uri not in origins:
            out.append(f"trunk {expected.trunk_name!r} sends calls to {', '.join(origins) or 'nowhere'}, not "
                       f"{expected.origination_uri}")
    return out
