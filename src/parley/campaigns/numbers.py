"""Phone numbers of recipients: E.164 normalisation and the time zone a number's country code implies."""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as pn_timezone

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_UNKNOWN = "Etc/Unknown"


class NumberError(ValueError):
    """A value that is not an E.164 phone number; the message says why."""


def normalise(value: str) -> str:
    """`value` without spaces, dots, dashes and brackets, checked as E.164 (`+`, 2–15 digits)."""
    cleaned = re.sub(r"[\s().-]", "", value or "")
    if not _E164.match(cleaned):
        raise NumberError(f"{value!r} is not an E.164 number like +14155550123")
    return cleaned


@lru_cache(maxsize=4096)
def zone_for(number: str) -> str | None:
    """The IANA time zone of an E.164 number's country (or area, where the numbering plan says so);
    None when it spans several zones or is unknown (the campaign's default zone applies)."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    zones = [z for z in pn_timezone.time_zones_for_number(parsed) if z != _UNKNOWN]
    if len(zones) == 1:
        return zones[0]
    # several zones: the country's only zone when the region has one, else undecided
    region = phonenumbers.region_code_for_number(parsed)
    if region:
        example = phonenumbers.example_number(region)
        if example is not None:
            region_zones = [z for z in pn_timezone.time_zones_for_number(example) if z != _UNKNOWN]
            if len(set(region_zones)) == 1 and not zones:
                return region_zones[0]
    return None


def check_zone(name: str) -> str:
    """`name` if it is a known IANA time zone, else ValueError naming it."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name like Europe/Berlin)") from None
    return name
