"""getSchedule through the real msgraph-sdk: availabilityView digits for a busy / tentative / oof /
workingElsewhere mix, private events without subject or location, an unknown address reported
per schedule, and the 20-schedule limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.free_busy_status import FreeBusyStatus
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.calendar.get_schedule.get_schedule_post_request_body import (
    GetSchedulePostRequestBody,
)

from tests.integration.graph_clients import Seed, config, seeded

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def seed(tmp_path: Path) -> AsyncIterator[Seed]:
    async with seeded(tmp_path / "graph") as s:
        yield s


def _event(seed: Seed, user: str, subject: str, start: str, end: str, **fields: Any) -> None:
    seed.graph.calendar.create_event(
        user,
        {
            "subject": subject,
            "start": {"dateTime": start, "timeZone": "Europe/Oslo"},
            "end": {"dateTime": end, "timeZone": "Europe/Oslo"},
            "location": {"displayName": f"room for {subject}"},
            **fields,
        },
    )


def _request(*schedules: str, interval: int = 60) -> GetSchedulePostRequestBody:
    return GetSchedulePostRequestBody(
        schedules=list(schedules),
        start_time=DateTimeTimeZone(date_time="2024-06-03T08:00:00", time_zone="Europe/Oslo"),
        end_time=DateTimeTimeZone(date_time="2024-06-03T17:00:00", time_zone="Europe/Oslo"),
        availability_view_interval=interval,
    )


async def test_availability_view_and_items_for_a_mix_of_statuses(seed: Seed) -> None:
    """GIVEN Adele's day 08-17 Oslo: busy 09-10, tentative 10-11:30, oof 13-14 overlapping a
    private busy 13:30-15, workingElsewhere 16-17 WHEN getSchedule asks in hours THEN the view is
    0 2 1 1 0 3 2 0 4 (oof beats busy where they overlap; a half-hour tentative colours its hour),
    and the private event shows no subject or location."""
    adele = seed.adele.user_principal_name
    _event(seed, adele, "Planning", "2024-06-03T09:00:00", "2024-06-03T10:00:00", showAs="busy")
    _event(seed, adele, "Maybe lunch", "2024-06-03T10:00:00", "2024-06-03T11:30:00", showAs="tentative")
    _event(seed, adele, "Dentist", "2024-06-03T13:00:00", "2024-06-03T14:00:00", showAs="oof")
    _event(
        seed,
        adele,
        "Secret",
        "2024-06-03T13:30:00",
        "2024-06-03T15:00:00",
        showAs="busy",
        sensitivity="private",
    )
    _event(seed, adele, "From home", "2024-06-03T16:00:00", "2024-06-03T17:00:00", showAs="workingElsewhere")

    response = await seed.user_client(seed.megan.id).calendar.get_schedule.post(
        _request(adele, seed.megan.user_principal_name),
        request_configuration=config(headers={"Prefer": 'outlook.timezone="Europe/Oslo"'}),
    )
    assert response is not None
    assert response.value is not None
    adele_info, megan_info = response.value
    assert adele_info.schedule_id == adele
    assert adele_info.availability_view == "021103204"
    items = adele_info.schedule_items or []
    assert [(i.status, i.subject, i.is_private) for i in items] == [
        (FreeBusyStatus.Busy, "Planning", False),
        (FreeBusyStatus.Tentative, "Maybe lunch", False),
        (FreeBusyStatus.Oof, "Dentist", False),
        (FreeBusyStatus.Busy, None, True),
        (FreeBusyStatus.WorkingElsewhere, "From home", False),
    ]
    assert items[0].location == "room for Planning"
    assert items[3].location is None
    assert items[0].start is not None
    assert items[0].start.date_time == "2024-06-03T09:00:00.0000000"
    assert items[0].start.time_zone == "Europe/Oslo"
    assert megan_info.availability_view == "000000000"
    assert megan_info.schedule_items == []


async def test_unknown_addresses_get_an_error_and_more_than_20_schedules_are_refused(seed: Seed) -> None:
    schedule = seed.user_client(seed.adele.id).calendar.get_schedule
    response = await schedule.post(_request("ghost@contoso.onmicrosoft.com", interval=30))
    assert response is not None
    assert response.value is not None
    [ghost] = response.value
    assert ghost.error is not None
    assert ghost.error.response_code == "ErrorMailRecipientNotFound"
    with pytest.raises(ODataError) as too_many:
        await schedule.post(_request(*[f"user{n}@contoso.onmicrosoft.com" for n in range(21)]))
    assert too_many.value.response_status_code == 400
    with pytest.raises(ODataError) as bad_interval:
        await schedule.post(_request(seed.adele.user_principal_name, interval=4))
    assert bad_interval.value.response_status_code == 400
