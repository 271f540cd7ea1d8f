"""Structured logs: one line per record, with keys, as text or JSON.

    setup_logging("netlink-agent", level="debug", fmt="json")
    with log_context(pod="default/web-0", claim="uid-1"):
        log.info("attached", extra={"device": "eth1"})

Every record inside `log_context` carries its keys (contextvars, so each
asyncio task keeps its own); `extra=` adds keys to one record; the current
trace and span ids are added when a span is active, so a log line can be
found from a trace and back.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from opentelemetry import trace

from dranet.errors import SettingsError

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("text", "json")

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "dranet_log_context", default=MappingProxyType({})
)
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "dranet_keys",
}


@contextlib.contextmanager
def log_context(**keys: Any) -> Iterator[None]:
    """Add `keys` to every record logged inside the block (nested blocks merge)."""
    token = _context.set({**_context.get(), **keys})
    try:
        yield
    finally:
        _context.reset(token)


def current_keys() -> dict[str, Any]:
    """The keys `log_context` has set for the running task."""
    return dict(_context.get())


def record_keys(record: logging.LogRecord) -> dict[str, Any]:
    """Context keys, then the record's own `extra=` keys, then trace ids."""
    keys = current_keys()
    keys.update((k, v) for k, v in vars(record).items() if k not in _RECORD_ATTRS)
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        keys["trace_id"] = format(span.trace_id, "032x")
        keys["span_id"] = format(span.span_id, "016x")
    return keys


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class _Collect(logging.Filter):
    """Captures keys while still in the logging task (formatting may be later)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.dranet_keys = record_keys(record)
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        keys = getattr(record, "dranet_keys", None)
        for key, value in (record_keys(record) if keys is None else keys).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        keys = getattr(record, "dranet_keys", None)
        if keys is None:
            keys = record_keys(record)
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in keys.items())
        text = (
            f"{_timestamp(record)} {record.levelname:<7} {self.service} "
            f"{record.name}: {record.getMessage()}"
        )
        if pairs:
            text = f"{text} {pairs}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text


def setup_logging(
    service: str, level: str = "info", fmt: str = "text", *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every logger's records to stderr (or `stream`) as `fmt` lines.

    Calling it again replaces the handler it installed before, so tests and
    re-configuration do not duplicate lines.
    """
    if level.lower() not in LEVELS:
        raise SettingsError(f"unknown log level {level!r}", hint=f"use one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise SettingsError(f"unknown log format {fmt!r}", hint="use text or json")
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    handler.addFilter(_Collect())
    handler.dranet = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "dranet", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level.lower()])
    return handler
