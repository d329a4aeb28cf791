"""Booking calendars and their slots on the local stack: the real `function_app` on the local
Functions host, Azurite, and the Graph emulator's calendars over HTTPS with the real clients.
The admin's slots are created in the emulator as a person would in Outlook."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.integration.bridge_api import api_env  # noqa: F401 - fixture
from tests.integration.test_calendar_sync_down import (  # noqa: F401 - fixtures
    graph,
    start_bridge,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

OSLO = ZoneInfo("Europe/Oslo")
# Oslo's clocks go forward on Sunday 28 March 2027 (02:00 → 03:00)
FRIDAY = date(2027, 3, 26)


def local(day: date, hour: int, minute: int = 0) -> dict[str, str]:
    return {"dateTime": f"{day.isoformat()}T{hour:02d}:{minute:02d}:00", "timeZone": "Europe/Oslo"}


async def test_slots_follow_hours_weekends_and_notice_across_a_daylight_saving_change(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a booking calendar 08-16, no weekends, with a notice that ends on Saturday
    27 March 2027, and slots around Oslo's change to summer time
    WHEN the form asks for that week's slots
    THEN Friday's 09:00 is listed unavailable (notice), Monday's 09:00 available, both at 09:00
    local (08:00 and 07:00 UTC); the weekend, early, late, booked and all-day ones are not."""
    async with start_bridge() as bridge:
        owner = bridge.outlook.mailbox("booking")
        calendar_id = bridge.graph.calendar.create_calendar(owner, "Bookable slots").id
        today = datetime.now(OSLO).date()
        notice = (FRIDAY - today).days + 1  # bookable from Saturday
        body = {
            "displayName": "Rådgivning",
            "owner": owner,
            "calendar": "Bookable slots",
            "noticeDays": notice,
        }
        saved = await bridge.call("PUT", "/booking-calendars/advice", json_body=body)
        assert saved.status == 201, saved.text
        assert saved.body["bookedSuffix"] == " - Booket"  # the tenant's language (nb)

        def add(subject: str, day: date, hour: int, minutes: int = 60, **extra: Any) -> str:
            start = datetime(day.year, day.month, day.day, hour, tzinfo=OSLO)
            end = start + timedelta(minutes=minutes)
            event = {
                "subject": subject,
                "start": local(day, hour),
                "end": local(end.date(), end.hour, end.minute),
                **extra,
            }
            record, _ = bridge.graph.calendar.create_event(owner, event, calendar_id=calendar_id)
            return str(record.id)

        friday = add("Consultation", FRIDAY, 9)
        add("Consultation", FRIDAY + timedelta(days=1), 10)  # Saturday
        monday = add("Consultation", FRIDAY + timedelta(days=3), 9)
        add("Consultation", FRIDAY + timedelta(days=3), 7)  # before 08:00
        add("Consultation", FRIDAY + timedelta(days=4), 15, 90)  # ends 16:30
        add("Consultation - Booket", FRIDAY + timedelta(days=4), 10)  # booked
        add(
            "Holiday",
            FRIDAY + timedelta(days=5),
            0,
            isAllDay=True,
            start={"dateTime": "2027-03-31T00:00:00", "timeZone": "Europe/Oslo"},
            end={"dateTime": "2027-04-01T00:00:00", "timeZone": "Europe/Oslo"},
        )

        reply = await bridge.call(
            "GET", "/booking-calendars/advice/slots", params={"from": "2027-03-25", "to": "2027-04-02"}
        )
        assert reply.status == 200, reply.text
        slots = reply.body["slots"]
        assert [s["slotId"] for s in slots] == [friday, monday]
        assert [s["available"] for s in slots] == [False, True]
        assert "bookable from 2027-03-27" in slots[0]["reason"]
        assert [s["start"]["dateTime"][11:16] for s in slots] == ["09:00", "09:00"]
        assert [s["start"]["utc"][11:16] for s in slots] == ["08:00", "07:00"]

        bad = await bridge.call(
            "GET", "/booking-calendars/advice/slots", params={"from": "2027-04-02", "to": "2027-03-25"}
        )
        assert bad.is_problem(422)
        missing = await bridge.call("GET", "/booking-calendars/nope/slots")
        assert missing.is_problem(404)
