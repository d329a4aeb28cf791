"""Calendar push up over memory tables, the real outbox and the fake Graph: versions, retries,
conflicts, echo suppression with the down sync, skips, failures and unlink cleanup."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.calendar.eventmap import UNSEEN
from core.calendar.push import AppointmentPush, PushFailed
from core.calendar.push_queue import ApplyRequest, CleanupRequest, InMemoryPushQueue, decode, encode, split
from core.graph.errors import ConsentMissing, GraphUnavailable
from core.graph.model import EventChanges, transaction_id
from core.request_errors import InvalidInput
from core.store.records import (
    DEFAULT_CALENDAR,
    Direction,
    EventMapEntry,
    EventTransaction,
    HostAppointment,
    LinkedAccount,
    Origin,
    PushStatus,
    Run,
    Tenant,
)
from tests.unit.calendar_world import ADELE, GRADY, RESOURCE, TENANT, CalendarWorld

START = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def world() -> CalendarWorld:
    return CalendarWorld()


class Pusher:
    def __init__(self, world: CalendarWorld, **options: Any) -> None:
        self.world = world
        self.queue = InMemoryPushQueue()
        self.push = AppointmentPush(
            world.tables, world.outbox, _Graphs(world), self.queue, clock=world.clock, **options
        )

    async def tenant(self) -> Tenant:
        tenant = await self.world.tables.repo(Tenant).get(*Tenant.key(TENANT))
        assert tenant is not None
        return tenant

    async def post(self, body: object) -> dict[str, Any]:
        return (await self.push.accept(await self.tenant(), body)).to_dict()

    async def work(self) -> None:
        """Play the queue worker: run every message sent so far."""
        for message in self.queue.take():
            self.world.clock.advance(timedelta(seconds=5))  # the message's visibility delay
            if isinstance(message, ApplyRequest):
                await self.push.run_queued(message)
            else:
                assert isinstance(message, CleanupRequest)
                await self.push.clean_up(message)

    async def row(self, host_id: str, resource: str = RESOURCE) -> HostAppointment:
        row = await self.world.tables.repo(HostAppointment).get(
            *HostAppointment.key(TENANT, resource, host_id)
        )
        assert row is not None
        return row


class _Graphs:
    def __init__(self, world: CalendarWorld) -> None:
        self.world = world

    async def gateway(self, tenant: Tenant) -> Any:
        return self.world.graph


def change(host_id: str = "A-1", version: int = 1, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hostAppointmentId": host_id,
        "resourceId": RESOURCE,
        "version": version,
        "subject": f"Service visit v{version}",
        "start": "2026-03-03T10:00:00",
        "end": "2026-03-03T11:00:00",
        "timeZone": "Europe/Oslo",
    }
    return body | fields


def outlook(world: CalendarWorld, mailbox: str = ADELE) -> list[Any]:
    box = world.graph._box(mailbox)
    return sorted((e for _, e in box.events.values()), key=lambda e: e.start)


async def pushed(world: CalendarWorld) -> list[dict[str, Any]]:
    return [e["data"] for e in await world.events() if e["type"] == "appointment.pushed"]


@pytest.fixture
async def both(world: CalendarWorld) -> Pusher:
    await world.setup(Direction.BOTH)
    return Pusher(world)


# --- create, update, delete --------------------------------------------------------------------


async def test_a_posted_appointment_is_in_outlook_before_the_answer(world: CalendarWorld, both: Pusher):
    answer = await both.post(change(body="Bring the ladder", location="Room 4B", categories=["ERP"]))

    [item] = answer["appointments"]
    assert item["status"] == "applied"
    assert item["result"] == "created"
    [event] = outlook(world)
    assert item["eventId"] == event.id
    assert event.subject == "Service visit v1"
    assert event.start == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # 10:00 in Oslo (CET)
    assert (event.location, event.body, event.categories) == ("Room 4B", "Bring the ladder", ("ERP",))
    assert event.transaction_id == transaction_id("A-1", 1)
    row = await both.row("A-1")
    assert (row.status, row.applied_version, row.event_id) == (PushStatus.APPLIED, 1, event.id)
    [entry] = await world.map_entries()
    assert (entry.event_id, entry.host_appointment_id, entry.origin) == (event.id, "A-1", Origin.BRIDGE)
    # no down round has seen the new event yet, and its entry says so (core.calendar.eventmap)
    assert entry.change_key == UNSEEN
    tx = await world.tables.repo(EventTransaction).get(
        *EventTransaction.key(TENANT, ADELE, transaction_id("A-1", 1))
    )
    assert tx is not None
    assert tx.host_appointment_id == "A-1"
    [told] = await pushed(world)
    assert told | {"trackingId": None} == {
        "resourceId": RESOURCE,
        "hostAppointmentId": "A-1",
        "version": 1,
        "op": "upsert",
        "result": "created",
        "account": ADELE,
        "calendar": DEFAULT_CALENDAR,
        "eventId": event.id,
        "trackingId": None,
    }
    assert told["trackingId"] == answer["trackingId"]


async def test_the_queued_message_finds_nothing_left_to_do(world: CalendarWorld, both: Pusher):
    await both.post(change())
    [(_, delay)] = both.queue.sent
    assert delay >= 3  # visible only after the inline attempt's budget
    runs_before = [r async for r in world.tables.repo(Run).list(TENANT)]
    await both.work()
    assert len(outlook(world)) == 1
    assert [r async for r in world.tables.repo(Run).list(TENANT)] == runs_before  # no empty run


async def test_update_then_delete_round_trip(world: CalendarWorld, both: Pusher):
    await both.post(change(version=1))
    [created] = outlook(world)
    answer = await both.post(
        change(version=2, subject="Moved visit", start="2026-03-03T12:00", end="2026-03-03T13:30")
    )
    assert answer["appointments"][0]["result"] == "updated"
    [updated] = outlook(world)
    assert updated.id == created.id
    assert (updated.subject, updated.start, updated.end) == (
        "Moved visit",
        datetime(2026, 3, 3, 11, 0, tzinfo=UTC),
        datetime(2026, 3, 3, 12, 30, tzinfo=UTC),
    )
    answer = await both.post(
        {"hostAppointmentId": "A-1", "resourceId": RESOURCE, "version": 3, "op": "delete"}
    )
    assert answer["appointments"][0]["result"] == "deleted"
    assert outlook(world) == []
    assert await world.map_entries() == []
    assert [p["result"] for p in await pushed(world)] == ["created", "updated", "deleted"]


async def test_the_same_post_twice_leaves_one_event(world: CalendarWorld, both: Pusher):
    first = await both.post(change())
    second = await both.post(change())
    await both.work()
    assert len(outlook(world)) == 1
    assert second["appointments"][0]["status"] == "ignored"
    assert second["appointments"][0]["eventId"] == first["appointments"][0]["eventId"]
    assert len(await pushed(world)) == 1


async def test_versions_out_of_order_end_in_the_newest(world: CalendarWorld, both: Pusher):
    await both.post(change(version=3, subject="third"))
    late = await both.post(change(version=2, subject="second"))
    assert late["appointments"][0]["status"] == "ignored"
    assert "older" in late["appointments"][0]["reason"]
    await both.work()
    [event] = outlook(world)
    assert event.subject == "third"
    deleted = await both.post(
        {"hostAppointmentId": "A-1", "resourceId": RESOURCE, "version": 5, "op": "delete"}
    )
    assert deleted["appointments"][0]["result"] == "deleted"
    await both.post(change(version=4, subject="fourth, after the delete"))
    await both.work()
    assert outlook(world) == []


async def test_a_batch_in_one_post_keeps_each_appointments_order(world: CalendarWorld, both: Pusher):
    answer = await both.post(
        {
            "appointments": [
                change("A-1", 1, subject="one"),
                change("A-2", 1, subject="two"),
                change("A-1", 2, subject="one, edited"),
            ]
        }
    )
    assert [i["status"] for i in answer["appointments"]] == ["applied", "applied", "applied"]
    assert sorted(e.subject for e in outlook(world)) == ["one, edited", "two"]


async def test_concurrent_versions_of_one_appointment_settle_on_the_newest(
    world: CalendarWorld, both: Pusher
):
    await both.post(change(version=1))
    await asyncio.gather(*(both.post(change(version=v, subject=f"v{v}")) for v in (4, 2, 3, 5)))
    await both.work()
    await both.work()
    [event] = outlook(world)
    assert event.subject == "v5"
    row = await both.row("A-1")
    assert (row.applied_version, row.lease_owner) == (5, None)


# --- retries and crashes -------------------------------------------------------------------


async def test_a_create_whose_answer_was_lost_is_not_made_twice(world: CalendarWorld, both: Pusher):
    real = world.graph.create_event
    calls = {"n": 0}

    async def lose_first_answer(*args: Any) -> Any:
        calls["n"] += 1
        event = await real(*args)
        if calls["n"] == 1:
            raise GraphUnavailable("create_event: 503 after the event was made", status=503)
        return event

    world.graph.create_event = lose_first_answer  # type: ignore[method-assign,assignment]
    answer = await both.post(change())
    assert answer["appointments"][0]["status"] == "queued"
    await both.work()
    assert len(outlook(world)) == 1
    assert (await both.row("A-1")).status is PushStatus.APPLIED


async def test_a_newer_version_after_a_lost_create_finds_the_first_event(world: CalendarWorld, both: Pusher):
    real = world.graph.create_event

    async def lose_answer(*args: Any) -> Any:
        await real(*args)
        raise GraphUnavailable("create_event: connection dropped")

    world.graph.create_event = lose_answer  # type: ignore[method-assign,assignment]
    await both.post(change(version=1))
    world.graph.create_event = real  # type: ignore[method-assign]
    both.queue.take()  # the v1 message is lost too: only v2 arrives
    await both.post(change(version=2, subject="second"))
    [event] = outlook(world)
    assert event.subject == "second"
    assert event.transaction_id == transaction_id("A-1", 1)


async def test_an_event_deleted_in_outlook_is_recreated_by_the_next_version(
    world: CalendarWorld, both: Pusher
):
    await both.post(change(version=1))
    [event] = outlook(world)
    world.graph.outlook_delete_event(ADELE, event.id)
    answer = await both.post(change(version=2, subject="again"))
    assert answer["appointments"][0]["result"] == "recreated"
    [again] = outlook(world)
    assert again.id != event.id
    assert again.subject == "again"
    assert [e.event_id for e in await world.map_entries()] == [again.id]


async def test_a_permanent_graph_refusal_fails_the_message_and_tells_the_host(
    world: CalendarWorld, both: Pusher
):
    refusal = ConsentMissing(
        "create_event for mailbox 'adele@acme.example': the app lacks Calendars.ReadWrite (HTTP 403): "
        "an admin must grant it",
        permission="Calendars.ReadWrite",
        status=403,
    )
    world.graph.inject(ADELE, refusal, times=10)
    answer = await both.post(change())
    assert answer["appointments"][0]["status"] == "queued"
    with pytest.raises(PushFailed, match=r"Calendars\.ReadWrite"):
        await both.work()
    row = await both.row("A-1")
    assert row.status is PushStatus.FAILED
    assert "Calendars.ReadWrite" in (row.reason or "")
    assert row.lease_owner is None
    [told] = await pushed(world)
    assert told["result"] == "failed"
    assert "Calendars.ReadWrite" in told["reason"]
    runs = [r async for r in world.tables.repo(Run).list(TENANT)]
    assert runs
    assert all(r.run_id == answer["trackingId"] and "Calendars.ReadWrite" in (r.error or "") for r in runs)


async def test_an_inline_attempt_out_of_time_is_finished_by_the_queue(world: CalendarWorld):
    await world.setup(Direction.BOTH)
    slow = Pusher(world, inline_budget=0.05)
    real = world.graph.create_event

    async def slow_create(*args: Any) -> Any:
        await asyncio.sleep(0.2)
        return await real(*args)

    world.graph.create_event = slow_create  # type: ignore[method-assign,assignment]
    answer = await slow.post(change())
    assert answer["appointments"][0]["status"] == "queued"
    assert (await slow.row("A-1")).lease_owner is None  # let go when cancelled
    world.graph.create_event = real  # type: ignore[method-assign]
    await slow.work()
    assert len(outlook(world)) == 1  # the cancelled create (if it got through) and the retry are one


# --- the down sync sees the bridge's events ----------------------------------------------------


async def test_a_pushed_event_is_not_echoed_by_the_down_sync(world: CalendarWorld, both: Pusher):
    await both.post(change(version=1))
    await world.run()
    await both.post(change(version=2, subject="edited by the host"))
    await world.run()
    assert [e for e in await world.events() if e["type"] != "appointment.pushed"] == []


async def test_an_outlook_edit_of_a_pushed_event_comes_back_as_the_same_host_appointment(
    world: CalendarWorld, both: Pusher
):
    await both.post(change())
    await world.run()
    [event] = outlook(world)
    world.graph.outlook_update_event(ADELE, event.id, EventChanges(subject="Edited in Outlook"))
    await world.run()
    [upserted] = [
        e["data"]["appointment"] for e in await world.events() if e["type"] == "appointment.upserted"
    ]
    assert (upserted["eventId"], upserted["hostAppointmentId"], upserted["subject"]) == (
        event.id,
        "A-1",
        "Edited in Outlook",
    )


async def test_a_down_round_that_read_the_map_before_a_push_does_not_undo_it(
    world: CalendarWorld, both: Pusher
):
    await both.post(change(version=1))
    await world.run()
    [event] = outlook(world)
    key = EventMapEntry.key(TENANT, RESOURCE, ADELE, DEFAULT_CALENDAR, event.id)
    stale = await world.tables.repo(EventMapEntry).get(*key)
    await both.post(change(version=2, subject="pushed"))
    # the down worker now writes what it read before the push
    from core.calendar.eventmap import write_entry

    assert stale is not None
    older = stale.model_copy(update={"change_key": "stale", "last_modified": stale.last_modified})
    kept = await write_entry(world.tables.repo(EventMapEntry), key, stale, lambda current: older)
    assert kept.change_key == outlook(world)[0].change_key
    await world.run()
    assert [e for e in await world.events() if e["type"] == "appointment.upserted"] == []


# --- conflicts ------------------------------------------------------------------------------


async def test_conflict_outlook_edited_later_wins_and_the_host_hears_it(world: CalendarWorld, both: Pusher):
    await both.post(change(version=1))
    [event] = outlook(world)
    host_time = datetime.now(UTC) - timedelta(minutes=5)
    world.graph.outlook_update_event(ADELE, event.id, EventChanges(subject="Outlook's later edit"))
    answer = await both.post(
        change(version=2, subject="host's earlier edit", modifiedAt=host_time.isoformat())
    )
    item = answer["appointments"][0]
    assert (item["status"], item["result"]) == ("conflict", "conflict_outlook_won")
    assert outlook(world)[0].subject == "Outlook's later edit"
    told = (await pushed(world))[-1]
    assert told["conflict"]["winner"] == "outlook"
    assert told["conflict"]["appointment"]["subject"] == "Outlook's later edit"
    assert (await both.row("A-1")).status is PushStatus.CONFLICT


async def test_conflict_host_edited_later_wins_and_the_host_hears_it(world: CalendarWorld, both: Pusher):
    await both.post(change(version=1))
    [event] = outlook(world)
    world.graph.outlook_update_event(ADELE, event.id, EventChanges(subject="Outlook's earlier edit"))
    later = datetime.now(UTC) + timedelta(minutes=5)
    answer = await both.post(change(version=2, subject="host's later edit", modifiedAt=later.isoformat()))
    assert answer["appointments"][0]["result"] == "updated"
    assert outlook(world)[0].subject == "host's later edit"
    assert (await pushed(world))[-1]["conflict"]["winner"] == "host"


async def test_direction_up_the_host_always_wins(world: CalendarWorld):
    await world.setup(Direction.UP)
    pusher = Pusher(world)
    await pusher.post(change(version=1))
    [event] = outlook(world)
    world.graph.outlook_update_event(ADELE, event.id, EventChanges(subject="Outlook edit"))
    earlier = datetime.now(UTC) - timedelta(hours=1)
    await pusher.post(change(version=2, subject="host wins", modifiedAt=earlier.isoformat()))
    assert outlook(world)[0].subject == "host wins"


# --- skipped --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "reason"),
    [(Direction.DOWN, "no_main_account"), (Direction.NONE, "no_main_account"), (None, "resource_not_linked")],
)
async def test_nothing_to_write_to_is_skipped_with_a_reason_in_the_run(
    world: CalendarWorld, direction: Direction | None, reason: str
):
    await world.add_tenant()
    if direction is not None:
        await world.link(LinkedAccount(account=ADELE, direction=direction))
    pusher = Pusher(world)
    answer = await pusher.post(change())
    item = answer["appointments"][0]
    assert (item["status"], item["result"]) == ("skipped", "skipped")
    assert outlook(world) == []
    [run] = [r async for r in world.tables.repo(Run).list(TENANT)]
    assert run.counts == {f"skipped_{reason}": 1}
    assert (await pusher.row("A-1")).reason
    assert (await pushed(world))[0]["reason"] == reason
    # linked later, the same version sent again goes through
    await world.link(LinkedAccount(account=ADELE, direction=Direction.BOTH))
    again = await pusher.post(change())
    assert again["appointments"][0]["result"] == "created"


async def test_the_first_up_account_is_the_main_one_and_a_new_main_account_takes_the_event(
    world: CalendarWorld,
):
    await world.add_tenant()
    await world.link(
        LinkedAccount(account=GRADY, direction=Direction.DOWN),
        LinkedAccount(account=ADELE, direction=Direction.BOTH),
    )
    pusher = Pusher(world)
    await pusher.post(change(version=1))
    assert outlook(world, GRADY) == []
    assert len(outlook(world, ADELE)) == 1
    await world.link(LinkedAccount(account=GRADY, direction=Direction.UP))
    answer = await pusher.post(change(version=2))
    assert answer["appointments"][0]["result"] == "moved"
    assert outlook(world, ADELE) == []
    assert [e.subject for e in outlook(world, GRADY)] == ["Service visit v2"]


async def test_a_named_calendar_receives_the_event(world: CalendarWorld):
    await world.add_tenant()
    calendar = world.graph.add_calendar(ADELE, "ERP")
    await world.link(
        LinkedAccount(account=ADELE, direction=Direction.UP, calendars=["erp", DEFAULT_CALENDAR])
    )
    await Pusher(world).post(change())
    box = world.graph._box(ADELE)
    assert [c for c, _ in box.events.values()] == [calendar.id]


# --- validation -----------------------------------------------------------------------------


async def test_invalid_items_get_their_own_problem_and_valid_ones_go_on(world: CalendarWorld, both: Pusher):
    answer = await both.post(
        {
            "appointments": [
                change("A-1", 1),
                change("A-2", 1, end="2026-03-03T09:00:00"),
                {"hostAppointmentId": "A-3", "resourceId": RESOURCE, "version": "1"},
                change("A-4", 1, showAs="maybe"),
            ]
        }
    )
    assert [i["hostAppointmentId"] for i in answer["appointments"]] == ["A-1"]
    rejected = {r["index"]: r for r in answer["rejected"]}
    assert set(rejected) == {1, 2, 3}
    assert rejected[1]["errors"] == [{"field": "appointments[1].end", "detail": "must be after start"}]
    assert rejected[2]["hostAppointmentId"] == "A-3"
    assert "appointments[2].version" in {e["field"] for e in rejected[2]["errors"]}
    assert {e["field"] for e in rejected[3]["errors"]} == {"appointments[3].showAs"}
    assert len(outlook(world)) == 1


async def test_a_request_with_nothing_valid_changes_nothing(world: CalendarWorld, both: Pusher):
    with pytest.raises(InvalidInput) as invalid:
        await both.post(change(start="tomorrow"))
    assert [p.field for p in invalid.value.problems] == ["start"]
    assert [r async for r in world.tables.repo(HostAppointment).list(TENANT)] == []
    assert both.queue.sent == []


# --- unlink cleanup -------------------------------------------------------------------------


async def test_cleanup_deletes_exactly_the_bridges_events(world: CalendarWorld, both: Pusher):
    mine = world.create("Lunch, made in Outlook", START)
    await both.post(
        {
            "appointments": [
                change("A-1", 1),
                change("A-2", 1, start="2026-03-04T10:00", end="2026-03-04T11:00"),
            ]
        }
    )
    await world.run()
    assert len(outlook(world)) == 3
    both.queue.take()
    await both.queue.send(CleanupRequest(TENANT, "c" * 32, RESOURCE, ADELE))
    await both.work()
    assert [e.id for e in outlook(world)] == [mine.id]
    row = await both.row("A-1")
    assert (row.event_id, row.status) == (None, PushStatus.SKIPPED)
    [run] = [r async for r in world.tables.repo(Run).list(TENANT, where={"function": "calendar-cleanup"})]
    assert run.counts == {"events_deleted": 2}


async def test_cleanup_also_finds_a_bridge_event_whose_row_is_gone(world: CalendarWorld, both: Pusher):
    await both.post(change())
    rows = world.tables.repo(HostAppointment)
    row = await both.row("A-1")
    await rows.delete(row)
    await both.queue.send(CleanupRequest(TENANT, "d" * 32, RESOURCE, ADELE))
    both.queue.sent[:] = [m for m in both.queue.sent if isinstance(m[0], CleanupRequest)]
    await both.work()
    assert outlook(world) == []


# --- messages -------------------------------------------------------------------------------


def test_messages_round_trip_and_split_to_fit_a_queue_message():
    request = ApplyRequest(
        TENANT, "t" * 32, tuple((f"r{'x' * 250}{i}", f"h{'é' * 250}{i}") for i in range(100))
    )
    parts = split(request)
    assert len(parts) > 1
    assert all(len(encode(p).encode("utf-8")) * 4 / 3 < 64 * 1024 for p in parts)
    assert tuple(i for p in parts for i in p.items) == request.items
    assert decode(encode(parts[0])) == parts[0]
    cleanup = CleanupRequest(TENANT, "t" * 32, RESOURCE, ADELE, attempt=2)
    assert decode(encode(cleanup)) == cleanup


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"kind":"apply","tenantId":"acme","trackingId":"t","items":[["r"]]}',
        '{"kind":"other","tenantId":"a","trackingId":"t"}',
    ],
)
def test_a_malformed_message_is_refused(text: str):
    with pytest.raises(ValueError, match="calendar-push"):
        decode(text)


async def _lose_create_answers(world: CalendarWorld) -> Any:
    real = world.graph.create_event

    async def lose_answer(*args: Any) -> Any:
        await real(*args)
        raise GraphUnavailable("create_event: connection dropped")

    world.graph.create_event = lose_answer  # type: ignore[method-assign,assignment]
    return real


async def test_a_delete_after_a_create_the_bridge_never_heard_of_deletes_that_event(
    world: CalendarWorld, both: Pusher
):
    real = await _lose_create_answers(world)
    await both.post(change(version=1))
    assert len(outlook(world)) == 1  # made, the bridge does not know its id
    world.graph.create_event = real  # type: ignore[method-assign]
    both.queue.take()
    answer = await both.post(
        {"hostAppointmentId": "A-1", "resourceId": RESOURCE, "version": 2, "op": "delete"}
    )
    assert answer["appointments"][0]["result"] == "deleted"
    assert outlook(world) == []


async def test_cleanup_deletes_a_created_event_the_bridge_never_heard_of(world: CalendarWorld, both: Pusher):
    real = await _lose_create_answers(world)
    await both.post(change(version=1))
    world.graph.create_event = real  # type: ignore[method-assign]
    both.queue.take()
    await both.queue.send(CleanupRequest(TENANT, "e" * 32, RESOURCE, ADELE))
    await both.work()
    assert outlook(world) == []
