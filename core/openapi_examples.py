"""Examples for the OpenAPI document (`core/openapi.py`): one Norwegian tenant, Contoso Norge,
throughout. Request examples are checked against their models (and the parsers behind them)
and response examples against their schemas by tests/unit/test_openapi.py."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

TENANT_ID = "contoso-norge"
GRAPH_TENANT_ID = "3f2c8a1e-5b7d-4c9a-8e61-2d4f0b9a7c35"
CLIENT_ID = "9d1e4b7a-2c3f-4e8d-b5a6-7f0c1d2e3b4a"
# A referral letter a booking form uploads: a real (tiny) PDF, so the example passes the
# reservation parser's content check too.
_REFERRAL = b"%PDF-1.7\n% Henvisning fra fastlegen\n%%EOF\n"

# --- responses ---------------------------------------------------------------------------------

_AT = "2026-11-02T08:15:00+00:00"
_TENANT_EXAMPLE: dict[str, Any] = {
    "id": TENANT_ID,
    "displayName": "Contoso Norge AS",
    "enabled": True,
    "graph": {
        "tenantId": GRAPH_TENANT_ID,
        "clientId": CLIENT_ID,
        "credentialMode": "client_secret",
        "clientSecretSet": True,
    },
    "host": {"webhookUrl": "https://erp.contoso.no/hooks/m365-bridge", "webhookSecretSet": True},
    "defaults": {"language": "nb", "timeZone": "Europe/Oslo"},
    "apiKeys": [{"keyId": "5f0c2a9e7b13", "createdAt": _AT, "expiresAt": None, "active": True}],
    "createdAt": _AT,
    "updatedAt": _AT,
}
_RESOURCE_EXAMPLE: dict[str, Any] = {
    "id": "room-4b",
    "displayName": "Møterom 4B",
    "accounts": [
        {
            "account": "moterom.4b@contoso.no",
            "direction": "both",
            "calendars": ["default"],
            "scope": "Calendars.ReadWrite",
        },
        {
            "account": "kari.nordmann@contoso.no",
            "direction": "down",
            "calendars": ["default"],
            "scope": "Calendars.Read",
        },
    ],
    "mainAccount": "moterom.4b@contoso.no",
    "updatedAt": _AT,
}
_BOOKING_EXAMPLE: dict[str, Any] = {
    "id": "radgivning",
    "displayName": "Rådgivning",
    "owner": "booking@contoso.no",
    "calendar": "Bookbare timer",
    "timeZone": "Europe/Oslo",
    "bookedSuffix": " - Booket",
    "firstHour": 8,
    "lastHour": 16,
    "showWeekend": False,
    "noticeDays": 1,
    "attachDocuments": True,
    "addSummary": True,
    "notifyAttendees": False,
    "createdAt": _AT,
    "updatedAt": _AT,
}
_SLOT_ID = (
    "AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OABGAAAAAAAiQ8W967B7TKBjgx9rVEURBwAiIsqMbYjsT5e"
)
_RESERVATION_EXAMPLE: dict[str, Any] = {
    "id": "r-5b0c1e9a4f2d4b7e8c3a6d1f0e2b4c6a",
    "bookingCalendarId": "radgivning",
    "slotId": _SLOT_ID,
    "status": "pending",
    "slot": {
        "subject": "Konsultasjon",
        "start": "2026-12-07T09:00:00+00:00",
        "end": "2026-12-07T10:00:00+00:00",
    },
    "booker": {"name": "Åse Nordmann", "email": "ase@example.org", "phone": "+47 900 00 000"},
    "addBookerAsAttendee": False,
    "fields": {"Årsak": "Årskontroll", "Allergier": "Blåbærsyltetøy", "Samtykke": True},
    "documents": [
        {
            "name": "henvisning.pdf",
            "contentType": "application/pdf",
            "size": len(_REFERRAL),
            "sha256": hashlib.sha256(_REFERRAL).hexdigest(),
            "attached": False,
        }
    ],
    "summaryAttached": False,
    "error": None,
    "createdAt": "2026-12-01T13:02:11+00:00",
    "updatedAt": "2026-12-01T13:02:11+00:00",
}
_PRESENCE_EXAMPLE: dict[str, Any] = {
    "email": "grady@contoso.no",
    "displayName": "Grady Archie",
    "status": "busy",
    "since": "2026-12-07T09:00:00+00:00",
    "until": "2026-12-07T10:00:00+00:00",
    "showAs": "busy",
    "subject": "Kundemøte",
    "location": "Møterom 4B",
    "readAt": "2026-12-07T09:00:02+00:00",
}
_MAIL_IMPORT_EXAMPLE: dict[str, Any] = {
    "id": "fakturaer",
    "mailbox": "faktura@contoso.no",
    "importFolder": "Inbox/Fakturaer",
    "archiveFolder": "Archive/Fakturaer",
    "forwardTo": "regnskap@contoso.no",
    "allowedTypes": ["jpeg", "jpg", "pdf", "png", "tif", "tiff", "xml"],
    "maxSizeMb": 150,
    "notifyTo": "it@contoso.no",
    "enabled": True,
    "createdAt": _AT,
    "updatedAt": _AT,
    "lastRun": {
        "status": "ok",
        "lastRunAt": "2026-11-02T10:00:03+00:00",
        "lastSuccessAt": "2026-11-02T10:00:03+00:00",
        "error": None,
        "consecutiveFailures": 0,
    },
}
_RUN_ID = "a4c5df35e0b94d7c9f1e2b3a4c5d6e7f"
_MAIL_SENDER_EXAMPLE: dict[str, Any] = {
    "id": "skjema",
    "mailbox": "skjema@contoso.no",
    "sendAs": "post@contoso.no",
    "saveToSentItems": True,
    "createdAt": _AT,
    "updatedAt": _AT,
}

RESPONSE_EXAMPLES: dict[str, Any] = {
    "HealthReport": {
        "status": "ok",
        "version": "0.1.0",
        "checks": {
            "tables": {"ok": True, "latency_ms": 12.4, "error": None},
            "queues": {"ok": True, "latency_ms": 9.8, "error": None},
            "blobs": {"ok": True, "latency_ms": 10.1, "error": None},
        },
    },
    "Tenant": _TENANT_EXAMPLE,
    "IssuedTenant": {
        **_TENANT_EXAMPLE,
        "apiKey": f"m365b_{TENANT_ID}_Q2hhbmdlLW1lLTEyMzQ1Njc4OTAtYWJjZGVmZ2hpams",
        "webhookSecret": "whsec_c2lnbmluZy1zZWNyZXQtZXhhbXBsZS0xMjM0NTY3OA",
    },
    "TenantList": {"tenants": [_TENANT_EXAMPLE]},
    "Resource": _RESOURCE_EXAMPLE,
    "ResourceList": {"resources": [_RESOURCE_EXAMPLE], "next": None},
    "CleanupQueued": {
        "trackingId": _RUN_ID,
        "cleanup": ["moterom.4b@contoso.no", "kari.nordmann@contoso.no"],
    },
    "SyncRequested": {
        "runId": _RUN_ID,
        "calendars": [
            {"account": "moterom.4b@contoso.no", "calendar": "default"},
            {"account": "kari.nordmann@contoso.no", "calendar": "default"},
        ],
        "skipped": [],
    },
    "SyncStatus": {
        "resourceId": "room-4b",
        "calendars": [
            {
                "account": "moterom.4b@contoso.no",
                "calendar": "default",
                "direction": "both",
                "status": "ok",
                "lastRunAt": "2026-11-02T10:15:01+00:00",
                "lastSuccessAt": "2026-11-02T10:15:01+00:00",
                "error": None,
                "consecutiveFailures": 0,
                "lastFullSyncAt": "2026-11-02T08:30:00+00:00",
                "windowStart": "2026-10-03T00:00:00+00:00",
                "windowEnd": "2027-11-09T00:00:00+00:00",
            }
        ],
    },
    "AppointmentsAccepted": {
        "trackingId": _RUN_ID,
        "appointments": [
            {
                "index": 0,
                "hostAppointmentId": "SO-1001",
                "resourceId": "room-4b",
                "version": 2,
                "status": "applied",
                "result": "updated",
                "eventId": "AAMkAD08HaK6AAA=",
            },
            {
                "index": 1,
                "hostAppointmentId": "SO-1002",
                "resourceId": "room-4b",
                "version": 1,
                "status": "applied",
                "result": "created",
                "eventId": "AAMkAD09JbL7AAA=",
            },
        ],
        "rejected": [
            {
                "index": 2,
                "hostAppointmentId": "SO-1003",
                "errors": [{"field": "appointments[2].end", "detail": "must be after start"}],
            }
        ],
    },
    "Appointment": {
        "hostAppointmentId": "SO-1001",
        "resourceId": "room-4b",
        "version": 2,
        "op": "upsert",
        "appliedVersion": 2,
        "status": "applied",
        "reason": None,
        "account": "moterom.4b@contoso.no",
        "calendar": "default",
        "eventId": "AAMkAD08HaK6AAA=",
        "trackingId": _RUN_ID,
        "acceptedAt": "2026-11-02T10:20:00+00:00",
        "updatedAt": "2026-11-02T10:20:01+00:00",
    },
    "MailImport": _MAIL_IMPORT_EXAMPLE,
    "MailImportList": {"mailImports": [_MAIL_IMPORT_EXAMPLE]},
    "RunQueued": {"runId": _RUN_ID},
    "BookingCalendar": _BOOKING_EXAMPLE,
    "BookingCalendarList": {"bookingCalendars": [_BOOKING_EXAMPLE]},
    "Slots": {
        "bookingCalendarId": "radgivning",
        "from": "2026-12-06T23:00:00+00:00",
        "to": "2026-12-07T23:00:00+00:00",
        "slots": [
            {
                "slotId": _SLOT_ID,
                "subject": "Konsultasjon",
                "start": {
                    "dateTime": "2026-12-07T10:00:00",
                    "timeZone": "Europe/Oslo",
                    "utc": "2026-12-07T09:00:00Z",
                },
                "end": {
                    "dateTime": "2026-12-07T11:00:00",
                    "timeZone": "Europe/Oslo",
                    "utc": "2026-12-07T10:00:00Z",
                },
                "available": True,
                "version": "DwAAABYAAAAiIsqMbYjsT5e/T7KzowPTAAAYbvZD",
            }
        ],
    },
    "Reservation": _RESERVATION_EXAMPLE,
    "ReservationList": {"reservations": [_RESERVATION_EXAMPLE]},
    "MailSender": _MAIL_SENDER_EXAMPLE,
    "MailSenderList": {"mailSenders": [_MAIL_SENDER_EXAMPLE]},
    "OutgoingMail": {
        "id": "mail-3c9f0e2b7a514d86a1e4",
        "senderId": "skjema",
        "status": "sent",
        "recipients": 2,
        "attachments": [{"name": "kvittering.pdf", "size": 48213}],
        "error": None,
        "fix": None,
        "outcomeUnknown": False,
        "createdAt": "2026-12-01T13:02:11+00:00",
        "sentAt": "2026-12-01T13:02:13+00:00",
    },
    "PresenceSettings": {
        "busyStatuses": ["busy", "oof"],
        "showSubjects": True,
        "refreshMinutes": 5,
        "monitorAccount": "sentralbord@contoso.no",
        "lastReadAt": "2026-12-07T09:00:02+00:00",
    },
    "Presence": _PRESENCE_EXAMPLE,
    "PresenceMonitorList": {"monitors": [_PRESENCE_EXAMPLE]},
    "PresenceList": {
        "users": [
            _PRESENCE_EXAMPLE,
            {"email": "ola@contoso.no", "status": "unknown", "reason": "not monitored"},
        ]
    },
    "PresenceRefresh": {"batches": 3},
    "RunList": {
        "runs": [
            {
                "id": _RUN_ID,
                "function": "calendar-sync",
                "status": "succeeded",
                "startedAt": "2026-11-02T10:15:00+00:00",
                "endedAt": "2026-11-02T10:15:01+00:00",
                "counts": {"pages": 2, "upserted": 1, "deleted": 1, "calendars_synced": 2},
                "error": None,
            }
        ]
    },
    "EventPage": {
        "events": [
            {
                "id": "8c2d6f0a-3b1e-4d5c-9a7f-0e1b2c3d4e5f",
                "type": "bridge.test",
                "tenantId": TENANT_ID,
                "occurredAt": "2026-11-02T08:20:00.000000Z",
                "data": {"message": "Test event requested by the host system."},
            }
        ],
        "next": "1",
    },
    "TestEventQueued": {"id": "8c2d6f0a-3b1e-4d5c-9a7f-0e1b2c3d4e5f", "type": "bridge.test", "sequence": 1},
    "SettingsReport": {
        "tenantId": TENANT_ID,
        "ok": False,
        "checkedAt": _AT,
        "truncated": False,
        "checks": [
            {
                "check": "token",
                "target": CLIENT_ID,
                "status": "ok",
                "detail": f"Entra ID issued a Graph token for the app {CLIENT_ID} in tenant "
                f"{GRAPH_TENANT_ID}; its application permissions: Calendars.ReadWrite, Mail.ReadWrite, "
                "Mail.Send.",
            },
            {
                "check": "permissions",
                "target": "Calendars.ReadWrite",
                "status": "ok",
                "detail": "Calendars.ReadWrite is granted: resource room-4b links grady@contoso.no (both).",
            },
            {
                "check": "mail-folder",
                "target": "invoices > faktura@contoso.no > Inbox/Fakturer",
                "status": "failed",
                "detail": "The folder 'Inbox/Fakturer' was not found in faktura@contoso.no: the first "
                "missing part is 'Fakturer' (under 'Inbox').",
                "fix": "Folder names are matched case-insensitively: check the spelling of 'Fakturer' in "
                "Outlook, or save the import's importFolder (PUT /api/v1/tenants/contoso-norge/mail-imports/"
                "invoices) with the folder's path as Outlook shows it.",
            },
        ],
    },
    "ConnectStarted": {
        "authorizeUrl": f"https://login.microsoftonline.com/{GRAPH_TENANT_ID}/oauth2/v2.0/authorize"
        f"?client_id={CLIENT_ID}&response_type=code&scope=offline_access+openid+profile+User.Read+"
        "Calendars.ReadWrite&state=…&code_challenge=…&code_challenge_method=S256&login_hint=grady%40contoso.no",
        "expiresAt": "2026-11-02T08:25:00+00:00",
    },
    "Connected": {"status": "connected", "account": "grady@contoso.no"},
    "ConnectedAccount": {
        "account": "grady@contoso.no",
        "status": "connected",
        "scopes": ["Calendars.ReadWrite", "User.Read", "openid", "profile"],
        "connectedAt": _AT,
        "updatedAt": _AT,
    },
    "ConnectedAccountList": {
        "accounts": [
            {
                "account": "grady@contoso.no",
                "status": "connected",
                "scopes": ["Calendars.ReadWrite", "User.Read", "openid", "profile"],
                "connectedAt": _AT,
                "updatedAt": _AT,
            },
            {
                "account": "ola@contoso.no",
                "status": "reconnect_required",
                "scopes": ["Calendars.Read", "User.Read", "openid", "profile"],
                "connectedAt": "2026-08-14T12:00:00+00:00",
                "updatedAt": _AT,
                "error": "Entra ID refused the grant (invalid_grant, AADSTS50173)",
            },
        ]
    },
}


# --- requests ----------------------------------------------------------------------------------

TENANT_CREATE: dict[str, Any] = {
    "id": TENANT_ID,
    "displayName": "Contoso Norge AS",
    "graph": {
        "tenantId": GRAPH_TENANT_ID,
        "clientId": CLIENT_ID,
        "credentialMode": "client_secret",
        "clientSecret": "Qm8~example.client.secret.from.entra",
    },
    "host": {"webhookUrl": "https://erp.contoso.no/hooks/m365-bridge"},
    "defaults": {"language": "nb", "timeZone": "Europe/Oslo"},
}
TENANT_DISABLE: dict[str, Any] = {"enabled": False}
TENANT_PULL_FEED: dict[str, Any] = {"host": {"webhookUrl": None}}
TENANT_NEW_SECRET: dict[str, Any] = {"graph": {"clientSecret": "Xr4~example.rotated.client.secret"}}
ROTATE_NOW: dict[str, Any] = {"graceHours": 0}
ROTATE_WITH_GRACE: dict[str, Any] = {"graceHours": 48}
RESOURCE: dict[str, Any] = {
    "displayName": "Møterom 4B",
    "accounts": [
        {"account": "moterom.4b@contoso.no", "direction": "both"},
        {"account": "kari.nordmann@contoso.no", "direction": "down", "calendars": ["default"]},
    ],
}
_WORK_ORDER: dict[str, Any] = {
    "hostAppointmentId": "SO-1001",
    "resourceId": "room-4b",
    "version": 1,
    "subject": "Service: varmepumpe",
    "body": "Arbeidsordre fra ERP",
    "location": "Storgata 1, Oslo",
    "start": "2026-12-01T10:00:00",
    "end": "2026-12-01T11:00:00",
    "timeZone": "Europe/Oslo",
    "categories": ["ERP"],
}
APPOINTMENT: dict[str, Any] = _WORK_ORDER
APPOINTMENT_BATCH: dict[str, Any] = {
    "appointments": [
        {
            **_WORK_ORDER,
            "version": 2,
            "subject": "Service: varmepumpe (flyttet)",
            "start": "2026-12-02T12:00:00",
            "end": "2026-12-02T13:00:00",
            "modifiedAt": "2026-11-30T14:05:00Z",
        },
        {
            "hostAppointmentId": "SO-1002",
            "resourceId": "room-4b",
            "version": 1,
            "subject": "Installasjon: ladeboks",
            "start": "2026-12-03",
            "end": "2026-12-04",
            "isAllDay": True,
            "showAs": "oof",
            "attendees": ["kari.nordmann@contoso.no", {"email": "ola@example.org", "name": "Ola Hansen"}],
        },
        {"hostAppointmentId": "SO-0999", "resourceId": "room-4b", "version": 3, "op": "delete"},
    ]
}
MAIL_IMPORT: dict[str, Any] = {
    "mailbox": "faktura@contoso.no",
    "importFolder": "Inbox/Fakturaer",
    "archiveFolder": "Archive/Fakturaer",
    "forwardTo": "regnskap@contoso.no",
    "notifyTo": "it@contoso.no",
}
BOOKING_CALENDAR: dict[str, Any] = {
    "displayName": "Rådgivning",
    "owner": "booking@contoso.no",
    "calendar": "Bookbare timer",
    "noticeDays": 1,
}
# As tests/integration/test_booking_reservations.py books a slot.
RESERVATION: dict[str, Any] = {
    "slotId": _SLOT_ID,
    "slotVersion": "DwAAABYAAAAiIsqMbYjsT5e/T7KzowPTAAAYbvZD",
    "booker": {"name": "Åse Nordmann", "email": "ase@example.org", "phone": "+47 900 00 000"},
    "fields": {"Årsak": "Årskontroll", "Allergier": "Blåbærsyltetøy", "Samtykke": True},
    "documents": [
        {
            "name": "henvisning.pdf",
            "contentType": "application/pdf",
            "contentBase64": base64.b64encode(_REFERRAL).decode("ascii"),
        }
    ],
    "idempotencyKey": "skjema-2026-12-01-0042",
}
MAIL_SENDER: dict[str, Any] = {"mailbox": "skjema@contoso.no", "sendAs": "post@contoso.no"}
_RECEIPT = b"%PDF-1.7\n% Kvittering for innsendt skjema\n%%EOF\n"
OUTGOING_MAIL: dict[str, Any] = {
    "idempotencyKey": "skjema-2026-12-01-0042-kvittering",
    "to": ["ase@example.org"],
    "bcc": ["arkiv@contoso.no"],
    "replyTo": ["post@contoso.no"],
    "subject": "Kvittering: søknad om barnehageplass",
    "body": {"contentType": "html", "content": "<p>Vi har mottatt søknaden din.</p>"},
    "attachments": [
        {
            "name": "kvittering.pdf",
            "contentType": "application/pdf",
            "contentBase64": base64.b64encode(_RECEIPT).decode("ascii"),
        }
    ],
    "importance": "normal",
}
PRESENCE_SETTINGS: dict[str, Any] = {
    "busyStatuses": ["busy", "oof"],
    "showSubjects": True,
    "refreshMinutes": 5,
    "monitorAccount": "sentralbord@contoso.no",
}
MONITOR: dict[str, Any] = {"displayName": "Grady Archie"}
