"""Logging set-up: libraries that would log request URLs and headers stay quiet; in Azure the
context travels in the message."""

from __future__ import annotations

import json
import logging
import re

from core.observability import (
    MESSAGE_SEPARATOR,
    ContextFilter,
    MessageContextFilter,
    configure_logging,
    log_context,
)


def test_given_info_logging_then_http_clients_do_not_log_graph_urls_or_headers() -> None:
    configure_logging("INFO")
    for name in ("httpx", "azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    assert logging.getLogger("core.calendar.sync").isEnabledFor(logging.INFO)


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("core.test", logging.INFO, __file__, 1, message, args, None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def test_given_message_format_then_the_context_and_extras_travel_in_the_message_once() -> None:
    """In Azure the worker forwards only the message to Application Insights: the tenant, run
    id, function and extras are appended as one JSON object, once however many handlers see the
    record, and nothing is appended to a record without context."""
    context, message = ContextFilter(), MessageContextFilter()
    with log_context(tenant_id="acme", run_id="r1", function="calendar-sync"):
        record = _record("run %s", "succeeded", counts={"pages": 2})
        for _ in range(2):  # two handlers, each with both filters
            assert context.filter(record)
            assert message.filter(record)
    text, _, tail = record.getMessage().partition(MESSAGE_SEPARATOR)
    assert text == "run succeeded"
    assert json.loads(tail) == {
        "tenant_id": "acme",
        "run_id": "r1",
        "function": "calendar-sync",
        "counts": {"pages": 2},
    }
    plain = _record("host started")
    assert message.filter(plain)
    assert plain.getMessage() == "host started"


def test_given_message_format_then_the_query_the_alerts_and_workbook_use_reads_the_context_back() -> None:
    """The workbook's KQL takes the JSON after the last ' | {' (extract(@"\\| (\\{.*\\})$")):
    the same expression in Python finds what the filter wrote, even when the message itself
    holds a '|'."""
    with log_context(tenant_id="acme"):
        record = _record("a | b")
        ContextFilter().filter(record)
        MessageContextFilter().filter(record)
    found = re.search(r"\| (\{.*\})$", record.getMessage())
    assert found is not None
    assert json.loads(found.group(1))["tenant_id"] == "acme"
