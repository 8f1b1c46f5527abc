"""Read trunks and dispatch rules from a YAML file or from the original `.env` names."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from parley.agents.errors import ConfigError
from parley.settings import Settings
from parley.telephony.trunks import TelephonyConfig, Trunk


def load_config_file(path: Path) -> TelephonyConfig:
    """Parse a trunks YAML file (`trunks:` and `dispatch_rules:`); errors name file, field and reason."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        raise ConfigError(f"{path}:{where} YAML syntax error: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'trunks' and/or 'dispatch_rules'")
    try:
        return TelephonyConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: {field}: {err['msg'].removeprefix('Value error, ')}") from None


def config_from_settings(settings: Settings) -> TelephonyConfig:
    """A trunk named `default` from `SIP_TRUNK_*` (the original project's variables), if they are set."""
    if not settings.sip_trunk_host:
        return TelephonyConfig()
    password = settings.sip_trunk_password.get_secret_value() or None
    outbound = {
        "host": settings.sip_trunk_host,
        "port": settings.sip_trunk_port,
        "username": settings.sip_trunk_username or None,
        "password": password,
        "caller_id": settings.sip_trunk_number or None,
    }
    inbound = None
    if settings.sip_trunk_username and password:
        inbound = {"username": settings.sip_trunk_username, "password": password,
                   "numbers": [settings.sip_trunk_number] if settings.sip_trunk_number else []}
    try:
        trunk = Trunk.model_validate({"name": "default", "outbound": outbound, "inbound": inbound})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"SIP_TRUNK_* settings: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    return TelephonyConfig(trunks=[trunk])
