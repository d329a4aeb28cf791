"""The dispatcher on in-memory tables with the fake webhook and queue and a settable clock:
order, retries with backoff, dead-lettering, gaps, the lease, and the safety net."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from core.host import Stop, nudge_due_tenants, verify
from core.host.delivery import FUNCTION, previous_webhook_secret_name
from core.host.lease import Lease
from core.host.records import DeliveryCursor, OutboxEntry
from core.host.webhook import Posted, WebhookError, WebhookUnreachable
from core.store import next_sequence
from core.store.records import Run, RunStatus, Tenant
from core.store.sequences import OUTBOX
from tests.unit.host_world import SECRET, URL, World


def ids(posts: list[Posted]) -> list[str]:
    return [p.headers["M365Bridge-Event-Id"] for p in posts]


async def emit(world: World, n: int, tenant: str = "acme") -> list[str]:
    return [(await world.outbox.emit(tenant, "test.happened", {"n": i})).event_id for i in range(n)]


async def cursor(world: World, tenant: str = "acme") -> DeliveryCursor:
    found = await world.store.cursors.get(*DeliveryCursor.key(tenant))
    assert found is not None
    return found


async def runs(world: World, tenant: str = "acme") -> list[Run]:
    return [r async for r in world.tables.runs().list(tenant) if r.function == FUNCTION]


async def test_given_events_when_dispatched_then_each_is_posted_once_in_order_signed() -> None:
    world = World()
    await world.add_tenant()
    emitted = await emit(world, 5)
    result = await world.dispatcher().dispatch("acme")
    assert result is not None
    assert (result.stop, result.delivered, result.failed) == (Stop.CAUGHT_UP, 5, 0)
    assert ids(world.webhook.posts) == emitted
    for seq, post in enumerate(world.webhook.posts, start=1):
        assert post.url == URL
        assert post.headers["M365Bridge-Sequence"] == str(seq)
        verify(SECRET, post.body, post.headers["M365Bridge-Signature"], world.clock())
        assert json.loads(post.body)["id"] == post.headers["M365Bridge-Event-Id"]
    assert (await cursor(world)).settled_through == 5
    assert (await cursor(world)).lease_owner is None
    (run,) = await runs(world)
    assert (run.status, run.counts) == (RunStatus.SUCCEEDED, {"delivered": 5})
    # a second dispatch finds nothing to do, posts nothing and records no run
    assert await world.dispatcher().dispatch("acme") is None
    assert len(world.webhook.posts) == 5


async def test_given_a_failing_host_then_delivery_stops_at_the_head_and_retries_after_backoff() -> None:
    """GIVEN the host refuses connections WHEN dispatched THEN only the head is tried, its attempt
    is recorded, and a nudge is queued for the backoff; nothing behind it goes out (order)."""
    world = World()
    await world.add_tenant()
    emitted = await emit(world, 3)
    world.webhook.behaviour = lambda _: WebhookUnreachable("refused")
    world.queue.nudges.clear()

    result = await world.dispatcher().dispatch("acme")
    assert result is not None
    assert (result.stop, result.failed) == (Stop.RETRY_LATER, 1)
    head = await world.store.get("acme", 1)
    assert isinstance(head, OutboxEntry)
    assert (head.attempts, head.last_error, head.delivered_at) == (1, "refused", None)
    assert head.next_attempt_at == world.clock() + timedelta(seconds=1)  # base 1 s, jitter at the top
    assert world.queue.nudges == [("acme", 1.0)]
    assert ids(world.webhook.posts) == emitted[:1]

    # nudged early (a new emit), nothing is posted: the head is not due
    assert await world.dispatcher().dispatch("acme") is None
    # second failure: the ceiling doubles
    world.clock.advance(1)
    await world.dispatcher().dispatch("acme")
    head = await world.store.get("acme", 1)
    assert isinstance(head, OutboxEntry)
    assert head.attempts == 2
    assert head.next_attempt_at == world.clock() + timedelta(seconds=2)

    # the host is back
    world.webhook.behaviour = lambda _: 200
    world.clock.advance(2)
    result = await world.dispatcher().dispatch("acme")
    assert result is not None
    assert result.delivered == 3
    delivered = [p for p in world.webhook.posts[2:]]
    assert ids(delivered) == emitted
    assert (await cursor(world)).next_attempt_at is None


async def test_given_a_host_answering_503_then_it_is_a_failed_attempt_too() -> None:
    world = World()
    await world.add_tenant()
    await emit(world, 1)
    world.webhook.behaviour = lambda _: 503
    result = await world.dispatcher().dispatch("acme")
    assert result is not None
    assert result.stop is Stop.RETRY_LATER
    head = await world.store.get("acme", 1)
    assert isinstance(head, OutboxEntry)
    assert head.last_error == "the host answered HTTP 503"


async def test_given_the_budget_is_spent_then_the_head_is_dead_lettered_and_the_rest_delivered() -> None:
    world = World()
    await world.add_tenant()
    emitted = await emit(world, 3)
    poisoned = emitted[1]

    def host(post: Posted) -> int | WebhookError:
        return 500 if post.headers["M365Bridge-Event-Id"] == poisoned else 200

    world.webhook.behaviour = host
    await world.dispatcher().dispatch("acme")  # 1 delivered, 2 fails
    world.clock.advance(3600)  # past the budget
    result = await world.dispatcher().dispatch("acme")
    assert result is not None
    assert (result.delivered, result.dead_lettered, result.stop) == (1, 1, Stop.CAUGHT_UP)
    (envelope,) = world.queue.dead_letters
    assert json.loads(envelope)["id"] == poisoned
    dead = await world.store.get("acme", 2)
    assert isinstance(dead, OutboxEntry)
    assert dead.dead_lettered_at == world.clock()
    assert dead.delivered_at is None
    delivered = [
        p.headers["M365Bridge-Event-Id"]
        for p in world.webhook.posts
        if p.headers["M365Bridge-Event-Id"] != poisoned
    ]
    assert delivered == [emitted[0], emitted[2]]
    statuses = sorted((r.status, r.error or "") for r in await runs(world))
    assert statuses == [(RunStatus.FAILED, "EventsDeadLettered"), (RunStatus.SUCCEEDED, "")]


async def test_given_two_dispatchers_racing_then_no_event_is_posted_twice_or_out_of_order() -> None:
    world = World()
    world.webhook.delay = 0.001  # each POST yields, so the dispatchers interleave
    await world.add_tenant()
    emitted = await emit(world, 30)
    for _ in range(5):
        await asyncio.gather(*(world.dispatcher().dispatch("acme") for _ in range(4)))
        if len(world.webhook.posts) == 30:
            break
    assert ids(world.webhook.posts) == emitted


async def test_given_a_lease_held_by_a_crashed_dispatcher_then_others_wait_for_it_to_expire() -> None:
    world = World()
    await world.add_tenant()
    await emit(world, 2)
    await world.store.cursors.insert(
        DeliveryCursor(
            tenant_id="acme", lease_owner="crashed", lease_until=world.clock() + timedelta(seconds=40)
        )
    )
    assert await world.dispatcher().dispatch("acme") is None
    assert world.webhook.posts == []
    world.clock.advance(41)
    result = await world.dispatcher().dispatch("acme")
    assert result is not None
    assert result.delivered == 2


async def test_given_an_event_delivered_but_the_cursor_not_moved_then_it_is_not_posted_again() -> None:
    """GIVEN a dispatcher that recorded delivered_at and died before moving the cursor
    THEN the next one passes the event without posting it."""
    world = World()
    await world.add_tenant()
    await emit(world, 2)
    head = await world.store.get("acme", 1)
    assert isinstance(head, OutboxEntry)
    await world.store.events.save(head.model_copy(update={"delivered_at": world.clock()}))
    result = await world.dispatcher().dispatch("acme")
    assert result is not None
    assert result.delivered == 1
    assert [p.headers["M365Bridge-Sequence"] for p in world.webhook.posts] == ["2"]


async def test_given_a_sequence_still_being_written_then_delivery_waits_then_closes_it() -> None:
    """GIVEN sequence 1 reserved (its writer is slow or died) and 2 written
    WHEN dispatched THEN nothing goes out (2 must not overtake 1) and a nudge is queued for when
    1 is old enough; once it is, 1 is closed as a gap and 2 is delivered."""
    world = World()
    await world.add_tenant()
    await next_sequence(world.tables.counters(), OUTBOX, "acme")  # 1, never written
    (second,) = await emit(world, 1)
    world.queue.nudges.clear()
    result = await world.dispatcher().dispatch("acme")
    assert result is not None
    assert result.stop is Stop.WAITING_FOR_GAP
    assert world.webhook.posts == []
    assert world.queue.nudges == [("acme", 10.0)]
    world.clock.advance(10)
    result = await world.dispatcher().dispatch("acme")
    assert result is not None
    assert result.delivered == 1
    assert ids(world.webhook.posts) == [second]


async def test_given_a_trailing_reservation_never_written_then_it_is_closed_and_the_tenant_settles() -> None:
    world = World()
    await world.add_tenant()
    await emit(world, 1)
    await next_sequence(world.tables.counters(), OUTBOX, "acme")  # 2, its writer died
    result = await world.dispatcher().dispatch("acme")
    assert result is not None
    assert (result.delivered, result.stop) == (1, Stop.WAITING_FOR_GAP)
    world.clock.advance(10)
    await world.dispatcher().dispatch("acme")
    assert (await cursor(world)).settled_through == 2
    assert await world.dispatcher().dispatch("acme") is None  # settled: no more runs


async def test_given_a_missing_secret_then_attempts_fail_as_misconfigured() -> None:
    world = World()
    await world.add_tenant()
    await world.secrets.delete((await world.tables.repo(Tenant).get(*Tenant.key("acme"))).webhook_secret_name)  # type: ignore[union-attr, arg-type]
    await emit(world, 1)
    result = await world.dispatcher().dispatch("acme")
    assert result is not None
    assert result.stop is Stop.RETRY_LATER
    head = await world.store.get("acme", 1)
    assert isinstance(head, OutboxEntry)
    assert head.last_error == "the tenant's webhook signing secret is not set"
    assert world.webhook.posts == []


async def test_given_a_rotation_in_progress_then_deliveries_carry_both_signatures() -> None:
    world = World()
    await world.add_tenant()
    await world.secrets.set(previous_webhook_secret_name("acme"), "old-secret")
    await emit(world, 1)
    await world.dispatcher().dispatch("acme")
    (post,) = world.webhook.posts
    verify(SECRET, post.body, post.headers["M365Bridge-Signature"], world.clock())
    verify("old-secret", post.body, post.headers["M365Bridge-Signature"], world.clock())


async def test_given_no_webhook_then_events_stay_for_the_feed_and_nothing_is_dispatched() -> None:
    world = World()
    await world.add_tenant(url=None)
    await emit(world, 2)
    assert await world.dispatcher().dispatch("acme") is None
    assert await world.dispatcher().dispatch("nobody") is None


async def test_the_safety_net_nudges_only_tenants_with_due_events() -> None:
    world = World()
    for tenant in ("due", "settled", "waiting", "feedonly", "leased"):
        await world.add_tenant(tenant, url=None if tenant == "feedonly" else "https://host.example/h")
    for tenant in ("due", "settled", "waiting", "feedonly", "leased"):
        await emit(world, 1, tenant)
    await world.dispatcher().dispatch("settled")
    world.webhook.behaviour = lambda _: 503
    await world.dispatcher().dispatch("waiting")  # retry scheduled in the future
    await world.store.cursors.insert(
        DeliveryCursor(
            tenant_id="leased", lease_owner="busy", lease_until=world.clock() + timedelta(seconds=30)
        )
    )
    world.queue.nudges.clear()
    run = await nudge_due_tenants(world.tables, world.queue, clock=world.clock)
    assert [t for t, _ in world.queue.nudges] == ["due"]
    assert run.counts["nudged"] == 1


async def test_given_only_an_emit_in_flight_then_no_run_is_recorded_and_a_nudge_waits_for_it() -> None:
    """GIVEN a sequence reserved whose row is not written yet, and nothing else
    WHEN nudged THEN no run row is written (nothing was delivered or failed); the emit's own
    nudge, or the delayed one queued here, picks the event up."""
    world = World()
    await world.add_tenant()
    await next_sequence(world.tables.counters(), OUTBOX, "acme")
    assert await world.dispatcher().dispatch("acme") is None
    assert await runs(world) == []
    assert world.queue.nudges == [("acme", 10.0)]
    assert (await cursor(world)).lease_owner is None


async def test_given_emits_racing_dispatchers_then_the_nudges_alone_deliver_everything_in_order() -> None:
    """GIVEN 30 concurrent emits and three queue workers dispatching each immediate nudge as it
    comes (delayed ones are left alone, and the clock does not move)
    THEN every event is delivered once, in sequence order: no nudge that found the lease taken,
    and no event written while a dispatcher waited on it, is left for the safety net."""
    world = World()
    world.webhook.delay = 0.001
    await world.add_tenant()
    done = asyncio.Event()

    async def worker() -> None:
        while not (done.is_set() and not any(d == 0 for _, d in world.queue.nudges)):
            due = next((n for n in world.queue.nudges if n[1] == 0), None)
            if due is None:
                await asyncio.sleep(0.001)
                continue
            world.queue.nudges.remove(due)
            await world.dispatcher().dispatch(due[0])

    workers = [asyncio.create_task(worker()) for _ in range(3)]
    results = await asyncio.gather(*(world.outbox.emit("acme", "test.happened", {"n": n}) for n in range(30)))
    done.set()
    await asyncio.gather(*workers)
    by_sequence = [e.event_id for e in sorted(results, key=lambda e: e.sequence)]
    assert ids(world.webhook.posts) == by_sequence


async def test_given_an_event_written_just_before_the_lease_is_released_then_it_is_not_stranded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GIVEN a dispatcher that has read its last (empty) page and is about to release the lease
    WHEN an event lands then and its nudge's dispatch finds the lease still taken
    THEN the releasing dispatcher sees the new head and queues a nudge, which delivers it."""
    world = World()
    await world.add_tenant()
    await emit(world, 1)
    release = Lease.release
    late: list[str] = []

    async def release_after_a_late_emit(self: Lease) -> None:
        if not late:
            late.extend(await emit(world, 1))
            assert await world.dispatcher().dispatch("acme") is None  # the lease is taken
        await release(self)

    monkeypatch.setattr(Lease, "release", release_after_a_late_emit)
    world.queue.nudges.clear()
    first = await world.dispatcher().dispatch("acme")
    assert first is not None
    assert first.delivered == 1
    # the late emit's own nudge was spent; the dispatcher queued another one
    assert world.queue.nudges == [("acme", 0.0), ("acme", 0.0)]
    second = await world.dispatcher().dispatch("acme")
    assert second is not None
    assert ids(world.webhook.posts)[-1:] == late
