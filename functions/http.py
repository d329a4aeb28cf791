"""HTTP plumbing shared by every blueprint: JSON and RFC 9457 problem+json responses, and the
error boundary that turns domain errors into problems.

No `from __future__ import annotations` in functions/: the Functions worker reads trigger
parameter annotations when it indexes the app, so they stay real objects.
"""

import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import azure.functions as func

from core.errors import SettingsError, StoreUnavailable
from core.observability import log_context

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://m365-bridge.dev/problems/"

Handler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str),
        status_code=status,
        mimetype="application/json",
        charset="utf-8",
        headers=headers,
    )


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    **extensions: Any,
) -> func.HttpResponse:
    """An RFC 9457 problem document. `slug` names the problem type; without one the type is
    about:blank and the title is the HTTP status phrase, as the RFC asks."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug if slug else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extensions,
    }
    return func.HttpResponse(
        json.dumps(body, default=str),
        status_code=status,
        mimetype="application/problem+json",
        charset="utf-8",
    )


def endpoint(handler: Handler) -> Handler:
    """The error boundary of an HTTP function: sets the log context and maps errors that
    escape the handler to problems. Unexpected errors become a 500 with a reference id that
    is also logged; their text never reaches the caller."""

    @functools.wraps(handler)
    async def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        with log_context(function=handler.__name__):
            try:
                return await handler(req)
            except SettingsError as exc:
                log.error("app settings invalid: %s", exc)
                return problem(503, str(exc), slug="misconfigured", title="Service misconfigured")
            except StoreUnavailable:
                log.exception("storage unavailable")
                return problem(503, "State storage is unreachable; retry later.", slug="storage-unavailable")
            except Exception:
                reference = uuid.uuid4().hex
                log.exception("unhandled error", extra={"reference": reference})
                return problem(500, f"Unexpected error; reference {reference}.", reference=reference)

    return wrapper
