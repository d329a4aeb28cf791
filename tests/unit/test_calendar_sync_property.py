"""Property: for any sequence of Outlook changes, sync runs, expired delta states, Graph faults
and days passing, once a sync run succeeds the host's view equals Outlook's window — nothing
lost, nothing the host should not have, and no change delivered twice.

Runs the real worker (planner, shell, outbox) over the in-memory Graph and tables; the
integration tests drive the same worker through the local host against the Graph emulator.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.calendar.sync import CalendarSyncFailed
from core.graph.errors import GraphUnavailable, Throttled
from core.graph.model import Event, EventChanges, EventDraft, Sensitivity
from tests.unit.calendar_world import ADELE, T0, CalendarWorld

Step = tuple[str, int, int]
steps = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "create",
                "create",
                "series",
                "rename",
                "move",
                "delete",
                "private",
                "sync",
                "sync",
                "expire",
                "fault",
                "days",
            ]
        ),
        st.integers(0, 50),
        st.integers(-20, 60),
    ),
    min_size=4,
    max_size=30,
)


def _alive(world: CalendarWorld) -> list[Event]:
    box = world.graph._box(ADELE)
    return sorted((e for _, e in box.events.values() if e.type.value != "seriesMaster"), key=lambda e: e.id)


def _apply(world: CalendarWorld, step: Step, n: int) -> None:
    kind, a, b = step
    start = T0 + timedelta(days=b, hours=a % 9)
    events = _alive(world)
    pick = events[a % len(events)] if events else None
    if kind == "create":
        world.create(f"single {n}", start)
    elif kind == "private":
        world.create(f"secret {n}", start, sensitivity=Sensitivity.PRIVATE)
    elif kind == "series":
        draft = EventDraft(subject=f"series {n}", start=start, end=start + timedelta(minutes=30))
        world.graph.outlook_create_daily_series(ADELE, None, draft, count=1 + a % 5)
    elif kind == "rename" and pick:
        world.graph.outlook_update_event(ADELE, pick.id, EventChanges(subject=f"renamed {n}"))
    elif kind == "move" and pick:
        world.graph.outlook_update_event(
            ADELE, pick.id, EventChanges(start=start, end=start + (pick.end - pick.start))
        )
    elif kind == "delete" and pick:
        world.graph.outlook_delete_event(ADELE, pick.id)
    elif kind == "expire":
        world.graph.expire_delta_links(ADELE)
    elif kind == "fault":
        error = Throttled("throttled", retry_after=1) if a % 2 else GraphUnavailable("dropped connection")
        world.graph.inject(ADELE, error, times=1 + a % 3)
    elif kind == "days":
        world.clock.advance(timedelta(days=a % 12))


async def _sync(world: CalendarWorld) -> bool:
    try:
        await world.run()
    except CalendarSyncFailed as failed:
        if not failed.retryable:  # only the injected, transient faults may fail a run
            raise
        return False
    return True


def _check(world: CalendarWorld, host: dict[str, dict[str, Any]], events: list[dict[str, Any]]) -> None:
    need_start, need_end = world.policy.needed(world.clock())
    outlook = {
        e.id: e for e in _alive(world) if e.start < need_end and e.end > need_start and not e.is_cancelled
    }
    in_window = {
        i: a
        for i, a in host.items()
        if a["start"]["utc"] < need_end.strftime("%Y-%m-%dT%H:%M:%SZ")
        and a["end"]["utc"] > need_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    }
    assert set(in_window) == set(outlook), "host and Outlook disagree on which events are in the window"
    for event_id, event in outlook.items():
        seen = host[event_id]
        expected = "Private appointment" if event.is_private else event.subject
        assert seen["subject"] == expected
        assert seen["start"]["utc"] == event.start.strftime("%Y-%m-%dT%H:%M:%SZ")
    # never the same state twice in a row for one appointment
    last: dict[str, dict[str, Any]] = {}
    for envelope in events:
        appointment = envelope["data"]["appointment"]
        key = appointment["eventId"]
        if envelope["type"] == "appointment.upserted":
            previous = last.get(key)
            stable = {k: v for k, v in appointment.items() if k != "lastModified"}
            assert previous != stable, "the same appointment state was delivered twice"
            last[key] = stable
        else:
            assert key in last, "a deletion of an appointment the host never had"
            del last[key]


async def _scenario(plan: list[Step]) -> None:
    world = CalendarWorld()
    await world.setup()
    for n, step in enumerate(plan):
        if step[0] == "sync":
            await _sync(world)
        else:
            _apply(world, step, n)
    world.graph._faults.clear()
    assert await _sync(world)
    _check(world, await world.host_view(), await world.events())


@settings(max_examples=300, deadline=None)
@given(steps)
def test_for_any_outlook_history_the_host_view_converges_to_outlook(plan: list[Step]) -> None:
    asyncio.run(_scenario(plan))
