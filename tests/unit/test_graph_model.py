"""Domain inputs validate themselves before any I/O; transaction ids are deterministic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.graph import (
    BadRequest,
    BodyType,
    EventChanges,
    EventDraft,
    OutgoingAttachment,
    OutgoingMail,
    transaction_id,
)
from core.graph.errors import error_for_status, parse_retry_after, safe_code
from core.graph.model import Attendee, check_schedule_request

START = datetime(2030, 1, 7, 9, tzinfo=UTC)


def test_transaction_ids_are_stable_per_appointment_version_and_distinct_across_them() -> None:
    first = transaction_id("Q3-APPT-1042", 3)
    assert first == transaction_id("Q3-APPT-1042", 3) == transaction_id("Q3-APPT-1042", "3")
    assert uuid.UUID(first).version == 5
    assert len({first, transaction_id("Q3-APPT-1042", 4), transaction_id("Q3-APPT-1043", 3)}) == 3
    # Pinned: a change of namespace or encoding would re-create every event Graph has already
    # de-duplicated on a retry.
    assert first == str(uuid.uuid5(uuid.UUID("6f1d3c52-8a47-5e0b-9c21-3b7e4d8a1f60"), "Q3-APPT-1042\x1f3"))
    with pytest.raises(BadRequest):
        transaction_id("", 1)


def test_a_draft_keeps_instants_in_utc_and_rejects_what_graph_would() -> None:
    oslo = datetime(2030, 7, 1, 9, tzinfo=ZoneInfo("Europe/Oslo"))
    draft = EventDraft("Visit", oslo, oslo + timedelta(hours=1))
    assert draft.start == datetime(2030, 7, 1, 7, tzinfo=UTC)
    assert draft.start.tzinfo is UTC
    for bad in (
        lambda: EventDraft("naive", datetime(2030, 1, 1, 9), datetime(2030, 1, 1, 10)),
        lambda: EventDraft("backwards", START, START),
        lambda: EventDraft("x" * 256, START, START + timedelta(hours=1)),
        lambda: EventDraft("all day at 9", START, START + timedelta(days=1), is_all_day=True),
        lambda: EventDraft(
            "bad attendee", START, START + timedelta(hours=1), attendees=(Attendee("not an address"),)
        ),
    ):
        with pytest.raises(BadRequest):
            bad()


def test_changes_must_change_something_consistent() -> None:
    assert EventChanges(subject="x").subject == "x"
    with pytest.raises(BadRequest):
        EventChanges()
    with pytest.raises(BadRequest):
        EventChanges(start=START, end=START - timedelta(hours=1))
    with pytest.raises(BadRequest):
        EventChanges(body_type=BodyType.HTML)  # which body?


def test_outgoing_mail_needs_recipients_and_says_whether_it_fits_one_request() -> None:
    with pytest.raises(BadRequest):
        OutgoingMail("s", "b", ())
    with pytest.raises(BadRequest):
        OutgoingMail("s", "b", ("nobody",))
    with pytest.raises(BadRequest):
        OutgoingMail("s", "b", ("a@b.example",), from_address="not an address")
    small = OutgoingAttachment("small.pdf", "application/pdf", b"x" * (3 * 1024 * 1024))
    big = OutgoingAttachment("big.pdf", "application/pdf", b"x" * (3 * 1024 * 1024 + 1))
    assert OutgoingMail("s", "b", ("a@b.example",), attachments=(small,)).fits_one_request
    assert not OutgoingMail("s", "b", ("a@b.example",), attachments=(big,)).fits_one_request


def test_schedule_requests_respect_graphs_limits() -> None:
    ok = ("a@b.example",)
    assert check_schedule_request(ok, START, START + timedelta(days=62), 15) == (
        START,
        START + timedelta(days=62),
    )
    for schedules, end, interval in [
        ((), START + timedelta(hours=1), 15),
        (tuple(f"u{i}@b.example" for i in range(21)), START + timedelta(hours=1), 15),
        (ok, START + timedelta(days=63), 15),
        (ok, START + timedelta(hours=1), 4),
        (ok, START + timedelta(hours=1), 1441),
        (ok, START, 15),
    ]:
        with pytest.raises(BadRequest):
            check_schedule_request(schedules, START, end, interval)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 99 Foo 20x") is None
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT") == 0.0  # in the past: now


def test_error_codes_are_repeated_only_when_they_look_like_codes() -> None:
    assert safe_code("ErrorAccessDenied") == "ErrorAccessDenied"
    assert safe_code("Your meeting 'salary talk' was not found") is None
    error = error_for_status(
        429,
        code=None,
        headers={"Retry-After": "3", "request-id": "1b2c3d4e-0000-1111-2222-333344445555"},
        operation="get_user",
        mailbox="kari@contoso.example",
        permission="User.Read.All",
    )
    assert error.request_id == "1b2c3d4e-0000-1111-2222-333344445555"
    assert "request-id 1b2c3d4e" in str(error)
