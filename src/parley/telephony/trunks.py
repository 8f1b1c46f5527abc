"""Trunks and dispatch rules: who may call in, how we call out, and which agent answers.

A trunk has an optional `inbound` side (who may send us INVITEs: source addresses and/or digest
credentials, the numbers it carries, a concurrency cap) and an optional `outbound` side (where our
INVITEs go, with which credentials and caller ID). Dispatch rules map a called number (exact or prefix)
and trunk to an agent.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, field_validator, model_validator

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _normalise_number(value: str) -> str:
    return re.sub(r"[\s().-]", "", value)


class InboundSide(_Model):
    """Who may send calls on this trunk. With neither addresses nor credentials, nobody can."""

    allowed_addresses: list[str] = Field(default_factory=list, description="IPs or CIDRs, e.g. 54.172.60.0/30")
    username: str | None = None
    password: SecretStr | None = None
    realm: str = "parley"
    numbers: list[str] = Field(default_factory=list, description="Numbers it carries; empty = any.")
    max_concurrent_calls: int | None = Field(None, ge=1)

    @field_validator("allowed_addresses")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        out = []
        for v in values:
            try:
                out.append(str(ipaddress.ip_network(v.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{v!r} is not an IP address or CIDR network") from None
        return out

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, values: list[str]) -> list[str]:
        return [_normalise_number(v) for v in values]

    @model_validator(mode="after")
    def _some_access(self) -> InboundSide:
        if not self.allowed_addresses and not self.username:
            raise ValueError("inbound side needs allowed_addresses and/or username/password, else nobody can call")
        if self.username and not self.password:
            raise ValueError("inbound username given without password")
        return self

    @field_serializer("password")
    def _dump_password(self, value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value else None

    def address_allowed(self, ip: str) -> bool:
        """True when `ip` is inside one of the allowed networks."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(n) for n in self.allowed_addresses)

    def carries(self, number: str) -> bool:
        """True when this trunk carries the called `number` (any number when the list is empty)."""
        return not self.numbers or _normalise_number(number) in self.numbers


class OutboundSide(_Model):
    """Where our calls go and how we identify ourselves."""

    host: str = Field(min_length=1)
    port: int = Field(5060, ge=1, le=65535)
    transport: Literal["udp", "tcp", "tls"] = "udp"
    username: str | None = None
    password: SecretStr | None = None
    caller_id: str | None = Field(None, description="Caller-ID number in E.164.")
    from_user: Literal["number", "username"] = Field(
        "number",
        description="User part of From: the caller-ID number or the SIP username. Providers differ; the wrong "
        "one is the most common cause of outbound 403s.",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers, e.g. P-Asserted-Identity.")
    registration: bool = Field(False, description="Send REGISTER to the trunk and keep it fresh.")
    register_expires: int = Field(3600, ge=60)
    max_concurrent_calls: int | None = Field(None, ge=1)
    max_calls_per_second: float | None = Field(None, gt=0)

    @field_validator("caller_id")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        value = _normalise_number(value)
        if not E164.match(value):
            raise ValueError(f"caller_id {value!r} is not an E.164 number like +4930123456")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> OutboundSide:
        if self.from_user == "username" and not self.username:
            raise ValueError("from_user is 'username' but no username is set")
        if self.registration and not (self.username and self.password):
            raise ValueError("registration: true needs username and password")
        return self

    @field_serializer("password")
    def _dump_password(self, value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value else None

    def from_user_part(self) -> str:
        """The user part to put in From (number or username, as configured)."""
        if self.from_user == "username" and self.username:
            return self.username
        return self.caller_id or self.username or "parley"

    def uri_for(self, number: str) -> str:
        """The request URI for dialling `number` through this trunk."""
        port = "" if self.port == 5060 and self.transport == "udp" else f":{self.port}"
        params = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{_normalise_number(number)}@{self.host}{port}{params}"


class Trunk(_Model):
    """A SIP trunk (carrier or PBX connection)."""

    name: str = Field(pattern=_NAME)
    inbound: InboundSide | None = None
    outbound: OutboundSide | None = None

    @model_validator(mode="after")
    def _has_side(self) -> Trunk:
        if self.inbound is None and self.outbound is None:
            raise ValueError(f"trunk {self.name!r} needs an inbound and/or an outbound side")
        return self

    def public_dict(self) -> dict[str, Any]:
        """The trunk with passwords masked, for listings and the API."""
        data = self.model_dump(mode="json")
        for side in ("inbound", "outbound"):
            if data.get(side) and data[side].get("password"):
                data[side]["password"] = "********"
        return data


class DispatchRule(_Model):
    """Called number (exact or prefix) and/or trunk → agent. Most specific rule wins."""

    name: str = Field(pattern=_NAME)
    numbers: list[str] = Field(default_factory=list)
    prefixes: list[str] = Field(default_factory=list)
    trunks: list[str] = Field(default_factory=list, description="Trunk names; empty = any trunk.")
    agent: str
    variables: dict[str, Any] = Field(default_factory=dict)
    priority: int = 0

    @field_validator("numbers", "prefixes")
    @classmethod
    def _clean(cls, values: list[str]) -> list[str]:
        return [_normalise_number(v) for v in values]

    def score(self, number: str, trunk: str | None) -> int | None:
        """How specifically this rule matches (higher wins), or None when it does not match."""
        if self.trunks and trunk not in self.trunks:
            return None
        number = _normalise_number(number)
        trunk_bonus = 1 if self.trunks else 0
        if self.numbers and number in self.numbers:
            return 10_000 + trunk_bonus
        matching = [p for p in self.prefixes if number.startswith(p)]
        if matching:
            return 100 + len(max(matching, key=len)) * 10 + trunk_bonus
        if not self.numbers and not self.prefixes:
            return 1 + trunk_bonus  # catch-all (per trunk or global)
        return None


class TelephonyConfig(_Model):
    """Everything `parley trunk ensure` reads from a trunks YAML file."""

    trunks: list[Trunk] = Field(default_factory=list)
    dispatch_rules: list[DispatchRule] = Field(default_factory=list)
