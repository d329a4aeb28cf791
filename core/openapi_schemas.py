"""What the HTTP API answers, as JSON Schemas for the OpenAPI document (`core/openapi.py`):
the one problem+json schema every error uses (with each status's meaning and example) and the
success answers' schemas (their examples are in `core/openapi_examples.py`).

Request bodies need nothing here: their schemas come from the pydantic models that validate
them. Responses are built by plain `*_view` functions, so their shapes are written down here;
tests/unit/test_openapi.py feeds real records through those views and checks that each answer
fits its schema and names exactly its properties, so a view cannot change without this file.
Enumerations are taken from the code's own enums.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from core.calendar.push import Result
from core.diagnostics import Check, Status
from core.links import NOT_CONNECTED
from core.request_errors import PROBLEM_TYPE_BASE
from core.store.records import (
    CalendarScope,
    CredentialMode,
    Direction,
    GrantStatus,
    OutgoingStatus,
    PresenceStatus,
    PushOp,
    PushStatus,
    ReservationStatus,
    RunStatus,
    SyncStatus,
)

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
DATE_TIME: Schema = {"type": "string", "format": "date-time"}
EMAIL: Schema = {"type": "string", "format": "email"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def enum_of(kind: type[Enum], description: str = "") -> Schema:
    out: Schema = {"type": "string", "enum": [member.value for member in kind]}
    return {**out, "description": description} if description else out


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(properties: dict[str, Schema], *, optional: tuple[str, ...] = (), description: str = "") -> Schema:
    """An object whose properties are all present except the `optional` ones."""
    out: Schema = {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }
    return {**out, "description": description} if description else out


# --- problems ----------------------------------------------------------------------------------

PROBLEM: Schema = {
    "type": "object",
    "description": "An RFC 9457 problem document (`application/problem+json`).",
    "properties": {
        "type": {
            "type": "string",
            "format": "uri",
            "description": f"`{PROBLEM_TYPE_BASE}<slug>` naming the kind of problem, or `about:blank`",
        },
        "title": {"type": "string", "description": "the kind of problem, in words"},
        "status": {"type": "integer", "description": "the HTTP status code"},
        "detail": {"type": "string", "description": "what went wrong with this request, for a person"},
        "errors": array(
            obj(
                {
                    "field": {
                        "type": "string",
                        "description": "JSON path of the bad field (`accounts[2].account`); empty: the body",
                    },
                    "detail": {"type": "string"},
                }
            )
        )
        | {"description": "with 422: every bad field"},
        "reference": {
            "type": "string",
            "description": "with 500: the id of the error in the bridge's log, for support",
        },
    },
    "required": ["type", "title", "status", "detail"],
}


def _problem(status: int, slug: str | None, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": PROBLEM_TYPE_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }


# status -> (components/responses name, description, example)
PROBLEMS: dict[int, tuple[str, str, dict[str, Any]]] = {
    400: (
        "BadRequest",
        "Malformed request: the body is not JSON or not an object, or a cursor or header cannot be read.",
        _problem(400, "malformed-request", "Malformed request", "The request body is not valid JSON."),
    ),
    401: (
        "Unauthorized",
        "No key or a key that is not valid. Without a valid Functions key the Functions host itself "
        "answers 401 with no body; a missing or wrong tenant or operator key is this problem, with "
        "`WWW-Authenticate: Bearer`.",
        _problem(
            401,
            "unauthenticated",
            "Unauthenticated",
            "This route needs the tenant's API key: send 'Authorization: Bearer <key>'.",
        ),
    ),
    403: (
        "Forbidden",
        "The tenant's own key, but the operator has disabled the tenant.",
        _problem(
            403,
            "tenant-disabled",
            "Tenant disabled",
            "Tenant 'contoso-norge' is disabled; ask the operator to enable it.",
        ),
    ),
    404: (
        "NotFound",
        "The item does not exist. On tenant routes also: no such tenant, or a key of another tenant "
        "(the two answers are the same, so tenant ids cannot be probed).",
        _problem(404, "not-found", "Not found", "No such tenant, or the API key does not give access to it."),
    ),
    409: (
        "Conflict",
        "The item exists already, or changed while the request was applied: re-read and retry.",
        _problem(409, "conflict", "Conflict", "The slot is already reserved."),
    ),
    410: (
        "Gone",
        "The item existed but was deleted (a slot removed in Outlook).",
        _problem(410, "gone", "Gone", "The slot no longer exists in Outlook."),
    ),
    412: (
        "PreconditionFailed",
        "`If-Match` names a version that is no longer current, or `If-None-Match: *` found the item.",
        _problem(
            412,
            "precondition-failed",
            "Precondition failed",
            "The item changed since you read it (If-Match does not match its ETag); re-read it and retry.",
        ),
    ),
    422: (
        "UnprocessableContent",
        "The request is readable but fields are wrong; `errors` names each. Nothing was stored.",
        _problem(
            422,
            "invalid-input",
            "Invalid input",
            "The request has invalid fields: accounts[0].account: must be a user principal name "
            "(name@domain) or an Entra object id (GUID)",
            errors=[
                {
                    "field": "accounts[0].account",
                    "detail": "must be a user principal name (name@domain) or an Entra object id (GUID)",
                }
            ],
        ),
    ),
    500: (
        "InternalServerError",
        "An unexpected error; `reference` finds it in the log. The error's text is never sent.",
        _problem(
            500,
            None,
            "Internal Server Error",
            "Unexpected error; reference 6c1f0e2b9a7d4e3c8b5a1f0d2e4c6b8a.",
            reference="6c1f0e2b9a7d4e3c8b5a1f0d2e4c6b8a",
        ),
    ),
    503: (
        "ServiceUnavailable",
        "A service the request needs is unavailable (state storage, the secret store, Microsoft "
        "Graph), or the app settings are invalid (`misconfigured`, naming each bad setting): retry later.",
        _problem(
            503,
            "upstream-unavailable",
            "Upstream unavailable",
            "Microsoft Graph is unavailable; retry later.",
        ),
    ),
}


# --- responses ---------------------------------------------------------------------------------

_WHEN = nullable(DATE_TIME)
_LAST_RUN = {
    "lastRunAt": _WHEN,
    "lastSuccessAt": _WHEN,
    "error": nullable(STRING) | {"description": "why the last run failed, in plain words"},
    "consecutiveFailures": INTEGER,
}

_TENANT = obj(
    {
        "id": STRING,
        "displayName": STRING,
        "enabled": BOOLEAN,
        "graph": obj(
            {
                "tenantId": nullable({"type": "string", "format": "uuid"}),
                "clientId": nullable({"type": "string", "format": "uuid"}),
                "credentialMode": enum_of(CredentialMode),
                "clientSecretSet": BOOLEAN,
                "adminConsentUrl": {
                    "type": "string",
                    "format": "uri",
                    "description": "managed mode: the URL the tenant's admin opens once to consent",
                },
            },
            optional=("adminConsentUrl",),
        ),
        "host": obj(
            {"webhookUrl": nullable({"type": "string", "format": "uri"}), "webhookSecretSet": BOOLEAN}
        ),
        "defaults": obj({"language": STRING, "timeZone": STRING}),
        "apiKeys": array(
            obj({"keyId": STRING, "createdAt": DATE_TIME, "expiresAt": _WHEN, "active": BOOLEAN})
        ),
        "createdAt": _WHEN,
        "updatedAt": _WHEN,
    },
    description="A tenant as the operator sees it: no secret values, no key hashes.",
)

_RESOURCE = obj(
    {
        "id": STRING,
        "displayName": STRING,
        "accounts": array(
            obj(
                {
                    "account": STRING,
                    "direction": enum_of(Direction),
                    "calendars": array(STRING),
                    "scope": enum_of(CalendarScope),
                    "connection": {
                        "type": "string",
                        "enum": [*(s.value for s in GrantStatus), NOT_CONNECTED],
                        "description": "delegated mode only: whether the user's own grant works",
                    },
                },
                optional=("connection",),
            )
        ),
        "mainAccount": nullable(STRING)
        | {"description": "the first account whose direction includes up: it receives uploads"},
        "updatedAt": _WHEN,
    },
    description="A host resource and its linked Microsoft 365 accounts, in order.",
)

_PUSH_ITEM_STATUS = ("queued", "applied", "conflict", "skipped", "failed", "ignored")

_MAIL_IMPORT = obj(
    {
        "id": STRING,
        "mailbox": STRING,
        "importFolder": STRING,
        "archiveFolder": STRING,
        "forwardTo": STRING,
        "allowedTypes": array(STRING),
        "maxSizeMb": INTEGER,
        "notifyTo": nullable(STRING),
        "enabled": BOOLEAN,
        "createdAt": _WHEN,
        "updatedAt": _WHEN,
        "lastRun": obj({"status": enum_of(SyncStatus), **_LAST_RUN}),
    }
)

_BOOKING_CALENDAR = obj(
    {
        "id": STRING,
        "displayName": STRING,
        "owner": STRING,
        "calendar": STRING,
        "timeZone": STRING,
        "bookedSuffix": STRING,
        "firstHour": INTEGER,
        "lastHour": INTEGER,
        "showWeekend": BOOLEAN,
        "noticeDays": INTEGER,
        "attachDocuments": BOOLEAN,
        "addSummary": BOOLEAN,
        "notifyAttendees": BOOLEAN,
        "createdAt": _WHEN,
        "updatedAt": _WHEN,
    }
)

_SLOT_TIME = obj(
    {
        "dateTime": {"type": "string", "description": "wall time in the calendar's zone"},
        "timeZone": STRING,
        "utc": DATE_TIME,
    }
)

_RESERVATION = obj(
    {
        "id": STRING,
        "bookingCalendarId": STRING,
        "slotId": STRING,
        "status": enum_of(ReservationStatus),
        "slot": obj({"subject": STRING, "start": _WHEN, "end": _WHEN}),
        "booker": obj({"name": STRING, "email": EMAIL, "phone": STRING}, optional=("email", "phone")),
        "addBookerAsAttendee": BOOLEAN,
        "fields": {"type": "object", "description": "the form's fields as sent, in the form's order"},
        "documents": array(
            obj(
                {
                    "name": STRING,
                    "contentType": STRING,
                    "size": INTEGER,
                    "sha256": STRING,
                    "attached": BOOLEAN,
                }
            )
        ),
        "summaryAttached": BOOLEAN,
        "error": nullable(STRING),
        "createdAt": _WHEN,
        "updatedAt": _WHEN,
    }
)

_MAIL_SENDER = obj(
    {
        "id": STRING,
        "mailbox": STRING,
        "sendAs": nullable(STRING),
        "saveToSentItems": BOOLEAN,
        "createdAt": _WHEN,
        "updatedAt": _WHEN,
    }
)

_OUTGOING_MAIL = obj(
    {
        "id": STRING,
        "senderId": STRING,
        "status": enum_of(OutgoingStatus),
        "recipients": INTEGER,
        "attachments": array(obj({"name": STRING, "size": INTEGER})),
        "error": nullable(STRING) | {"description": "with status failed: why, in plain words"},
        "fix": nullable(STRING) | {"description": "with status failed: what a person does about it"},
        "outcomeUnknown": {
            "type": "boolean",
            "description": "failed after Graph was asked to send but never confirmed: the mail may "
            "have gone out (see the sender's Sent Items); it is not sent again",
        },
        "createdAt": _WHEN,
        "sentAt": _WHEN,
    },
    description="A mail a host handed over: no recipients, subject or body are kept.",
)

_PRESENCE = obj(
    {
        "email": STRING,
        "displayName": STRING,
        "status": enum_of(PresenceStatus),
        "since": _WHEN,
        "until": _WHEN | {"description": "when the status changes next, as far as the calendar says"},
        "showAs": nullable(STRING),
        "subject": nullable(STRING),
        "location": nullable(STRING),
        "reason": {"type": "string", "description": "with status unknown: why"},
        "readAt": _WHEN,
    },
    optional=("displayName", "since", "until", "showAs", "subject", "location", "reason", "readAt"),
    description="A user's presence from stored state. A user who is not monitored has only "
    "`email`, `status: unknown` and `reason: not monitored`; `subject` is left out where the "
    "settings or the event's privacy hide it.",
)

_CONNECTED_ACCOUNT = obj(
    {
        "account": STRING,
        "status": enum_of(
            GrantStatus, "reconnect_required: Entra ID refused the grant; the user signs in again"
        ),
        "scopes": array(STRING),
        "connectedAt": _WHEN,
        "updatedAt": _WHEN,
        "error": {"type": "string", "description": "why the grant was refused, in plain words"},
    },
    optional=("error",),
)
_ENVELOPE = obj(
    {
        "id": STRING,
        "type": {"type": "string", "description": "e.g. appointment.upserted, booking.reserved, bridge.test"},
        "tenantId": STRING,
        "occurredAt": DATE_TIME,
        "data": {"type": "object"},
    },
    description="An event as hosts receive it, by webhook and through the feed alike.",
)

RESPONSE_SCHEMAS: dict[str, Schema] = {
    "Problem": PROBLEM,
    "HealthReport": obj(
        {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "version": STRING,
            "checks": {
                "type": "object",
                "description": "one entry per storage service: tables, queues, blobs",
                "additionalProperties": obj(
                    {"ok": BOOLEAN, "latency_ms": {"type": "number"}, "error": nullable(STRING)}
                ),
            },
        }
    ),
    "OpenApiDocument": {
        "type": "object",
        "description": "This document.",
        "properties": {"openapi": {"type": "string", "const": "3.1.0"}},
        "required": ["openapi"],
    },
    "Tenant": _TENANT,
    "IssuedTenant": obj(
        {
            **_TENANT["properties"],
            "apiKey": {
                "type": "string",
                "description": "`m365b_<tenantId>_<43 characters>`: shown this once, only its hash is kept",
            },
            "webhookSecret": {
                "type": "string",
                "description": "the signing secret generated at creation when none was sent: shown once",
            },
        },
        optional=("webhookSecret",),
        description="A tenant as just created or re-keyed, with what is shown exactly once.",
    ),
    "TenantList": obj({"tenants": array(ref("Tenant"))}),
    "Resource": _RESOURCE,
    "ResourceList": obj(
        {
            "resources": array(ref("Resource")),
            "next": nullable(STRING) | {"description": "pass as `after` for the next page; null at the end"},
        }
    ),
    "CleanupQueued": obj(
        {
            "trackingId": {"type": "string", "description": "the run id of the cleanup (see …/runs?runId=)"},
            "cleanup": array(STRING) | {"description": "the accounts whose bridge events are deleted"},
        }
    ),
    "SyncRequested": obj(
        {
            "runId": STRING,
            "calendars": array(obj({"account": STRING, "calendar": STRING})),
            "skipped": array(obj({"account": STRING, "calendar": STRING, "reason": STRING})),
        }
    ),
    "SyncStatus": obj(
        {
            "resourceId": STRING,
            "calendars": array(
                obj(
                    {
                        "account": STRING,
                        "calendar": STRING,
                        "direction": enum_of(Direction),
                        "status": enum_of(SyncStatus),
                        **_LAST_RUN,
                        "lastFullSyncAt": _WHEN,
                        "windowStart": _WHEN,
                        "windowEnd": _WHEN,
                    }
                )
            ),
        }
    ),
    "AppointmentsAccepted": obj(
        {
            "trackingId": {"type": "string", "description": "the run id of this request (see …/runs?runId=)"},
            "appointments": array(
                obj(
                    {
                        "index": {"type": "integer", "description": "position in the request"},
                        "hostAppointmentId": STRING,
                        "resourceId": STRING,
                        "version": INTEGER,
                        "status": {"type": "string", "enum": list(_PUSH_ITEM_STATUS)},
                        "result": {"type": "string", "enum": [r.value for r in Result]},
                        "eventId": STRING,
                        "reason": STRING,
                    },
                    optional=("result", "eventId", "reason"),
                )
            ),
            "rejected": array(
                obj(
                    {
                        "index": INTEGER,
                        "hostAppointmentId": nullable(STRING),
                        "errors": PROBLEM["properties"]["errors"],
                    }
                )
            ),
        }
    ),
    "Appointment": obj(
        {
            "hostAppointmentId": STRING,
            "resourceId": STRING,
            "version": {"type": "integer", "description": "the newest version received"},
            "op": enum_of(PushOp),
            "appliedVersion": nullable(INTEGER),
            "status": enum_of(PushStatus),
            "reason": nullable(STRING),
            "account": nullable(STRING),
            "calendar": nullable(STRING),
            "eventId": nullable(STRING),
            "trackingId": nullable(STRING),
            "acceptedAt": _WHEN,
            "updatedAt": _WHEN,
        },
        description="Where a pushed appointment stands.",
    ),
    "MailImport": _MAIL_IMPORT,
    "MailImportList": obj({"mailImports": array(ref("MailImport"))}),
    "RunQueued": obj({"runId": {"type": "string", "description": "see …/runs?runId="}}),
    "BookingCalendar": _BOOKING_CALENDAR,
    "BookingCalendarList": obj({"bookingCalendars": array(ref("BookingCalendar"))}),
    "Slots": obj(
        {
            "bookingCalendarId": STRING,
            "from": DATE_TIME,
            "to": DATE_TIME,
            "slots": array(
                obj(
                    {
                        "slotId": STRING,
                        "subject": STRING,
                        "start": _SLOT_TIME,
                        "end": _SLOT_TIME,
                        "available": BOOLEAN,
                        "version": nullable(STRING) | {"description": "send as slotVersion when booking"},
                        "reason": {"type": "string", "description": "why the slot is not available"},
                    },
                    optional=("reason",),
                )
            ),
        }
    ),
    "Reservation": _RESERVATION,
    "ReservationList": obj({"reservations": array(ref("Reservation"))}),
    "MailSender": _MAIL_SENDER,
    "MailSenderList": obj({"mailSenders": array(ref("MailSender"))}),
    "OutgoingMail": _OUTGOING_MAIL,
    "PresenceSettings": obj(
        {
            "busyStatuses": array(STRING),
            "showSubjects": BOOLEAN,
            "refreshMinutes": INTEGER,
            "monitorAccount": nullable(STRING),
            "lastReadAt": _WHEN,
        }
    ),
    "Presence": _PRESENCE,
    "PresenceMonitorList": obj({"monitors": array(ref("Presence"))}),
    "PresenceList": obj({"users": array(ref("Presence"))}),
    "PresenceRefresh": obj(
        {"batches": {"type": "integer", "description": "getSchedule reads of ≤ 20 users"}}
    ),
    "RunList": obj(
        {
            "runs": array(
                obj(
                    {
                        "id": STRING,
                        "function": STRING,
                        "status": enum_of(RunStatus),
                        "startedAt": DATE_TIME,
                        "endedAt": _WHEN,
                        "counts": {"type": "object", "additionalProperties": INTEGER},
                        "error": nullable(STRING),
                    }
                )
            )
        }
    ),
    "EventEnvelope": _ENVELOPE,
    "EventPage": obj(
        {
            "events": array(ref("EventEnvelope")),
            "next": {"type": "string", "description": "the cursor to pass as `after` next"},
        }
    ),
    "TestEventQueued": obj(
        {"id": STRING, "type": {"type": "string", "const": "bridge.test"}, "sequence": INTEGER}
    ),
    "SettingsReport": obj(
        {
            "tenantId": STRING,
            "ok": {"type": "boolean", "description": "false when any line failed (warnings do not count)"},
            "checkedAt": DATE_TIME,
            "truncated": {"type": "boolean", "description": "true when targets were left out (at most 200)"},
            "checks": array(
                obj(
                    {
                        "check": enum_of(Check),
                        "target": {
                            "type": "string",
                            "description": "what was checked: an app, account, path",
                        },
                        "status": enum_of(
                            Status, "warning: Graph busy or slow, try again; skipped: not checkable now"
                        ),
                        "detail": STRING,
                        "fix": {"type": "string", "description": "what to do, in plain words (failures)"},
                    },
                    optional=("fix",),
                )
            ),
        }
    ),
    "ConnectStarted": obj(
        {
            "authorizeUrl": {"type": "string", "description": "the Microsoft sign-in (also in Location)"},
            "expiresAt": {**DATE_TIME, "description": "the sign-in must come back before this"},
        }
    ),
    "Connected": obj({"status": enum_of(GrantStatus), "account": STRING}),
    "ConnectedAccount": _CONNECTED_ACCOUNT,
    "ConnectedAccountList": obj({"accounts": array(ref("ConnectedAccount"))}),
}
