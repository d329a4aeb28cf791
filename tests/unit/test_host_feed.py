"""The pull feed on in-memory tables: paging, undelivered events, the gap race, bad cursors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.host import BadFeedQuery, FeedPage, parse_cursor, parse_limit, read_feed
from core.host.feed import MAX_LIMIT
from core.host.records import OutboxGap
from core.store import next_sequence
from core.store.sequences import OUTBOX
from tests.unit.host_world import World

GRACE = timedelta(seconds=10)


async def page(world: World, after: int = 0, limit: int = 100) -> FeedPage:
    return await read_feed(world.tables, "acme", after=after, limit=limit, grace=GRACE, clock=world.clock)


async def test_given_events_when_paged_with_after_then_every_event_comes_once_in_order() -> None:
    world = World()
    emitted = [(await world.outbox.emit("acme", "test.happened", {"n": n})).event_id for n in range(7)]
    seen: list[str] = []
    cursor = 0
    for _ in range(10):
        result = await page(world, cursor, limit=3)
        body = result.to_dict()
        seen += [e["id"] for e in body["events"]]
        if not body["events"]:
            break
        cursor = parse_cursor(body["next"])
    assert seen == emitted
    assert body == {"events": [], "next": "7"}


async def test_the_feed_holds_undelivered_delivered_and_dead_lettered_events_alike() -> None:
    world = World()
    await world.add_tenant()
    await world.outbox.emit("acme", "test.happened", {})
    await world.dispatcher().dispatch("acme")  # delivered
    await world.outbox.emit("acme", "test.happened", {})  # not yet
    assert [e.sequence for e in (await page(world)).events] == [1, 2]


async def test_given_a_sequence_being_written_then_the_feed_stops_before_it_and_never_skips_it() -> None:
    """GIVEN 1 written, 2 reserved and not yet written, 3 written
    WHEN a host pages THEN it gets 1 with next=1, not 3: had it got next=3, event 2 landing later
    would never be seen. When 2 lands, the next page gives 2 and 3."""
    world = World()
    await world.outbox.emit("acme", "test.happened", {"n": 1})
    slow = await next_sequence(world.tables.counters(), OUTBOX, "acme")
    await world.outbox.emit("acme", "test.happened", {"n": 3})
    first = await page(world)
    assert ([e.sequence for e in first.events], first.next) == ([1], "1")

    # the slow writer lands its event at the reserved sequence
    entry = world.outbox._entry("acme", slow, "late", "test.happened", {"n": 2}, world.clock())
    await world.store.events.insert(entry)
    second = await page(world, 1)
    assert ([e.sequence for e in second.events], second.next) == ([2, 3], "3")


async def test_given_a_gap_older_than_the_grace_then_the_feed_closes_it_and_moves_on() -> None:
    """GIVEN sequence 2 reserved by a writer that died WHEN the row after it is older than the
    grace THEN the feed closes 2 as a gap and returns 3; the dead writer, if it ever woke, would
    meet the gap and write elsewhere."""
    world = World()
    await world.outbox.emit("acme", "test.happened", {})
    await next_sequence(world.tables.counters(), OUTBOX, "acme")
    await world.outbox.emit("acme", "test.happened", {})
    world.clock.advance(10)
    result = await page(world)
    assert ([e.sequence for e in result.events], result.next) == ([1, 3], "3")
    assert isinstance(await world.store.get("acme", 2), OutboxGap)


async def test_gap_rows_do_not_shorten_a_page() -> None:
    world = World()
    await world.outbox.emit("acme", "test.happened", {}, event_id="a")
    await world.outbox.emit("acme", "test.happened", {}, event_id="a")  # no new event
    for n in range(4):
        await world.store.close_gap(
            "acme", await next_sequence(world.tables.counters(), OUTBOX, "acme"), world.clock()
        )
        await world.outbox.emit("acme", "test.happened", {"n": n})
    result = await page(world, limit=3)
    assert len(result.events) == 3


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "\uff11\uff12", "99999999999999999999", " 3"])
def test_given_a_malformed_cursor_then_bad_feed_query(value: str) -> None:
    with pytest.raises(BadFeedQuery, match="'after'"):
        parse_cursor(value)


async def test_given_a_cursor_past_the_end_then_bad_feed_query() -> None:
    world = World()
    await world.outbox.emit("acme", "test.happened", {})
    with pytest.raises(BadFeedQuery, match="beyond the end"):
        await page(world, after=5)


def test_limits_default_to_100_clamp_at_1000_and_reject_junk() -> None:
    assert (parse_limit(None), parse_limit("7"), parse_limit("5000")) == (100, 7, MAX_LIMIT)
    for junk in ("0", "-3", "ten"):
        with pytest.raises(BadFeedQuery, match="'limit'"):
            parse_limit(junk)
