"""The down-sync worker over the in-memory Graph and tables: what the host receives, and what
happens when Graph, the store or concurrency get in the way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest

from core.calendar.cleanup import forget_unlinked_calendars
from core.calendar.fanout import fan_out, request_resource_sync
from core.calendar.requests import InMemorySyncQueue, SyncBatch, SyncRequest
from core.calendar.sync import MAX_ATTEMPTS, CalendarSyncFailed, run_queued
from core.errors import StoreUnavailable
from core.graph.errors import ConsentMissing, GraphUnavailable, MalformedItem, SyncStateExpired, Throttled
from core.graph.model import DeltaPage, Event, EventChanges, EventDraft, Sensitivity
from core.graph.port import GraphGateway
from core.housekeeping import housekeeping
from core.request_errors import ItemNotFound
from core.store import codec
from core.store.records import (
    DEFAULT_CALENDAR,
    CalendarSyncState,
    Direction,
    EventMapEntry,
    EventTransaction,
    LinkedAccount,
    Origin,
    Run,
    RunStatus,
    Subscription,
    SubscriptionKind,
    SubscriptionStatus,
    SyncStatus,
    Tenant,
    subscription_target,
)
from tests.unit.calendar_world import ADELE, GRADY, RESOURCE, T0, TENANT, CalendarWorld


@pytest.fixture
async def world() -> CalendarWorld:
    w = CalendarWorld()
    await w.setup()
    return w


async def _state(
    world: CalendarWorld, account: str = ADELE, calendar: str = DEFAULT_CALENDAR
) -> CalendarSyncState:
    state = await world.tables.repo(CalendarSyncState).get(
        *CalendarSyncState.key(TENANT, RESOURCE, account, calendar)
    )
    assert state is not None
    return state


async def _runs(world: CalendarWorld) -> list[Run]:
    return [r async for r in world.tables.runs().list(TENANT)]


def _converged(host: dict[str, dict[str, Any]], outlook: dict[str, Event]) -> bool:
    return set(host) == set(outlook) and all(host[i]["subject"] == e.subject for i, e in outlook.items())


async def test_given_outlook_changes_then_the_host_gets_exactly_those_events(world: CalendarWorld):
    """GIVEN seven events WHEN synced, then one edited, one deleted, one created in Outlook
    THEN the first run upserts seven, the next only the three changes, a quiet run nothing."""
    ids = [world.create(f"Visit {i}", T0 + timedelta(days=1, hours=i)).id for i in range(7)]
    first = await world.run()
    assert first is not None
    assert (first.counts["upserted"], first.counts["full_rounds"]) == (7, 1)
    assert first.counts["pages"] == 3  # page size 3: every page followed

    world.graph.outlook_update_event(ADELE, ids[0], EventChanges(subject="Visit 0 (moved)"))
    world.graph.outlook_delete_event(ADELE, ids[1])
    new = world.create("New visit", T0 + timedelta(days=2))
    before = len(await world.events())
    second = await world.run()
    assert second is not None
    assert (
        second.counts.get("upserted"),
        second.counts.get("deleted"),
        second.counts.get("full_rounds"),
    ) == (
        2,
        1,
        None,
    )
    changes = (await world.events())[before:]
    assert [(e["type"], e["data"]["appointment"]["eventId"]) for e in changes] == [
        ("appointment.upserted", ids[0]),
        ("appointment.upserted", new.id),
        ("appointment.deleted", ids[1]),
    ]
    assert changes[0]["data"]["resourceId"] == RESOURCE
    count = len(await world.events())
    quiet = await world.run()
    assert quiet is not None
    assert "upserted" not in quiet.counts
    assert len(await world.events()) == count
    assert _converged(await world.host_view(), world.outlook_view())


async def test_given_a_series_then_occurrences_arrive_and_one_deleted_occurrence_deletes_only_it(
    world: CalendarWorld,
):
    draft = EventDraft(
        subject="Standup", start=T0 + timedelta(days=1), end=T0 + timedelta(days=1, minutes=15)
    )
    master = world.graph.outlook_create_daily_series(ADELE, None, draft, count=5)
    await world.run()
    host = await world.host_view()
    assert len(host) == 5
    assert {a["seriesId"] for a in host.values()} == {master}
    occurrences = sorted(host, key=lambda i: host[i]["start"]["utc"])
    world.graph.outlook_update_event(ADELE, occurrences[1], EventChanges(subject="Standup (longer)"))
    world.graph.outlook_delete_event(ADELE, occurrences[2])
    await world.run()
    host = await world.host_view()
    assert len(host) == 4
    assert occurrences[2] not in host
    assert host[occurrences[1]]["subject"] == "Standup (longer)"
    assert host[occurrences[1]]["type"] == "exception"
    assert _converged(host, world.outlook_view())


async def test_given_a_private_event_then_the_host_sees_a_placeholder(world: CalendarWorld):
    event = world.create("Doctor", T0 + timedelta(days=1), sensitivity=Sensitivity.PRIVATE, body="results")
    await world.run()
    seen = (await world.host_view())[event.id]
    assert (seen["subject"], seen["bodyPreview"], seen["readOnly"]) == ("Private appointment", "", True)
    assert "Doctor" not in str(await world.events())


async def test_given_an_expired_delta_state_then_a_full_resync_reconciles_without_duplicates(
    world: CalendarWorld,
):
    ids = [world.create(f"Visit {i}", T0 + timedelta(days=1, hours=i)).id for i in range(5)]
    await world.run()
    world.graph.outlook_update_event(ADELE, ids[0], EventChanges(subject="Edited"))
    world.graph.outlook_delete_event(ADELE, ids[1])
    world.graph.expire_delta_links(ADELE)
    before = await world.events()
    run = await world.run()
    assert run is not None
    assert run.counts["delta_state_expired"] == 1
    after = (await world.events())[len(before) :]
    assert [(e["type"], e["data"]["appointment"]["eventId"]) for e in after] == [
        ("appointment.upserted", ids[0]),
        ("appointment.deleted", ids[1]),
    ]
    assert run.counts.get("unchanged", 0) == 0  # the three untouched events were not even touched
    assert _converged(await world.host_view(), world.outlook_view())


async def test_given_a_fault_while_paging_then_nothing_is_lost_or_duplicated(world: CalendarWorld):
    ids = [world.create(f"Visit {i}", T0 + timedelta(days=1, hours=i)).id for i in range(8)]
    world.graph.inject(
        ADELE, GraphUnavailable("calendar_delta: Graph failed (HTTP 503)", status=503), times=1
    )
    with pytest.raises(CalendarSyncFailed) as failed:
        await world.run()
    assert failed.value.retryable
    assert (await _state(world)).delta_link is None  # nothing stored: the next run starts over
    await world.run()
    assert _converged(await world.host_view(), world.outlook_view())
    # page 2 of the first round fails after page 1 was applied
    world.graph.outlook_update_event(ADELE, ids[0], EventChanges(subject="Edited"))
    world.graph.expire_delta_links(ADELE)
    link_before = (await _state(world)).delta_link

    _failing_on_page(world, 2, GraphUnavailable("calendar_delta: connection dropped"))
    before = await world.events()
    with pytest.raises(CalendarSyncFailed):
        await world.run()
    assert (await _state(world)).delta_link == link_before
    assert set(await world.host_view()) == set(ids)  # a failed full round deleted nothing
    await world.run()
    after = (await world.events())[len(before) :]
    upserts = [e["data"]["appointment"]["eventId"] for e in after if e["type"] == "appointment.upserted"]
    assert upserts == [ids[0]]  # the edit, once, although its page was read twice
    assert _converged(await world.host_view(), world.outlook_view())


async def test_given_a_crash_between_the_host_event_and_the_map_then_the_retry_emits_nothing_new(
    world: CalendarWorld, monkeypatch: pytest.MonkeyPatch
):
    world.create("Visit", T0 + timedelta(days=1))
    repo_type = type(world.tables.repo(EventMapEntry))
    real_insert = repo_type.insert
    failures = {"left": 1}

    async def crashing(self: Any, record: Any) -> Any:
        if isinstance(record, EventMapEntry) and failures["left"]:
            failures["left"] -= 1
            raise StoreUnavailable("table service unavailable")
        return await real_insert(self, record)

    monkeypatch.setattr(repo_type, "insert", crashing)
    with pytest.raises(CalendarSyncFailed) as failed:
        await world.run()
    assert failed.value.retryable
    await world.run()
    assert len(await world.events()) == 1


async def test_given_no_consent_then_the_run_fails_in_plain_words_and_deletes_nothing(world: CalendarWorld):
    world.create("Visit", T0 + timedelta(days=1))
    await world.run()
    world.clock.advance(timedelta(minutes=15))  # so the failed run is the newest
    world.graph.expire_delta_links(ADELE)
    world.graph.inject(
        ADELE,
        ConsentMissing(
            "calendar_delta for mailbox 'adele@acme.example': admin consent missing for Calendars.Read",
            permission="Calendars.Read",
            status=403,
        ),
        times=2,
    )
    with pytest.raises(CalendarSyncFailed) as failed:
        await world.run()
    assert not failed.value.retryable  # a person must act: the queue message is done
    assert len(await world.host_view()) == 1
    [latest, *_] = await _runs(world)
    assert latest.status is RunStatus.FAILED
    assert latest.error is not None
    assert "admin consent missing for Calendars.Read" in latest.error
    state = await _state(world)
    assert (state.status, state.consecutive_failures, state.lease_owner) == (SyncStatus.FAILED, 1, None)
    assert state.error is not None
    assert "Calendars.Read" in state.error


async def test_given_concurrent_requests_then_one_worker_syncs_and_the_rest_coalesce(world: CalendarWorld):
    world.create("Visit", T0 + timedelta(days=1))
    world.graph.latency = 0.02
    runs = await asyncio.gather(*(world.run() for _ in range(4)))
    counts = [r.counts for r in runs if r is not None]
    assert sum(c.get("calendars_coalesced", 0) for c in counts) == 3
    assert sum(c.get("upserted", 0) for c in counts) == 1
    assert sum(c.get("full_rounds", 0) for c in counts) == 1
    # the holder ran at least once more for the others (once more per request that came while
    # it was already on its extra round), never a round per request in parallel
    assert 2 <= sum(c.get("pages", 0) for c in counts) <= 4
    state = await _state(world)
    assert (state.lease_owner, state.rerun_requested, state.status) == (None, False, SyncStatus.OK)


async def test_given_an_expired_lease_then_another_worker_may_take_over(world: CalendarWorld):
    world.create("Visit", T0 + timedelta(days=1))
    repo = world.tables.repo(CalendarSyncState)
    stuck = CalendarSyncState(
        tenant_id=TENANT, resource_id=RESOURCE, account=ADELE, lease_owner="dead-worker", lease_until=T0
    )
    await repo.insert(stuck)
    world.clock.advance(timedelta(seconds=1))
    run = await world.run()
    assert run is not None
    assert run.counts.get("upserted") == 1


async def test_given_the_window_rolls_then_one_full_round_and_aged_out_events_stay_in_the_host(
    world: CalendarWorld,
):
    old = world.create("Yesterday", T0 - timedelta(days=1))
    far = world.create("Beyond today's window", T0 + timedelta(days=40))
    await world.run()
    host = await world.host_view()
    assert old.id in host
    assert far.id not in host
    world.clock.advance(timedelta(days=7))  # still inside the slack: incremental
    assert (await world.run()).counts.get("full_rounds") is None  # type: ignore[union-attr]
    world.clock.advance(timedelta(days=8))
    run = await world.run()
    assert run is not None
    assert run.counts["full_rounds"] == 1
    assert run.counts.get("deleted") is None
    assert run.counts["aged_out"] == 1
    host = await world.host_view()
    assert old.id in host  # the host keeps its history
    assert far.id in host  # the window moved forward over it
    assert run.counts["upserted"] == 1  # only the newcomer: the rest was not re-sent


async def test_given_several_calendars_and_directions_then_down_ones_sync_and_the_rest_are_skipped():
    world = CalendarWorld()
    await world.add_tenant()
    board = world.graph.add_calendar(ADELE, "Board room")
    world.graph.outlook_create_event(
        ADELE,
        board.id,
        EventDraft(subject="Board", start=T0 + timedelta(days=1), end=T0 + timedelta(days=1, hours=1)),
    )
    world.create("Adele's own", T0 + timedelta(days=2))
    world.graph.outlook_create_event(
        GRADY,
        None,
        EventDraft(subject="Grady's", start=T0 + timedelta(days=3), end=T0 + timedelta(days=3, hours=1)),
    )
    await world.link(
        LinkedAccount(account=ADELE, direction=Direction.BOTH, calendars=["default", "board ROOM"]),
        LinkedAccount(account=GRADY, direction=Direction.NONE),
    )
    run = await world.run()
    assert run is not None
    assert (run.counts["calendars_synced"], run.counts["calendars_skipped_not_down"]) == (2, 1)
    subjects = sorted(a["subject"] for a in (await world.host_view()).values())
    assert subjects == ["Adele's own", "Board"]
    calendars = sorted(e["data"]["calendar"] for e in await world.events())
    assert calendars == ["board ROOM", "default"]
    state = await _state(world, ADELE, "board ROOM")
    assert state.calendar_id == board.id  # resolved once, then kept


async def test_given_a_missing_calendar_name_then_the_run_says_so(world: CalendarWorld):
    await world.link(LinkedAccount(account=ADELE, direction=Direction.DOWN, calendars=["Nope"]))
    with pytest.raises(CalendarSyncFailed) as failed:
        await world.run()
    assert "has no calendar named 'Nope'" in str(failed.value)
    assert not failed.value.retryable


async def test_given_an_event_the_bridge_wrote_then_it_comes_back_as_its_host_appointment(
    world: CalendarWorld,
):
    await world.tables.repo(EventTransaction).insert(
        EventTransaction(
            tenant_id=TENANT,
            account=ADELE,
            transaction_id="tx-7",
            resource_id=RESOURCE,
            host_appointment_id="H-7",
            version=3,
        )
    )
    draft = EventDraft(
        subject="From the ERP", start=T0 + timedelta(days=1), end=T0 + timedelta(days=1, hours=1)
    )
    created = await world.graph.create_event(ADELE, None, draft, "tx-7")
    await world.run()
    [event] = await world.events()
    assert event["data"]["appointment"]["hostAppointmentId"] == "H-7"
    [entry] = await world.map_entries()
    assert (entry.event_id, entry.origin, entry.version, entry.host_appointment_id) == (
        created.id,
        Origin.BRIDGE,
        3,
        "H-7",
    )
    world.graph.outlook_update_event(ADELE, created.id, EventChanges(subject="Edited in Outlook"))
    await world.run()
    edit = (await world.events())[-1]["data"]["appointment"]
    assert (edit["hostAppointmentId"], edit["subject"]) == ("H-7", "Edited in Outlook")


@dataclass
class RejectingGraphs:
    """A gateway whose delta pages also carry one item that could not be parsed."""

    graph: GraphGateway
    on: bool = True

    async def gateway(self, tenant: Tenant) -> GraphGateway:
        outer = self

        class Wrapped:
            def __getattr__(self, name: str) -> Any:
                return getattr(outer.graph, name)

            def calendar_delta(self, *args: Any, **kw: Any) -> AsyncIterator[DeltaPage[Event]]:
                async def pages() -> AsyncIterator[DeltaPage[Event]]:
                    async for page in outer.graph.calendar_delta(*args, **kw):
                        bad = (MalformedItem("event", "start is not a date", item_id="AAMkBAD"),)
                        yield replace(page, rejected=bad) if outer.on else page

                return pages()

        return Wrapped()


async def test_given_an_unreadable_item_then_the_link_is_not_advanced_and_nothing_is_deleted(
    world: CalendarWorld,
):
    event = world.create("Visit", T0 + timedelta(days=1))
    graphs = RejectingGraphs(world.graph)
    sync = world.sync()
    sync._graphs = graphs
    with pytest.raises(CalendarSyncFailed) as failed:
        await sync.run(SyncRequest(TENANT, RESOURCE))
    assert "AAMkBAD" in str(failed.value)
    assert "not advanced" in str(failed.value)
    assert (await _state(world)).delta_link is None
    assert event.id in await world.host_view()  # the readable items were applied
    graphs.on = False
    await sync.run(SyncRequest(TENANT, RESOURCE))
    assert (await _state(world)).delta_link is not None
    assert len(await world.events()) == 1


async def test_given_a_missing_or_disabled_tenant_then_the_request_is_dropped_without_a_run(
    world: CalendarWorld,
):
    assert await world.sync().run(SyncRequest("ghost", RESOURCE)) is None
    tenant = await world.tables.repo(Tenant).get(*Tenant.key(TENANT))
    assert tenant is not None
    await world.tables.repo(Tenant).save(tenant.model_copy(update={"enabled": False}))
    assert await world.run() is None
    assert await _runs(world) == []


async def test_given_links_then_the_timer_queues_one_request_per_down_calendar(world: CalendarWorld):
    await world.link(
        LinkedAccount(account=ADELE, direction=Direction.DOWN, calendars=["default", "Board"]),
        LinkedAccount(account=GRADY, direction=Direction.UP),
        resource_id="room-5",
    )
    await world.tables.repo(Tenant).insert(Tenant(tenant_id="off", enabled=False))
    queue = InMemorySyncQueue()
    run = await fan_out(world.tables, queue, clock=world.clock)
    [batch] = queue.sent
    assert isinstance(batch, SyncBatch)
    assert batch.tenant_id == TENANT
    assert sorted(batch.calendars) == [
        (RESOURCE, ADELE, "default"),
        ("room-5", ADELE, "Board"),
        ("room-5", ADELE, "default"),
    ]
    assert run.counts == {"tenants": 1, "calendars_queued": 3, "batches_queued": 1}
    manual = await request_resource_sync(world.tables, queue, TENANT, "room-5")
    assert queue.sent[-1] == SyncRequest(TENANT, "room-5", run_id=manual.run_id, reason="manual")
    assert manual.skipped == [{"account": GRADY, "calendar": "default", "reason": "direction is up"}]
    with pytest.raises(ItemNotFound):
        await request_resource_sync(world.tables, queue, TENANT, "unknown")


async def test_given_healthy_subscriptions_then_the_timer_leaves_recently_synced_calendars_alone(
    world: CalendarWorld,
):
    """GIVEN three calendars: one with a healthy subscription synced 2 h ago, one with a healthy
    subscription last synced 7 h ago, one whose subscription expired WHEN the timer runs with a
    6 h safety net THEN only the first is left alone; without the safety net (0) all are read."""
    await world.link(
        LinkedAccount(account=ADELE, direction=Direction.DOWN, calendars=["default", "Board", "Leave"]),
    )
    now = world.clock()
    synced = {"default": now - timedelta(hours=2), "Board": now - timedelta(hours=7), "Leave": now}
    for calendar, last in synced.items():
        state = CalendarSyncState(
            tenant_id=TENANT, resource_id=RESOURCE, account=ADELE, calendar=calendar, last_success_at=last
        )
        await world.tables.repo(CalendarSyncState).upsert(state)
        expiration = now + (timedelta(hours=-1) if calendar == "Leave" else timedelta(days=2))
        await world.tables.repo(Subscription).upsert(
            Subscription(
                tenant_id=TENANT,
                target=subscription_target(SubscriptionKind.CALENDAR, RESOURCE, ADELE, calendar),
                kind=SubscriptionKind.CALENDAR,
                mailbox=ADELE,
                subscription_id="s-" + calendar,
                expiration=expiration,
                status=SubscriptionStatus.ACTIVE,
            )
        )
    queue = InMemorySyncQueue()
    run = await fan_out(world.tables, queue, clock=world.clock, subscribed_poll=timedelta(hours=6))
    assert sorted(c for b in queue.sent if isinstance(b, SyncBatch) for _, _, c in b.calendars) == [
        "Board",
        "Leave",
    ]
    assert run.counts == {
        "tenants": 1,
        "calendars_queued": 2,
        "batches_queued": 1,
        "calendars_covered_by_notifications": 1,
    }
    everything = InMemorySyncQueue()
    await fan_out(world.tables, everything, clock=world.clock)
    assert [len(b.calendars) for b in everything.sent if isinstance(b, SyncBatch)] == [3]


def test_given_queue_messages_then_requests_round_trip_and_garbage_is_refused():
    request = SyncRequest(TENANT, RESOURCE, ADELE, "default", run_id="r1", reason="manual")
    assert SyncRequest.parse(request.to_message()) == request
    for bad in ("nope", "[]", '{"tenantId": "t"}', '{"tenantId": "t", "resourceId": "r", "account": "a"}'):
        with pytest.raises(ValueError, match=r"calendar-sync message|names"):
            SyncRequest.parse(bad)


async def test_given_an_unlinked_calendar_then_housekeeping_forgets_its_state_but_keeps_paused_ones(
    world: CalendarWorld,
):
    world.create("Visit", T0 + timedelta(days=1))
    world.graph.outlook_create_event(
        GRADY,
        None,
        EventDraft(subject="Grady's", start=T0 + timedelta(days=1), end=T0 + timedelta(days=1, hours=1)),
    )
    await world.link(
        LinkedAccount(account=ADELE, direction=Direction.DOWN),
        LinkedAccount(account=GRADY, direction=Direction.DOWN),
    )
    await world.run()
    assert len(await world.map_entries()) == 2
    # Grady is paused, Adele is unlinked
    await world.link(LinkedAccount(account=GRADY, direction=Direction.NONE))
    run = await housekeeping(world.tables.runs(), 30, clock=world.clock, outbox=world.tables)
    assert run.counts["unlinked_calendar_rows_removed"] == 2  # Adele's state row and her map entry
    [entry] = await world.map_entries()
    assert entry.account == GRADY
    states = [s async for s in world.tables.repo(CalendarSyncState).list(TENANT)]
    assert [s.account for s in states] == [GRADY]
    assert await forget_unlinked_calendars(world.tables, TENANT, world.clock()) == 0


async def test_a_sync_state_stored_under_an_earlier_key_is_forgotten_and_its_map_kept(world: CalendarWorld):
    """Sync states were keyed by the calendar's scope alone before the timer's batches put the
    resource first: such a row is removed (its calendar resyncs under the current key, and the
    event map, keyed by scope, still knows every event, so the host hears nothing again)."""
    world.create("Visit", T0 + timedelta(days=1))
    await world.run()
    [state] = [s async for s in world.tables.repo(CalendarSyncState).list(TENANT)]
    store = world.tables.store(CalendarSyncState)
    await store.insert(state.partition_key, state.scope, codec.encode(state))  # the old layout
    assert await forget_unlinked_calendars(world.tables, TENANT, world.clock()) == 1
    assert [row.row_key async for row in store.query(state.partition_key)] == [state.row_key]
    assert len(await world.map_entries()) == 1
    before = len(await world.events())
    await world.run()
    assert len(await world.events()) == before


def _failing_on_page(world: CalendarWorld, page_number: int, error: Exception, times: int = 1) -> None:
    """Make the fake's calendar_delta raise `error` when page `page_number` is due, `times` times."""
    real = world.graph.calendar_delta
    left = {"n": times}

    def flaky(*args: Any, **kw: Any) -> AsyncIterator[DeltaPage[Event]]:
        async def pages() -> AsyncIterator[DeltaPage[Event]]:
            number = 0
            async for page in real(*args, **kw):
                number += 1
                if number == page_number and left["n"]:
                    left["n"] -= 1
                    raise error
                yield page

        return pages()

    world.graph.calendar_delta = flaky  # type: ignore[method-assign]


async def test_given_the_paging_state_expiring_inside_a_full_round_then_the_round_starts_over(
    world: CalendarWorld,
):
    for i in range(7):
        world.create(f"Visit {i}", T0 + timedelta(days=1, hours=i))
    _failing_on_page(
        world, 2, SyncStateExpired("calendar_delta: the delta state expired (HTTP 410)", status=410)
    )
    run = await world.run()
    assert run is not None
    assert (run.counts["full_rounds"], run.counts["delta_state_expired"], run.counts["upserted"]) == (2, 1, 7)
    assert len(await world.events()) == 7  # page 1 applied twice, delivered once
    assert (await _state(world)).delta_link is not None


async def test_given_a_long_retry_after_then_the_request_is_requeued_with_that_delay(world: CalendarWorld):
    world.create("Visit", T0 + timedelta(days=1))
    queue = InMemorySyncQueue()
    delays: list[float] = []
    real_send = queue.send

    async def send(request: SyncRequest | SyncBatch, *, delay: float = 0.0) -> None:
        delays.append(delay)
        await real_send(request, delay=delay)

    queue.send = send  # type: ignore[method-assign]
    throttled = Throttled("calendar_delta: throttled by Graph (HTTP 429)", retry_after=120, status=429)
    request = SyncRequest(TENANT, RESOURCE, run_id="r1")
    world.graph.inject(ADELE, throttled)
    await run_queued(world.sync(), queue, request)  # the message is done: a delayed copy waits
    world.clock.advance(timedelta(minutes=1))  # each attempt records its own run row
    assert (queue.sent, delays) == ([replace(request, attempt=1)], [120])
    world.graph.inject(ADELE, throttled)
    with pytest.raises(CalendarSyncFailed):  # the last attempt goes back to the queue's own retry
        await run_queued(world.sync(), queue, replace(request, attempt=MAX_ATTEMPTS - 1))
    world.clock.advance(timedelta(minutes=1))
    world.graph.inject(ADELE, Throttled("throttled", retry_after=2, status=429))
    with pytest.raises(CalendarSyncFailed):  # short advice: the queue's own retry is soon enough
        await run_queued(world.sync(), queue, request)
    world.clock.advance(timedelta(minutes=1))
    world.graph.inject(ADELE, ConsentMissing("no consent", permission="Calendars.Read", status=403))
    await run_queued(world.sync(), queue, request)  # a person must act: done, not retried
    assert len(queue.sent) == 1
    world.clock.advance(timedelta(minutes=1))
    await run_queued(world.sync(), queue, request)
    assert len(await world.events()) == 1


async def test_given_many_events_then_the_dispatcher_is_nudged_once_per_page(world: CalendarWorld):
    for i in range(7):
        world.create(f"Visit {i}", T0 + timedelta(days=1, hours=i))
    await world.run()
    assert len(world.queue.nudges) == 3  # three pages of three, three and one
