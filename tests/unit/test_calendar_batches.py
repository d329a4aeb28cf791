"""The timer's batches: up to 50 calendars of a tenant per queue message, their sync states read
with one range query and their leases taken and released with one Table transaction each —
with the one-calendar path's guarantees kept (coalescing, reruns, failures, retries)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from core.calendar.fanout import fan_out
from core.calendar.requests import (
    BATCH_SIZE,
    InMemorySyncQueue,
    SyncBatch,
    SyncRequest,
    batches,
    parse_message,
)
from core.calendar.sync import QUEUE_RETRY_SECONDS, CalendarSyncFailed, run_queued
from core.graph.errors import GraphUnavailable
from core.graph.fake import InMemoryGraph
from core.store.memory_table import MemoryTableStore
from core.store.records import (
    CalendarSyncState,
    Direction,
    LinkedAccount,
    SyncStatus,
    sync_state_key,
)
from tests.unit.calendar_world import ADELE, GRADY, T0, TENANT, CalendarWorld

ROOMS = ["room-1", "room-2", "room-3"]


async def linked_world(graph: InMemoryGraph | None = None) -> CalendarWorld:
    """Three resources, each linking Adele's and Grady's default calendar down, with events."""
    world = CalendarWorld(graph=graph) if graph else CalendarWorld()
    await world.add_tenant()
    for room in ROOMS:
        await world.link(
            LinkedAccount(account=ADELE, direction=Direction.DOWN),
            LinkedAccount(account=GRADY, direction=Direction.DOWN),
            resource_id=room,
        )
    world.create("Adele's visit", T0 + timedelta(days=1))
    world.create("Grady's review", T0 + timedelta(days=2), mailbox=GRADY)
    return world


async def timer_batch(world: CalendarWorld) -> SyncBatch:
    queue = InMemorySyncQueue()
    await fan_out(world.tables, queue, clock=world.clock)
    [batch] = queue.sent
    assert isinstance(batch, SyncBatch)
    return batch


async def states(world: CalendarWorld) -> dict[tuple[str, str], CalendarSyncState]:
    return {(s.resource_id, s.account): s async for s in world.tables.repo(CalendarSyncState).list(TENANT)}


class Calls:
    """Counts the sync-state table's calls (every MemoryTableStore method, by name)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        for name in ("get", "insert", "update", "upsert", "query", "write_many", "delete"):
            original = getattr(MemoryTableStore, name)
            monkeypatch.setattr(MemoryTableStore, name, self._wrap(name, original))

    def _wrap(self, name: str, original: Any) -> Any:
        calls = self

        if name == "query":

            def query(store: MemoryTableStore, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                if store.name.endswith("syncstate"):
                    calls.counts[name] += 1
                iterator: AsyncIterator[Any] = original(store, *args, **kwargs)
                return iterator

            return query

        async def method(store: MemoryTableStore, *args: Any, **kwargs: Any) -> Any:
            if store.name.endswith("syncstate"):
                calls.counts[name] += 1
            return await original(store, *args, **kwargs)

        return method


async def test_a_batch_syncs_each_calendar_with_one_query_and_two_transactions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = await linked_world()
    batch = await timer_batch(world)
    assert len(batch.calendars) == 6
    run = await world.sync().run(batch)
    assert run is not None
    assert run.counts["calendars_synced"] == 6
    view = await world.host_view()
    assert sorted(a["subject"] for a in view.values()) == ["Adele's visit", "Grady's review"]
    assert len(await world.events()) == 6  # each of the 3 resources hears of both events
    for state in (await states(world)).values():
        assert (state.status, state.lease_owner, state.delta_link is not None) == (SyncStatus.OK, None, True)

    calls = Calls(monkeypatch)
    world.create("New in Outlook", T0 + timedelta(days=3))
    run = await world.sync().run(await timer_batch(world))
    assert run is not None
    assert run.counts["calendars_synced"] == 6
    assert run.counts["upserted"] == 3  # Adele's new event, once per resource
    assert dict(calls.counts) == {"query": 1, "write_many": 2}  # no per-calendar state reads or writes


async def test_a_calendar_leased_by_another_worker_is_asked_for_a_rerun_not_synced_twice() -> None:
    world = await linked_world()
    await world.sync().run(await timer_batch(world))
    repo = world.tables.repo(CalendarSyncState)
    held = (await states(world))[("room-2", GRADY)]
    await repo.save(
        held.model_copy(update={"lease_owner": "other", "lease_until": world.clock() + timedelta(minutes=5)})
    )
    run = await world.sync().run(await timer_batch(world))
    assert run is not None
    assert (run.counts["calendars_coalesced"], run.counts["calendars_synced"]) == (1, 6)
    after = (await states(world))[("room-2", GRADY)]
    assert (after.lease_owner, after.rerun_requested) == ("other", True)  # its holder runs once more


async def test_a_rerun_asked_for_mid_batch_falls_back_and_runs_it() -> None:
    """A notification asks for a rerun of one calendar while the batch is reading it: the
    batch's release transaction fails on that row, so every calendar is released one at a time
    and that one runs its extra round before letting go."""
    world = await linked_world()
    await world.sync().run(await timer_batch(world))
    repo = world.tables.repo(CalendarSyncState)
    target = sync_state_key("room-3", ADELE, "default")
    graph = world.graph
    original = graph.first_delta_pages

    async def first_pages(starts: Any) -> Any:
        state = await repo.get(TENANT, target)  # a notification arrives while Graph is read
        assert state is not None
        await repo.save(state.model_copy(update={"rerun_requested": True}))
        return await original(starts)

    graph.first_delta_pages = first_pages  # type: ignore[method-assign]
    graph.calls.clear()
    run = await world.sync().run(await timer_batch(world))
    assert run is not None
    assert run.counts["calendars_synced"] == 6
    rounds = Counter(mailbox for op, mailbox in graph.calls if op == "calendar_delta")
    assert rounds == {ADELE: 4, GRADY: 3}  # Adele's three calendars, and room-3's rerun
    for state in (await states(world)).values():
        assert (state.status, state.lease_owner, state.rerun_requested) == (SyncStatus.OK, None, False)


async def test_a_transient_failure_in_a_batch_requeues_only_that_calendar() -> None:
    world = await linked_world()
    batch = await timer_batch(world)
    world.graph.inject(GRADY, GraphUnavailable("Graph failed", status=503), times=3)
    queue = InMemorySyncQueue()
    await run_queued(world.sync(), queue, batch)
    assert sorted(queue.sent, key=lambda r: r.to_message()) == [
        SyncRequest(TENANT, room, GRADY, "default", reason="timer") for room in ROOMS
    ]
    assert queue.delays == [QUEUE_RETRY_SECONDS] * 3
    after = await states(world)
    assert {k: s.status for k, s in after.items()} == {
        **{(room, ADELE): SyncStatus.OK for room in ROOMS},
        **{(room, GRADY): SyncStatus.FAILED for room in ROOMS},
    }
    assert all(s.lease_owner is None for s in after.values())
    for request in queue.sent:  # each retry is the one-calendar path
        await run_queued(world.sync(), InMemorySyncQueue(), request)
    assert all(s.status is SyncStatus.OK for s in (await states(world)).values())


async def test_a_failure_only_a_person_can_fix_fails_the_run_and_requeues_nothing() -> None:
    world = await linked_world()
    await world.link(
        LinkedAccount(account=ADELE, direction=Direction.DOWN, calendars=["Nonexistent"]),
        resource_id="room-9",
    )
    batch = await timer_batch(world)
    with pytest.raises(CalendarSyncFailed) as failed:
        await world.sync().run(batch)
    assert failed.value.refs == [("room-9", ADELE, "Nonexistent")]
    queue = InMemorySyncQueue()
    await run_queued(world.sync(), queue, batch)
    assert queue.sent == []


async def test_a_batch_drops_calendars_no_longer_linked_and_names_each_calendar_once() -> None:
    world = await linked_world()
    batch = SyncBatch(
        TENANT,
        (
            ("room-1", ADELE, "default"),
            ("room-1", ADELE, "DEFAULT"),
            ("room-1", ADELE, "Board"),
            ("gone", ADELE, "default"),
        ),
    )
    run = await world.sync().run(batch)
    assert run is not None
    assert run.counts["calendars_synced"] == 1
    assert (run.counts["calendars_not_linked"], run.counts["resource_not_linked"]) == (1, 1)


async def test_the_timer_sends_full_batches_in_state_key_order() -> None:
    world = CalendarWorld()
    await world.add_tenant()
    total = 2 * BATCH_SIZE + 20
    names = [f"Cal {i}" for i in range(total)]
    for room, start in enumerate(range(0, total, 30)):  # rooms of 30 calendars each
        await world.link(
            LinkedAccount(account=ADELE, direction=Direction.DOWN, calendars=names[start : start + 30]),
            resource_id=f"r{room}",
        )
    queue = InMemorySyncQueue()
    run = await fan_out(world.tables, queue, clock=world.clock)
    assert [len(b.calendars) for b in queue.sent if isinstance(b, SyncBatch)] == [BATCH_SIZE, BATCH_SIZE, 20]
    assert run.counts == {"tenants": 1, "calendars_queued": total, "batches_queued": 3}
    keys = [sync_state_key(*ref) for b in queue.sent if isinstance(b, SyncBatch) for ref in b.calendars]
    assert keys == sorted(keys)  # so each batch's states are one contiguous key range
    assert len(set(keys)) == total


def test_batches_stay_under_the_queue_message_size() -> None:
    long = ("r" * 200, "a" * 60 + "@" + "b" * 180 + ".example", "Møterom " + "ø" * 240)  # \u00f8 in JSON
    refs = [(f"{long[0]}{i}", long[1], long[2]) for i in range(BATCH_SIZE)]
    split = batches(TENANT, refs)
    assert len(split) > 1
    for batch in split:
        assert len(batch.to_message()) <= 48_000  # 64 KiB once base64-encoded
        assert parse_message(batch.to_message()) == batch


@pytest.mark.parametrize(
    "bad",
    [
        '{"tenantId": "t", "calendars": []}',
        '{"tenantId": "t", "calendars": [["r", "a"]]}',
        '{"tenantId": "t", "calendars": [["r", "a", ""]]}',
        '{"tenantId": "t", "calendars": "r"}',
        '{"calendars": [["r", "a", "c"]]}',
        '{"tenantId": "t", "calendars": [["r", "a", "c"]], "attempt": "1"}',
        '{"tenantId": "t", "calendars": [["r", "a", "c"]], "reason": "whim"}',
        json.dumps({"tenantId": "t", "calendars": [["r", "a", str(i)] for i in range(101)]}),
    ],
)
def test_a_malformed_batch_message_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"sync batch|calendar-sync message"):
        parse_message(bad)
