"""HTTP plumbing shared by every blueprint: JSON and RFC 9457 problem+json responses, and the
error boundary that turns domain errors into problems.

No `from __future__ import annotations` in functions/: the Functions worker reads trigger
parameter annotations when it indexes the app, so they stay real objects.
"""

import functools
import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import azure.functions as func

from core.bootstrap import Container, container
from core.errors import AlreadyExists, NotFound, SecretStoreError, SettingsError, StaleEtag, StoreUnavailable
from core.observability import log_context
from core.operator_auth import check_operator_key
from core.request_errors import (
    PROBLEM_TYPE_BASE,
    EditConflict,
    InvalidInput,
    ItemGone,
    ItemNotFound,
    MalformedRequest,
    PreconditionFailed,
    RequestError,
    TenantDisabled,
    TenantInaccessible,
    Unauthenticated,
    UpstreamUnavailable,
)
from core.store.records import Tenant
from core.tenants import TenantContext, authenticate

log = logging.getLogger(__name__)

Handler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]
TenantHandler = Callable[[func.HttpRequest, TenantContext], Awaitable[func.HttpResponse]]
OperatorHandler = Callable[[func.HttpRequest, Container], Awaitable[func.HttpResponse]]


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
    headers: dict[str, str] | None = None,
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
        headers=headers,
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
            except RequestError as exc:
                return request_problem(exc)
            except StoreUnavailable:
                log.exception("storage unavailable")
                return problem(503, "State storage is unreachable; retry later.", slug="storage-unavailable")
            except (StaleEtag, AlreadyExists):
                # a write lost a race the handler did not expect: the caller re-reads and retries
                log.info("write conflict", exc_info=True)
                return problem(
                    409, "The item changed while the request was applied; re-read and retry.", slug="conflict"
                )
            except NotFound:
                return problem(404, "The item no longer exists.", slug="not-found", title="Not found")
            except SecretStoreError:
                log.exception("secret store failed")
                return problem(
                    503, "The secret store is unavailable; retry later.", slug="secrets-unavailable"
                )
            except Exception:
                reference = uuid.uuid4().hex
                log.exception("unhandled error", extra={"reference": reference})
                return problem(500, f"Unexpected error; reference {reference}.", reference=reference)

    return wrapper


# One problem type per request error; TenantInaccessible shares ItemNotFound's, so a key of
# another tenant sees exactly what a missing tenant looks like.
_REQUEST_PROBLEMS: tuple[tuple[type[RequestError], int, str, str], ...] = (
    (MalformedRequest, 400, "malformed-request", "Malformed request"),
    (InvalidInput, 422, "invalid-input", "Invalid input"),
    (Unauthenticated, 401, "unauthenticated", "Unauthenticated"),
    (TenantDisabled, 403, "tenant-disabled", "Tenant disabled"),
    (ItemNotFound, 404, "not-found", "Not found"),
    (TenantInaccessible, 404, "not-found", "Not found"),
    (EditConflict, 409, "conflict", "Conflict"),
    (ItemGone, 410, "gone", "Gone"),
    (PreconditionFailed, 412, "precondition-failed", "Precondition failed"),
    (UpstreamUnavailable, 503, "upstream-unavailable", "Upstream unavailable"),
)


def request_problem(exc: RequestError) -> func.HttpResponse:
    """The problem for a request error; messages of request errors are written for callers."""
    status, slug, title = next(
        ((status, slug, title) for kind, status, slug, title in _REQUEST_PROBLEMS if isinstance(exc, kind)),
        (400, "bad-request", "Bad request"),
    )
    if isinstance(exc, InvalidInput):
        detail = "The request has invalid fields: " + str(exc)
        return problem(status, detail, slug=slug, title=title, errors=[p.to_dict() for p in exc.problems])
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
    return problem(status, str(exc), slug=slug, title=title, headers=headers)


def bearer_token(req: func.HttpRequest) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (req.headers.get("Authorization") or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _named_like(wrapper: Handler, handler: Callable[..., Any]) -> None:
    # Not functools.wraps: it would set __wrapped__, and the Functions worker (like the local
    # host) reads the signature through it, finding a second parameter no binding fills.
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(wrapper, attr, getattr(handler, attr))


def tenant_endpoint(handler: TenantHandler) -> Handler:
    """The guard of every route under `v1/tenants/{tenantId}/…`: authenticates the bearer key
    against the route's tenant (401 without a valid key, 404 for another tenant's key, 403 for a
    disabled tenant), sets the log context and passes a `TenantContext` to `handler`, all inside
    the `endpoint` error boundary. tests/integration/test_tenant_isolation.py calls every route
    with `{tenantId}` with another tenant's key, so a route that skips this guard fails there."""

    async def guarded(req: func.HttpRequest) -> func.HttpResponse:
        app = await container()
        route_tenant = req.route_params.get("tenantId") or ""
        tenant = await authenticate(app.tables.repo(Tenant), route_tenant, bearer_token(req), app.clock())
        with log_context(tenant_id=tenant.tenant_id):
            return await handler(req, TenantContext(tenant=tenant, app=app))

    _named_like(guarded, handler)
    wrapper = endpoint(guarded)
    wrapper.tenant_guarded = True  # type: ignore[attr-defined]  # checked by the isolation test
    return wrapper


def operator_endpoint(handler: OperatorHandler) -> Handler:
    """The guard of the operator API: the operator key (`BRIDGE_OPERATOR_KEY_SHA256`) as a
    bearer token, inside the `endpoint` error boundary."""

    async def guarded(req: func.HttpRequest) -> func.HttpResponse:
        app = await container()
        check_operator_key(app.settings.operator_key_sha256, bearer_token(req))
        with log_context(tenant_id=req.route_params.get("tenantId")):
            return await handler(req, app)

    _named_like(guarded, handler)
    wrapper = endpoint(guarded)
    wrapper.operator_guarded = True  # type: ignore[attr-defined]
    return wrapper


def read_json(req: func.HttpRequest, *, optional: bool = False) -> Any:
    """The request body as JSON, or MalformedRequest saying why not (never quoting it). With
    `optional`, an empty body reads as `{}`."""
    body = req.get_body()
    if not body.strip():
        if optional:
            return {}
        raise MalformedRequest("The request needs a JSON body.")
    try:
        return json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except _NumberOutOfRange:
        raise MalformedRequest("The request body has a number too large to represent.") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise MalformedRequest("The request body is not valid JSON.") from None


def _no_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not.
    raise ValueError(f"{name} is not JSON")


class _NumberOutOfRange(ValueError):
    pass


def _finite_float(text: str) -> float:
    # A number beyond a double's range (1e400) is valid JSON text, but Python reads it as
    # infinity, which no answer, event or table can carry as JSON: refuse it like Infinity.
    value = float(text)
    if not math.isfinite(value):
        raise _NumberOutOfRange(text[:20])
    return value
