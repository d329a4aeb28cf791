"""Logging set-up: libraries that would log request URLs and headers stay quiet."""

from __future__ import annotations

import logging

from core.observability import configure_logging


def test_given_info_logging_then_http_clients_do_not_log_graph_urls_or_headers() -> None:
    configure_logging("INFO")
    for name in ("httpx", "azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    assert logging.getLogger("core.calendar.sync").isEnabledFor(logging.INFO)
