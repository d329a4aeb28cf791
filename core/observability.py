"""Structured logging: every record carries tenant, run id and function.

Callers set the context once (`log_context(...)`) and log plain messages; a filter copies the
context onto each record, where Application Insights picks the attributes up as custom
dimensions and the local console formatter prints them as JSON. Messages never carry mail or
appointment content or secrets: log ids and counts, not payloads.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_CONTEXT: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("bridge_log_context", default={})  # noqa: B039 - never mutated, replaced

CONTEXT_FIELDS = ("tenant_id", "run_id", "function")


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add `fields` (tenant_id, run_id, function, …) to every record logged inside the block."""
    merged = {**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> dict[str, str]:
    return dict(_CONTEXT.get())


class ContextFilter(logging.Filter):
    """Copies the current log context onto the record (as attributes, never into the message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, context.get(name))
        for name, value in context.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context and `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and value is not None and not name.startswith("_"):
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO", *, json_console: bool = False) -> None:
    """Install the context filter on the root handlers (idempotent).

    In Azure the Functions worker owns the handlers and forwards records to Application
    Insights; locally `json_console=True` adds one JSON-lines handler on stderr.
    """
    root = logging.getLogger()
    root.setLevel(level)
    if json_console and not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        console = logging.StreamHandler()
        console.setFormatter(JsonFormatter())
        root.addHandler(console)
    for handler in root.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
    # The Azure SDKs log every request's headers at INFO, httpx (under msgraph-sdk) every Graph
    # URL with its mailbox and delta token: keep them quiet unless debugging.
    for noisy in (
        "azure.core.pipeline.policies.http_logging_policy",
        "azure.identity",
        "aiohttp.access",
        "httpx",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
