"""Presence for a switchboard over memory tables, the fake Graph and the real outbox, with a
controllable clock: busy at an event's start and free at its end (told by ticks, not reads),
which showAs values count, private events, batches of 20, unreadable calendars, and never
the same change twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.graph.errors import ConsentMissing
from core.graph.fake import InMemoryGraph
from core.graph.model import EventDraft, Sensitivity, ShowAs
from core.host import InMemoryDeliveryQueue, Outbox
from core.host.records import OutboxEntry
from core.host.store import OutboxStore
from core.presence.config import PresenceService
from core.presence.monitor import InMemoryPresenceQueue, Poll, PresenceMonitor, Tick, decode, encode, fan_out
from core.presence.timeline import Item, state_at
from core.request_errors import InvalidInput
from core.store import memory_tables
from core.store.records import PresenceStatus, Tenant
from tests.unit.calendar_world import Clock

TENANT = "acme"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
BUSY = frozenset({"busy"})


def item(start_min: int, end_min: int, show_as: str = "busy", **kw: Any) -> Item:
    return Item(T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=end_min), show_as, **kw)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --- the pure part ----------------------------------------------------------------------------------


def test_back_to_back_busy_items_are_one_busy_stretch_and_free_runs_between_stretches():
    items = [item(0, 30, subject="A"), item(30, 60, subject="B"), item(90, 120)]
    first = state_at(items, BUSY, at(10), show_subjects=True)
    assert (first.status, first.since, first.until, first.subject) == (
        PresenceStatus.BUSY,
        at(0),
        at(60),
        "A",
    )
    second = state_at(items, BUSY, at(45), show_subjects=True)
    assert (second.since, second.until, second.subject) == (at(0), at(60), "B")
    gap = state_at(items, BUSY, at(60), show_subjects=True)
    assert (gap.status, gap.since, gap.until) == (PresenceStatus.FREE, at(60), at(90))
    after = state_at(items, BUSY, at(130), show_subjects=True)
    assert (after.status, after.since, after.until) == (PresenceStatus.FREE, at(120), None)


def test_only_the_configured_show_as_values_count_and_private_or_hidden_subjects_never_show():
    items = [item(0, 60, "tentative", subject="Maybe"), item(0, 60, "oof"), item(0, 60, "free")]
    assert state_at(items, BUSY, at(5), show_subjects=True).status is PresenceStatus.FREE
    counted = state_at(items, frozenset({"tentative", "oof"}), at(5), show_subjects=True)
    assert counted.status is PresenceStatus.BUSY
    private = [item(0, 60, private=True, subject="Lege", location="Klinikk")]
    shown = state_at(private, BUSY, at(5), show_subjects=True)
    assert (shown.status, shown.subject, shown.location) == (PresenceStatus.BUSY, None, None)
    hidden = state_at([item(0, 60, subject="Styremøte", location="Rom 4")], BUSY, at(5), show_subjects=False)
    assert (hidden.subject, hidden.location) == (None, "Rom 4")


def test_messages_round_trip_and_bad_ones_are_refused():
    for message in (Poll(TENANT, ("a@acme.example", "b@acme.example")), Tick(TENANT, "a@acme.example")):
        assert decode(encode(message)) == message
    for bad in ("nope", "[]", '{"tenantId": "t", "kind": "poll"}', '{"tenantId": "t", "kind": "x"}'):
        with pytest.raises(ValueError, match="presence"):
            decode(bad)


# --- the worker ------------------------------------------------------------------------------------


class World:
    def __init__(self) -> None:
        self.tables = memory_tables()
        self.graph = InMemoryGraph()
        self.clock = Clock(T0)
        self.queue = InMemoryPresenceQueue()
        self.outbox = Outbox(self.tables, InMemoryDeliveryQueue(), clock=self.clock)
        self.tenant = Tenant(tenant_id=TENANT, language="nb")
        graph = self.graph

        class Graphs:
            async def gateway(self, tenant: Tenant) -> Any:
                return graph

        self.graphs = Graphs()

    def user(self, name: str) -> str:
        upn = f"{name}@acme.example"
        self.graph.add_user(upn, name.title())
        return upn

    def event(self, upn: str, start_min: int, end_min: int, **kw: Any) -> str:
        draft = EventDraft(kw.pop("subject", "Møte"), at(start_min), at(end_min), **kw)
        return self.graph.outlook_create_event(upn, None, draft).id

    def service(self) -> PresenceService:
        return PresenceService(self.tables, self.queue, self.tenant, self.clock)

    def monitor(self) -> PresenceMonitor:
        return PresenceMonitor(self.tables, self.graphs, self.queue, self.outbox, clock=self.clock)

    async def play(self) -> None:
        """Run every queued message that is due now; later ticks stay queued."""
        while True:
            due = [(m, d) for m, d in self.queue.sent if d <= 0]
            if not due:
                return
            self.queue.sent = [(m, d) for m, d in self.queue.sent if d > 0]
            for message, _ in due:
                await self.monitor().run(message)

    async def advance_to(self, minutes: float) -> None:
        """Let time pass to `minutes` after T0: queued ticks come due as the queue would deliver them."""
        target = at(minutes)
        step = target - self.clock()
        self.queue.sent = [(m, d - step.total_seconds()) for m, d in self.queue.sent]
        self.clock.now = target
        await self.play()

    async def changes(self) -> list[dict[str, Any]]:
        return [
            e.payload
            async for e in OutboxStore(self.tables).rows_after(TENANT, 0)
            if isinstance(e, OutboxEntry) and e.type == "presence.changed"
        ]


@pytest.fixture
async def world() -> World:
    w = World()
    await w.tables.repo(Tenant).upsert(w.tenant)
    return w


async def test_a_busy_event_makes_the_user_busy_at_its_start_and_free_at_its_end(world: World):
    """GIVEN a monitored user with a busy meeting from +10 to +40 minutes, read once at T0
    WHEN time passes (no further read) THEN presence.changed says free at T0, busy exactly at
    +10 with until +40, free exactly at +40 — each told once, by ticks."""
    kari = world.user("kari")
    world.event(kari, 10, 40, subject="Styremøte", location="Rom 4")
    _, created = await world.service().put_monitor(kari, {"displayName": "Kari"})
    assert created
    await world.play()
    await world.advance_to(9)
    assert [c["status"] for c in await world.changes()] == ["free"]
    await world.advance_to(10)
    await world.advance_to(25)
    await world.advance_to(40)
    changes = await world.changes()
    assert [(c["status"], c["since"], c["until"]) for c in changes] == [
        ("free", None, at(10).isoformat()),
        ("busy", at(10).isoformat(), at(40).isoformat()),
        ("free", at(40).isoformat(), None),
    ]
    assert (changes[1]["subject"], changes[1]["location"], changes[1]["showAs"]) == (
        "Styremøte",
        "Rom 4",
        "busy",
    )
    [view] = await world.service().presence(kari)
    assert (view["status"], view["since"]) == ("free", at(40).isoformat())
    assert len([c for c in world.graph.calls if c[0] == "get_schedule"]) == 1


async def test_repeated_reads_and_ticks_never_tell_a_change_twice(world: World):
    kari = world.user("kari")
    world.event(kari, 10, 40)
    await world.service().put_monitor(kari, {})
    await world.play()
    for minute in (5, 11, 12, 20, 41, 50):
        await world.advance_to(minute)  # the ticks when due
        await world.service().refresh()  # and a read at every step
        await world.play()
        await world.monitor().run(Tick(TENANT, kari))  # a duplicated tick
    assert [c["status"] for c in await world.changes()] == ["free", "busy", "free"]


async def test_tentative_oof_and_free_count_only_when_configured(world: World):
    users = {show: world.user(show.value.lower()) for show in (ShowAs.TENTATIVE, ShowAs.OOF, ShowAs.FREE)}
    for show, upn in users.items():
        world.event(upn, -10, 60, show_as=show)
        await world.service().put_monitor(upn, {})
    await world.play()
    assert {v["status"] for v in await world.service().presence(None)} == {"free"}
    await world.service().put_settings({"busyStatuses": ["busy", "tentative", "oof"]})
    await world.play()
    views = {v["email"]: v for v in await world.service().presence(None)}
    assert views[users[ShowAs.TENTATIVE]]["status"] == "busy"
    assert views[users[ShowAs.OOF]]["status"] == "busy"
    assert views[users[ShowAs.FREE]]["status"] == "free"


async def test_a_private_busy_event_shows_busy_without_its_subject(world: World):
    per = world.user("per")
    world.event(per, -5, 30, subject="Legetime", sensitivity=Sensitivity.PRIVATE)
    await world.service().put_monitor(per, {})
    await world.play()
    [change] = await world.changes()
    assert change["status"] == "busy"
    assert "subject" not in change
    assert change["location"] is None


async def test_45_users_are_read_in_3_get_schedule_calls(world: World):
    users = [world.user(f"user{n:02d}") for n in range(45)]
    for upn in users:
        await world.service().put_monitor(upn, {})
    world.queue.take()  # the per-user reads of enabling
    world.graph.calls.clear()
    assert await world.service().refresh() == 3
    await world.play()
    assert len([c for c in world.graph.calls if c[0] == "get_schedule"]) == 3
    assert {v["status"] for v in await world.service().presence(None)} == {"free"}


async def test_an_unreadable_calendar_is_unknown_with_the_reason_not_free(world: World):
    kari = world.user("kari")
    await world.service().put_monitor(kari, {})
    await world.service().put_monitor("nobody@acme.example", {})
    world.queue.take()
    await world.service().put_settings({"monitorAccount": kari})
    await world.play()
    views = {
        v["email"]: v
        for v in await world.service().presence("kari@acme.example,nobody@acme.example,x@acme.example")
    }
    assert views[kari]["status"] == "free"
    assert views["nobody@acme.example"]["status"] == "unknown"
    assert "ErrorMailboxNotFound" in views["nobody@acme.example"]["reason"]
    assert views["x@acme.example"] == {
        "email": "x@acme.example",
        "status": "unknown",
        "reason": "not monitored",
    }

    world.graph.inject(kari, ConsentMissing("get_schedule: admin consent missing for Calendars.Read"))
    await world.service().refresh()
    await world.play()
    [view] = await world.service().presence(kari)
    assert view["status"] == "unknown"
    assert "Calendars.Read" in view["reason"]
    assert [c["status"] for c in await world.changes() if c["email"] == kari] == ["free", "unknown"]


async def test_the_timer_reads_a_tenant_when_its_refresh_interval_has_passed(world: World):
    kari = world.user("kari")
    await world.service().put_monitor(kari, {})
    await world.service().put_settings({"refreshMinutes": 10})
    world.queue.take()
    world.clock.now = at(5)
    assert await fan_out(world.tables, world.queue, clock=world.clock) == 0
    world.clock.now = at(10)
    assert await fan_out(world.tables, world.queue, clock=world.clock) == 1
    assert await fan_out(world.tables, world.queue, clock=world.clock) == 0


async def test_bad_settings_and_addresses_are_refused(world: World):
    bodies: list[dict[str, Any]] = [
        {"busyStatuses": []},
        {"busyStatuses": ["busy", "busy"]},
        {"busyStatuses": ["away"]},
        {"refreshMinutes": 0},
        {"monitorAccount": "not an address"},
    ]
    for body in bodies:
        with pytest.raises(InvalidInput):
            await world.service().put_settings(body)
    with pytest.raises(InvalidInput):
        await world.service().put_monitor("not-an-address", {})
    with pytest.raises(InvalidInput):
        await world.service().presence(",".join(f"u{n}@acme.example" for n in range(101)))
