"""Named Graph errors, and the one place that turns an HTTP answer into one of them.

Callers catch these and never look at status codes (STYLE practice 4). What each means for a
caller:

| error             | HTTP (Graph code)                                  | what the caller does         |
|-------------------|----------------------------------------------------|------------------------------|
| Throttled         | 429 after the gateway's own bounded waits          | requeue after `retry_after`  |
| GraphUnavailable  | 5xx, timeouts, dropped connections                 | retry later (queue)          |
| SyncStateExpired  | 410, or SyncStateNotFound / SyncStateInvalid       | start a full delta round     |
| NotFound          | 404                                                | the item or mailbox is gone  |
| FolderNotFound    | (a NotFound) a folder path's segment is missing    | name the segment             |
| Conflict          | 409, 412 (stale change key / If-Match)             | re-read, re-plan             |
| ConsentMissing    | 401, 403                                           | operator grants the hint     |
| TokenUnavailable  | the credential could not get a token               | operator fixes the credential|
| GrantRevoked      | (a TokenUnavailable) user's refresh token refused  | the user connects again      |
| BadRequest        | other 4xx; bad input caught before any I/O         | fix the input; never retry   |
| MalformedResponse | a 2xx body that is not the JSON Graph promises     | report; retry may not help   |

Messages carry the operation, the mailbox, the status, Graph's error *code* and request id —
never Graph's free-text message (a server can echo request content into it), never mail or
event content, never a token. Errors are raised outside `except` blocks by the adapter, so no
transport exception (whose request holds the Authorization header) hangs off `__context__`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypedDict, Unpack

from core.errors import Reportable

# Graph error codes are identifiers; anything else is not repeated (it could be free text).
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,79}")
_AADSTS = re.compile(r"AADSTS\d{4,8}")
_REQUEST_ID = re.compile(r"[0-9A-Za-z-]{1,64}")

_SYNC_STATE_CODES = frozenset({"syncstatenotfound", "syncstateinvalid", "resyncrequired"})


class Context(TypedDict, total=False):
    """Where a failure happened; every field is safe to log."""

    operation: str
    mailbox: str
    status: int | None
    code: str | None
    request_id: str | None


class GraphError(Reportable):
    """Base of every Graph failure. `status` is None when no HTTP answer was received."""

    def __init__(self, message: str, **context: Unpack[Context]) -> None:
        self.operation: str = context.get("operation", "")
        self.mailbox: str = context.get("mailbox", "")
        self.status: int | None = context.get("status")
        self.code: str | None = context.get("code")
        self.request_id: str | None = context.get("request_id")
        super().__init__(message)


class Throttled(GraphError):
    """Graph answered 429 and the gateway's own wait budget is spent (or Retry-After exceeds
    it). `retry_after` (seconds) is Graph's advice for when to try again."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Unpack[Context]) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class GraphUnavailable(GraphError):
    """Graph failed on its side (5xx), timed out, or the connection dropped. Retrying later may
    help; `retry_after` is set when Graph suggested a delay."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Unpack[Context]) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class SyncStateExpired(GraphError):
    """The delta link is no longer valid (410 / SyncStateNotFound): start a full round again
    (and reconcile deletions against it; never duplicate)."""


class NotFound(GraphError):
    """The mailbox, calendar, event, folder, message or attachment does not exist."""


class FolderNotFound(NotFound):
    """A mail folder path does not resolve: `segment` is its first missing part, `parent` the
    path above it that did resolve ("" when the first segment is missing)."""

    def __init__(self, message: str, *, segment: str, parent: str = "", **kw: Unpack[Context]) -> None:
        self.segment = segment
        self.parent = parent
        super().__init__(message, **kw)


class Conflict(GraphError):
    """The item changed since it was read (412 on If-Match with a stale change key, or 409)."""


class ConsentMissing(GraphError):
    """Graph refused the app (401/403). `permission` names the Graph permission the operation
    needs; the message says what an admin must do."""

    def __init__(self, message: str, *, permission: str = "", **kw: Unpack[Context]) -> None:
        self.permission = permission
        super().__init__(message, **kw)


class TokenUnavailable(GraphError):
    """No access token could be acquired (wrong or expired client secret, unknown tenant or
    app, federated credential not set up). `aad_code` is the AADSTS code when one was given."""

    def __init__(self, message: str, *, aad_code: str | None = None, **kw: Unpack[Context]) -> None:
        self.aad_code = aad_code
        super().__init__(message, **kw)


class GrantRevoked(TokenUnavailable):
    """Entra ID refused a user's refresh token (`invalid_grant`: revoked, reset, expired): only
    the user can fix it, by signing in again (credential mode `delegated`)."""


class BadRequest(GraphError):
    """The request is wrong (Graph 400/other 4xx, or input rejected before any I/O)."""


class MalformedResponse(GraphError):
    """A successful answer whose body is not what Graph documents (not JSON, no `value`, a
    page with neither nextLink nor deltaLink, a link to another host)."""


class MalformedItem(MalformedResponse):
    """One item of a page could not be turned into a domain object. Pages keep these in
    `rejected` instead of failing whole; `item_id` is the item's id when it had one."""

    def __init__(self, kind: str, reason: str, *, item_id: str | None = None) -> None:
        self.kind = kind
        self.reason = reason
        self.item_id = item_id
        shown = f" {item_id!r}" if item_id else ""
        super().__init__(f"malformed {kind}{shown}: {reason}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MalformedItem) and (self.kind, self.reason, self.item_id) == (
            other.kind,
            other.reason,
            other.item_id,
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.reason, self.item_id))


def safe_code(value: object) -> str | None:
    """Graph's error code if it looks like one; otherwise None (never echo free text)."""
    if isinstance(value, str) and _CODE.fullmatch(value):
        return value
    return None


def aad_code(text: str) -> str | None:
    """The AADSTS code inside an identity error message, if any."""
    match = _AADSTS.search(text)
    return match.group(0) if match else None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds; an HTTP date is read as 'now')."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_for_status(
    status: int,
    *,
    code: str | None,
    headers: Mapping[str, str],
    operation: str,
    mailbox: str,
    permission: str,
) -> GraphError:
    """The named error for a failed HTTP answer. `code` is Graph's `error.code` (already passed
    through `safe_code`); `permission` is what the operation needs, for the consent hint."""
    request_id = headers.get("request-id") or headers.get("client-request-id") or ""
    rid = request_id if _REQUEST_ID.fullmatch(request_id) else None
    where = f"{operation} for mailbox {mailbox!r}" if mailbox else operation
    detail = f"HTTP {status}" + (f" {code}" if code else "") + (f", request-id {rid}" if rid else "")
    kw: Context = {
        "operation": operation,
        "mailbox": mailbox,
        "status": status,
        "code": code,
        "request_id": rid,
    }
    lowered = (code or "").lower()
    if status == 410 or lowered in _SYNC_STATE_CODES:
        return SyncStateExpired(f"{where}: the delta state expired ({detail}); start a full round", **kw)
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after"))
        return Throttled(f"{where}: throttled by Graph ({detail})", retry_after=retry_after, **kw)
    if status in (401, 403):
        hint = (f"admin consent missing for {permission}" if permission else "admin consent missing") + (
            " (grant it to the app registration, and check that no Exchange RBAC scope or "
            "application access policy excludes this mailbox)"
        )
        if status == 401:
            hint = f"token rejected; {hint}"
        return ConsentMissing(f"{where}: {hint} ({detail})", permission=permission, **kw)
    if status == 404:
        return NotFound(f"{where}: not found ({detail})", **kw)
    if status in (409, 412):
        return Conflict(f"{where}: the item changed since it was read ({detail})", **kw)
    if status >= 500:
        retry_after = parse_retry_after(headers.get("retry-after"))
        return GraphUnavailable(f"{where}: Graph failed ({detail})", retry_after=retry_after, **kw)
    if 400 <= status < 500:
        return BadRequest(f"{where}: Graph rejected the request ({detail})", **kw)
    return GraphError(f"{where}: unexpected answer ({detail})", **kw)
