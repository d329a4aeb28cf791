"""Pruning the outbox (housekeeping): old settled rows go, nothing a reader or the dispatcher
still needs does, and readers do not mistake pruned sequences for gaps."""

from __future__ import annotations

from datetime import timedelta

from core.host import read_feed
from core.host.records import DeliveryCursor, EventIdIndex
from core.housekeeping import housekeeping
from tests.unit.host_world import World

DAY = 86_400


async def test_given_old_delivered_and_undelivered_events_then_only_the_delivered_old_ones_go() -> None:
    world = World()
    await world.add_tenant()
    await world.outbox.emit("acme", "test.happened", {}, event_id="old-1")
    await world.outbox.emit("acme", "test.happened", {}, event_id="old-2")
    await world.dispatcher().dispatch("acme")  # both delivered
    world.webhook.behaviour = lambda _: 503
    await world.outbox.emit("acme", "test.happened", {}, event_id="old-stuck")
    await world.dispatcher().dispatch("acme")  # not delivered (retrying)
    world.clock.advance(31 * DAY)
    await world.outbox.emit("acme", "test.happened", {}, event_id="new")

    run = await housekeeping(world.tables.runs(), 30, clock=world.clock, outbox=world.tables)
    assert run.counts["outbox_rows_pruned"] == 2
    left = [r.sequence async for r in world.store.rows_after("acme", 0)]
    assert left == [3, 4]
    cursor = await world.store.cursors.get(*DeliveryCursor.key("acme"))
    assert cursor is not None
    assert cursor.pruned_through == 2
    assert await world.store.index.get(*EventIdIndex.key("acme", "old-1")) is None
    # the feed starts after the pruned rows instead of waiting on them as gaps
    page = await read_feed(world.tables, "acme", after=0, grace=timedelta(seconds=10), clock=world.clock)
    assert [e.event_id for e in page.events] == ["old-stuck", "new"]


async def test_given_a_feed_only_tenant_then_old_events_go_by_age_alone() -> None:
    world = World()
    await world.add_tenant(url=None)
    for n in range(3):
        await world.outbox.emit("acme", "test.happened", {"n": n})
    world.clock.advance(31 * DAY)
    await world.outbox.emit("acme", "test.happened", {"n": 3})
    run = await housekeeping(world.tables.runs(), 30, clock=world.clock, outbox=world.tables)
    assert run.counts["outbox_rows_pruned"] == 3
    assert [r.sequence async for r in world.store.rows_after("acme", 0)] == [4]
    # a second pass has nothing left to do
    again = await housekeeping(world.tables.runs(), 30, clock=world.clock, outbox=world.tables)
    assert again.counts["outbox_rows_pruned"] == 0
