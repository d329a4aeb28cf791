"""Calendars and events of the emulated mailboxes: the model, its changes, and its rendering.

Storage keeps what Outlook keeps: single events and series masters (`EventRecord`), each series
with its exceptions (edited occurrences, keyed by the occurrence's original start) and cancelled
occurrences. Occurrences themselves are never stored: `instances()` expands series on demand, and
an occurrence's id is derived from the series id and its original start (ids.occurrence_id), so
it is the same on every read and survives into an exception when the occurrence is edited.

Change keys: every write gives the written record a fresh `changeKey`. An occurrence's change key
is derived from its series' key, an exception's from both its own and its series' key, so editing
a series changes every instance a client has seen (delta reports them as updated).

Ids: one id form. Outlook event ids do not change on update, and events do not move between
folders here, so the id is the same whether or not a request says `Prefer: IdType="ImmutableId"`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from devtools.graph_emulator import ids
from devtools.graph_emulator.directory import User
from devtools.graph_emulator.errors import GraphError, bad_request, not_found
from devtools.graph_emulator.recurrence import (
    Recurrence,
    RecurrenceError,
    expand,
    is_occurrence,
    parse_recurrence,
)
from devtools.graph_emulator.timezones import (
    UnknownTimeZone,
    date_time_time_zone,
    format_instant,
    format_local,
    from_utc,
    parse_local,
    to_utc,
    zone,
)

SHOW_AS = ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown")
SENSITIVITY = ("normal", "personal", "private", "confidential")
IMPORTANCE = ("low", "normal", "high")
# Properties a client may write (POST/PATCH). Anything else that is not a known read-only
# property is refused the way Graph's OData reader refuses it.
WRITABLE = {
    "subject",
    "body",
    "start",
    "end",
    "isAllDay",
    "showAs",
    "sensitivity",
    "importance",
    "categories",
    "location",
    "locations",
    "attendees",
    "recurrence",
    "transactionId",
    "isReminderOn",
    "reminderMinutesBeforeStart",
    "responseRequested",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "allowNewTimeProposals",
    "hideAttendees",
    "organizer",
}
READ_ONLY = {
    "id",
    "@odata.type",
    "@odata.etag",
    "@odata.context",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "iCalUId",
    "uid",
    "type",
    "seriesMasterId",
    "originalStart",
    "originalStartTimeZone",
    "originalEndTimeZone",
    "hasAttachments",
    "bodyPreview",
    "webLink",
    "isCancelled",
    "isOrganizer",
    "isDraft",
    "responseStatus",
    "onlineMeetingUrl",
    "onlineMeeting",
    "attachments",
    "calendar",
    "instances",
    "extensions",
}
# Fields an exception may override (its own times are kept separately).
OCCURRENCE_FIELDS = WRITABLE - {"recurrence", "transactionId", "start", "end", "organizer"}


@dataclass
class EventTime:
    local: dt.datetime  # naive wall-clock time in `tz_name`
    tz_name: str  # as the client wrote it (Windows or IANA)

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.tz_name)

    @property
    def utc(self) -> dt.datetime:
        return to_utc(self.local, self.zone)

    @classmethod
    def parse(cls, value: Any, name: str) -> EventTime:
        if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
            raise bad_request(f"The {name} property must be a dateTimeTimeZone with a dateTime.")
        tz_name = value.get("timeZone") or "UTC"
        try:
            zone(tz_name)
            local = parse_local(value["dateTime"])
        except UnknownTimeZone as exc:
            raise GraphError(400, "TimeZoneNotSupportedException", str(exc)) from None
        except ValueError:
            raise bad_request(f"'{value['dateTime']}' is not a valid dateTime for {name}.") from None
        return cls(local, tz_name)

    @classmethod
    def at(cls, instant: dt.datetime, tz_name: str) -> EventTime:
        return cls(from_utc(instant, zone(tz_name)), tz_name)


@dataclass
class Attachment:
    id: str
    name: str
    content_type: str
    data: bytes
    is_inline: bool
    content_id: str | None
    modified: dt.datetime


@dataclass
class ExceptionRecord:
    original_start: dt.datetime  # aware UTC, the occurrence it replaces
    fields: dict[str, Any]  # overridden properties
    start: EventTime
    end: EventTime
    change_key: str
    created: dt.datetime
    modified: dt.datetime


@dataclass
class EventRecord:
    id: str
    user_id: str
    calendar_id: str
    fields: dict[str, Any]
    start: EventTime
    end: EventTime
    recurrence: Recurrence | None
    created: dt.datetime
    modified: dt.datetime
    change_key: str
    ical_uid: str
    transaction_id: str | None = None
    creator: str | None = None  # client id of the app that created it (None: a person in Outlook)
    exceptions: dict[dt.datetime, ExceptionRecord] = field(default_factory=dict)
    cancelled: set[dt.datetime] = field(default_factory=set)
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def recurrence_zone(self) -> ZoneInfo:
        assert self.recurrence is not None
        return zone(self.recurrence.range.time_zone or self.start.tz_name)

    def series_start_local(self) -> dt.datetime:
        return from_utc(self.start.utc, self.recurrence_zone)

    def series_duration(self) -> dt.timedelta:
        tz = self.recurrence_zone
        return from_utc(self.end.utc, tz) - from_utc(self.start.utc, tz)


@dataclass
class Calendar:
    id: str
    user_id: str
    name: str
    is_default: bool
    change_key: str
    color: str = "auto"


@dataclass(frozen=True)
class Instance:
    """One item as calendarView sees it: a single event, an occurrence or an exception."""

    id: str
    type: str  # singleInstance | occurrence | exception | seriesMaster
    record: EventRecord
    start: dt.datetime  # aware UTC
    end: dt.datetime
    change_key: str
    original_start: dt.datetime | None = None
    exception: ExceptionRecord | None = None

    @property
    def fields(self) -> dict[str, Any]:
        if self.exception is None:
            return self.record.fields
        return {**self.record.fields, **self.exception.fields}

    @property
    def show_as(self) -> str:
        return str(self.fields.get("showAs", "busy"))

    @property
    def is_private(self) -> bool:
        return self.fields.get("sensitivity") == "private"


@dataclass
class Mailbox:
    user: User
    calendars: dict[str, Calendar] = field(default_factory=dict)
    events: dict[str, EventRecord] = field(default_factory=dict)
    # (creating app's client id or "", transactionId) -> event id
    transactions: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def default_calendar(self) -> Calendar:
        return next(c for c in self.calendars.values() if c.is_default)


def derived_key(*parts: str) -> str:
    digest = hashlib.sha256("|".join(parts).encode()).digest()[:12]
    return base64.b64encode(digest).decode()


def overlaps(
    start: dt.datetime, end: dt.datetime, window_start: dt.datetime, window_end: dt.datetime
) -> bool:
    if end == start:  # a zero-length event shows where it starts
        return window_start <= start < window_end
    return start < window_end and end > window_start


# -- validation ------------------------------------------------------------------------------


def check_properties(body: dict[str, Any]) -> None:
    for key in body:
        if key in WRITABLE or key in READ_ONLY or key.startswith("@"):
            continue
        raise GraphError(
            400,
            "RequestBodyRead",
            f"The property '{key}' does not exist on type 'microsoft.graph.event'. Make sure to only use "
            "property names that are defined by the type or mark the type as open type.",
        )


def _enum(body: dict[str, Any], key: str, allowed: tuple[str, ...], type_name: str) -> None:
    if key in body and body[key] is not None and body[key] not in allowed:
        raise GraphError(
            400,
            "RequestBodyRead",
            f"Cannot convert the literal '{body[key]}' to the expected type 'microsoft.graph.{type_name}'.",
        )


def clean_fields(body: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    """The writable, non-time fields of a request body, validated."""
    check_properties(body)
    _enum(body, "showAs", SHOW_AS, "freeBusyStatus")
    _enum(body, "sensitivity", SENSITIVITY, "sensitivity")
    _enum(body, "importance", IMPORTANCE, "importance")
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key not in allowed or key in ("start", "end", "recurrence", "transactionId"):
            continue
        if key == "body" and value is not None:
            if not isinstance(value, dict):
                raise bad_request("body must be an itemBody object.")
            value = {"contentType": value.get("contentType", "text"), "content": value.get("content", "")}
        if key == "categories" and value is not None and not isinstance(value, list):
            raise bad_request("categories must be a collection of strings.")
        out[key] = value
    return out


def check_times(start: EventTime, end: EventTime, all_day: bool) -> None:
    if end.utc < start.utc:
        raise bad_request("The event's end time must not be before its start time.")
    midnights = start.local.time() == dt.time(0) and end.local.time() == dt.time(0)
    if all_day and (not midnights or end.local <= start.local):
        raise bad_request(
            "Your request can't be completed. An all-day event must start and end at midnight, "
            "at least one day apart."
        )


def parse_recurrence_or_400(value: Any) -> Recurrence | None:
    if value is None:
        return None
    try:
        rec = parse_recurrence(value)
        if rec.range.time_zone:
            zone(rec.range.time_zone)
    except UnknownTimeZone as exc:
        raise GraphError(400, "TimeZoneNotSupportedException", str(exc)) from None
    except RecurrenceError as exc:
        raise bad_request(str(exc)) from None
    return rec


# -- expansion -------------------------------------------------------------------------------


def occurrence_instance(record: EventRecord, original_start: dt.datetime) -> Instance:
    """The instance at `original_start` of a series (occurrence, or exception if edited)."""
    exc = record.exceptions.get(original_start)
    oid = ids.occurrence_id(record.id, original_start)
    if exc is not None:
        return Instance(
            oid,
            "exception",
            record,
            exc.start.utc,
            exc.end.utc,
            derived_key(record.change_key, exc.change_key),
            original_start,
            exc,
        )
    tz = record.recurrence_zone
    local = dt.datetime.combine(from_utc(original_start, tz).date(), record.series_start_local().time())
    return Instance(
        oid,
        "occurrence",
        record,
        original_start,
        to_utc(local + record.series_duration(), tz),
        derived_key(record.change_key, format_instant(original_start)),
        original_start,
    )


def valid_original(record: EventRecord, original_start: dt.datetime) -> bool:
    if record.recurrence is None or original_start in record.cancelled:
        return False
    return is_occurrence(
        record.recurrence, record.series_start_local(), record.recurrence_zone, original_start
    )


def instances(
    records: Iterable[EventRecord], window_start: dt.datetime, window_end: dt.datetime
) -> list[Instance]:
    """Single events, occurrences and exceptions overlapping the window (never series masters),
    ordered by start then id."""
    out: list[Instance] = []
    for record in records:
        if record.recurrence is None:
            start, end = record.start.utc, record.end.utc
            if overlaps(start, end, window_start, window_end):
                out.append(Instance(record.id, "singleInstance", record, start, end, record.change_key))
            continue
        for occ in expand(
            record.recurrence,
            record.series_start_local(),
            record.series_duration(),
            record.recurrence_zone,
            window_start,
            window_end,
        ):
            if occ.original_start in record.cancelled or occ.original_start in record.exceptions:
                continue
            out.append(occurrence_instance(record, occ.original_start))
        for original, exc in record.exceptions.items():
            if overlaps(exc.start.utc, exc.end.utc, window_start, window_end) and valid_original(
                record, original
            ):
                out.append(occurrence_instance(record, original))
    out.sort(key=lambda i: (i.start, i.id))
    return out


# -- rendering -------------------------------------------------------------------------------


def _preview(body: Any) -> str:
    content = body.get("content", "") if isinstance(body, dict) else ""
    text = (
        re.sub(r"<[^>]+>", " ", str(content))
        if isinstance(body, dict) and body.get("contentType") == "html"
        else str(content)
    )
    return " ".join(html.unescape(text).split())[:255]


def _location(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {
            "displayName": "",
            "locationType": "default",
            "uniqueIdType": "unknown",
            "address": {},
            "coordinates": {},
        }
    out = {
        "displayName": "",
        "locationType": "default",
        "uniqueIdType": "unknown",
        "address": {},
        "coordinates": {},
    }
    out.update(value)
    return out


def _ical_for(record: EventRecord, original_start: dt.datetime | None) -> str:
    if original_start is None:
        return record.ical_uid
    # Outlook's global object id embeds the occurrence date after the 16-byte class id.
    day = original_start.date()
    return record.ical_uid[:32] + f"{day.year:04X}{day.month:02X}{day.day:02X}" + record.ical_uid[40:]


def render(item: Instance, owner: User, tz_name: str | None) -> dict[str, Any]:
    """The Graph `event` JSON of an instance (or master), times shown in `tz_name` (UTC if None)."""
    record, f = item.record, item.fields
    exc = item.exception
    all_day = bool(f.get("isAllDay", False))
    created = exc.created if exc else record.created
    modified = max(record.modified, exc.modified) if exc else record.modified
    if all_day:
        # All-day events keep their dates whatever zone the reader asks for (midnight to midnight).
        start_local = (
            exc.start.local if exc else (item.start.astimezone(record.start.zone).replace(tzinfo=None))
        )
        end_local = exc.end.local if exc else (item.end.astimezone(record.end.zone).replace(tzinfo=None))
        start = {"dateTime": format_local(start_local), "timeZone": tz_name or "UTC"}
        end = {"dateTime": format_local(end_local), "timeZone": tz_name or "UTC"}
    else:
        start = date_time_time_zone(item.start, tz_name)
        end = date_time_time_zone(item.end, tz_name)
    location = _location(f.get("location"))
    locations = f.get("locations")
    if locations is None:
        locations = [location] if location.get("displayName") else []
    organizer = f.get("organizer") or {"emailAddress": {"name": owner.display_name, "address": owner.mail}}
    body = f.get("body") or {"contentType": "html", "content": ""}
    out: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.event",
        "@odata.etag": f'W/"{item.change_key}"',
        "id": item.id,
        "createdDateTime": format_instant(created),
        "lastModifiedDateTime": format_instant(modified),
        "changeKey": item.change_key,
        "categories": list(f.get("categories") or []),
        "transactionId": record.transaction_id,
        "originalStartTimeZone": record.start.tz_name,
        "originalEndTimeZone": record.end.tz_name,
        "iCalUId": _ical_for(record, item.original_start),
        "uid": record.ical_uid,
        "reminderMinutesBeforeStart": f.get("reminderMinutesBeforeStart", 15),
        "isReminderOn": f.get("isReminderOn", True),
        "hasAttachments": bool(record.attachments),
        "subject": f.get("subject") or "",
        "bodyPreview": _preview(body),
        "importance": f.get("importance") or "normal",
        "sensitivity": f.get("sensitivity") or "normal",
        "isAllDay": all_day,
        "isCancelled": False,
        "isOrganizer": True,
        "responseRequested": f.get("responseRequested", True),
        "seriesMasterId": record.id if item.type in ("occurrence", "exception") else None,
        "showAs": f.get("showAs") or "busy",
        "type": item.type,
        "webLink": "https://outlook.office365.com/owa/?itemid="
        + quote(item.id, safe="")
        + "&exvsurl=1&path=/calendar/item",
        "onlineMeetingUrl": None,
        "isOnlineMeeting": bool(f.get("isOnlineMeeting", False)),
        "onlineMeetingProvider": f.get("onlineMeetingProvider") or "unknown",
        "allowNewTimeProposals": f.get("allowNewTimeProposals", True),
        "isDraft": False,
        "hideAttendees": bool(f.get("hideAttendees", False)),
        "recurrence": record.recurrence.to_graph()
        if record.recurrence and item.type == "seriesMaster"
        else None,
        "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
        "body": body,
        "start": start,
        "end": end,
        "location": location,
        "locations": locations,
        "attendees": list(f.get("attendees") or []),
        "organizer": organizer,
        "onlineMeeting": None,
    }
    if item.original_start is not None:
        out["originalStart"] = format_instant(item.original_start)
    return out


def master_instance(record: EventRecord) -> Instance:
    kind = "seriesMaster" if record.recurrence is not None else "singleInstance"
    return Instance(record.id, kind, record, record.start.utc, record.end.utc, record.change_key)


def calendar_json(cal: Calendar, owner: User) -> dict[str, Any]:
    return {
        "@odata.etag": f'W/"{cal.change_key}"',
        "id": cal.id,
        "name": cal.name,
        "color": cal.color,
        "hexColor": "",
        "isDefaultCalendar": cal.is_default,
        "changeKey": cal.change_key,
        "canShare": True,
        "canViewPrivateItems": True,
        "canEdit": True,
        "allowedOnlineMeetingProviders": ["teamsForBusiness"],
        "defaultOnlineMeetingProvider": "teamsForBusiness",
        "isTallyingResponses": True,
        "isRemovable": not cal.is_default,
        "owner": {"name": owner.display_name, "address": owner.mail},
    }


def attachment_json(att: Attachment, *, with_content: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "@odata.mediaContentType": att.content_type,
        "id": att.id,
        "lastModifiedDateTime": format_instant(att.modified),
        "name": att.name,
        "contentType": att.content_type,
        "size": len(att.data),
        "isInline": att.is_inline,
        "contentId": att.content_id,
        "contentLocation": None,
    }
    if with_content:
        out["contentBytes"] = base64.b64encode(att.data).decode()
    return out


def etag_matches(header: str | None, change_key: str) -> bool:
    """If-Match semantics: absent or "*" always match; otherwise the (weak) etag must name the
    current change key."""
    if header is None or header.strip() == "*":
        return True
    for tag in header.split(","):
        value = tag.strip()
        if value.startswith("W/"):
            value = value[2:]
        if value.strip('"') == change_key:
            return True
    return False


def require(condition: bool, message: str = "The specified object was not found in the store.") -> None:
    if not condition:
        raise not_found(message)
