"""Lean domain objects the Graph port speaks in: frozen, slotted dataclasses, no SDK models.

Times are aware UTC datetimes. All-day events are dates, not instants: their `start`/`end`
hold midnight UTC of the wall-clock dates Graph reports (so `.date()` is the day in Outlook,
whatever the mailbox's time zone).

Inputs (`EventDraft`, `EventChanges`, `OutgoingMail`) validate themselves on construction and
raise `BadRequest`, so bad input never reaches Graph.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Generic, TypeVar

from core.graph.errors import BadRequest, MalformedItem

T = TypeVar("T")

# Attachments above this go through an upload session (Graph's documented limit for a POST).
SMALL_ATTACHMENT_LIMIT = 3 * 1024 * 1024
# The largest file an upload session takes (Graph's documented limit for Outlook items).
LARGE_ATTACHMENT_LIMIT = 150 * 1024 * 1024
MAX_SCHEDULES_PER_CALL = 20
MAX_SCHEDULE_DAYS = 62


class EventType(StrEnum):
    SINGLE_INSTANCE = "singleInstance"
    OCCURRENCE = "occurrence"
    EXCEPTION = "exception"
    SERIES_MASTER = "seriesMaster"


class Sensitivity(StrEnum):
    NORMAL = "normal"
    PERSONAL = "personal"
    PRIVATE = "private"
    CONFIDENTIAL = "confidential"


class ShowAs(StrEnum):
    FREE = "free"
    TENTATIVE = "tentative"
    BUSY = "busy"
    OOF = "oof"
    WORKING_ELSEWHERE = "workingElsewhere"
    UNKNOWN = "unknown"


class BodyType(StrEnum):
    TEXT = "text"
    HTML = "html"


class AttachmentKind(StrEnum):
    FILE = "file"
    ITEM = "item"  # an attached e-mail or event; `/$value` gives its MIME (.eml)
    REFERENCE = "reference"  # a link to a cloud file; has no bytes of its own


@dataclass(frozen=True, slots=True)
class User:
    id: str
    display_name: str
    mail: str | None
    user_principal_name: str


@dataclass(frozen=True, slots=True)
class Calendar:
    id: str
    name: str
    can_edit: bool
    is_default: bool
    owner: str | None = None


ATTENDEE_TYPES = ("required", "optional", "resource")


@dataclass(frozen=True, slots=True)
class Attendee:
    address: str
    name: str = ""
    type: str = "required"
    response: str = "none"


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    change_key: str | None
    subject: str
    start: datetime
    end: datetime
    is_all_day: bool = False
    type: EventType = EventType.SINGLE_INSTANCE
    sensitivity: Sensitivity = Sensitivity.NORMAL
    show_as: ShowAs = ShowAs.BUSY
    body: str = ""
    body_type: BodyType = BodyType.TEXT
    location: str = ""
    series_master_id: str | None = None
    original_start: datetime | None = None
    transaction_id: str | None = None
    is_cancelled: bool = False
    organizer: str | None = None
    attendees: tuple[Attendee, ...] = ()
    categories: tuple[str, ...] = ()
    has_attachments: bool = False
    ical_uid: str | None = None
    last_modified: datetime | None = None

    @property
    def is_private(self) -> bool:
        """Outlook's "Private" (and the stricter "Confidential"): subject and body must not
        leave the bridge unmasked."""
        return self.sensitivity is Sensitivity.PRIVATE or self.sensitivity is Sensitivity.CONFIDENTIAL


@dataclass(frozen=True, slots=True)
class Removed:
    """A delta item that is gone: deleted, or no longer in the window/folder ("changed")."""

    id: str
    reason: str = "deleted"


@dataclass(frozen=True, slots=True)
class DeltaPage(Generic[T]):
    """One page of a delta round. Only the last page has `delta_link` (store it after every
    page of the round was applied); the others have `next_link`. `rejected` lists the items
    that could not be parsed, so one bad item never hides the rest of the page."""

    items: tuple[T | Removed, ...]
    next_link: str | None = None
    delta_link: str | None = None
    rejected: tuple[MalformedItem, ...] = ()

    @property
    def is_last(self) -> bool:
        return self.delta_link is not None


@dataclass(frozen=True, slots=True)
class DeltaStart:
    """Where one calendar's incremental round starts: its mailbox and its stored delta link."""

    mailbox: str
    delta_link: str
    page_size: int


@dataclass(frozen=True, slots=True)
class ScheduleItem:
    start: datetime
    end: datetime
    status: ShowAs
    is_private: bool = False
    subject: str = ""
    location: str = ""


@dataclass(frozen=True, slots=True)
class Schedule:
    """One mailbox's free/busy. `availability_view` has one digit per interval: 0 free,
    1 tentative, 2 busy, 3 oof, 4 working elsewhere. `error` is Graph's per-schedule error
    code (e.g. an unknown mailbox) — getSchedule reports those inside a 200."""

    schedule_id: str
    availability_view: str
    items: tuple[ScheduleItem, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MailFolder:
    id: str
    display_name: str
    parent_id: str | None = None
    path: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    subject: str
    received: datetime | None
    sender: str | None
    has_attachments: bool
    parent_folder_id: str | None = None
    internet_message_id: str | None = None
    change_key: str | None = None
    is_read: bool = False
    is_draft: bool = False


@dataclass(frozen=True, slots=True)
class Attachment:
    id: str
    name: str
    content_type: str
    size: int
    is_inline: bool
    kind: AttachmentKind
    content_id: str | None = None


# --- inputs ------------------------------------------------------------------------------


def _aware(name: str, value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise BadRequest(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _check_all_day(start: datetime, end: datetime) -> None:
    for name, value in (("start", start), ("end", end)):
        if (value.hour, value.minute, value.second, value.microsecond) != (0, 0, 0, 0):
            raise BadRequest(f"an all-day event's {name} must be midnight (UTC) of its date")


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event the bridge writes. Attendees are invited (Graph sends them the meeting)."""

    subject: str
    start: datetime
    end: datetime
    body: str = ""
    body_type: BodyType = BodyType.TEXT
    is_all_day: bool = False
    location: str = ""
    show_as: ShowAs = ShowAs.BUSY
    sensitivity: Sensitivity = Sensitivity.NORMAL
    categories: tuple[str, ...] = ()
    attendees: tuple[Attendee, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _aware("start", self.start))
        object.__setattr__(self, "end", _aware("end", self.end))
        if self.end <= self.start:
            raise BadRequest("an event must end after it starts")
        if self.is_all_day:
            _check_all_day(self.start, self.end)
        if len(self.subject) > 255:
            raise BadRequest("an event subject is at most 255 characters")
        _check_attendees(self.attendees)


def _check_attendees(attendees: tuple[Attendee, ...]) -> None:
    for attendee in attendees:
        _check_address(attendee.address)
        if attendee.type not in ATTENDEE_TYPES:
            raise BadRequest(f"an attendee's type is one of {', '.join(ATTENDEE_TYPES)}")


@dataclass(frozen=True, slots=True)
class EventChanges:
    """A partial update: None leaves a field as it is."""

    subject: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    body: str | None = None
    body_type: BodyType | None = None
    is_all_day: bool | None = None
    location: str | None = None
    show_as: ShowAs | None = None
    sensitivity: Sensitivity | None = None
    categories: tuple[str, ...] | None = None
    attendees: tuple[Attendee, ...] | None = None  # the whole list (Graph replaces it)

    def __post_init__(self) -> None:
        if self.attendees is not None:
            _check_attendees(self.attendees)
        if self.start is not None:
            object.__setattr__(self, "start", _aware("start", self.start))
        if self.end is not None:
            object.__setattr__(self, "end", _aware("end", self.end))
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise BadRequest("an event must end after it starts")
        if self.is_all_day and self.start is not None and self.end is not None:
            _check_all_day(self.start, self.end)
        if self.subject is not None and len(self.subject) > 255:
            raise BadRequest("an event subject is at most 255 characters")
        if self.body_type is not None and self.body is None:
            raise BadRequest("body_type changes only together with body")
        if all(getattr(self, f.name) is None for f in fields(self)):
            raise BadRequest("an update must change at least one field")


@dataclass(frozen=True, slots=True)
class OutgoingAttachment:
    name: str
    content_type: str
    content: bytes = field(repr=False)


class Importance(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A mail to send. Up to `SMALL_ATTACHMENT_LIMIT` of attachments in all it goes out in one
    `sendMail`; with more, it is made as a draft, its attachments added (an upload session for
    each over 3 MB) and the draft sent. `from_address` sends as another address (the mailbox
    needs Send As on it in Exchange)."""

    subject: str
    body: str
    to: tuple[str, ...]
    body_type: BodyType = BodyType.TEXT
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    attachments: tuple[OutgoingAttachment, ...] = ()
    save_to_sent_items: bool = True
    importance: Importance = Importance.NORMAL
    from_address: str | None = None

    def __post_init__(self) -> None:
        if not (self.to or self.cc or self.bcc):
            raise BadRequest("a mail needs at least one recipient")
        for address in (*self.to, *self.cc, *self.bcc, *self.reply_to):
            _check_address(address)
        if self.from_address is not None:
            _check_address(self.from_address)
        for attachment in self.attachments:
            check_attachment(attachment.name, attachment.content_type, attachment.content)

    @property
    def attachment_bytes(self) -> int:
        return sum(len(a.content) for a in self.attachments)

    @property
    def fits_one_request(self) -> bool:
        """Small enough for `sendMail` (Graph takes at most 4 MB in one request)."""
        return self.attachment_bytes <= SMALL_ATTACHMENT_LIMIT


def _check_address(address: str) -> None:
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        raise BadRequest("recipient is not an e-mail address")


def check_addresses(addresses: tuple[str, ...]) -> tuple[str, ...]:
    """`addresses` if it holds at least one and each is an e-mail address; else BadRequest."""
    if not addresses:
        raise BadRequest("at least one recipient is needed")
    for address in addresses:
        _check_address(address)
    return addresses


def check_attachment(name: str, content_type: str, content: bytes) -> None:
    """A file attachment Graph can take, checked before any I/O; else BadRequest."""
    if not name.strip():
        raise BadRequest("an attachment needs a file name")
    if len(name) > 255:
        raise BadRequest("an attachment's file name is at most 255 characters")
    if "/" not in content_type or any(c.isspace() and c != " " for c in content_type):
        raise BadRequest("an attachment's content type is a MIME type such as application/pdf")
    if len(content) > LARGE_ATTACHMENT_LIMIT:
        raise BadRequest("an attachment is at most 150 MB (Graph's limit for Outlook items)")


def check_schedule_request(
    schedules: tuple[str, ...], start: datetime, end: datetime, interval_minutes: int
) -> tuple[datetime, datetime]:
    """Graph's getSchedule limits, checked before any I/O; returns (start, end) in UTC."""
    if not 1 <= len(schedules) <= MAX_SCHEDULES_PER_CALL:
        raise BadRequest(f"getSchedule takes 1 to {MAX_SCHEDULES_PER_CALL} schedules per call")
    for address in schedules:
        _check_address(address)
    if not 5 <= interval_minutes <= 1440:
        raise BadRequest("getSchedule's interval is 5 to 1440 minutes")
    start, end = _aware("start", start), _aware("end", end)
    if end <= start:
        raise BadRequest("the schedule window must end after it starts")
    if end - start > timedelta(days=MAX_SCHEDULE_DAYS):
        raise BadRequest(f"getSchedule covers at most {MAX_SCHEDULE_DAYS} days")
    return start, end


def check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """A calendar window in UTC; raises BadRequest when it is empty or naive."""
    start, end = _aware("start", start), _aware("end", end)
    if end <= start:
        raise BadRequest("the window must end after it starts")
    return start, end


# --- idempotency -------------------------------------------------------------------------

# Fixed forever: changing it changes every transactionId and defeats Graph's de-duplication
# of retried creations.
TRANSACTION_NAMESPACE = uuid.UUID("6f1d3c52-8a47-5e0b-9c21-3b7e4d8a1f60")


def transaction_id(host_appointment_id: str, version: int | str) -> str:
    """The Graph `transactionId` for creating the event of one version of a host appointment.

    Deterministic (UUIDv5 over the id and the version), so a retried creation — by kiota, by
    the gateway or by a re-delivered queue message — carries the same value and Graph keeps
    one event. Different versions give different ids, so an appointment re-created after its
    event was deleted in Outlook is not swallowed by the old transaction.
    """
    if not host_appointment_id:
        raise BadRequest("host appointment id is empty")
    return str(uuid.uuid5(TRANSACTION_NAMESPACE, f"{host_appointment_id}\x1f{version}"))


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """A change-notification subscription to create. `resource` is a Graph path such as
    `/users/{id}/calendar/events`; `client_state` (≤ 128 characters) comes back in every
    notification, so only Graph and the bridge know it."""

    resource: str
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str
    client_state: str
    expiration: datetime


@dataclass(frozen=True, slots=True)
class GraphSubscription:
    """A subscription as Graph holds it: `expiration` is what Graph granted, which may be
    earlier than what was asked."""

    id: str
    resource: str
    expiration: datetime
