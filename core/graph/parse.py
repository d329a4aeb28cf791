"""Graph JSON → lean domain objects, with plain `json` and hand-written checks.

This is the hot path of every sync (TARGETS P3): msgraph-sdk's models cost milliseconds per
event and load > 1,200 modules, so nothing here touches the SDK. Each item is checked where it
matters — ids, start/end with their time zone (→ aware UTC), type, sensitivity, showAs,
`@removed` — and an item that fails becomes a `MalformedItem` in the page's `rejected` instead
of an exception that would lose the rest of the page. A body that is not the JSON envelope Graph
documents raises `MalformedResponse`.

Unknown *future* enum values are read conservatively: an unknown `showAs` is `unknown` (not
busy, not free), an unknown `sensitivity` is `private` (mask rather than leak).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import unquote

from pydantic_core import from_json

from core.graph.errors import MalformedItem, MalformedResponse
from core.graph.model import (
    Attachment,
    AttachmentKind,
    Attendee,
    BodyType,
    Calendar,
    DeltaPage,
    Event,
    EventType,
    GraphSubscription,
    MailFolder,
    Message,
    Removed,
    Schedule,
    ScheduleItem,
    Sensitivity,
    ShowAs,
    User,
)
from core.timezones import zone_for

T = TypeVar("T")
E = TypeVar("E")
D = TypeVar("D")

_EVENT_TYPES = {t.value: t for t in EventType}
_SENSITIVITY = {s.value: s for s in Sensitivity}
_SHOW_AS = {s.value: s for s in ShowAs}
_BODY_TYPES = {"text": BodyType.TEXT, "html": BodyType.HTML}
_ATTACHMENT_KINDS = {
    "#microsoft.graph.fileAttachment": AttachmentKind.FILE,
    "#microsoft.graph.itemAttachment": AttachmentKind.ITEM,
    "#microsoft.graph.referenceAttachment": AttachmentKind.REFERENCE,
}
_fromiso = datetime.fromisoformat

# Outlook reports Windows zone names unless asked for UTC (the gateway always asks with
# `Prefer: outlook.timezone="UTC"`); the table is the fallback. Anything else is tried as IANA.
_zone = zone_for


def load(payload: bytes | str) -> dict[str, Any]:
    """The JSON object of a response body, or `MalformedResponse`.

    pydantic-core's Rust JSON reader (already loaded: settings use pydantic) with key caching
    is ~30% faster than `json.loads` on a delta page (bench/p3_parse.py), same result."""
    try:
        doc = from_json(payload, cache_strings="keys")
    except ValueError:
        doc = None
    if type(doc) is not dict:
        raise MalformedResponse("the response body is not a JSON object")
    return doc


def _lookup(table: dict[str, E], value: object, missing: E, unknown: D) -> E | D:
    """An enum member from its wire value: `missing` when absent or null, `unknown` when the
    value is not one of the table's (or not even a string)."""
    if value is None or value == "":
        return missing
    if type(value) is not str:
        return unknown
    return table.get(value, unknown)


def _str(raw: dict[str, Any], key: str, kind: str, item_id: str | None) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if type(value) is not str:
        raise MalformedItem(kind, f"{key} is not a string", item_id=item_id)
    return value


def _opt_str(value: object) -> str | None:
    return value if type(value) is str and value else None


def _id(raw: object, kind: str) -> str:
    if type(raw) is not dict:
        raise MalformedItem(kind, "not a JSON object")
    item_id = raw.get("id")
    if type(item_id) is not str or not item_id:
        raise MalformedItem(kind, "has no id")
    return item_id


def _when(value: object, kind: str, item_id: str, name: str, all_day: bool = False) -> datetime:
    """A Graph dateTimeTimeZone → aware UTC datetime (all-day: midnight UTC of its date)."""
    if type(value) is not dict:
        raise MalformedItem(kind, f"{name} is missing", item_id=item_id)
    text = value.get("dateTime")
    if type(text) is not str:
        raise MalformedItem(kind, f"{name}.dateTime is missing", item_id=item_id)
    try:
        moment = _fromiso(text)
    except ValueError:
        moment = None
    if moment is None:
        raise MalformedItem(kind, f"{name}.dateTime is not ISO 8601", item_id=item_id)
    if all_day:
        return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    zone = UTC if moment.tzinfo is not None else _zone(value.get("timeZone", "UTC"))
    if zone is None:
        raise MalformedItem(kind, f"{name}.timeZone is not a known time zone", item_id=item_id)
    if moment.tzinfo is None and zone is UTC:
        return moment.replace(tzinfo=UTC)  # the common case (we ask for UTC): no conversion
    try:
        return (moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)).astimezone(UTC)
    except OverflowError:
        pass  # year 1 or 9999 shifted past the calendar's edge
    raise MalformedItem(kind, f"{name}.dateTime is out of range", item_id=item_id)


def _instant(value: object) -> datetime | None:
    """An ISO timestamp such as lastModifiedDateTime ('...Z'); None when absent or bad —
    these are informative, not worth rejecting an item for."""
    if type(value) is not str:
        return None
    try:
        moment = _fromiso(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _address(value: object) -> str | None:
    if type(value) is dict:
        email = value.get("emailAddress")
        if type(email) is dict:
            address = email.get("address")
            if type(address) is str and address:
                return address
    return None


def _attendees(value: object, item_id: str) -> tuple[Attendee, ...]:
    if value is None:
        return ()
    if type(value) is not list:
        raise MalformedItem("event", "attendees is not a list", item_id=item_id)
    out = []
    for raw in value:
        if type(raw) is not dict:
            continue
        email = raw.get("emailAddress")
        if type(email) is not dict:
            continue
        address = email.get("address")
        if type(address) is not str or not address:
            continue  # Graph lists resources without an address; nothing to deliver to
        status = raw.get("status")
        response = status.get("response") if type(status) is dict else None
        name, kind = email.get("name"), raw.get("type")
        out.append(
            Attendee(
                address,
                name if type(name) is str else "",
                kind if type(kind) is str and kind else "required",
                response if type(response) is str and response else "none",
            )
        )
    return tuple(out)


def _strings(value: object, kind: str, key: str, item_id: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is not list or any(type(v) is not str for v in value):
        raise MalformedItem(kind, f"{key} is not a list of strings", item_id=item_id)
    return tuple(value)


def parse_event(raw: object) -> Event:
    """One event object; raises `MalformedItem`."""
    item_id = _id(raw, "event")
    assert type(raw) is dict  # checked by _id; narrows for mypy at no cost
    get = raw.get
    event_type = _lookup(_EVENT_TYPES, get("type"), EventType.SINGLE_INSTANCE, None)
    if event_type is None:
        raise MalformedItem("event", "type is not a known event type", item_id=item_id)
    sensitivity = _lookup(_SENSITIVITY, get("sensitivity"), Sensitivity.NORMAL, Sensitivity.PRIVATE)
    show_as = _lookup(_SHOW_AS, get("showAs"), ShowAs.BUSY, ShowAs.UNKNOWN)
    all_day = get("isAllDay") is True
    start = _when(get("start"), "event", item_id, "start", all_day)
    end = _when(get("end"), "event", item_id, "end", all_day)
    if end < start:
        raise MalformedItem("event", "ends before it starts", item_id=item_id)
    body = get("body")
    content, body_type = "", BodyType.TEXT
    if type(body) is dict:
        content = body.get("content") or ""
        body_type = _lookup(_BODY_TYPES, body.get("contentType"), BodyType.TEXT, BodyType.TEXT)
        if type(content) is not str:
            raise MalformedItem("event", "body.content is not a string", item_id=item_id)
    location = get("location")
    where = location.get("displayName") if type(location) is dict else None
    original = get("originalStart")
    return Event(
        item_id,
        _opt_str(get("changeKey")),
        _str(raw, "subject", "event", item_id),
        start,
        end,
        all_day,
        event_type,
        sensitivity,
        show_as,
        content,
        body_type,
        where if type(where) is str else "",
        _opt_str(get("seriesMasterId")),
        _instant(original) if original is not None else None,
        _opt_str(get("transactionId")),
        get("isCancelled") is True,
        _address(get("organizer")),
        _attendees(get("attendees"), item_id),
        _strings(get("categories"), "event", "categories", item_id),
        get("hasAttachments") is True,
        _opt_str(get("iCalUId")),
        _instant(get("lastModifiedDateTime")),
    )


def _removed(raw: dict[str, Any], kind: str) -> Removed:
    item_id = _id(raw, kind)
    info = raw["@removed"]
    reason = info.get("reason") if type(info) is dict else None
    return Removed(item_id, reason if type(reason) is str and reason else "deleted")


def parse_message(raw: object) -> Message:
    item_id = _id(raw, "message")
    assert type(raw) is dict
    get = raw.get
    return Message(
        item_id,
        _str(raw, "subject", "message", item_id),
        _instant(get("receivedDateTime")),
        _address(get("from")) or _address(get("sender")),
        get("hasAttachments") is True,
        _opt_str(get("parentFolderId")),
        _opt_str(get("internetMessageId")),
        _opt_str(get("changeKey")),
        get("isRead") is True,
        get("isDraft") is True,
    )


def parse_attachment(raw: object) -> Attachment:
    item_id = _id(raw, "attachment")
    assert type(raw) is dict
    kind = _lookup(_ATTACHMENT_KINDS, raw.get("@odata.type"), AttachmentKind.FILE, None)
    if kind is None:
        raise MalformedItem("attachment", "@odata.type is not a known attachment type", item_id=item_id)
    size = raw.get("size", 0)
    if type(size) is not int or size < 0:
        raise MalformedItem("attachment", "size is not a non-negative integer", item_id=item_id)
    return Attachment(
        item_id,
        _str(raw, "name", "attachment", item_id),
        _str(raw, "contentType", "attachment", item_id) or "application/octet-stream",
        size,
        raw.get("isInline") is True,
        kind,
        _opt_str(raw.get("contentId")),
    )


def parse_user(raw: object) -> User:
    item_id = _id(raw, "user")
    assert type(raw) is dict
    return User(
        item_id,
        _str(raw, "displayName", "user", item_id),
        _opt_str(raw.get("mail")),
        _str(raw, "userPrincipalName", "user", item_id),
    )


def parse_calendar(raw: object) -> Calendar:
    item_id = _id(raw, "calendar")
    assert type(raw) is dict
    return Calendar(
        item_id,
        _str(raw, "name", "calendar", item_id),
        raw.get("canEdit") is not False,
        raw.get("isDefaultCalendar") is True,
        _address({"emailAddress": raw.get("owner")}),
    )


def parse_folder(raw: object, path: str = "") -> MailFolder:
    item_id = _id(raw, "mailFolder")
    assert type(raw) is dict
    name = _str(raw, "displayName", "mailFolder", item_id)
    return MailFolder(item_id, name, _opt_str(raw.get("parentFolderId")), path or name)


def parse_subscription(raw: object) -> GraphSubscription:
    item_id = _id(raw, "subscription")
    assert type(raw) is dict
    expiration = _instant(raw.get("expirationDateTime"))
    if expiration is None:
        raise MalformedItem("subscription", "no expirationDateTime", item_id=item_id)
    return GraphSubscription(item_id, _str(raw, "resource", "subscription", item_id), expiration)


def parse_schedule(raw: object) -> Schedule:
    if type(raw) is not dict or type(raw.get("scheduleId")) is not str:
        raise MalformedItem("schedule", "has no scheduleId")
    schedule_id: str = raw["scheduleId"]
    error = raw.get("error")
    if type(error) is dict:
        code = error.get("responseCode")
        return Schedule(schedule_id, "", (), code if type(code) is str and code else "error")
    view = raw.get("availabilityView") or ""
    if type(view) is not str or (view and not view.isdigit()):
        raise MalformedItem("schedule", "availabilityView is not digits", item_id=schedule_id)
    items = []
    for item in raw.get("scheduleItems") or ():
        if type(item) is not dict:
            raise MalformedItem("schedule", "a schedule item is not an object", item_id=schedule_id)
        items.append(
            ScheduleItem(
                _when(item.get("start"), "schedule", schedule_id, "start"),
                _when(item.get("end"), "schedule", schedule_id, "end"),
                _lookup(_SHOW_AS, item.get("status"), ShowAs.BUSY, ShowAs.UNKNOWN),
                item.get("isPrivate") is True,
                _str(item, "subject", "schedule", schedule_id),
                _str(item, "location", "schedule", schedule_id),
            )
        )
    return Schedule(schedule_id, view, tuple(items))


# --- pages -------------------------------------------------------------------------------


def _link(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if type(value) is not str or not value:
        raise MalformedResponse(f"{key} is not a URL")
    return value


def _values(doc: dict[str, Any]) -> list[Any]:
    value = doc.get("value")
    if type(value) is not list:
        raise MalformedResponse("the response has no 'value' array")
    return value


def parse_delta_page(
    payload: bytes | str | dict[str, Any], parse_item: Callable[[object], T], kind: str
) -> DeltaPage[T]:
    """A delta page: items (or `Removed`), the next or delta link, and the rejected items.
    Raises `MalformedResponse` if the page has neither link (a delta round must end in one).
    `payload` may be the body already read as JSON (a `$batch` response carries it so)."""
    doc = payload if type(payload) is dict else load(payload)  # type: ignore[arg-type]
    items: list[T | Removed] = []
    rejected: list[MalformedItem] = []
    append = items.append
    for raw in _values(doc):
        try:
            if type(raw) is dict and "@removed" in raw:
                append(_removed(raw, kind))
            else:
                append(parse_item(raw))
        except MalformedItem as exc:
            rejected.append(exc)
    next_link = _link(doc, "@odata.nextLink")
    delta_link = _link(doc, "@odata.deltaLink")
    if next_link is None and delta_link is None:
        raise MalformedResponse("a delta page has neither @odata.nextLink nor @odata.deltaLink")
    return DeltaPage(tuple(items), next_link, delta_link, tuple(rejected))


def parse_event_delta_page(payload: bytes | str | dict[str, Any]) -> DeltaPage[Event]:
    return parse_delta_page(payload, parse_event, "event")


def parse_message_delta_page(payload: bytes | str) -> DeltaPage[Message]:
    return parse_delta_page(payload, parse_message, "message")


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """One response of a `$batch`: its status, headers (names lower-cased) and body (the JSON
    object, or None)."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None


def parse_batch_answers(payload: bytes | str) -> dict[str, BatchAnswer]:
    """A `$batch` response's answers by request id (Graph may return them in any order)."""
    doc = load(payload)
    answers: dict[str, BatchAnswer] = {}
    responses = doc.get("responses")
    if type(responses) is not list:
        raise MalformedResponse("a $batch response has no responses array")
    for raw in responses:
        if type(raw) is not dict or type(raw.get("id")) is not str or type(raw.get("status")) is not int:
            raise MalformedResponse("a $batch response has an answer without an id or a status")
        headers = raw.get("headers")
        body = raw.get("body")
        answers[raw["id"]] = BatchAnswer(
            raw["status"],
            {str(k).lower(): str(v) for k, v in headers.items()} if type(headers) is dict else {},
            body if type(body) is dict else None,
        )
    return answers


def parse_collection(
    payload: bytes | str, parse_item: Callable[[object], T]
) -> tuple[list[T], str | None, list[MalformedItem]]:
    """A plain collection page: (items, nextLink, rejected)."""
    doc = load(payload)
    items: list[T] = []
    rejected: list[MalformedItem] = []
    for raw in _values(doc):
        try:
            items.append(parse_item(raw))
        except MalformedItem as exc:
            rejected.append(exc)
    return items, _link(doc, "@odata.nextLink"), rejected


# --- upload sessions (large attachments) ---------------------------------------------------

# The attachment's key at the end of the final PUT's Location header, an OData key literal:
# .../Events('AAMk...')/Attachments('AAMk...='), a quote inside doubled.
_LOCATION_ATTACHMENT = re.compile(r"/Attachments\('((?:[^']|'')+)'\)/?$", re.IGNORECASE)


def _key_insensitive(doc: dict[str, Any], key: str) -> Any:
    # The upload host speaks the Outlook v2.0 REST API, whose casing differs from Graph's
    # (Microsoft's own example answers "ExpirationDateTime" next to "nextExpectedRanges").
    if key in doc:
        return doc[key]
    wanted = key.casefold()
    return next((v for k, v in doc.items() if k.casefold() == wanted), None)


def parse_upload_url(payload: bytes | str) -> str:
    """The `uploadUrl` of a createUploadSession answer."""
    url = _key_insensitive(load(payload), "uploadUrl")
    if type(url) is not str or not url:
        raise MalformedResponse("the upload session has no uploadUrl")
    return url


def parse_next_expected_start(payload: bytes | str) -> int | None:
    """Where the server wants the next byte range of an upload session to begin: the start of
    the first of `nextExpectedRanges` ("2097152" for Outlook items; "2097152-" or
    "2097152-4194303" elsewhere). None when the answer names none (an empty body included)."""
    if not payload or not payload.strip():
        return None
    ranges = _key_insensitive(load(payload), "nextExpectedRanges")
    if ranges is None or ranges == []:
        return None
    first = ranges[0] if type(ranges) is list else None
    start = first.split("-", 1)[0].strip() if type(first) is str else ""
    if not start.isdigit():
        raise MalformedResponse("nextExpectedRanges is not a list of byte ranges")
    return int(start)


def attachment_id_from_location(location: str | None) -> str | None:
    """The attachment id named by the Location header of an upload session's final PUT, or
    None if the header is absent or not of that shape."""
    match = _LOCATION_ATTACHMENT.search((location or "").strip())
    if match is None:
        return None
    # Graph ids are base64 and never hold '%': any percent sign is URL encoding.
    return unquote(match.group(1).replace("''", "'"))
