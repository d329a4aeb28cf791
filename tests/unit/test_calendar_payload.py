"""The appointment payload a host receives: masking, times, preview, fingerprint."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from core.calendar.payload import CalendarContext, appointment, fingerprint, preview
from core.graph.model import Attendee, BodyType, Event, EventType, Sensitivity, ShowAs
from core.i18n import Text, text

START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 in Oslo, the night DST starts
CTX = CalendarContext("acme", "room-4b", "adele@acme.example", "default", "nb", "Europe/Oslo", writable=True)


def _event(**kw: object) -> Event:
    base = Event(
        id="AAMkEVT1",
        change_key="CK1",
        subject="Budget review",
        start=START,
        end=START + timedelta(hours=2),
        body="<p>Agenda:&nbsp;numbers</p><script>x()</script>",
        body_type=BodyType.HTML,
        location="Room 4B",
        organizer="grady@acme.example",
        attendees=(Attendee("a@acme.example"), Attendee("b@acme.example")),
        categories=("Finance",),
        last_modified=START,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_given_a_normal_event_then_the_payload_carries_what_the_scheduler_shows():
    data = appointment(_event(), CTX, None)
    assert data["subject"] == "Budget review"
    assert data["bodyPreview"] == "Agenda: numbers"
    assert data["location"] == "Room 4B"
    assert data["organizer"] == "grady@acme.example"
    assert data["attendeeCount"] == 2
    assert data["readOnly"] is False
    assert data["hostAppointmentId"] is None


def test_given_a_time_across_the_dst_change_then_wall_clock_times_are_in_the_tenant_zone():
    data = appointment(_event(), CTX, None)
    # 00:30Z is 01:30 CET; 02:30Z is 04:30 CEST (clocks jumped from 02:00 to 03:00)
    assert data["start"] == {
        "dateTime": "2026-03-29T01:30:00",
        "timeZone": "Europe/Oslo",
        "utc": "2026-03-29T00:30:00Z",
    }
    assert data["end"]["dateTime"] == "2026-03-29T04:30:00"


def test_given_an_all_day_event_then_it_is_dates_not_instants():
    day = datetime(2026, 5, 17, tzinfo=UTC)
    data = appointment(_event(start=day, end=day + timedelta(days=1), is_all_day=True), CTX, None)
    assert data["start"] == {"date": "2026-05-17", "timeZone": "Europe/Oslo"}
    assert data["end"] == {"date": "2026-05-18", "timeZone": "Europe/Oslo"}
    assert data["isAllDay"] is True


def test_given_private_or_confidential_events_then_content_is_masked_and_read_only():
    for sensitivity in (Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL):
        data = appointment(_event(sensitivity=sensitivity), CTX, "H-1")
        assert data["subject"] == "Privat avtale"
        assert data["bodyPreview"] == ""
        assert data["location"] == ""
        assert data["categories"] == []
        assert data["organizer"] is None
        assert data["attendeeCount"] == 0
        assert data["readOnly"] is True
        assert data["start"]["utc"] == "2026-03-29T00:30:00Z"  # times still reach the host
        assert "Budget" not in str(data)
        assert "Agenda" not in str(data)


def test_given_a_link_without_up_then_every_event_is_read_only():
    data = appointment(_event(), replace(CTX, writable=False), None)
    assert data["readOnly"] is True


def test_given_occurrences_then_the_series_id_and_type_are_reported():
    occurrence = _event(type=EventType.OCCURRENCE, series_master_id="AAMkSERIES")
    data = appointment(occurrence, CTX, None)
    assert (data["type"], data["seriesId"]) == ("occurrence", "AAMkSERIES")


def test_given_changes_the_host_cannot_see_then_the_fingerprint_stays():
    first = appointment(_event(), CTX, None)
    later = appointment(
        _event(change_key="CK2", last_modified=START + timedelta(hours=1), show_as=ShowAs.BUSY), CTX, None
    )
    assert fingerprint(first) == fingerprint(later)
    assert fingerprint(first) != fingerprint(appointment(_event(subject="Budget review 2"), CTX, None))
    assert fingerprint(first) != fingerprint(appointment(_event(), CTX, "H-1"))


def test_given_long_or_text_bodies_then_the_preview_is_255_characters_of_text():
    assert preview("a  \n b\t\tc", BodyType.TEXT) == "a b c"
    assert len(preview("x" * 1000, BodyType.TEXT)) == 255
    assert preview("<style>p{}</style><b>&lt;hi&gt;</b>", BodyType.HTML) == "<hi>"


def test_given_languages_then_the_placeholder_falls_back_sensibly():
    assert text(Text.PRIVATE_APPOINTMENT, "da-DK") == "Privat aftale"
    assert text(Text.PRIVATE_APPOINTMENT, "sv") == "Privat möte"
    assert text(Text.PRIVATE_APPOINTMENT, "xx-YY") == "Private appointment"
    assert text(Text.BOOKED_SUFFIX, "nb") == " - Booket"
