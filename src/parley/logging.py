"""Structured logging: human-readable by default, JSON lines with `LOG_JSON=1` or `--log-json`.

Bind a call id for everything logged inside a call with `bind_call(call_id)`; it is carried by
contextvars, so it follows the asyncio task that handles the call.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import structlog

_SECRET_KEYS = {"password", "secret", "api_key", "token", "authorization", "x-api-key", "auth_token"}


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key.lower() in _SECRET_KEYS and event[key]:
            event[key] = "********"
    return event


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a line is logged (a stream replaced since, by a test
    runner's capture or a daemon's redirect, never leaves the handler writing to a closed file)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure(level: str = "INFO", json: bool = False) -> None:
    """Set up structlog and the standard library logging to write to stderr."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # not cached: a logger keeps following the configuration (tests capture with structlog.testing)
        cache_logger_on_first_use=False,
    )
    handler = _CurrentStderr()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpx2", "httpcore", "openai", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structured logger named after the module."""
    return structlog.stdlib.get_logger(name)


@contextmanager
def bind_call(call_id: str, **extra: Any) -> Iterator[None]:
    """Attach `call_id` (and extra fields) to every log line inside the block."""
    tokens = structlog.contextvars.bind_contextvars(call_id=call_id, **extra)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
