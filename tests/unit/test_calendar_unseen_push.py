"""Three defects the R1 chaos run found (`tests/integration/test_r1_chaos.py`), each leaving the
host with something Outlook does not show, for good or until the next full round:

1. A pushed event that Outlook loses before any down round saw it. The host learns of it from
   `appointment.pushed` (the down sync does not echo it), and delta reports changes against
   what its last round saw, so an event made and deleted between two rounds was never
   reported: the host kept it until the next full round (up to `CALENDAR_SYNC_WINDOW_SLACK_DAYS`
   later). The push now marks the entry of an event it creates UNSEEN, and an incremental round
   reads the unseen entries it did not hear about (`core.calendar.eventmap`).
2. Two states heard in the wrong order: each worker tells the host before it writes the map, so
   a down round's upsert of what it read before a push could reach the host after the push's
   newer version (or the push's older version after a round's newer Outlook state), and nothing
   ever corrected it. The later writer now finds the newer state stored, marks the entry, and
   the next round sends the newer state again (with an id of its own: the outbox would take
   the first telling's id for a repeat).
3. A PATCH whose answer was lost: its retry meets the bridge's own write as a 412, which the
   conflict rule took for an Outlook edit made after the host's change — that version and every
   later one "lost" to the bridge's own write. A 412 on an event that already shows the version
   is now the update it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.calendar.eventmap import UNSEEN
from core.calendar.push import AppointmentPush
from core.calendar.requests import SyncRequest
from core.calendar.sync import CalendarSync
from core.graph.model import EventChanges
from core.graph.port import GraphGateway
from core.host import Emission
from core.store.records import DEFAULT_CALENDAR, Direction, EventMapEntry, Tenant
from tests.unit.calendar_world import ADELE, RESOURCE, TENANT, CalendarWorld, FakeGraphs

CHANGE = {
    "hostAppointmentId": "A-1",
    "resourceId": RESOURCE,
    "version": 1,
    "subject": "Service visit",
    "start": "2026-03-03T10:00:00",
    "end": "2026-03-03T11:00:00",
    "timeZone": "Europe/Oslo",
}


class _Graphs:
    def __init__(self, world: CalendarWorld) -> None:
        self.world = world

    async def gateway(self, tenant: Tenant) -> GraphGateway:
        return self.world.graph


class _Queue:
    async def send(self, message: object, *, delay: float = 0.0) -> None:
        return None


@pytest.fixture
async def world() -> CalendarWorld:
    world = CalendarWorld()
    await world.setup(Direction.BOTH)
    await world.run()  # the first (full) round: the calendar has a delta link from here on
    return world


async def push(world: CalendarWorld) -> str:
    """The host posts A-1; the id of the event the bridge created for it."""
    tenant = await world.tables.repo(Tenant).get(*Tenant.key(TENANT))
    assert tenant is not None
    pusher = AppointmentPush(world.tables, world.outbox, _Graphs(world), _Queue(), clock=world.clock)
    answer = (await pusher.accept(tenant, CHANGE)).to_dict()
    [item] = answer["appointments"]
    assert (item["status"], item["result"]) == ("applied", "created")
    return str(item["eventId"])


def gets(world: CalendarWorld) -> int:
    """Events read one by one from Graph so far."""
    return sum(1 for operation, _ in world.graph.calls if operation == "get_event")


async def entry(world: CalendarWorld, event_id: str) -> EventMapEntry | None:
    key = EventMapEntry.key(TENANT, RESOURCE, ADELE, DEFAULT_CALENDAR, event_id)
    return await world.tables.repo(EventMapEntry).get(*key)


async def test_a_pushed_event_deleted_in_outlook_before_any_down_round_saw_it_is_deleted_at_the_host(
    world: CalendarWorld,
) -> None:
    """GIVEN a calendar linked both ways, synced (incremental from here on)
    WHEN the host pushes an appointment, and a person deletes its event in Outlook before any
    down round ran
    THEN the next (incremental) round tells the host appointment.deleted for it, with its host
    appointment id, and the event map forgets it."""
    event_id = await push(world)
    world.graph.outlook_delete_event(ADELE, event_id)
    await world.run()
    deleted = [e["data"]["appointment"] for e in await world.events() if e["type"] == "appointment.deleted"]
    assert deleted == [{"eventId": event_id, "seriesId": None, "hostAppointmentId": "A-1"}]
    assert await entry(world, event_id) is None


async def test_a_pushed_event_a_down_round_saw_is_not_checked_again_and_not_echoed(
    world: CalendarWorld,
) -> None:
    """GIVEN an event the bridge pushed
    WHEN down rounds run while it stays in Outlook
    THEN the host hears nothing from them (no echo), the first round marks it seen, and later
    rounds read it from Graph no more;
    AND when a person deletes it after that, delta reports it and the host hears it once."""
    event_id = await push(world)
    fresh = await entry(world, event_id)
    assert fresh is not None
    assert fresh.change_key == UNSEEN
    await world.run()
    seen = await entry(world, event_id)
    assert seen is not None
    [event] = [e for e in world.outlook_view().values() if e.id == event_id]
    assert seen.change_key == event.change_key  # seen by a down round: its real change key
    reads = gets(world)
    await world.run()
    assert gets(world) == reads
    assert [e["type"] for e in await world.events()] == ["appointment.pushed"]
    world.graph.outlook_delete_event(ADELE, event_id)
    await world.run()
    await world.run()
    assert [e["type"] for e in await world.events()] == ["appointment.pushed", "appointment.deleted"]


async def test_an_update_pushed_before_any_down_round_keeps_the_event_unseen(world: CalendarWorld) -> None:
    """GIVEN an event the bridge created and then updated (a newer version) before any down
    round ran
    WHEN a person deletes it in Outlook, and a round runs
    THEN the host hears appointment.deleted: the update did not mark it seen."""
    event_id = await push(world)
    tenant = await world.tables.repo(Tenant).get(*Tenant.key(TENANT))
    assert tenant is not None
    pusher = AppointmentPush(world.tables, world.outbox, _Graphs(world), _Queue(), clock=world.clock)
    await pusher.accept(tenant, CHANGE | {"version": 2, "subject": "Moved visit"})
    world.graph.outlook_delete_event(ADELE, event_id)
    await world.run()
    deleted = [e["data"]["appointment"] for e in await world.events() if e["type"] == "appointment.deleted"]
    assert [d["eventId"] for d in deleted] == [event_id]


async def test_an_outlook_edit_of_a_pushed_event_before_any_round_comes_back_once(
    world: CalendarWorld,
) -> None:
    """GIVEN an event the bridge pushed, edited in Outlook before any down round ran
    WHEN rounds run
    THEN the host hears the edit once (as the same host appointment), and nothing more."""
    event_id = await push(world)
    world.graph.outlook_update_event(ADELE, event_id, EventChanges(subject="Edited in Outlook"))
    await world.run()
    await world.run()
    upserted = [e["data"]["appointment"] for e in await world.events() if e["type"] == "appointment.upserted"]
    assert [(u["eventId"], u["hostAppointmentId"], u["subject"]) for u in upserted] == [
        (event_id, "A-1", "Edited in Outlook")
    ]


# --- the host hearing two states in the wrong order (also found by the R1 chaos run) -----------


class _Hooked:
    """The fake Graph, with something happening right after a PATCH lands (before the push
    worker hears the answer)."""

    def __init__(self, world: CalendarWorld) -> None:
        self.world = world
        self.after_update: Callable[[], Awaitable[None]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.world.graph, name)

    async def update_event(self, *args: Any, **kwargs: Any) -> Any:
        event = await self.world.graph.update_event(*args, **kwargs)
        hook, self.after_update = self.after_update, None
        if hook is not None:
            await hook()
        return event


class _HookedGraphs:
    def __init__(self, graph: _Hooked) -> None:
        self.graph = graph

    async def gateway(self, tenant: Tenant) -> Any:
        return self.graph


async def host_heard(world: CalendarWorld, event_id: str) -> str:
    """The subject the host holds for the event: the last upserted, or the content of the last
    version the bridge told it it pushed (what a host folding the feed in order holds)."""
    subject = ""
    for event in await world.events():
        data = event["data"]
        if event["type"] == "appointment.upserted" and data["appointment"]["eventId"] == event_id:
            subject = data["appointment"]["subject"]
        elif event["type"] == "appointment.pushed" and data.get("eventId") == event_id:
            subject = str(SUBJECTS[data["version"]])
    return subject


SUBJECTS = {1: "Service visit", 2: "Moved visit"}


async def test_a_person_edit_reported_before_the_push_that_preceded_it_is_sent_again(
    world: CalendarWorld,
) -> None:
    """GIVEN an event the bridge pushed, seen by a down round
    WHEN the host's next version is written (PATCH lands), then a person edits the event and a
    down round reports that edit — all before the push worker hears the PATCH's answer, so its
    appointment.pushed reaches the host after the person's edit
    THEN the next round sends the person's edit again: the host ends with what Outlook shows."""
    event_id = await push(world)
    await world.run()
    tenant = await world.tables.repo(Tenant).get(*Tenant.key(TENANT))
    assert tenant is not None
    graph = _Hooked(world)
    pusher = AppointmentPush(world.tables, world.outbox, _HookedGraphs(graph), _Queue(), clock=world.clock)

    async def person_edits_and_a_round_runs() -> None:
        world.graph.outlook_update_event(ADELE, event_id, EventChanges(subject="Edited in Outlook"))
        await world.run()

    graph.after_update = person_edits_and_a_round_runs
    await pusher.accept(tenant, CHANGE | {"version": 2, "subject": SUBJECTS[2]})
    assert await host_heard(world, event_id) == SUBJECTS[2]  # the pushed v2 came last: stale
    await world.run()
    assert await host_heard(world, event_id) == "Edited in Outlook"
    assert world.outlook_view()[event_id].subject == "Edited in Outlook"


async def test_an_outlook_state_read_before_a_push_and_reported_after_it_is_corrected(
    world: CalendarWorld,
) -> None:
    """GIVEN an event the bridge pushed, seen by a down round, then edited by a person
    WHEN a down round reads that edit, but before it tells the host, the host's next version is
    pushed (it wins: it is later) and told — so the round's appointment.upserted of the
    person's edit reaches the host after the newer version
    THEN the next round sends the newer version again: the host ends with what Outlook shows."""
    event_id = await push(world)
    await world.run()
    world.graph.outlook_update_event(ADELE, event_id, EventChanges(subject="Edited in Outlook"))
    found = await world.tables.repo(Tenant).get(*Tenant.key(TENANT))
    assert found is not None
    tenant: Tenant = found
    pusher = AppointmentPush(world.tables, world.outbox, _Graphs(world), _Queue(), clock=world.clock)
    outbox = world.outbox

    class PushFirst:
        """The outbox, but the host's next version is pushed just before the round's news."""

        pushed = False

        async def emit_many(self, tenant_id: str, events: Sequence[Emission], *, nudge: bool = True) -> Any:
            if not self.pushed and any(e.type == "appointment.upserted" for e in events):
                self.pushed = True
                later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
                await pusher.accept(
                    tenant, CHANGE | {"version": 2, "subject": SUBJECTS[2], "modifiedAt": later}
                )
            return await outbox.emit_many(tenant_id, events, nudge=nudge)

    sync = CalendarSync(
        world.tables, PushFirst(), FakeGraphs(world.graph), world.policy, clock=world.clock, page_size=3
    )
    await sync.run(SyncRequest(TENANT, RESOURCE))
    assert await host_heard(world, event_id) == "Edited in Outlook"  # the older news came last
    await world.run()
    assert await host_heard(world, event_id) == SUBJECTS[2]
    assert world.outlook_view()[event_id].subject == SUBJECTS[2]


# --- a lost answer to the bridge's own write (also found by the R1 chaos run) -------------------


async def test_a_version_whose_patch_landed_unheard_is_not_taken_for_an_outlook_edit(
    world: CalendarWorld,
) -> None:
    """GIVEN an event the bridge pushed, and the host's versions 2 and 3 made before the bridge
    writes them (their modifiedAt is earlier than any write of theirs)
    WHEN version 2's PATCH lands but its answer is lost, so the retry meets the bridge's own
    write as a 412 (played here by writing version 2's content first)
    THEN version 2 counts as updated (not "Outlook won"), and version 3 is written after it:
    Outlook shows version 3."""
    event_id = await push(world)
    tenant = await world.tables.repo(Tenant).get(*Tenant.key(TENANT))
    assert tenant is not None
    pusher = AppointmentPush(world.tables, world.outbox, _Graphs(world), _Queue(), clock=world.clock)
    made = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    world.graph.outlook_update_event(ADELE, event_id, EventChanges(subject="Version 2"))  # landed, unheard
    second = await pusher.accept(tenant, CHANGE | {"version": 2, "subject": "Version 2", "modifiedAt": made})
    third = await pusher.accept(tenant, CHANGE | {"version": 3, "subject": "Version 3", "modifiedAt": made})
    assert [
        (a["status"], a["result"])
        for a in (*second.to_dict()["appointments"], *third.to_dict()["appointments"])
    ] == [
        ("applied", "updated"),
        ("applied", "updated"),
    ]
    assert world.outlook_view()[event_id].subject == "Version 3"


async def test_a_push_told_after_a_round_recorded_a_later_edit_over_it_is_corrected(
    world: CalendarWorld,
) -> None:
    """GIVEN the host's new appointment, whose create lands in Outlook
    WHEN, before the push worker records and tells it, a person moves the event and a down round
    reports the move (its upsert, found through the transactionId) — the push then records its
    own state, the round writes its later one over it, and only then is appointment.pushed told
    THEN the next round sends the person's move again: the host ends with what Outlook shows."""
    found = await world.tables.repo(Tenant).get(*Tenant.key(TENANT))
    assert found is not None
    tenant: Tenant = found
    emitted, resume = asyncio.Event(), asyncio.Event()
    outbox = world.outbox
    rounds: list[asyncio.Task[Any]] = []

    class RoundWaits:
        """The round's outbox: after telling the host, it waits (before writing the map)."""

        async def emit_many(self, tenant_id: str, events: Sequence[Emission], *, nudge: bool = True) -> Any:
            done = await outbox.emit_many(tenant_id, events, nudge=nudge)
            if any(e.type == "appointment.upserted" for e in events):
                emitted.set()
                await resume.wait()
            return done

    class PushWaits:
        """The push's outbox: before telling the host, it lets the round finish."""

        async def emit_many(self, tenant_id: str, events: Sequence[Emission], *, nudge: bool = True) -> Any:
            resume.set()
            await asyncio.gather(*rounds)
            return await outbox.emit_many(tenant_id, events, nudge=nudge)

    sync = CalendarSync(
        world.tables, RoundWaits(), FakeGraphs(world.graph), world.policy, clock=world.clock, page_size=3
    )

    class CreateLands:
        """The fake Graph; right after the create lands, a person moves it and a round starts."""

        def __getattr__(self, name: str) -> Any:
            return getattr(world.graph, name)

        async def create_event(self, *args: Any, **kwargs: Any) -> Any:
            event = await world.graph.create_event(*args, **kwargs)
            moved = event.start + timedelta(days=1)
            world.graph.outlook_update_event(
                ADELE, event.id, EventChanges(start=moved, end=moved + timedelta(hours=1))
            )
            rounds.append(asyncio.create_task(sync.run(SyncRequest(TENANT, RESOURCE))))
            await emitted.wait()
            return event

    class Graphs:
        async def gateway(self, tenant: Tenant) -> Any:
            return CreateLands()

    pusher = AppointmentPush(world.tables, PushWaits(), Graphs(), _Queue(), clock=world.clock)
    answer = (await pusher.accept(tenant, CHANGE)).to_dict()
    event_id = answer["appointments"][0]["eventId"]
    types = [e["type"] for e in await world.events()]
    assert types == ["appointment.upserted", "appointment.pushed"]  # the older news came last
    await world.run()
    # what the host holds: the last it heard of the event, which must be Outlook's state
    [*_, last] = await world.events()
    assert last["type"] == "appointment.upserted"
    outlook = world.outlook_view()[event_id]
    assert last["data"]["appointment"]["start"]["utc"] == outlook.start.strftime("%Y-%m-%dT%H:%M:%SZ")
