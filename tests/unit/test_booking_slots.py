"""Which slots a booking form shows: hours, weekends and notice in the calendar's zone across a
daylight-saving change; booked, reserved, past, all-day and cancelled events left out; the
booking calendar's configuration validated against the mailbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.booking.config import BookingCalendarService
from core.booking.slots import plan_slots, slot_view, window
from core.graph.fake import InMemoryGraph
from core.graph.model import Event
from core.request_errors import InvalidInput
from core.store import memory_tables
from core.store.records import BookingCalendar, Tenant
from tests.unit.calendar_world import Clock

OSLO = ZoneInfo("Europe/Oslo")
# Friday 27 March 2026; clocks go forward in Oslo on Sunday 29 March (02:00 → 03:00)
NOW = datetime(2026, 3, 27, 7, 0, tzinfo=UTC)


def config(**fields: Any) -> BookingCalendar:
    return BookingCalendar(
        tenant_id="acme",
        booking_id="advice",
        owner="booking@acme.example",
        time_zone="Europe/Oslo",
        booked_suffix=" - Booket",
        first_hour=8,
        last_hour=16,
        **fields,
    )


def slot(event_id: str, local_start: datetime, minutes: int = 60, **fields: Any) -> Event:
    start = local_start.replace(tzinfo=OSLO).astimezone(UTC)
    return Event(
        event_id,
        "ck",
        fields.pop("subject", "Consultation"),
        start,
        start + timedelta(minutes=minutes),
        **fields,
    )


def ids(slots: list[Any]) -> list[str]:
    return [s.event_id for s in slots]


def test_hours_are_wall_clock_hours_on_both_sides_of_a_daylight_saving_change():
    events = [
        slot("fri-08", datetime(2026, 3, 27, 8, 0)),  # 07:00 UTC (CET)
        slot("mon-08", datetime(2026, 3, 30, 8, 0)),  # 06:00 UTC (CEST)
        slot("mon-0730", datetime(2026, 3, 30, 7, 30)),  # before the first hour
        slot("mon-15", datetime(2026, 3, 30, 15, 0)),  # ends 16:00: in
        slot("mon-1530", datetime(2026, 3, 30, 15, 30)),  # ends 16:30: out
    ]
    got = plan_slots(events, config(), NOW, set())
    assert ids(got) == ["fri-08", "mon-08", "mon-15"]
    views = [slot_view(s, config()) for s in got]
    assert [v["start"]["dateTime"][11:16] for v in views] == ["08:00", "08:00", "15:00"]
    assert [v["start"]["utc"][11:16] for v in views] == ["07:00", "06:00", "13:00"]


def test_weekends_only_when_shown():
    events = [slot("sat", datetime(2026, 3, 28, 10, 0)), slot("sun", datetime(2026, 3, 29, 10, 0))]
    assert plan_slots(events, config(), NOW, set()) == []
    assert ids(plan_slots(events, config(show_weekend=True), NOW, set())) == ["sat", "sun"]


def test_a_slot_sooner_than_the_notice_is_listed_but_unavailable():
    events = [slot("fri", datetime(2026, 3, 27, 12, 0)), slot("mon", datetime(2026, 3, 30, 12, 0))]
    got = plan_slots(events, config(notice_days=2), NOW, set())
    assert [(s.event_id, s.available) for s in got] == [("fri", False), ("mon", True)]
    assert got[0].reason == "bookable from 2026-03-29 (2 days' notice)"


def test_booked_reserved_past_all_day_and_cancelled_events_are_not_slots():
    events = [
        slot("booked", datetime(2026, 3, 30, 9, 0), subject="Consultation - Booket"),
        slot("reserved", datetime(2026, 3, 30, 10, 0)),
        slot("past", datetime(2026, 3, 27, 7, 0)),
        slot("cancelled", datetime(2026, 3, 30, 11, 0), is_cancelled=True),
        Event(
            "all-day",
            "ck",
            "Holiday",
            datetime(2026, 3, 31, tzinfo=UTC),
            datetime(2026, 4, 1, tzinfo=UTC),
            is_all_day=True,
        ),
        slot("free", datetime(2026, 3, 30, 12, 0)),
    ]
    assert ids(plan_slots(events, config(), NOW, {"reserved"})) == ["free"]


def test_the_window_is_read_in_the_calendars_zone_and_bounded():
    start, end = window(config(), "2026-03-28", "2026-04-01", NOW)
    assert (start, end) == (
        datetime(2026, 3, 27, 23, 0, tzinfo=UTC),
        datetime(2026, 3, 31, 22, 0, tzinfo=UTC),
    )
    default_start, default_end = window(config(), None, None, NOW)
    days = default_end.astimezone(OSLO).date() - default_start.astimezone(OSLO).date()
    assert days == timedelta(days=31)  # calendar days (one of them 23 hours long)
    bad: list[tuple[str, str | None]] = [
        ("2026-04-01", "2026-03-01"),
        ("2026-01-01", "2026-06-01"),
        ("yesterday", None),
    ]
    for frm, to in bad:
        with pytest.raises(InvalidInput):
            window(config(), frm, to, NOW)


@pytest.mark.parametrize(
    ("frm", "to"),
    [
        ("0001-01-01", None),
        ("0001-01-01T00:00:00-14:00", None),
        ("9999-12-31", None),
        ("9999-12-31T23:59:59+14:00", None),
        ("4500-08-31", None),
        ("2026-03-01", "9999-12-31"),
        ("1600-12-31", "1601-01-02"),
    ],
)
def test_a_window_outside_the_dates_exchange_keeps_is_named_not_a_crash(frm: str, to: str | None):
    """Found by the R4 fuzzing: `from=9999-12-31` overflowed Python's datetime once the default
    31 days were added, and `from=0001-01-01` went to Graph, which refused it; both were 500s."""
    with pytest.raises(InvalidInput) as invalid:
        window(config(), frm, to, NOW)
    assert invalid.value.problems[0].field in ("from", "to")


def test_a_window_at_the_edges_of_the_dates_exchange_keeps_is_fine():
    start, end = window(config(), "1601-01-02", "1601-02-01", NOW)
    assert end - start > timedelta(days=29)
    start, end = window(config(), "4500-07-01", None, NOW)
    assert end.astimezone(OSLO).date().isoformat() == "4500-08-01"
    start, end = window(config(), "4500-08-01", "4500-08-31", NOW)
    assert end - start == timedelta(days=30)


@pytest.fixture
def service() -> tuple[BookingCalendarService, InMemoryGraph]:
    graph = InMemoryGraph()
    graph.add_user("booking@acme.example", "Booking")
    graph.add_calendar("booking@acme.example", "Bookable slots")

    class Graphs:
        async def gateway(self, tenant: Tenant) -> Any:
            return graph

    tenant = Tenant(tenant_id="acme", language="nb", time_zone="Europe/Oslo")
    return BookingCalendarService(memory_tables(), Graphs(), tenant, Clock()), graph


async def test_a_booking_calendar_resolves_its_calendar_and_takes_the_tenants_defaults(service: Any):
    svc, graph = service
    body = {"displayName": "Rådgivning", "owner": "Booking@Acme.example", "calendar": "bookable SLOTS"}
    saved, created = await svc.put("advice", body)
    assert created
    [calendar] = [c for c in await graph.list_calendars("booking@acme.example") if c.name == "Bookable slots"]
    assert (saved.calendar_id, saved.booked_suffix, saved.time_zone) == (
        calendar.id,
        " - Booket",
        "Europe/Oslo",
    )
    with pytest.raises(InvalidInput) as invalid:
        await svc.put("other", {**body, "calendar": "Nope"})
    assert [p.field for p in invalid.value.problems] == ["calendar"]
    with pytest.raises(InvalidInput) as invalid:
        await svc.put("other", {**body, "firstHour": 16, "lastHour": 8})
    assert "lastHour must be after firstHour" in str(invalid.value)
