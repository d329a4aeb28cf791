"""Realistic Graph `calendarView/delta` pages, shaped like what Exchange Online returns.

Shared by the P3 benchmark and the parser tests, so both measure and check the same shape:
every property Graph sends on an event (not only the ones the bridge reads), immutable-id-like
ids, HTML bodies, attendees, and a mix of single events, occurrences, exceptions, private and
all-day events and `@removed` entries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

BASE = datetime(2025, 3, 3, 7, 0, tzinfo=UTC)


def graph_id(seed: str) -> str:
    """An id shaped like an Outlook immutable id (base64 of ~110 bytes)."""
    raw = (
        b"\x00\x00\x00\x00" + hashlib.sha512(seed.encode()).digest() + hashlib.sha384(seed.encode()).digest()
    )
    return base64.urlsafe_b64encode(raw[:110]).decode()


def _when(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


def _attendee(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "type": rng.choice(["required", "optional", "resource"]),
        "status": {
            "response": rng.choice(["none", "accepted", "tentativelyAccepted"]),
            "time": "0001-01-01T00:00:00Z",
        },
        "emailAddress": {"name": f"Person {n}", "address": f"person{n}@contoso.example"},
    }


def event_json(i: int, kind: str, rng: random.Random) -> dict[str, Any]:
    """One event as Graph serialises it. `kind`: single, occurrence, exception, private,
    allday."""
    start = BASE + timedelta(days=i // 8, hours=(i % 8))
    end = start + timedelta(minutes=rng.choice([30, 45, 60, 90]))
    all_day = kind == "allday"
    if all_day:
        start = datetime(start.year, start.month, start.day, tzinfo=UTC)
        end = start + timedelta(days=1)
    event_id = graph_id(f"event-{i}")
    master = graph_id(f"master-{i // 5}") if kind in ("occurrence", "exception") else None
    change_key = base64.b64encode(hashlib.sha1(f"ck-{i}".encode()).digest()).decode()  # noqa: S324
    body = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>'
        f"<body><div>Agenda for meeting {i}: review the scheduler sync, invoices and bookings."
        "</div><div>Room: Oslo 4. Bring the quarterly figures.</div></body></html>"
    )
    return {
        "@odata.type": "#microsoft.graph.event",
        "@odata.etag": f'W/"{change_key}"',
        "id": event_id,
        "createdDateTime": "2025-02-20T10:11:12.1234567Z",
        "lastModifiedDateTime": "2025-02-21T08:09:10.7654321Z",
        "changeKey": change_key,
        "categories": ["Quick3"] if i % 3 == 0 else [],
        "transactionId": f"6f1d3c52-8a47-5e0b-9c21-{i:012d}" if i % 4 == 0 else None,
        "originalStartTimeZone": "W. Europe Standard Time",
        "originalEndTimeZone": "W. Europe Standard Time",
        "iCalUId": "040000008200E00074C5B7101A82E00800000000" + hashlib.md5(str(i).encode()).hexdigest(),  # noqa: S324
        "uid": "040000008200E00074C5B7101A82E008000000001",
        "reminderMinutesBeforeStart": 15,
        "isReminderOn": True,
        "hasAttachments": i % 10 == 0,
        "subject": f"Customer meeting {i}",
        "bodyPreview": f"Agenda for meeting {i}: review the scheduler sync, invoices and bookings.",
        "importance": "normal",
        "sensitivity": "private" if kind == "private" else "normal",
        "originalStart": start.strftime("%Y-%m-%dT%H:%M:%SZ") if master else None,
        "isAllDay": all_day,
        "isCancelled": False,
        "isOrganizer": True,
        "responseRequested": True,
        "seriesMasterId": master,
        "showAs": "free" if all_day else rng.choice(["busy", "busy", "tentative", "oof", "workingElsewhere"]),
        "type": {"occurrence": "occurrence", "exception": "exception"}.get(kind, "singleInstance"),
        "webLink": f"https://outlook.office365.com/owa/?itemid={event_id}&exvsurl=1&path=/calendar/item",
        "onlineMeetingUrl": None,
        "isOnlineMeeting": False,
        "onlineMeetingProvider": "unknown",
        "allowNewTimeProposals": True,
        "occurrenceId": None,
        "isDraft": False,
        "hideAttendees": False,
        "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
        "body": {"contentType": "html", "content": body},
        "start": _when(start),
        "end": _when(end),
        "location": {
            "displayName": "Oslo 4",
            "locationType": "default",
            "uniqueId": "Oslo 4",
            "uniqueIdType": "private",
        },
        "locations": [
            {
                "displayName": "Oslo 4",
                "locationType": "default",
                "uniqueId": "Oslo 4",
                "uniqueIdType": "private",
            }
        ],
        "recurrence": None,
        "attendees": [_attendee(rng, i * 3 + k) for k in range(rng.randint(1, 3))],
        "organizer": {"emailAddress": {"name": "Kari Nordmann", "address": "kari@contoso.example"}},
        "onlineMeeting": None,
    }


KINDS = ["single"] * 60 + ["occurrence"] * 20 + ["exception"] * 8 + ["private"] * 5 + ["allday"] * 5
REMOVED_SHARE = 0.07


def delta_page(n: int = 500, seed: int = 3) -> dict[str, Any]:
    """A full delta page of `n` items (about 7% of them `@removed`), ending the round."""
    rng = random.Random(seed)
    value: list[dict[str, Any]] = []
    for i in range(n):
        if rng.random() < REMOVED_SHARE:
            value.append(
                {
                    "@odata.type": "#microsoft.graph.event",
                    "id": graph_id(f"gone-{i}"),
                    "@removed": {"reason": "deleted"},
                }
            )
        else:
            value.append(event_json(i, rng.choice(KINDS), rng))
    return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(event)",
        "@odata.deltaLink": "https://graph.microsoft.com/v1.0/users/kari@contoso.example/calendarView/delta?$deltatoken=R0usmcMp",
        "value": value,
    }


def delta_page_bytes(n: int = 500, seed: int = 3) -> bytes:
    return json.dumps(delta_page(n, seed)).encode()
