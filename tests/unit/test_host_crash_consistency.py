"""TARGETS R2 for outbox delivery: the emitting worker and the dispatcher killed at every step
boundary, then rerun → every event delivered, in order; duplicates only where at-least-once
allows.

The workload is what a capability and the delivery trigger do: three `emit`s and a dispatch,
then an `emit_many` of three and a dispatch, on the in-memory world (memory tables, the fake
queue, the fake webhook, a settable clock; tests/unit/host_world.py). Every I/O operation of
it — each table read and write (sequence counter, event-id index, event rows, the cursor and
its lease, run rows), each secret read, each queue nudge, each webhook POST — is a step
boundary (tests/unit/crash_points.py). For each one, a fresh world runs the workload and the
process dies right after that boundary: after the lease was taken, after the head was read,
after the POST reached the host but before its answer was recorded, after the cursor moved,
after the lease was released, and everywhere between. Then the workload is rerun (the
capability emits its events again with the same ids, as a retried message does) and delivery
goes on as the system would go on — the clock moves past the dead holder's lease and the gap
grace, the safety net nudges, the dispatcher runs — until the outbox is settled.

The host dedups by `M365Bridge-Event-Id`, as the README tells it to. Asserted per boundary:
the host's deduplicated view is every event, in emit order; each event was stored once (one
sequence); raw POSTs never go back in sequence; the only raw redelivery is the one the
README's exactly-once paragraph names — a crash after the host's 2xx and before the bridge
recorded it — and there exactly one; nothing is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from core.host import Emission, InMemoryDeliveryQueue, InMemoryWebhookSender, nudge_due_tenants
from core.host.records import DeliveryCursor, OutboxEntry
from core.host.webhook import Posted, WebhookTimeout
from core.secrets import InMemorySecretStore
from core.store.memory_table import MemoryTableStore
from tests.unit.crash_points import TABLE_OPERATIONS, Boundaries, Killed
from tests.unit.host_world import World

TENANT = "acme"
EVENTS = [f"evt-{n}" for n in range(6)]
# The boundary after which a crash repeats a POST: the host answered 2xx, the bridge died before
# writing delivered_at (README, Delivery to host systems: "One window remains").
POST = "webhook.post"


async def workload(world: World, tenant: str = TENANT) -> None:
    outbox = world.outbox
    for n in range(3):
        await outbox.emit(tenant, "test.happened", {"n": n}, event_id=EVENTS[n])
    await world.dispatcher().dispatch(tenant)
    await outbox.emit_many(
        tenant, [Emission("test.happened", {"n": n}, EVENTS[n]) for n in range(3, len(EVENTS))]
    )
    await world.dispatcher().dispatch(tenant)


async def settled(world: World, tenant: str = TENANT) -> bool:
    reserved = await world.store.sequence_reserved(tenant)
    cursor = await world.store.cursors.get(*DeliveryCursor.key(tenant))
    return cursor is not None and reserved > 0 and cursor.settled_through >= reserved


async def go_on(world: World, tenant: str = TENANT) -> None:
    """What the running system does after a crash, until the outbox is settled: time passes
    (a minute per round: past the dead holder's 40 s lease, the 10 s gap grace and any
    backoff), the safety net nudges, the delivery trigger dispatches."""
    for _ in range(30):
        if await settled(world, tenant):
            return
        world.clock.advance(61)
        await nudge_due_tenants(world.tables, world.queue, clock=world.clock)
        await world.dispatcher().dispatch(tenant)
    raise AssertionError("delivery never settled")


def instrument(
    boundaries: Boundaries,
    monkeypatch: pytest.MonkeyPatch,
    *,
    table: type[Any] = MemoryTableStore,
    sender: type[Any] = InMemoryWebhookSender,
    queue: type[Any] = InMemoryDeliveryQueue,
    secrets: type[Any] = InMemorySecretStore,
) -> None:
    """Every I/O operation of the emitting worker and the dispatcher is a boundary: on the
    fakes by default, on the real adapters (Azurite, aiohttp) when given their classes."""
    for operation in TABLE_OPERATIONS:
        boundaries.wrap(monkeypatch, table, operation, lambda store: f"table {store.name}")
    boundaries.wrap(monkeypatch, sender, "post", POST)
    boundaries.wrap(monkeypatch, queue, "nudge", "queue.nudge")
    boundaries.wrap(monkeypatch, queue, "dead_letter", "queue.dead_letter")
    boundaries.wrap(monkeypatch, secrets, "get", "secrets.get")


def posted(posts: list[Posted]) -> list[tuple[str, int]]:
    """(event id, sequence) of each POST the host received, in arrival order."""
    return [(p.headers["M365Bridge-Event-Id"], int(p.headers["M365Bridge-Sequence"])) for p in posts]


def dedup(ids: list[str]) -> list[str]:
    """The host's view: each event id once, in the order it first arrived."""
    return list(dict.fromkeys(ids))


async def check(
    world: World, killed: str | None, posts: list[tuple[str, int]], tenant: str = TENANT
) -> list[str]:
    """What is wrong after the rerun settled (empty: nothing), given the POSTs the host got."""
    problems: list[str] = []
    raw = [event_id for event_id, _ in posts]
    if dedup(raw) != EVENTS:
        problems.append(f"host's deduplicated view {dedup(raw)} is not every event in order")
    sequences = [sequence for _, sequence in posts]
    if sequences != sorted(sequences):
        problems.append(f"POSTs went back in sequence: {sequences}")
    entries = [r async for r in world.store.rows_after(tenant, 0) if isinstance(r, OutboxEntry)]
    stored = [e.event_id for e in entries]
    if sorted(stored) != sorted(EVENTS):
        problems.append(f"the outbox holds {stored}, not each event once")
    if any(e.delivered_at is None for e in entries):
        problems.append("an event is not recorded as delivered")
    if any(e.dead_lettered_at is not None for e in entries):
        problems.append("an event was dead-lettered")
    allowed = 1 if killed == POST else 0
    if len(raw) - len(set(raw)) != allowed:
        problems.append(f"{len(raw) - len(set(raw))} raw redeliveries, at-least-once allows {allowed}")
    return problems


async def stored_ids(world: World, tenant: str = TENANT) -> list[str]:
    return [r.event_id async for r in world.store.rows_after(tenant, 0) if isinstance(r, OutboxEntry)]


async def boundaries_of(
    world: World, monkeypatch: pytest.MonkeyPatch, tenant: str = TENANT, **adapters: Any
) -> list[str]:
    """The boundaries the unkilled workload passes, in order."""
    with monkeypatch.context() as patch:
        boundaries = Boundaries()
        instrument(boundaries, patch, **adapters)
        await workload(world, tenant)
    return boundaries.seen


async def test_r2_outbox_delivery_killed_at_every_step_boundary_then_rerun_delivers_every_event_in_order(
    monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, Any], None]
) -> None:
    """R2 (delivery): killed after each of the workload's step boundaries, then rerun → every
    event delivered, in order, in the host's deduplicated view; raw redeliveries only after a
    kill between the host's 2xx and its record, one each."""
    clean = World()
    await clean.add_tenant(TENANT)
    labels = await boundaries_of(clean, monkeypatch)
    assert [e for e, _ in posted(clean.webhook.posts)] == EVENTS  # the unkilled run: each once
    kinds = set(labels)
    # the boundaries the brief names are all among them
    assert {POST, "secrets.get", "queue.nudge"} <= kinds
    assert any(label.endswith("counters.update") or label.endswith("counters.insert") for label in kinds)
    problems: dict[str, list[str]] = {}
    redelivered = lost = duplicated = 0
    for at, label in enumerate(labels, start=1):
        world = World()
        await world.add_tenant(TENANT)
        with monkeypatch.context() as patch:
            boundaries = Boundaries(kill_at=at)
            instrument(boundaries, patch)
            with pytest.raises(Killed):
                await workload(world)
        assert boundaries.killed == label, "the workload is not deterministic"
        await workload(world)  # the rerun: the capability's retry emits the same ids again
        await go_on(world)
        posts = posted(world.webhook.posts)
        raw = [event_id for event_id, _ in posts]
        redelivered += len(raw) - len(set(raw))
        lost += len(set(EVENTS) - set(raw))
        stored = await stored_ids(world)
        duplicated += len(stored) - len(set(stored))
        found = await check(world, label, posts)
        if found:
            problems[f"{at:03d} after {label}"] = found
    record_property("operations", len(labels) * 2)  # the killed run and its rerun, per boundary
    record_property("step_boundaries", len(labels))
    record_property("crashes_injected", len(labels))
    record_property("events", len(EVENTS) * len(labels))
    record_property("lost", lost)
    record_property("duplicated", duplicated)
    record_property("redelivered", redelivered)
    assert problems == {}
    # a redelivery happened exactly where at-least-once allows it: once per POST boundary
    assert redelivered == labels.count(POST)


async def test_r2_given_the_hosts_answer_lost_then_the_event_is_posted_again_and_the_host_dedups(
    record_property: Callable[[str, Any], None],
) -> None:
    """R2 (delivery), the live variant of the POST boundary: the host took event 2 (its
    receiver recorded it) but the answer never came back (a timeout). The dispatcher retries it
    after the backoff: the host sees it twice, its deduplicated view is every event in order."""
    world = World()
    await world.add_tenant(TENANT)
    lost_answers: list[str] = []

    def answer(posted: Posted) -> int | WebhookTimeout:
        event_id = posted.headers["M365Bridge-Event-Id"]
        if event_id == EVENTS[1] and not lost_answers:
            lost_answers.append(event_id)
            return WebhookTimeout("the host did not answer in time")
        return 200

    world.webhook.behaviour = answer
    await workload(world)
    await go_on(world)
    posts = posted(world.webhook.posts)
    raw = [event_id for event_id, _ in posts]
    record_property("operations", len(raw))
    record_property("faults_injected", len(lost_answers))
    record_property("lost", len(set(EVENTS) - set(raw)))
    record_property("duplicated", 0)
    record_property("redelivered", len(raw) - len(set(raw)))
    assert raw == [EVENTS[0], EVENTS[1], EVENTS[1], *EVENTS[2:]]
    assert dedup(raw) == EVENTS
    assert await check(world, POST, posts) == []
