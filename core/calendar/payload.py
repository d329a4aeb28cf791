"""What a host receives for one Outlook appointment, and its fingerprint.

`appointment` turns a Graph event into the `appointment.upserted` payload: ids, what the host
scheduler shows (subject, body preview, location, start/end in the tenant's time zone with the
UTC instants beside them, all-day flag, showAs, sensitivity, organizer, attendee count), when
Outlook last changed it, and `readOnly`.

Private and confidential events are masked: the subject becomes the tenant-language
placeholder ("Private appointment", "Privat avtale", …), and body preview, location,
categories, organizer and attendees are left out; only the times, showAs and sensitivity go to
the host. They are `readOnly: true`, as are events of a calendar the host may not write to (a
link without `up`).

The fingerprint is a hash of the payload without `lastModified`: an Outlook change the host
cannot see (an attendee's response, a reminder) gives the same fingerprint and is not sent
again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from html import unescape
from typing import Any

from core.graph.model import BodyType, Event
from core.i18n import Text, text
from core.timezones import zone_for

PREVIEW_LENGTH = 255  # Graph's own bodyPreview length
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class CalendarContext:
    """Which calendar an event belongs to, as the host knows it, and how to present it."""

    tenant_id: str
    resource_id: str
    account: str
    calendar: str
    language: str = "en"
    time_zone: str = "UTC"
    writable: bool = False  # the host's edits reach Outlook (the link's direction includes up)


def zone(name: str) -> tzinfo:
    """The zone for an IANA or Windows name; UTC when neither is known (never fails a sync)."""
    return zone_for(name) or UTC


def preview(body: str, body_type: BodyType) -> str:
    """Graph's `bodyPreview`: the body as plain text, whitespace collapsed, 255 characters."""
    if body_type is BodyType.HTML:
        body = unescape(_TAG.sub(" ", body))
    return _SPACE.sub(" ", body).strip()[:PREVIEW_LENGTH]


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(moment: datetime, all_day: bool, local: tzinfo, zone_name: str) -> dict[str, str]:
    if all_day:
        # an all-day event is a date: its day in Outlook, whatever the zone (see model.py)
        return {"date": moment.date().isoformat(), "timeZone": zone_name}
    wall = moment.astimezone(local)
    return {
        "dateTime": wall.strftime("%Y-%m-%dT%H:%M:%S"),
        "timeZone": zone_name,
        "utc": _utc(moment),
    }


def appointment(event: Event, ctx: CalendarContext, host_appointment_id: str | None) -> dict[str, Any]:
    """The host's view of `event` (JSON-ready)."""
    local = zone(ctx.time_zone)
    private = event.is_private
    data: dict[str, Any] = {
        "eventId": event.id,
        "seriesId": event.series_master_id,
        "hostAppointmentId": host_appointment_id,
        "type": event.type.value,
        "subject": text(Text.PRIVATE_APPOINTMENT, ctx.language) if private else event.subject,
        "bodyPreview": "" if private else preview(event.body, event.body_type),
        "location": "" if private else event.location,
        "start": _when(event.start, event.is_all_day, local, ctx.time_zone),
        "end": _when(event.end, event.is_all_day, local, ctx.time_zone),
        "isAllDay": event.is_all_day,
        "showAs": event.show_as.value,
        "sensitivity": event.sensitivity.value,
        "categories": [] if private else list(event.categories),
        "organizer": None if private else event.organizer,
        "attendeeCount": 0 if private else len(event.attendees),
        "lastModified": _utc(event.last_modified) if event.last_modified else None,
        "readOnly": private or not ctx.writable,
    }
    return data


def fingerprint(payload: dict[str, Any]) -> str:
    """SHA-256 of the payload's canonical JSON, without `lastModified`."""
    stable = {k: v for k, v in payload.items() if k != "lastModified"}
    canonical = json.dumps(stable, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
