"""What `POST …/appointments` accepts: one change or a batch, times in the host's zone, all-day
dates, attendees, limits — and the Graph inputs a stored change becomes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.calendar.changes import MAX_BATCH, MAX_BODY, changes_of, parse_batch, validate_change
from core.graph.model import Attendee, BodyType, Sensitivity, ShowAs
from core.request_errors import InvalidInput, MalformedRequest
from core.store.records import PushOp


def item(**fields: Any) -> dict[str, Any]:
    return {
        "hostAppointmentId": "SO-1",
        "resourceId": "tech-7",
        "version": 1,
        "subject": "Visit",
        "start": "2026-07-01T10:00:00",
        "end": "2026-07-01T11:00:00",
    } | fields


def problems(raw: object, zone: str = "Europe/Oslo") -> dict[str, str]:
    with pytest.raises(InvalidInput) as invalid:
        validate_change(raw, zone)
    return {p.field: p.detail for p in invalid.value.problems}


def test_a_wall_time_is_read_in_its_zone_with_daylight_saving():
    summer = validate_change(item(), "Europe/Oslo").draft()
    assert summer.start == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)  # CEST, +2
    winter = validate_change(item(start="2026-12-01T10:00", end="2026-12-01T11:00"), "Europe/Oslo").draft()
    assert winter.start == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # CET, +1


def test_the_changes_own_zone_wins_over_the_tenants_and_windows_names_work():
    draft = validate_change(item(timeZone="W. Europe Standard Time"), "UTC").draft()
    assert draft.start == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    in_utc = validate_change(item(), "UTC").draft()
    assert in_utc.start == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)


def test_a_time_with_an_offset_is_that_instant_whatever_the_zone():
    draft = validate_change(
        item(start="2026-07-01T10:00:00+05:30", end="2026-07-01T11:00:00Z"), "Europe/Oslo"
    ).draft()
    assert (draft.start, draft.end) == (
        datetime(2026, 7, 1, 4, 30, tzinfo=UTC),
        datetime(2026, 7, 1, 11, 0, tzinfo=UTC),
    )


def test_an_all_day_appointment_takes_dates_and_becomes_midnight_to_midnight():
    change = validate_change(item(isAllDay=True, start="2026-12-24", end="2026-12-27"), "Europe/Oslo")
    assert change.fields["start"] == "2026-12-24"
    draft = change.draft()
    assert draft.is_all_day
    assert (draft.start, draft.end) == (
        datetime(2026, 12, 24, tzinfo=UTC),
        datetime(2026, 12, 27, tzinfo=UTC),
    )
    assert validate_change(item(isAllDay=True, start="2026-12-24T00:00:00", end="2026-12-25T00:00"), "UTC")
    assert problems(item(isAllDay=True, start="2026-12-24T09:00", end="2026-12-25")) == {
        "start": "start of an all-day appointment must be a date such as 2026-12-01"
    }
    assert problems(item(isAllDay=True, start="2026-12-24", end="2026-12-24")) == {
        "end": "must be after start (the day after the last day)"
    }


def test_every_field_reaches_the_event():
    change = validate_change(
        item(
            body="<p>Bring the ladder</p>",
            bodyType="html",
            location="Storgata 1",
            showAs="tentative",
            sensitivity="private",
            categories=["ERP", "Service"],
            attendees=[
                "ola@contoso.example",
                {"email": "kari@contoso.example", "name": "Kari", "type": "optional"},
            ],
        ),
        "UTC",
    )
    draft = change.draft()
    assert (draft.body, draft.body_type, draft.location) == (
        "<p>Bring the ladder</p>",
        BodyType.HTML,
        "Storgata 1",
    )
    assert (draft.show_as, draft.sensitivity, draft.categories) == (
        ShowAs.TENTATIVE,
        Sensitivity.PRIVATE,
        ("ERP", "Service"),
    )
    assert draft.attendees == (
        Attendee("ola@contoso.example"),
        Attendee("kari@contoso.example", "Kari", "optional"),
    )
    update = changes_of(change.fields)
    assert (update.subject, update.attendees, update.categories) == (
        "Visit",
        draft.attendees,
        draft.categories,
    )


def test_a_delete_needs_only_its_ids_and_version():
    change = validate_change(
        {"hostAppointmentId": "SO-1", "resourceId": "tech-7", "version": 9, "op": "delete"}, "UTC"
    )
    assert (change.op, change.version, change.fields) == (PushOp.DELETE, 9, {})


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"version": -1}, "version"),
        ({"version": "3"}, "version"),
        ({"version": 1.5}, "version"),
        ({"version": 2**53}, "version"),
        ({"hostAppointmentId": ""}, "hostAppointmentId"),
        ({"hostAppointmentId": "x" * 257}, "hostAppointmentId"),
        ({"resourceId": "a\x00b"}, "resourceId"),
        ({"op": "move"}, "op"),
        ({"subject": "s" * 256}, "subject"),
        ({"subject": "bell\x07"}, "subject"),
        ({"body": "b" * (MAX_BODY + 1)}, "body"),
        ({"timeZone": "Mars/Olympus"}, "timeZone"),
        ({"showAs": "maybe"}, "showAs"),
        ({"sensitivity": "secret"}, "sensitivity"),
        ({"categories": [""]}, "categories[0]"),
        ({"attendees": ["not an address"]}, "attendees[0].email"),
        ({"attendees": [{"email": "a@b.example", "type": "boss"}]}, "attendees[0].type"),
        ({"start": "tomorrow"}, "start"),
        ({"end": "2026-07-01T09:00:00"}, "end"),
        ({"end": "2032-07-01T09:00:00"}, "end"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_field_is_named(fields: dict[str, Any], field: str):
    assert field in problems(item(**fields))


def test_an_upsert_without_times_and_a_modified_time_without_offset_are_refused():
    body = item()
    del body["start"]
    assert problems(body) == {"": "start is required for op upsert"}
    assert "modifiedAt must carry a UTC offset" in problems(item(modifiedAt="2026-07-01T10:00:00"))[""]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"start": "0001-01-01T00:00:00", "end": "0001-01-01T01:00:00"}, "start"),
        ({"start": "9999-12-31T22:00:00-14:00", "end": "9999-12-31T23:00:00-14:00"}, "start"),
        ({"start": "2026-07-01T10:00:00", "end": "9999-12-31T23:59:59"}, "end"),
        ({"start": "1601-01-01T00:30:00", "end": "1601-01-01T01:00:00"}, "start"),  # 1600 in UTC
        ({"isAllDay": True, "start": "0001-01-01", "end": "0001-01-02"}, "start"),
        ({"isAllDay": True, "start": "2026-07-01", "end": "9999-12-31"}, "end"),
    ],
)
def test_a_time_outside_the_dates_exchange_keeps_is_named_not_a_crash(fields: dict[str, Any], field: str):
    """Found by the R4 fuzzing: a wall time in year 1 (or 9999 with an offset) overflowed
    Python's datetime when converted to UTC, a 500."""
    found = problems(item(**fields))
    assert found[field] == f"{field} must be between 1601-01-01 and 4500-08-31", found


@pytest.mark.parametrize(
    "modified", ["0001-01-01T00:00:00+14:00", "1601-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
)
def test_a_modified_time_outside_the_dates_exchange_keeps_is_refused(modified: str):
    assert problems(item(modifiedAt=modified)) == {"": "modifiedAt must be between 1601-01-01 and 4500-08-31"}


def test_the_last_day_exchange_keeps_is_fine():
    change = validate_change(item(start="4500-08-31T10:00:00", end="4500-08-31T11:00:00"), "Europe/Oslo")
    assert change.fields["end"] == "4500-08-31T09:00:00Z"


def test_a_body_keeps_its_line_breaks():
    assert (
        validate_change(item(body="line one\r\nline two\tend"), "UTC").fields["body"]
        == "line one\r\nline two\tend"
    )


def test_a_batch_reports_each_bad_item_under_its_index_and_keeps_the_good_ones():
    batch = parse_batch(
        {"appointments": [item(), item(end="x"), "not an object", item(hostAppointmentId="SO-2")]}, "UTC"
    )
    assert [index for index, _ in batch.changes] == [0, 3]
    assert [(index, host_id) for index, _, host_id in batch.rejected] == [(1, "SO-1"), (2, None)]
    assert not batch.single


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([item()], MalformedRequest),
        ({"appointments": []}, InvalidInput),
        ({"appointments": {"a": 1}}, InvalidInput),
        ({"appointments": [item()] * (MAX_BATCH + 1)}, InvalidInput),
        ({"appointments": [item()], "extra": 1}, InvalidInput),
    ],
)
def test_a_batch_that_is_not_one_is_refused_whole(body: object, error: type[Exception]):
    with pytest.raises(error):
        parse_batch(body, "UTC")


@settings(max_examples=200, deadline=None)
@given(
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    minute=st.integers(min_value=0, max_value=24 * 60 - 1),
    minutes=st.integers(min_value=1, max_value=10_000),
    zone=st.sampled_from(["Europe/Oslo", "Europe/Copenhagen", "America/New_York", "Asia/Kolkata", "UTC"]),
)
def test_a_wall_time_means_the_instant_zoneinfo_gives_it(day: date, minute: int, minutes: int, zone: str):
    wall = datetime(day.year, day.month, day.day, minute // 60, minute % 60)
    end = wall + timedelta(minutes=minutes)
    expected_start = wall.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    expected_end = end.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    raw = item(start=wall.isoformat(), end=end.isoformat(), timeZone=zone)
    if expected_end <= expected_start:  # a wall-clock hour that daylight saving folds away
        assert "end" in problems(raw)
        return
    draft = validate_change(raw, "UTC").draft()
    assert (draft.start, draft.end) == (expected_start, expected_end)
