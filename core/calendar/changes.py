"""What a host sends to `POST …/appointments`: one appointment change, or a batch of them.

Each change names a host appointment (`hostAppointmentId`) of a resource (`resourceId`), its
`version` (a number the host increases with every edit; the bridge applies only the newest),
and `op`: `upsert` with the appointment's fields, or `delete`.

Times: `start`/`end` are ISO 8601. A time without an offset (`2026-12-01T09:00`) is a wall time
in `timeZone` (IANA or Windows name; the tenant's zone when left out), as Graph itself takes
them; one with an offset or `Z` is that instant. An all-day appointment (`isAllDay: true`) has
dates (`2026-12-01`), `end` being the day after its last day, as in Outlook.

A batch is validated item by item: an invalid item gets its own problem (`appointments[3].end`)
and the valid ones go on. Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt, ValidationError, model_validator

from core.graph.errors import BadRequest
from core.graph.model import (
    Attendee,
    BodyType,
    EventChanges,
    EventDraft,
    Sensitivity,
    ShowAs,
)
from core.request_errors import FieldProblem, InvalidInput, MalformedRequest, field_path
from core.store.limits import MAX_STRING_UNITS, utf16_units
from core.store.records import PushOp
from core.timezones import zone_for
from core.validators import (
    CALENDAR_RANGE,
    ApiModel,
    TimeZoneName,
    in_calendar_range,
    plain_text,
    valid_host_id,
    valid_resource_id,
)

MAX_BATCH = 100
MAX_SUBJECT = 255
MAX_BODY = 16_000  # characters; the stored change must fit one Table Storage column
MAX_LOCATION = 255
MAX_CATEGORIES = 25
MAX_ATTENDEES = 100
MAX_VERSION = 2**53 - 1  # what every JSON client can represent exactly
MAX_DURATION = timedelta(days=5 * 365)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_BODY_SPACE = re.compile(r"[\r\n\t]")


def _host_appointment_id(value: str) -> str:
    # part of a row key, after a 32-character hash of the resource id and a separator
    return valid_host_id(value, reserve=40)


def plausible_appointment(resource_id: str, host_appointment_id: str) -> bool:
    """Whether the pair could name a pushed appointment (both ids as a change must have them).
    One that cannot is not looked up: it is simply not there, a 404."""
    try:
        valid_resource_id(resource_id)
        _host_appointment_id(host_appointment_id)
    except ValueError:
        return False
    return True


def _text(limit: int) -> AfterValidator:
    def check(value: str) -> str:
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return plain_text(value)

    return AfterValidator(check)


def _body_text(value: str) -> str:
    if len(value) > MAX_BODY:
        raise ValueError(f"must be at most {MAX_BODY} characters")
    # line breaks and tabs are a body's own; other control characters are refused
    plain_text(_BODY_SPACE.sub(" ", value))
    return value


def _category(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 255:
        raise ValueError("must be 1-255 characters")
    return plain_text(value)


def _email(value: str) -> str:
    value = value.strip()
    # the gateway checks addresses too; here the caller learns which field is wrong
    if len(value) > 320 or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise ValueError("must be an e-mail address")
    return plain_text(value)


def _attendee_string(value: Any) -> Any:
    return {"email": value} if isinstance(value, str) else value


class AttendeeIn(ApiModel):
    email: Annotated[str, AfterValidator(_email)]
    name: Annotated[str, _text(255)] = ""
    type: Literal["required", "optional", "resource"] = "required"


class ChangeIn(ApiModel):
    host_appointment_id: Annotated[str, AfterValidator(_host_appointment_id)]
    resource_id: Annotated[str, AfterValidator(valid_resource_id)]
    version: Annotated[StrictInt, Field(ge=0, le=MAX_VERSION)]
    op: PushOp = PushOp.UPSERT
    subject: Annotated[str, _text(MAX_SUBJECT)] = ""
    body: Annotated[str, AfterValidator(_body_text)] = ""
    body_type: BodyType = BodyType.TEXT
    location: Annotated[str, _text(MAX_LOCATION)] = ""
    start: str | None = None
    end: str | None = None
    time_zone: TimeZoneName | None = None
    is_all_day: bool = False
    show_as: ShowAs = ShowAs.BUSY
    sensitivity: Sensitivity = Sensitivity.NORMAL
    categories: list[Annotated[str, AfterValidator(_category)]] = Field(
        default_factory=list, max_length=MAX_CATEGORIES
    )
    # an attendee is an object, or just its address
    attendees: list[
        Annotated[AttendeeIn, BeforeValidator(_attendee_string, json_schema_input_type=str | AttendeeIn)]
    ] = Field(default_factory=list, max_length=MAX_ATTENDEES)
    modified_at: datetime | None = None  # when the host changed it; default: when the bridge accepted it

    @model_validator(mode="after")
    def _upsert_has_times(self) -> ChangeIn:
        if self.op is PushOp.UPSERT and (self.start is None or self.end is None):
            missing = (
                "start and end are"
                if self.start is None and self.end is None
                else ("start is" if self.start is None else "end is")
            )
            raise ValueError(f"{missing} required for op upsert")
        if self.modified_at is not None and self.modified_at.tzinfo is None:
            raise ValueError("modifiedAt must carry a UTC offset (e.g. 2026-12-01T09:00:00Z)")
        if self.modified_at is not None and not in_calendar_range(self.modified_at):
            raise ValueError(f"modifiedAt must be {CALENDAR_RANGE}")
        return self


@dataclass(frozen=True, slots=True)
class Change:
    """One valid change, ready to store and to apply."""

    host_appointment_id: str
    resource_id: str
    version: int
    op: PushOp
    fields: dict[str, Any]  # the stored form (JSON-ready); empty for a delete
    modified_at: datetime | None

    def draft(self) -> EventDraft:
        return draft_of(self.fields)


def _instant(raw: str, zone_name: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 date-time such as 2026-12-01T09:00:00") from None
    if value.tzinfo is None:
        zone = zone_for(zone_name)
        if zone is None:  # pragma: no cover - the name was validated
            raise ValueError("timeZone is not a known zone")
        value = value.replace(tzinfo=zone)
    if not in_calendar_range(value):
        raise ValueError(f"{name} must be {CALENDAR_RANGE}")
    return value.astimezone(UTC)


def _day(raw: str, name: str) -> date:
    day = _date_of(raw)
    if day is None:
        raise ValueError(f"{name} of an all-day appointment must be a date such as 2026-12-01")
    if not in_calendar_range(day):
        raise ValueError(f"{name} must be {CALENDAR_RANGE}")
    return day


def _date_of(raw: str) -> date | None:
    if _DATE.fullmatch(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    else:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            moment = None
        if moment is not None and (moment.hour, moment.minute, moment.second, moment.microsecond) == (
            0,
            0,
            0,
            0,
        ):
            return moment.date()
    return None


def _times(item: ChangeIn, default_zone: str) -> tuple[dict[str, Any], list[FieldProblem]]:
    assert item.start is not None
    assert item.end is not None
    zone_name = item.time_zone or default_zone
    problems: list[FieldProblem] = []
    out: dict[str, Any] = {"timeZone": zone_name}
    if item.is_all_day:
        days: dict[str, date] = {}
        for name, raw in (("start", item.start), ("end", item.end)):
            try:
                days[name] = _day(raw, name)
            except ValueError as exc:
                problems.append(FieldProblem(name, str(exc)))
        if not problems:
            if days["end"] <= days["start"]:
                problems.append(FieldProblem("end", "must be after start (the day after the last day)"))
            out |= {"start": days["start"].isoformat(), "end": days["end"].isoformat()}
        return out, problems
    moments: dict[str, datetime] = {}
    for name, raw in (("start", item.start), ("end", item.end)):
        try:
            moments[name] = _instant(raw, zone_name, name)
        except ValueError as exc:
            problems.append(FieldProblem(name, str(exc)))
    if not problems:
        if moments["end"] <= moments["start"]:
            problems.append(FieldProblem("end", "must be after start"))
        elif moments["end"] - moments["start"] > MAX_DURATION:
            problems.append(FieldProblem("end", "must be within five years of start"))
        out |= {"start": _utc(moments["start"]), "end": _utc(moments["end"])}
    return out, problems


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fields(item: ChangeIn, times: dict[str, Any]) -> dict[str, Any]:
    return {
        "subject": item.subject,
        "body": item.body,
        "bodyType": item.body_type.value,
        "location": item.location,
        **times,
        "isAllDay": item.is_all_day,
        "showAs": item.show_as.value,
        "sensitivity": item.sensitivity.value,
        "categories": list(item.categories),
        "attendees": [a.model_dump(by_alias=True) for a in item.attendees],
    }


def validate_change(raw: object, default_zone: str) -> Change:
    """One change (parsed JSON) → `Change`, or InvalidInput naming each bad field."""
    if not isinstance(raw, dict):
        raise InvalidInput.one("", "must be a JSON object")
    try:
        item = ChangeIn.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(
            [FieldProblem(field_path(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
        ) from None
    fields: dict[str, Any] = {}
    if item.op is PushOp.UPSERT:
        times, problems = _times(item, default_zone)
        if problems:
            raise InvalidInput(problems)
        fields = _fields(item, times)
        if (
            utf16_units(json.dumps(fields, ensure_ascii=False, separators=(",", ":")))
            > MAX_STRING_UNITS - 512
        ):
            raise InvalidInput.one("body", "the appointment is too large to store: shorten the body")
        try:
            draft_of(fields)  # what the gateway will refuse, refused now
        except (ValueError, BadRequest) as exc:
            raise InvalidInput.one("", str(exc)) from None
    return Change(
        host_appointment_id=item.host_appointment_id,
        resource_id=item.resource_id,
        version=item.version,
        op=item.op,
        fields=fields,
        modified_at=item.modified_at.astimezone(UTC) if item.modified_at else None,
    )


class AppointmentBatchIn(ApiModel):
    """The batch form of the body, `{"appointments": [...]}`, for the API document: `parse_batch`
    reads the items one by one instead, so one bad item is rejected alone."""

    appointments: list[ChangeIn] = Field(min_length=1, max_length=MAX_BATCH)


@dataclass(frozen=True, slots=True)
class Batch:
    """The valid changes with their index in the request, and the problems of the rest."""

    changes: list[tuple[int, Change]]
    rejected: list[tuple[int, InvalidInput, object]]  # index, why, the item's hostAppointmentId if any
    single: bool  # the request was one change, not a batch


def parse_batch(body: object, default_zone: str) -> Batch:
    """A request body: one change object, or `{"appointments": [...]}` with 1 to 100 changes."""
    if not isinstance(body, dict):
        raise MalformedRequest(
            'The request body must be a JSON object: one change, or {"appointments": [...]}.'
        )
    if "appointments" in body:
        extra = sorted(set(body) - {"appointments"})
        if extra:
            raise InvalidInput.one(extra[0], "is not allowed beside appointments")
        items = body["appointments"]
        if not isinstance(items, list) or not items:
            raise InvalidInput.one("appointments", "must be a non-empty list of changes")
        if len(items) > MAX_BATCH:
            raise InvalidInput.one(
                "appointments", f"must hold at most {MAX_BATCH} changes; send several requests"
            )
        single = False
    else:
        items, single = [body], True
    changes: list[tuple[int, Change]] = []
    rejected: list[tuple[int, InvalidInput, object]] = []
    for index, raw in enumerate(items):
        try:
            changes.append((index, validate_change(raw, default_zone)))
        except InvalidInput as exc:
            host_id = raw.get("hostAppointmentId") if isinstance(raw, dict) else None
            rejected.append(
                (index, exc, host_id if isinstance(host_id, str) and len(host_id) <= 256 else None)
            )
    return Batch(changes, rejected, single)


def prefixed(problems: Sequence[FieldProblem], index: int | None) -> list[FieldProblem]:
    """Problems of batch item `index` with their paths under `appointments[index]`."""
    if index is None:
        return list(problems)
    base = f"appointments[{index}]"
    return [FieldProblem(f"{base}.{p.field}" if p.field else base, p.detail) for p in problems]


# --- stored form → Graph inputs -------------------------------------------------------------


def _stored_times(fields: dict[str, Any]) -> tuple[datetime, datetime]:
    if fields["isAllDay"]:
        start = datetime.combine(date.fromisoformat(fields["start"]), datetime.min.time(), UTC)
        end = datetime.combine(date.fromisoformat(fields["end"]), datetime.min.time(), UTC)
        return start, end
    return datetime.fromisoformat(fields["start"]), datetime.fromisoformat(fields["end"])


def _attendees(fields: dict[str, Any]) -> tuple[Attendee, ...]:
    return tuple(
        Attendee(a["email"], a.get("name", ""), a.get("type", "required")) for a in fields["attendees"]
    )


def draft_of(fields: dict[str, Any]) -> EventDraft:
    """The event to create for a stored change."""
    start, end = _stored_times(fields)
    return EventDraft(
        subject=fields["subject"],
        start=start,
        end=end,
        body=fields["body"],
        body_type=BodyType(fields["bodyType"]),
        is_all_day=fields["isAllDay"],
        location=fields["location"],
        show_as=ShowAs(fields["showAs"]),
        sensitivity=Sensitivity(fields["sensitivity"]),
        categories=tuple(fields["categories"]),
        attendees=_attendees(fields),
    )


def changes_of(fields: dict[str, Any]) -> EventChanges:
    """The update that makes an existing event what a stored change says (every field: the
    host's appointment is the whole truth for the fields it sends)."""
    draft = draft_of(fields)
    return EventChanges(
        subject=draft.subject,
        start=draft.start,
        end=draft.end,
        body=draft.body,
        body_type=draft.body_type,
        is_all_day=draft.is_all_day,
        location=draft.location,
        show_as=draft.show_as,
        sensitivity=draft.sensitivity,
        categories=draft.categories,
        attendees=draft.attendees,
    )
