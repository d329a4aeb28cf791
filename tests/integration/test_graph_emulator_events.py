"""Events through the real msgraph-sdk: create/read/update/delete, change keys and If-Match,
transactionId idempotency (also when the response to the first POST is lost), time zones, and a
recurring series with an exception and a cancelled occurrence as calendarView shows it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from msgraph.generated.models.calendar import Calendar
from msgraph.generated.models.day_of_week import DayOfWeek
from msgraph.generated.models.event import Event
from msgraph.generated.models.event_type import EventType
from msgraph.generated.models.free_busy_status import FreeBusyStatus
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.patterned_recurrence import PatternedRecurrence
from msgraph.generated.models.recurrence_pattern import RecurrencePattern
from msgraph.generated.models.recurrence_pattern_type import RecurrencePatternType
from msgraph.generated.models.recurrence_range import RecurrenceRange
from msgraph.generated.models.recurrence_range_type import RecurrenceRangeType
from msgraph.generated.users.item.calendar.calendar_view.calendar_view_request_builder import (
    CalendarViewRequestBuilder,
)

from devtools.graph_emulator import Change
from tests.integration.graph_clients import Seed, config, event, native, seeded

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
UTC = dt.UTC


@pytest.fixture
async def seed(tmp_path: Path) -> AsyncIterator[Seed]:
    async with seeded(tmp_path / "graph") as s:
        yield s


def view_query(
    start: str, end: str
) -> CalendarViewRequestBuilder.CalendarViewRequestBuilderGetQueryParameters:
    return CalendarViewRequestBuilder.CalendarViewRequestBuilderGetQueryParameters(
        start_date_time=start, end_date_time=end
    )


async def test_event_create_read_update_delete_with_change_keys(seed: Seed) -> None:
    events = seed.user_client(seed.adele.id).calendar.events
    created = await events.post(
        event("Planning", "2024-05-01T09:00:00", "2024-05-01T10:00:00", show_as=FreeBusyStatus.Tentative)
    )
    assert created is not None
    assert created.id
    assert created.change_key
    assert created.type == EventType.SingleInstance
    assert created.show_as == FreeBusyStatus.Tentative
    assert created.additional_data["@odata.etag"] == f'W/"{created.change_key}"'

    item = seed.user_client(seed.adele.id).events.by_event_id(created.id)
    read = await item.get()
    assert read is not None
    assert read.subject == "Planning"
    assert read.change_key == created.change_key

    updated = await item.patch(Event(subject="Planning (moved)"))
    assert updated is not None
    assert updated.id == created.id
    assert updated.change_key != created.change_key
    assert updated.last_modified_date_time is not None
    assert updated.created_date_time == created.created_date_time

    await item.delete()
    with pytest.raises(ODataError) as gone:
        await item.get()
    assert gone.value.response_status_code == 404
    assert gone.value.error is not None
    assert gone.value.error.code == "ErrorItemNotFound"


async def test_patch_with_a_stale_etag_is_a_412_conflict(seed: Seed) -> None:
    created = await seed.user_client(seed.adele.id).events.post(
        event("A", "2024-05-01T09:00:00", "2024-05-01T10:00:00")
    )
    assert created is not None
    assert created.id
    item = seed.user_client(seed.adele.id).events.by_event_id(created.id)
    stale = f'W/"{created.change_key}"'
    await item.patch(Event(subject="B"), request_configuration=config(headers={"If-Match": stale}))
    with pytest.raises(ODataError) as conflict:
        await item.patch(Event(subject="C"), request_configuration=config(headers={"If-Match": stale}))
    assert conflict.value.response_status_code == 412
    assert conflict.value.error is not None
    assert conflict.value.error.code == "ErrorIrresolvableConflict"
    current = await item.get()
    assert current is not None
    assert current.subject == "B"


async def test_the_same_transaction_id_twice_yields_one_event_even_when_a_response_was_lost(
    seed: Seed,
) -> None:
    """GIVEN the response to a create is lost after the event was made (the connection drops)
    WHEN the client sends the same POST again with the same transactionId THEN 201 with the same
    event, and the mailbox holds one event. Another app's transactionId does not collide."""
    events = seed.user_client(seed.adele.id).calendar.events
    body = event(
        "Host appointment 42 v1", "2024-05-02T09:00:00", "2024-05-02T10:00:00", transaction_id="host-42-v1"
    )
    seed.graph.add_fault("drop_after", path="/calendar/events$", method="POST")
    with pytest.raises(Exception, match="disconnected"):
        await events.post(body)
    again = await native(events.post(body, request_configuration=config(native=True)))
    assert again.status_code == 201
    assert again.headers["request-id"]
    assert again.headers["client-request-id"]
    third = await events.post(body)
    assert third is not None
    assert third.id == again.json()["id"]
    assert third.transaction_id == "host-42-v1"
    assert len(seed.graph.calendar.events(seed.adele.id)) == 1


async def test_times_are_utc_by_default_and_in_the_preferred_zone_when_asked(seed: Seed) -> None:
    created = await seed.user_client(seed.adele.id).events.post(
        event("Standup", "2024-07-01T09:00:00", "2024-07-01T09:15:00", tz="W. Europe Standard Time")
    )
    assert created is not None
    assert created.id
    assert created.start is not None
    assert (created.start.date_time, created.start.time_zone) == ("2024-07-01T07:00:00.0000000", "UTC")
    assert created.original_start_time_zone == "W. Europe Standard Time"
    oslo = (
        await seed.user_client(seed.adele.id)
        .events.by_event_id(created.id)
        .get(request_configuration=config(headers={"Prefer": 'outlook.timezone="Europe/Oslo"'}))
    )
    assert oslo is not None
    assert oslo.start is not None
    assert oslo.end is not None
    assert (oslo.start.date_time, oslo.start.time_zone) == ("2024-07-01T09:00:00.0000000", "Europe/Oslo")
    assert oslo.end.date_time == "2024-07-01T09:15:00.0000000"


async def test_bad_input_is_refused_like_graph_does(seed: Seed) -> None:
    events = seed.user_client(seed.adele.id).events
    unknown_zone = event("x", "2024-05-01T09:00:00", "2024-05-01T10:00:00", tz="Mars Standard Time")
    with pytest.raises(ODataError) as tz:
        await events.post(unknown_zone)
    assert tz.value.error is not None
    assert tz.value.error.code == "TimeZoneNotSupportedException"
    odd = event("x", "2024-05-01T09:00:00", "2024-05-01T10:00:00")
    odd.additional_data = {"notAProperty": 1}
    with pytest.raises(ODataError) as prop:
        await events.post(odd)
    assert prop.value.response_status_code == 400
    assert prop.value.error is not None
    assert prop.value.error.code == "RequestBodyRead"
    with pytest.raises(ODataError) as user:
        await seed.user_client("nobody@contoso.onmicrosoft.com").events.get()
    assert user.value.response_status_code == 404
    assert user.value.error is not None
    assert user.value.error.code == "ErrorInvalidUser"


async def test_weekly_series_with_an_exception_and_a_cancelled_occurrence_in_calendar_view(
    seed: Seed,
) -> None:
    """GIVEN a weekly Monday 09:00 Oslo series of 4 WHEN Adele moves the 2nd occurrence to
    Tuesday 14:00 and deletes the 3rd in Outlook THEN calendarView shows occurrence, exception,
    occurrence (no master, no cancelled one), with stable ids, seriesMasterId and originalStart;
    the times follow Oslo's DST change (08:00 UTC before 31 March, 07:00 after)."""
    series = event("Weekly sync", "2024-03-18T09:00:00", "2024-03-18T10:00:00", tz="Europe/Oslo")
    series.recurrence = PatternedRecurrence(
        pattern=RecurrencePattern(
            type=RecurrencePatternType.Weekly, interval=1, days_of_week=[DayOfWeek.Monday]
        ),
        range=RecurrenceRange(
            type=RecurrenceRangeType.Numbered, start_date=dt.date(2024, 3, 18), number_of_occurrences=4
        ),
    )
    master = await seed.user_client(seed.adele.id).calendar.events.post(series)
    assert master is not None
    assert master.id
    assert master.type == EventType.SeriesMaster
    view = seed.user_client(seed.adele.id).calendar.calendar_view
    window = config(query=view_query("2024-03-01T00:00:00Z", "2024-05-01T00:00:00Z"))

    first = await view.get(request_configuration=window)
    assert first is not None
    assert first.value is not None
    occurrences = first.value
    assert [o.type for o in occurrences] == [EventType.Occurrence] * 4
    assert [str(o.start.date_time)[:16] for o in occurrences if o.start] == [
        "2024-03-18T08:00",
        "2024-03-25T08:00",
        "2024-04-01T07:00",
        "2024-04-08T07:00",
    ]
    assert all(o.series_master_id == master.id for o in occurrences)

    graph = seed.graph
    moved_start = dt.datetime(2024, 3, 26, 13, 0, tzinfo=UTC)  # Tuesday 14:00 Oslo
    graph.calendar.move_event(seed.adele.id, str(occurrences[1].id), moved_start)
    graph.calendar.update_event(seed.adele.id, str(occurrences[1].id), {"subject": "Weekly sync (Tuesday)"})
    graph.calendar.delete_event(seed.adele.id, str(occurrences[2].id))

    second = await view.get(request_configuration=window)
    assert second is not None
    assert second.value is not None
    items = second.value
    assert [i.id for i in items] == [occurrences[0].id, occurrences[1].id, occurrences[3].id]
    assert [i.type for i in items] == [EventType.Occurrence, EventType.Exception, EventType.Occurrence]
    exception = items[1]
    assert exception.subject == "Weekly sync (Tuesday)"
    assert exception.start is not None
    assert exception.start.date_time == "2024-03-26T13:00:00.0000000"
    assert exception.original_start == dt.datetime(2024, 3, 25, 8, 0, tzinfo=UTC)
    assert exception.series_master_id == master.id

    # An occurrence can be read by its id; the cancelled one is gone.
    read = await seed.user_client(seed.adele.id).events.by_event_id(str(occurrences[0].id)).get()
    assert read is not None
    assert read.type == EventType.Occurrence
    with pytest.raises(ODataError):
        await seed.user_client(seed.adele.id).events.by_event_id(str(occurrences[2].id)).get()


async def test_calendar_view_pages_with_maxpagesize_and_next_links(seed: Seed) -> None:
    for day in range(1, 6):
        seed.graph.calendar.create_event(
            seed.adele.id,
            {
                "subject": f"day {day}",
                "start": {"dateTime": f"2024-06-0{day}T10:00:00", "timeZone": "UTC"},
                "end": {"dateTime": f"2024-06-0{day}T11:00:00", "timeZone": "UTC"},
            },
        )
    view = seed.user_client(seed.adele.id).calendar.calendar_view
    page = await view.get(
        request_configuration=config(
            headers={"Prefer": "odata.maxpagesize=2"},
            query=view_query("2024-06-01T00:00:00", "2024-06-30T00:00:00"),
        )
    )
    subjects: list[str | None] = []
    pages = 0
    while page is not None:
        pages += 1
        subjects += [e.subject for e in page.value or []]
        if not page.odata_next_link:
            break
        page = await view.with_url(page.odata_next_link).get(
            request_configuration=config(headers={"Prefer": "odata.maxpagesize=2"})
        )
    assert pages == 3
    assert subjects == [f"day {d}" for d in range(1, 6)]


async def test_calendars_list_get_and_create(seed: Seed) -> None:
    user = seed.user_client(seed.megan.user_principal_name)
    made = await user.calendars.post(Calendar(name="Bookings"))
    assert made is not None
    assert made.id
    assert made.is_default_calendar is False
    listed = await user.calendars.get()
    assert listed is not None
    assert {c.name for c in listed.value or []} == {"Calendar", "Bookings"}
    again = await user.calendars.by_calendar_id(made.id).get()
    assert again is not None
    assert again.name == "Bookings"
    with pytest.raises(ODataError) as duplicate:
        await user.calendars.post(Calendar(name="bookings"))
    assert duplicate.value.response_status_code == 409
    created = await user.calendars.by_calendar_id(made.id).events.post(
        event("slot", "2024-06-03T10:00:00", "2024-06-03T11:00:00")
    )
    assert created is not None
    default_view = await user.calendar.calendar_view.get(
        request_configuration=config(query=view_query("2024-06-01T00:00:00", "2024-06-30T00:00:00"))
    )
    booking_view = await user.calendars.by_calendar_id(made.id).calendar_view.get(
        request_configuration=config(query=view_query("2024-06-01T00:00:00", "2024-06-30T00:00:00"))
    )
    assert default_view is not None
    assert default_view.value == []
    assert booking_view is not None
    assert [e.subject for e in booking_view.value or []] == ["slot"]


async def test_change_hooks_report_every_change_whoever_made_it(seed: Seed) -> None:
    """What a subscriptions module builds on: one Change per create/update/delete, from Graph
    requests and from the control API alike, naming the resource the way notifications do."""
    seen: list[Change] = []
    unsubscribe = seed.graph.ctx.hooks.subscribe(seen.append)
    created = await seed.user_client(seed.adele.id).events.post(
        event("hooked", "2024-06-03T10:00:00", "2024-06-03T11:00:00")
    )
    assert created is not None
    assert created.id
    seed.graph.calendar.update_event(seed.adele.user_principal_name, created.id, {"subject": "hooked again"})
    await seed.user_client(seed.adele.id).events.by_event_id(created.id).delete()
    unsubscribe()
    seed.graph.calendar.create_event(
        seed.adele.id,
        {
            "subject": "unseen",
            "start": {"dateTime": "2024-06-04T10:00:00"},
            "end": {"dateTime": "2024-06-04T11:00:00"},
        },
    )
    assert [(c.kind, c.change_type, c.resource_id) for c in seen] == [
        ("event", "created", created.id),
        ("event", "updated", created.id),
        ("event", "deleted", created.id),
    ]
    assert seen[0].resource == f"Users/{seed.adele.id}/Events/{created.id}"
    assert seen[0].tenant_id == seed.tenant.id
    assert seen[1].change_key is not None
    assert seen[1].change_key != seen[0].change_key
