r"""Structured logging: every record carries tenant, run id and function.

Callers set the context once (`log_context(...)`) and log plain messages; a filter copies the
context onto each record, where the local console formatter prints it as JSON. In Azure the
Functions Python worker forwards only a record's message to Application Insights (its attributes
are dropped), so there (`LOG_FORMAT=message`) the context and extras are appended to the message
as one JSON object — `run succeeded | {"tenant_id": …, "run_id": …, "function": …}` — which the
alerts and the workbook parse (`parse_json(extract(@"\| (\{.*\})$", 1, message))`). Messages
never carry mail or appointment content or secrets: log ids and counts, not payloads.
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
        out.update(structured_fields(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


MESSAGE_SEPARATOR = " | "


def structured_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's context and `extra` fields (what JsonFormatter prints beside the message)."""
    return {
        name: value
        for name, value in vars(record).items()
        if name not in _STANDARD and value is not None and not name.startswith("_")
    }


class MessageContextFilter(logging.Filter):
    """Appends the record's context and extras to its message as one JSON object, once (the
    same record passes every handler's filters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_context_in_message", False):
            return True
        fields = structured_fields(record)
        if fields:
            record.msg = record.getMessage() + MESSAGE_SEPARATOR + json.dumps(fields, default=str)
            record.args = None
        record._context_in_message = True
        return True


def configure_logging(
    level: str = "INFO", *, json_console: bool = False, context_in_message: bool = False
) -> None:
    """Install the context filter on the root handlers (idempotent).

    In Azure the Functions worker owns the handlers and forwards each record's message to
    Application Insights: `context_in_message=True` puts the context there too. Locally
    `json_console=True` adds one JSON-lines handler on stderr.
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
        if context_in_message and not any(isinstance(f, MessageContextFilter) for f in handler.filters):
            handler.addFilter(MessageContextFilter())
    # The Azure SDKs log every request's headers at INFO, httpx (under msgraph-sdk) every Graph
    # URL with its mailbox and delta token: keep them quiet unless debugging.
    for noisy in (
        "azure.core.pipeline.policies.http_logging_policy",
        "azure.identity",
        "aiohttp.access",
        "httpx",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
