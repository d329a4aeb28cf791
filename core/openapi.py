"""The OpenAPI 3.1 document of the HTTP API (`GET /api/v1/openapi.json`), built from a catalog.

`OPERATIONS` lists every HTTP route the app registers: method, path (as the Functions route,
with `/api`), operationId (the trigger's Python function name), who may call it, parameters,
body, answers and the problems it can answer with. A new route gets one `Operation` here;
tests/unit/test_openapi.py fails until it has one, and fails for an entry no route answers.

Request body schemas are not written down: they are each request model's own JSON Schema
(`model_json_schema`), its `$defs` hoisted into `components/schemas`, so the document says
exactly what the API validates. Response shapes and examples live in `core/openapi_schemas.py`
and `core/openapi_examples.py`. Building the document is pure and done on first request, not
at import (cold start).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel

from core import openapi_examples as ex
from core.booking.config import BookingCalendarIn
from core.booking.requests import ReservationIn
from core.calendar.changes import AppointmentBatchIn, ChangeIn
from core.host.feed import DEFAULT_LIMIT as FEED_DEFAULT_LIMIT
from core.host.feed import MAX_LIMIT as FEED_MAX_LIMIT
from core.links import MAX_LIST, ResourceIn
from core.mail.config import MailImportIn
from core.mail.outgoing import MAX_ATTACHMENTS, MAX_RECIPIENTS, OutgoingMailIn
from core.mail.senders import MailSenderIn
from core.openapi_schemas import PROBLEMS, RESPONSE_SCHEMAS, Schema, ref
from core.presence.config import MAX_USERS_PER_QUERY, MonitorIn, PresenceSettingsIn
from core.run_history import DEFAULT_LIMIT as RUNS_DEFAULT_LIMIT
from core.run_history import MAX_LIMIT as RUNS_MAX_LIMIT
from core.tenant_schema import MAX_GRACE_HOURS, RotateIn, TenantCreate, TenantPatch
from core.validators import TENANT_ID_PATTERN

REF_TEMPLATE = "#/components/schemas/{model}"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
MERGE_PATCH = "application/merge-patch+json"


class Auth(StrEnum):
    """Who may call a route. Every route but the sign-in callback needs the Functions key; tenant
    and operator routes a bearer key too."""

    FUNCTION = "function"  # the Functions key only
    TENANT = "tenant"  # + the tenant's API key
    OPERATOR = "operator"  # + the operator key
    ANONYMOUS = "anonymous"  # no key: a browser comes back from the Microsoft sign-in


@dataclass(frozen=True)
class Param:
    """A query or header parameter. Path parameters come from the path itself (`PATH_PARAMS`)."""

    name: str
    where: Literal["query", "header"]
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    example: Any = None


@dataclass(frozen=True)
class Example:
    """A request body example and the model it is valid for (the tests check it is)."""

    name: str
    summary: str
    value: Any
    model: type[BaseModel]


@dataclass(frozen=True)
class Body:
    """A request body: its model's schema, or `oneOf` several models' when the parser accepts
    several shapes (one change or a batch)."""

    models: tuple[type[BaseModel], ...]
    examples: tuple[Example, ...]
    required: bool = True
    description: str = ""
    media_types: tuple[str, ...] = (JSON,)


@dataclass(frozen=True)
class Reply:
    """A success answer: status, what it means, the response schema's name (None: no body),
    an example (default: the schema's from `core.openapi_examples`) and headers it carries."""

    status: int
    description: str
    schema: str | None = None
    example: Any = None
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """One route and method. `path` is the Functions route under `/api`, its `{parameters}`
    described from `PATH_PARAMS`; `operation_id` is the trigger's function name; `replies` are
    the success answers, `errors` the problem statuses it adds to `COMMON_ERRORS[auth]`."""

    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    description: str
    auth: Auth
    replies: tuple[Reply, ...]
    params: tuple[Param, ...] = ()
    body: Body | None = None
    errors: tuple[int, ...] = ()  # problem statuses beyond the ones every route of its auth has


# Problems any route of each kind can answer: keys (401), the tenant guard (403, 404), an
# unexpected error (500), storage, secrets or settings unavailable (503).
COMMON_ERRORS: dict[Auth, tuple[int, ...]] = {
    Auth.FUNCTION: (401, 500, 503),
    Auth.TENANT: (401, 403, 404, 500, 503),
    Auth.OPERATOR: (401, 500, 503),
    Auth.ANONYMOUS: (500, 503),
}

PATH_PARAMS: dict[str, str] = {
    "tenantId": "The bridge's id for the tenant: 1-63 lower-case letters, digits and hyphens.",
    "resourceId": "The host's id for the resource (a person or a room).",
    "account": "A linked account: its user principal name or Entra object id.",
    "hostAppointmentId": "The host's id for the appointment.",
    "importId": "The host's id for the mail import.",
    "bookingCalendarId": "The host's id for the booking calendar.",
    "reservationId": "The reservation's id, as its POST returned it.",
    "email": "The monitored user's e-mail address.",
    "senderId": "The host's id for the sender profile.",
    "messageId": "The mail's id, as its POST returned it.",
}
_PATH_PARAM = re.compile(r"\{(\w+)\}")
PATH_PARAM_SCHEMAS: dict[str, Schema] = {
    "tenantId": {"type": "string", "pattern": f"^{TENANT_ID_PATTERN.pattern}$"},
    "email": {"type": "string", "format": "email"},
}

SECURITY_SCHEMES: dict[str, Schema] = {
    "functionKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
        "description": "The Azure Functions key (the host answers 401 without it).",
    },
    "functionCode": {
        "type": "apiKey",
        "in": "query",
        "name": "code",
        "description": "The Azure Functions key as the `code` query parameter, instead of the header.",
    },
    "tenantKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "m365b_<tenantId>_<43 characters>",
        "description": "The tenant's API key, shown once at creation or rotation by the operator API. "
        "Another tenant's key answers 404, exactly as a tenant that does not exist.",
    },
    "operatorKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "m365op_<43 characters>",
        "description": "The operator key; the app setting BRIDGE_OPERATOR_KEY_SHA256 holds its SHA-256 "
        "(`python -m core.operator_auth` makes one). Unset: the operator API answers 401.",
    },
}
_BEARER = {Auth.FUNCTION: None, Auth.TENANT: "tenantKey", Auth.OPERATOR: "operatorKey", Auth.ANONYMOUS: None}

HEADERS: dict[str, Schema] = {
    "ETag": {
        "description": "The item's version: send it back in If-Match to change it only if unchanged.",
        "schema": {"type": "string"},
    },
    "Location": {"description": "Where the created item is.", "schema": {"type": "string"}},
    "Cache-Control": {
        "description": "`no-store`: the answer carries a key or secret shown only once.",
        "schema": {"type": "string", "const": "no-store"},
    },
}

TAGS: tuple[tuple[str, str], ...] = (
    ("Service", "Health and this document."),
    ("Operator", "The operator's API: create, read, update, delete and re-key tenants."),
    ("Resources", "A tenant's host resources (people, rooms) and their linked Microsoft 365 accounts."),
    ("Calendar", "Calendar sync down (Outlook → host) and push up (host → Outlook)."),
    ("Mail import", "Documents from a mailbox's folder to the host, ledgered."),
    ("Sending mail", "Sender profiles, and mail host systems send through them."),
    ("Booking", "Booking calendars, the slots a form shows, and reservations."),
    ("Presence", "Presence of monitored users for a switchboard, from their calendars."),
    ("Runs and events", "What the bridge did (runs) and what it told the host (the event feed)."),
    (
        "Onboarding",
        "Test settings, and users connecting their own calendars (credential mode delegated).",
    ),
)

# --- parameters --------------------------------------------------------------------------------

IF_MATCH = Param(
    "If-Match",
    "header",
    "Apply only if the item still has this ETag (`*`: if it exists at all); otherwise 412.",
)
IF_NONE_MATCH = Param(
    "If-None-Match",
    "header",
    "`*`: create only; 412 if the item exists already.",
    {"type": "string", "enum": ["*"]},
)
CLEANUP = Param(
    "cleanup",
    "query",
    "`true`: also delete every event the bridge created in the unlinked accounts (then 202).",
    {"type": "boolean", "default": False},
)


def _limit(default: int, high: int | None) -> Schema:
    schema: Schema = {"type": "integer", "minimum": 1, "default": default}
    return {**schema, "maximum": high} if high is not None else schema


# --- the catalog -------------------------------------------------------------------------------

OPERATOR = "/api/v1/operator/tenants"
TENANT = "/api/v1/tenants/{tenantId}"
RESOURCE = TENANT + "/resources/{resourceId}"
IMPORT = TENANT + "/mail-imports/{importId}"
BOOKING = TENANT + "/booking-calendars/{bookingCalendarId}"
RESERVATIONS = BOOKING + "/reservations"
MONITOR = TENANT + "/presence/monitors/{email}"
SENDER = TENANT + "/mail-senders/{senderId}"
CONNECTED = TENANT + "/connect/accounts"
ETAG = ("ETag",)

OPERATIONS: tuple[Operation, ...] = (
    # --- service
    Operation(
        "GET",
        "/api/v1/health",
        "health",
        "Service",
        "Storage reachability and version",
        "Probes tables, queues and blobs concurrently (5 s each). Needs only the Functions key.",
        Auth.FUNCTION,
        (
            Reply(200, "Every storage service answered.", "HealthReport"),
            Reply(
                503,
                "Degraded: a storage service did not answer; its check says why.",
                "HealthReport",
                example={
                    "status": "degraded",
                    "version": "0.1.0",
                    "checks": {
                        "tables": {"ok": True, "latency_ms": 11.9, "error": None},
                        "queues": {"ok": False, "latency_ms": 5000.2, "error": "no answer within 5 s"},
                        "blobs": {"ok": True, "latency_ms": 10.4, "error": None},
                    },
                },
            ),
        ),
    ),
    Operation(
        "GET",
        "/api/v1/openapi.json",
        "get_openapi",
        "Service",
        "This OpenAPI document",
        "Generated from the pydantic models that validate the requests, so it cannot drift from them.",
        Auth.FUNCTION,
        (Reply(200, "The OpenAPI 3.1 document.", "OpenApiDocument", example={"openapi": "3.1.0"}),),
    ),
    # --- operator
    Operation(
        "POST",
        OPERATOR,
        "create_tenant",
        "Operator",
        "Create a tenant",
        "201 with the tenant, its `apiKey` and (if generated) `webhookSecret`, shown once "
        "(`Cache-Control: no-store`). Secret values go to the secrets port, never into the tenant; "
        "unknown fields are refused. `id` is generated when left out.",
        Auth.OPERATOR,
        (Reply(201, "Created.", "IssuedTenant", headers=("Location", "ETag", "Cache-Control")),),
        body=Body(
            (TenantCreate,),
            (
                Example(
                    "norwegian-tenant",
                    "A Norwegian tenant with its own app registration",
                    ex.TENANT_CREATE,
                    TenantCreate,
                ),
            ),
        ),
        errors=(400, 409, 422),
    ),
    Operation(
        "GET",
        OPERATOR,
        "list_tenants",
        "Operator",
        "List tenants",
        "Every tenant, without secrets or key hashes.",
        Auth.OPERATOR,
        (Reply(200, "The tenants.", "TenantList"),),
    ),
    Operation(
        "GET",
        OPERATOR + "/{tenantId}",
        "get_tenant",
        "Operator",
        "Read a tenant",
        "One tenant, with its ETag.",
        Auth.OPERATOR,
        (Reply(200, "The tenant.", "Tenant", headers=ETAG),),
        errors=(404,),
    ),
    Operation(
        "PATCH",
        OPERATOR + "/{tenantId}",
        "update_tenant",
        "Operator",
        "Change a tenant",
        "A JSON merge patch: absent fields stay, `null` clears `graph.clientId` and `host.webhookUrl` "
        "(then the host pulls the event feed). New secrets go to the secrets port. `If-Match` makes "
        "it conditional (412 if stale).",
        Auth.OPERATOR,
        (Reply(200, "The tenant as changed.", "Tenant", headers=ETAG),),
        params=(IF_MATCH,),
        body=Body(
            (TenantPatch,),
            (
                Example("disable", "Disable the tenant: its keys get 403", ex.TENANT_DISABLE, TenantPatch),
                Example("pull-feed", "No webhook: the host pulls the feed", ex.TENANT_PULL_FEED, TenantPatch),
                Example("new-client-secret", "A new Graph client secret", ex.TENANT_NEW_SECRET, TenantPatch),
            ),
            media_types=(JSON, MERGE_PATCH),
        ),
        errors=(400, 404, 409, 412, 422),
    ),
    Operation(
        "DELETE",
        OPERATOR + "/{tenantId}",
        "delete_tenant",
        "Operator",
        "Delete a tenant",
        "Removes the tenant, its secrets, links, runs and other tenant-keyed state. A retried DELETE "
        "finishes a half-done one.",
        Auth.OPERATOR,
        (Reply(204, "Deleted."),),
        params=(IF_MATCH,),
        errors=(404, 409, 412),
    ),
    Operation(
        "POST",
        OPERATOR + "/{tenantId}/keys/rotate",
        "rotate_tenant_key",
        "Operator",
        "Rotate a tenant's API key",
        "A new API key, shown once. The old keys keep working `API_KEY_GRACE_HOURS` "
        f"(`graceHours`, 0-{MAX_GRACE_HOURS}; 0 revokes them now, for a leaked key). The body is optional.",
        Auth.OPERATOR,
        (Reply(200, "The tenant with its new key.", "IssuedTenant", headers=("ETag", "Cache-Control")),),
        body=Body(
            (RotateIn,),
            (
                Example("revoke-now", "A leaked key: the old ones stop at once", ex.ROTATE_NOW, RotateIn),
                Example("two-days", "Two days to switch over", ex.ROTATE_WITH_GRACE, RotateIn),
            ),
            required=False,
        ),
        errors=(400, 404, 409, 422),
    ),
    # --- resources
    Operation(
        "PUT",
        RESOURCE,
        "put_resource",
        "Resources",
        "Create or replace a resource",
        "Create (201) or replace (200) a resource's ordered accounts `{account, direction, calendars, "
        "scope}`. The main account, which receives uploads, is the first whose direction includes up. "
        "The body is validated completely before anything is written.",
        Auth.TENANT,
        (
            Reply(201, "Created.", "Resource", headers=ETAG),
            Reply(200, "Replaced.", "Resource", headers=ETAG),
        ),
        params=(IF_MATCH, IF_NONE_MATCH),
        body=Body(
            (ResourceIn,),
            (Example("meeting-room", "A meeting room and a person who reads it", ex.RESOURCE, ResourceIn),),
        ),
        errors=(400, 409, 412, 422),
    ),
    Operation(
        "GET",
        RESOURCE,
        "get_resource",
        "Resources",
        "Read a resource",
        "The resource with its accounts and `mainAccount` (the first whose direction includes up).",
        Auth.TENANT,
        (Reply(200, "The resource.", "Resource", headers=ETAG),),
    ),
    Operation(
        "DELETE",
        RESOURCE,
        "delete_resource",
        "Resources",
        "Unlink a resource",
        "204. With `cleanup=true`, 202 and every event the bridge created for the resource is deleted "
        "from its accounts (run `calendar-cleanup`); events people made themselves stay.",
        Auth.TENANT,
        (
            Reply(204, "Unlinked."),
            Reply(202, "Unlinked; the cleanup is queued.", "CleanupQueued"),
        ),
        params=(CLEANUP, IF_MATCH),
        errors=(409, 412, 422),
    ),
    Operation(
        "DELETE",
        RESOURCE + "/accounts/{account}",
        "unlink_account",
        "Resources",
        "Unlink one account of a resource",
        "204, or with `cleanup=true` 202 and the bridge's events in that account are deleted. 404 if "
        "the resource does not link the account. `If-Match` as for PUT.",
        Auth.TENANT,
        (
            Reply(204, "Unlinked."),
            Reply(
                202,
                "Unlinked; the cleanup is queued.",
                "CleanupQueued",
                example={
                    "trackingId": "a4c5df35e0b94d7c9f1e2b3a4c5d6e7f",
                    "cleanup": ["kari.nordmann@contoso.no"],
                },
            ),
        ),
        params=(CLEANUP, IF_MATCH),
        errors=(409, 412, 422),
    ),
    Operation(
        "GET",
        TENANT + "/resources",
        "list_resources",
        "Resources",
        "List resources",
        "Pages in resource-id order; `next` is the cursor of the next page (null at the end).",
        Auth.TENANT,
        (Reply(200, "One page of resources.", "ResourceList"),),
        params=(
            Param("limit", "query", "Page size.", _limit(100, MAX_LIST)),
            Param("after", "query", "The `next` of the previous page."),
        ),
        errors=(422,),
    ),
    # --- calendar
    Operation(
        "POST",
        RESOURCE + "/sync",
        "sync_resource",
        "Calendar",
        "Sync calendar now",
        '"Sync calendar": queues a down-sync of every down-linked calendar of the resource now. '
        "Accounts with direction up or none are listed in `skipped` with the reason. The run appears "
        "under …/runs as `calendar-sync`; 404 if the resource is not linked.",
        Auth.TENANT,
        (Reply(202, "Queued.", "SyncRequested"),),
    ),
    Operation(
        "GET",
        RESOURCE + "/sync",
        "get_sync_status",
        "Calendar",
        "Where the resource's down-sync stands",
        "Each linked calendar's down-sync state: `status` (never, running, ok, failed), when it last "
        "ran and succeeded, the last full sync, the window, `error` in plain words and the number of "
        "consecutive failures. No Graph call.",
        Auth.TENANT,
        (Reply(200, "Each linked calendar's state.", "SyncStatus"),),
    ),
    Operation(
        "POST",
        TENANT + "/appointments",
        "push_appointments",
        "Calendar",
        "Push appointments to Outlook",
        'Calendar push up: one change, or `{"appointments": [...]}` with 1-100 changes. Each change '
        "names a host appointment of a resource, its `version` (only the newest is applied) and `op` "
        "(upsert with the fields, or delete). A time without an offset is a wall time in `timeZone` "
        "(the tenant's when left out); all-day appointments have dates, `end` being the day after. "
        "A batch is validated item by item: invalid items are listed in `rejected`, the valid ones go "
        "on; a request with nothing valid is 422 and stores nothing. Small requests are in Outlook "
        "before the 202; the host hears each result as `appointment.pushed`.",
        Auth.TENANT,
        (Reply(202, "Accepted.", "AppointmentsAccepted"),),
        body=Body(
            (ChangeIn, AppointmentBatchIn),
            (
                Example("one-change", "One work order", ex.APPOINTMENT, ChangeIn),
                Example(
                    "batch",
                    "A moved work order, an all-day installation and a delete",
                    ex.APPOINTMENT_BATCH,
                    AppointmentBatchIn,
                ),
            ),
            description="One change, or a batch of them.",
        ),
        errors=(400, 409, 422),
    ),
    Operation(
        "GET",
        RESOURCE + "/appointments/{hostAppointmentId}",
        "get_appointment",
        "Calendar",
        "Where a pushed appointment stands",
        "`version` (the newest received), `appliedVersion`, `status` (pending, applied, conflict, "
        "skipped, failed), `reason`, the account, calendar and event it went to, and `trackingId`.",
        Auth.TENANT,
        (Reply(200, "The appointment's state.", "Appointment"),),
    ),
    # --- mail import
    Operation(
        "PUT",
        IMPORT,
        "put_mail_import",
        "Mail import",
        "Create or replace a mail import",
        "Create (201) or replace (200) a mail import. Both folders are resolved in the mailbox now: a "
        "missing folder or a mailbox the app may not read is a 422 naming the field; Graph "
        "unavailable is 503.",
        Auth.TENANT,
        (
            Reply(201, "Created.", "MailImport", headers=ETAG),
            Reply(200, "Replaced.", "MailImport", headers=ETAG),
        ),
        params=(IF_MATCH, IF_NONE_MATCH),
        body=Body(
            (MailImportIn,),
            (Example("invoices", "Invoices to the accounting system", ex.MAIL_IMPORT, MailImportIn),),
        ),
        errors=(400, 409, 412, 422),
    ),
    Operation(
        "GET",
        IMPORT,
        "get_mail_import",
        "Mail import",
        "Read a mail import",
        "The import with `lastRun` (status, when it last ran and succeeded, `error` in plain words, "
        "consecutive failures).",
        Auth.TENANT,
        (Reply(200, "The import.", "MailImport", headers=ETAG),),
    ),
    Operation(
        "DELETE",
        IMPORT,
        "delete_mail_import",
        "Mail import",
        "Delete a mail import",
        "204. The ledger stays: re-creating the import never delivers again what was delivered.",
        Auth.TENANT,
        (Reply(204, "Deleted."),),
        params=(IF_MATCH,),
        errors=(409, 412),
    ),
    Operation(
        "GET",
        TENANT + "/mail-imports",
        "list_mail_imports",
        "Mail import",
        "List mail imports",
        "Every import of the tenant.",
        Auth.TENANT,
        (Reply(200, "The imports.", "MailImportList"),),
    ),
    Operation(
        "POST",
        IMPORT + "/run",
        "run_mail_import",
        "Mail import",
        "Run a mail import now",
        '"Run import": queues a run of this import now; 202 with the run id its worker records '
        "(see …/runs?runId=).",
        Auth.TENANT,
        (Reply(202, "Queued.", "RunQueued"),),
    ),
    # --- sending mail
    Operation(
        "PUT",
        SENDER,
        "put_mail_sender",
        "Sending mail",
        "Create or replace a sender profile",
        "Create (201) or replace (200) a sender: the mailbox mail is sent from (UPN or object id), "
        "optionally `sendAs` another address it has Exchange's Send As permission on, and whether a "
        "copy stays in its Sent Items (default true). Needs the application permission Mail.Send, "
        "and Mail.ReadWrite for mail with more than 3 MB of files (sent as a draft); Test settings "
        "checks both. 409 for a tenant in delegated mode (sending needs the app's own permission).",
        Auth.TENANT,
        (
            Reply(201, "Created.", "MailSender", headers=ETAG),
            Reply(200, "Replaced.", "MailSender", headers=ETAG),
        ),
        params=(IF_MATCH, IF_NONE_MATCH),
        body=Body(
            (MailSenderIn,),
            (Example("forms", "The forms product's sender, as post@", ex.MAIL_SENDER, MailSenderIn),),
        ),
        errors=(400, 409, 412, 422),
    ),
    Operation(
        "GET",
        SENDER,
        "get_mail_sender",
        "Sending mail",
        "Read a sender profile",
        "The sender profile, with its ETag.",
        Auth.TENANT,
        (Reply(200, "The sender.", "MailSender", headers=ETAG),),
    ),
    Operation(
        "DELETE",
        SENDER,
        "delete_mail_sender",
        "Sending mail",
        "Delete a sender profile",
        "204. Mail already accepted through it is still sent as it was accepted.",
        Auth.TENANT,
        (Reply(204, "Deleted."),),
        params=(IF_MATCH,),
        errors=(409, 412),
    ),
    Operation(
        "GET",
        TENANT + "/mail-senders",
        "list_mail_senders",
        "Sending mail",
        "List sender profiles",
        "Every sender profile of the tenant.",
        Auth.TENANT,
        (Reply(200, "The senders.", "MailSenderList"),),
    ),
    Operation(
        "POST",
        SENDER + "/messages",
        "send_message",
        "Sending mail",
        "Send a mail",
        "Checks the mail whole, stores it and queues it: 202 with its id (`Location` says where to "
        "follow it); the worker sends it and the host hears `mail.sent` or `mail.failed`. The same "
        "`idempotencyKey` again answers the first mail (at most one mail is sent per key); the key "
        "with a different mail is a 409. 422 names every bad field: a recipient that is not an "
        f"address (at most {MAX_RECIPIENTS} in to, cc and bcc), a file type Outlook blocks "
        f"(executables, scripts), bad base64, more than {MAX_ATTACHMENTS} files, or a message heavier "
        "than MAIL_SEND_MAX_MB as Exchange counts it (35 MB by default; files count base64-encoded, "
        "so about 26 MB of files fit). `body` is a text string or "
        "`{contentType: text|html, content}`.",
        Auth.TENANT,
        (Reply(202, "Accepted; the worker sends it.", "OutgoingMail", headers=("Location",)),),
        body=Body(
            (OutgoingMailIn,),
            (Example("receipt", "A form's receipt with a PDF", ex.OUTGOING_MAIL, OutgoingMailIn),),
        ),
        errors=(400, 409, 422),
    ),
    Operation(
        "GET",
        SENDER + "/messages/{messageId}",
        "get_message",
        "Sending mail",
        "Where a mail stands",
        "`status` queued, sent or failed; a failed mail's `error` and `fix` in plain words, and "
        "`outcomeUnknown` when Graph never confirmed a send it was asked for.",
        Auth.TENANT,
        (Reply(200, "The mail.", "OutgoingMail"),),
    ),
    # --- booking
    Operation(
        "PUT",
        BOOKING,
        "put_booking_calendar",
        "Booking",
        "Create or replace a booking calendar",
        "Create (201) or replace (200) a booking calendar. The calendar is resolved in the owner's "
        "mailbox now (422 naming the field otherwise); the suffix defaults to the tenant language's "
        '(" - Booked", " - Booket", …), the time zone to the tenant\'s.',
        Auth.TENANT,
        (
            Reply(201, "Created.", "BookingCalendar", headers=ETAG),
            Reply(200, "Replaced.", "BookingCalendar", headers=ETAG),
        ),
        params=(IF_MATCH, IF_NONE_MATCH),
        body=Body(
            (BookingCalendarIn,),
            (Example("advice", "Advice sessions, a day's notice", ex.BOOKING_CALENDAR, BookingCalendarIn),),
        ),
        errors=(400, 409, 412, 422),
    ),
    Operation(
        "GET",
        BOOKING,
        "get_booking_calendar",
        "Booking",
        "Read a booking calendar",
        "The booking calendar and its rules, with its ETag.",
        Auth.TENANT,
        (Reply(200, "The booking calendar.", "BookingCalendar", headers=ETAG),),
    ),
    Operation(
        "DELETE",
        BOOKING,
        "delete_booking_calendar",
        "Booking",
        "Delete a booking calendar",
        "204. The Outlook calendar and its events stay.",
        Auth.TENANT,
        (Reply(204, "Deleted."),),
        params=(IF_MATCH,),
        errors=(409, 412),
    ),
    Operation(
        "GET",
        TENANT + "/booking-calendars",
        "list_booking_calendars",
        "Booking",
        "List booking calendars",
        "Every booking calendar of the tenant.",
        Auth.TENANT,
        (Reply(200, "The booking calendars.", "BookingCalendarList"),),
    ),
    Operation(
        "GET",
        BOOKING + "/slots",
        "get_slots",
        "Booking",
        "The slots a form shows",
        "The events of the booking calendar in the window, each `available` or with the `reason` it "
        "is not (taken, booked, outside the hours, a weekend, within the notice). `from`/`to` are "
        "dates (midnight in the calendar's zone) or date-times; default today and the next 31 days, "
        "at most 93 days.",
        Auth.TENANT,
        (Reply(200, "The slots.", "Slots"),),
        params=(
            Param("from", "query", "Start: a date (2026-12-01) or a date-time.", example="2026-12-07"),
            Param("to", "query", "End (exclusive): a date or a date-time.", example="2026-12-08"),
        ),
        errors=(422,),
    ),
    Operation(
        "POST",
        RESERVATIONS,
        "reserve_slot",
        "Booking",
        "Book a slot",
        "Claim a slot: 201 with the reservation (`status: pending`; its worker then books it in "
        "Outlook and the host hears `booking.reserved`), 200 with the first reservation for a "
        "repeated `idempotencyKey`. 409 if the slot is taken, booked or (with `slotVersion`) changed "
        "since it was listed; 410 if it was deleted in Outlook; 422 for bad input or a slot the "
        "calendar's rules do not offer (hours, weekend, notice): nothing is stored then. Documents "
        "are base64; each is checked by name, declared type and content (at most 10, 25 MB each, "
        "50 MB together).",
        Auth.TENANT,
        (
            Reply(201, "Claimed; the worker books it.", "Reservation"),
            Reply(200, "A repeated idempotencyKey: the first reservation.", "Reservation"),
        ),
        body=Body(
            (ReservationIn,),
            (Example("referral", "A booking form with a referral letter", ex.RESERVATION, ReservationIn),),
        ),
        errors=(400, 409, 410, 422),
    ),
    Operation(
        "GET",
        RESERVATIONS,
        "list_reservations",
        "Booking",
        "List a booking calendar's reservations",
        "Every reservation of the booking calendar.",
        Auth.TENANT,
        (Reply(200, "The reservations.", "ReservationList"),),
    ),
    Operation(
        "GET",
        RESERVATIONS + "/{reservationId}",
        "get_reservation",
        "Booking",
        "Read a reservation",
        "`status` (pending, booked, cancelling, cancelled, failed), the slot, booker, fields, "
        "documents (`attached`), `summaryAttached`, `error` in plain words.",
        Auth.TENANT,
        (Reply(200, "The reservation.", "Reservation"),),
    ),
    Operation(
        "DELETE",
        RESERVATIONS + "/{reservationId}",
        "cancel_reservation",
        "Booking",
        "Cancel a reservation",
        "202 with `status: cancelling`: the worker restores the slot as the admin left it and the "
        "host hears `booking.cancelled`. Cancelling again changes nothing.",
        Auth.TENANT,
        (
            Reply(
                202,
                "Cancelling.",
                "Reservation",
                example={**ex.RESPONSE_EXAMPLES["Reservation"], "status": "cancelling"},
            ),
        ),
        errors=(409,),
    ),
    # --- presence
    Operation(
        "PUT",
        TENANT + "/presence/settings",
        "put_presence_settings",
        "Presence",
        "Set the tenant's presence rules",
        "`busyStatuses` (the showAs values that make a user busy; default busy), `showSubjects` "
        "(default true; never for private events), `refreshMinutes` (1-60, default 5), "
        "`monitorAccount` (the mailbox getSchedule is asked as; default each batch's first user). "
        "Every monitored user is read again under the new rules.",
        Auth.TENANT,
        (Reply(200, "The settings.", "PresenceSettings"),),
        body=Body(
            (PresenceSettingsIn,),
            (
                Example(
                    "switchboard", "Busy and out of office count", ex.PRESENCE_SETTINGS, PresenceSettingsIn
                ),
            ),
        ),
        errors=(400, 409, 422),
    ),
    Operation(
        "GET",
        TENANT + "/presence/settings",
        "get_presence_settings",
        "Presence",
        "Read the tenant's presence rules",
        "The settings (the defaults until a PUT) and when users were last read.",
        Auth.TENANT,
        (Reply(200, "The settings.", "PresenceSettings"),),
    ),
    Operation(
        "PUT",
        MONITOR,
        "put_presence_monitor",
        "Presence",
        "Monitor a user",
        "Enable a user (201; read at once) or rename one (200). The body is optional.",
        Auth.TENANT,
        (
            Reply(201, "Enabled.", "Presence"),
            Reply(200, "Already monitored (renamed if asked).", "Presence"),
        ),
        body=Body(
            (MonitorIn,),
            (Example("named", "A user with the name the switchboard shows", ex.MONITOR, MonitorIn),),
            required=False,
        ),
        errors=(400, 409, 422),
    ),
    Operation(
        "GET",
        MONITOR,
        "get_presence_monitor",
        "Presence",
        "Read a monitored user",
        "The user's presence from stored state.",
        Auth.TENANT,
        (Reply(200, "The user.", "Presence"),),
        errors=(422,),
    ),
    Operation(
        "DELETE",
        MONITOR,
        "delete_presence_monitor",
        "Presence",
        "Stop monitoring a user",
        "204.",
        Auth.TENANT,
        (Reply(204, "No longer monitored."),),
        errors=(422,),
    ),
    Operation(
        "GET",
        TENANT + "/presence/monitors",
        "list_presence_monitors",
        "Presence",
        "List monitored users",
        "Every monitored user with their presence.",
        Auth.TENANT,
        (Reply(200, "The users.", "PresenceMonitorList"),),
    ),
    Operation(
        "GET",
        TENANT + "/presence",
        "get_presence",
        "Presence",
        "Presence of users",
        "From stored state, no Graph call: each user's `status` (free, busy, unknown), since and "
        "until when, showAs, subject and location, in the order asked. An address not monitored is "
        "`unknown` with reason `not monitored`.",
        Auth.TENANT,
        (Reply(200, "The users' presence.", "PresenceList"),),
        params=(
            Param(
                "users",
                "query",
                f"Comma-separated addresses (at most {MAX_USERS_PER_QUERY}); all monitored users without it.",
                example="grady@contoso.no,ola@contoso.no",
            ),
        ),
        errors=(422,),
    ),
    Operation(
        "POST",
        TENANT + "/presence/refresh",
        "refresh_presence",
        "Presence",
        "Read every monitored user now",
        '"Run now": queues getSchedule reads of every monitored user, 20 at a time; 202 `{batches}`.',
        Auth.TENANT,
        (Reply(202, "Queued.", "PresenceRefresh"),),
    ),
    # --- runs and events
    Operation(
        "GET",
        TENANT + "/runs",
        "list_runs",
        "Runs and events",
        "The tenant's runs",
        "Newest first. `runId` (a push's `trackingId` or a sync's `runId`) shows the runs of that "
        "request; `function` narrows them to one job.",
        Auth.TENANT,
        (Reply(200, "The runs.", "RunList"),),
        params=(
            Param("function", "query", "One job's runs, e.g. calendar-sync.", example="calendar-sync"),
            Param(
                "runId", "query", "The runs of one request.", {"type": "string", "pattern": "^[0-9a-f]{32}$"}
            ),
            Param("limit", "query", "How many.", _limit(RUNS_DEFAULT_LIMIT, RUNS_MAX_LIMIT)),
        ),
        errors=(422,),
    ),
    Operation(
        "GET",
        TENANT + "/events",
        "list_events",
        "Runs and events",
        "The event feed",
        "The tenant's events in order, delivered by webhook or not: for hosts that cannot take "
        "webhooks, or to catch up. `after` is a `next` this feed returned (omit it or 0 to start); "
        "a malformed cursor or one past the end is 400.",
        Auth.TENANT,
        (Reply(200, "One page of events.", "EventPage"),),
        params=(
            Param(
                "after",
                "query",
                "The cursor: a `next` of this feed, or 0.",
                {"type": "string", "pattern": "^[0-9]+$"},
            ),
            Param(
                "limit",
                "query",
                f"Page size; larger values count as {FEED_MAX_LIMIT}.",
                _limit(FEED_DEFAULT_LIMIT, None),
            ),
        ),
        errors=(400,),
    ),
    Operation(
        "POST",
        TENANT + "/events/test",
        "send_test_event",
        "Runs and events",
        "Send a test event",
        "Emits a `bridge.test` event, delivered to the webhook (signed, in order) and in the feed like "
        "any other: a host checks its receiver and signature verification end to end. "
        "`Idempotency-Key` makes a retry emit once.",
        Auth.TENANT,
        (Reply(202, "Emitted.", "TestEventQueued"),),
        params=(
            Param(
                "Idempotency-Key",
                "header",
                "1-200 printable characters: a retried request with the same key emits one event.",
                example="check-2026-11-02",
            ),
        ),
        errors=(400,),
    ),
    # --- onboarding
    Operation(
        "POST",
        TENANT + "/test",
        "check_settings",
        "Onboarding",
        "Test settings",
        'The guides\' "Test settings" button: checks the set-up against Microsoft Graph — a token '
        "(per connected user in delegated mode), the permissions it carries against what the "
        "configured features need, each linked calendar, mail import folder, booking calendar and "
        "one presence read — and answers one line per check and target, `ok`, `failed`, `warning` "
        "(Graph busy or slow: try again) or `skipped`, with the fix in plain words for each failure. "
        "At most 200 targets and 100 seconds. Never a secret, a token or mail or event content.",
        Auth.TENANT,
        (Reply(200, "The report, whatever it found (`ok` says whether anything failed).", "SettingsReport"),),
    ),
    Operation(
        "GET",
        TENANT + "/connect/start",
        "connect_start",
        "Onboarding",
        "Send a user to connect their calendar",
        "Credential mode `delegated`: 302 to the Microsoft sign-in for `account` (authorization code "
        "with PKCE; the URL is in the body too, for a host that opens it itself). The offer is "
        "single-use and lasts 10 minutes. Once the user has signed in, the account is linked to "
        "`resourceId` with `direction`. The redirect URI registered on the app must be "
        "`<BRIDGE_PUBLIC_URL>/api/v1/connect/callback`.",
        Auth.TENANT,
        (
            Reply(
                302,
                "To the Microsoft sign-in (`Location`).",
                "ConnectStarted",
                headers=("Location", "Cache-Control"),
            ),
        ),
        params=(
            Param("resourceId", "query", "The host's resource to link the account to.", example="room-4b"),
            Param(
                "account",
                "query",
                "The user who signs in: user principal name or Entra object id.",
                example="grady@contoso.no",
            ),
            Param(
                "direction",
                "query",
                "How the account is linked (down asks only to read the calendar).",
                {"type": "string", "enum": ["down", "up", "both"], "default": "both"},
            ),
            Param(
                "returnUrl",
                "query",
                "Where the browser goes after the sign-in, with `status` and `account` added (https).",
                example="https://erp.contoso.no/calendar/connected",
            ),
        ),
        errors=(409, 422),
    ),
    Operation(
        "GET",
        "/api/v1/connect/callback",
        "connect_callback",
        "Onboarding",
        "Where the Microsoft sign-in comes back",
        "Anonymous (a browser carries no key), verified by the single-use `state`: redeems the code "
        "with its PKCE verifier, checks the signed-in account is the one asked for, keeps the "
        "refresh token in the secret store and links the account. 302 to `returnUrl?status="
        "connected&account=…` when one was given, else 200.",
        Auth.ANONYMOUS,
        (
            Reply(200, "Connected.", "Connected"),
            Reply(
                302, "Connected; to the host's `returnUrl` (`Location`).", "Connected", headers=("Location",)
            ),
        ),
        params=(
            Param("code", "query", "The authorization code."),
            Param("state", "query", "The state the sign-in was started with."),
            Param("error", "query", "Entra ID's error, when the sign-in did not complete."),
        ),
        errors=(400, 409, 422),
    ),
    Operation(
        "POST",
        "/api/v1/graph/notifications",
        "graph_notifications",
        "Onboarding",
        "Microsoft Graph change notifications",
        "Where Graph sends change and lifecycle notifications of the bridge's subscriptions (on "
        "when BRIDGE_PUBLIC_URL is set). Anonymous: Graph carries no key; each notification is "
        "checked against its subscription's clientState, and one that fails changes nothing. "
        "With `validationToken` (Graph's handshake when a subscription is made) the token is "
        "echoed as text/plain; otherwise the body is Graph's `{value: [notification…]}`, checked "
        "and queued within Graph's 3 seconds: 202, whatever it held.",
        Auth.ANONYMOUS,
        (
            Reply(200, "The validation handshake: the token, as text/plain."),
            Reply(202, "Notifications accepted (those that failed the check are ignored)."),
        ),
        params=(
            Param("validationToken", "query", "Graph's handshake token, to be echoed."),
            Param("tenantId", "query", "The tenant whose subscription this is (set by the bridge)."),
            Param("target", "query", "Which subscription of the tenant (set by the bridge)."),
        ),
        errors=(400,),
    ),
    Operation(
        "GET",
        CONNECTED,
        "list_connected_accounts",
        "Onboarding",
        "List connected accounts",
        "Every account a user connected (delegated mode): `connected`, or `reconnect_required` when "
        "Entra ID refused the grant (the host also heard `account.reconnect_required`).",
        Auth.TENANT,
        (Reply(200, "The accounts.", "ConnectedAccountList"),),
    ),
    Operation(
        "GET",
        CONNECTED + "/{account}",
        "get_connected_account",
        "Onboarding",
        "Read a connected account",
        "One account's grant.",
        Auth.TENANT,
        (Reply(200, "The account.", "ConnectedAccount"),),
    ),
    Operation(
        "DELETE",
        CONNECTED + "/{account}",
        "disconnect_account",
        "Onboarding",
        "Disconnect an account",
        "Forgets the grant: the refresh token is deleted from the secret store, so the bridge can no "
        "longer act as the user. Links stay; their syncs fail in plain words until the user "
        "connects again. (The user or an admin can also revoke the app's consent in Microsoft 365.)",
        Auth.TENANT,
        (Reply(204, "Disconnected."),),
    ),
)


# --- the document ------------------------------------------------------------------------------

INFO_DESCRIPTION = (
    "A serverless bridge between business systems (an ERP's resource scheduler, a switchboard, a "
    "forms product) and Microsoft 365, on Microsoft Graph.\n\n"
    "Every route needs the Azure Functions key (`x-functions-key` header or `code` query "
    "parameter). Tenant routes (`/api/v1/tenants/{tenantId}/…`) also need the tenant's API key as "
    "`Authorization: Bearer`; the operator routes (`/api/v1/operator/…`) the operator key; "
    "`/api/v1/health` and this document only the Functions key.\n\n"
    "Errors are RFC 9457 `application/problem+json`; a 422 names every bad field in `errors`. "
    "Request bodies refuse unknown fields and use camelCase names."
)


def add_schema(schemas: dict[str, Schema], name: str, schema: Schema) -> None:
    """Put `schema` into components/schemas; two different schemas may not share a name."""
    if schemas.setdefault(name, schema) != schema:
        raise ValueError(f"two different schemas are named {name!r} in the OpenAPI document")


def model_schema(model: type[BaseModel], schemas: dict[str, Schema]) -> Schema:
    """A reference to `model`'s own JSON Schema, added to `schemas` with its `$defs` hoisted."""
    schema = model.model_json_schema(by_alias=True, ref_template=REF_TEMPLATE)
    for name, definition in schema.pop("$defs", {}).items():
        add_schema(schemas, name, definition)
    add_schema(schemas, model.__name__, schema)
    return ref(model.__name__)


def _security(auth: Auth) -> list[dict[str, list[str]]]:
    if auth is Auth.ANONYMOUS:
        return []
    bearer = _BEARER[auth]
    return [{key: [], **({bearer: []} if bearer else {})} for key in ("functionKey", "functionCode")]


def _parameters(op: Operation) -> list[Schema]:
    out: list[Schema] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": PATH_PARAMS[name],
            "schema": PATH_PARAM_SCHEMAS.get(name, {"type": "string"}),
        }
        for name in _PATH_PARAM.findall(op.path)
    ]
    for param in op.params:
        item: Schema = {
            "name": param.name,
            "in": param.where,
            "description": param.description,
            "schema": dict(param.schema),
        }
        if param.example is not None:
            item["example"] = param.example
        out.append(item)
    return out


def _request_body(body: Body, schemas: dict[str, Schema]) -> Schema:
    refs = [model_schema(model, schemas) for model in body.models]
    schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
    examples = {e.name: {"summary": e.summary, "value": e.value} for e in body.examples}
    out: Schema = {
        "required": body.required,
        "content": {media: {"schema": schema, "examples": examples} for media in body.media_types},
    }
    return {"description": body.description, **out} if body.description else out


def _reply(reply: Reply) -> Schema:
    out: Schema = {"description": reply.description}
    if reply.headers:
        out["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in reply.headers}
    if reply.schema is not None:
        example = reply.example if reply.example is not None else ex.RESPONSE_EXAMPLES.get(reply.schema)
        media: Schema = {"schema": ref(reply.schema)}
        if example is not None:
            media["example"] = example
        out["content"] = {JSON: media}
    return out


def _responses(op: Operation) -> dict[str, Schema]:
    out: dict[int, Schema] = {reply.status: _reply(reply) for reply in op.replies}
    for status in sorted(set(COMMON_ERRORS[op.auth] + op.errors)):
        name, description, example = PROBLEMS[status]
        if status in out:  # a success schema and a problem share the status (health's 503)
            answer = out[status]
            answer["description"] += f" Or a problem: {description[:1].lower()}{description[1:]}"
            answer.setdefault("content", {})[PROBLEM_JSON] = {"schema": ref("Problem"), "example": example}
        else:
            out[status] = {"$ref": f"#/components/responses/{name}"}
    return {str(status): out[status] for status in sorted(out)}


def _operation(op: Operation, schemas: dict[str, Schema]) -> Schema:
    out: Schema = {
        "operationId": op.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
        "description": op.description,
        "security": _security(op.auth),
    }
    parameters = _parameters(op)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = _request_body(op.body, schemas)
    out["responses"] = _responses(op)
    return out


def build_openapi(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API at `version`."""
    schemas: dict[str, Schema] = {}
    for name, schema in RESPONSE_SCHEMAS.items():
        add_schema(schemas, name, schema)
    paths: dict[str, dict[str, Schema]] = {}
    for op in OPERATIONS:
        methods = paths.setdefault(op.path, {})
        if op.method.lower() in methods:
            raise ValueError(f"{op.method} {op.path} is in the catalog twice")
        methods[op.method.lower()] = _operation(op, schemas)
    document = {
        "openapi": "3.1.0",
        "info": {"title": "m365-bridge", "version": version, "description": INFO_DESCRIPTION},
        "servers": [{"url": "/"}],
        "tags": [{"name": name, "description": description} for name, description in TAGS],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "responses": {
                name: {
                    "description": description,
                    "content": {PROBLEM_JSON: {"schema": ref("Problem"), "example": example}},
                }
                for name, description, example in PROBLEMS.values()
            },
            "headers": HEADERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
    return copy.deepcopy(document)  # the caller's to keep or change: the catalog's stays as it is
