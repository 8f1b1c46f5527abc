"""Errors raised while loading configuration files."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration file is wrong. The message names the file, the field and the reason."""
