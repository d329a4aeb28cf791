"""Property: whatever a person does in Outlook, a client that applies each calendarView/delta round
(upserts and @removed) ends up holding exactly what a fresh calendarView returns.

Runs the emulator's calendar store and its delta planner in-process (no network): the pieces that
decide what a round contains. The integration tests drive the same code over HTTPS with the SDK.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.graph_emulator.calendar_ops import Calendars
from devtools.graph_emulator.calendar_store import render
from devtools.graph_emulator.calendar_view import plan_round
from devtools.graph_emulator.context import EmulatorContext
from devtools.graph_emulator.directory import User

UTC = dt.UTC
WINDOW_START = dt.datetime(2024, 3, 18, tzinfo=UTC)
WINDOW_END = dt.datetime(2024, 4, 8, tzinfo=UTC)  # three weeks, across Oslo's DST change
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

Edit = tuple[str, int, int, int]
edits = st.tuples(
    st.sampled_from(["single", "series", "rename", "move", "edit_occurrence", "delete", "round"]),
    st.integers(0, 40),
    st.integers(-30, 30),
    st.integers(1, 127),
)


def _span(day: int, hour: int) -> tuple[dict[str, str], dict[str, str]]:
    start = dt.datetime(2024, 3, 14) + dt.timedelta(days=day % 30, hours=8 + hour % 10)
    end = start + dt.timedelta(hours=1)
    return (
        {"dateTime": start.isoformat(), "timeZone": "Europe/Oslo"},
        {"dateTime": end.isoformat(), "timeZone": "Europe/Oslo"},
    )


def _apply(cal: Calendars, user: User, edit: Edit, n: int) -> None:
    kind, a, b, c = edit
    instances = cal.view(user, WINDOW_START - dt.timedelta(days=7), WINDOW_END + dt.timedelta(days=7))
    masters = cal.events(user)
    if kind == "single":
        start, end = _span(a, b)
        cal.create_event(user, {"subject": f"single {n}", "start": start, "end": end})
    elif kind == "series":
        days = [d for i, d in enumerate(DAYS) if c & (1 << i)] or ["monday"]
        start, end = _span(a, b)
        cal.create_event(
            user,
            {
                "subject": f"series {n}",
                "start": start,
                "end": end,
                "recurrence": {
                    "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": days},
                    "range": {
                        "type": "numbered",
                        "startDate": start["dateTime"][:10],
                        "numberOfOccurrences": 1 + c % 9,
                    },
                },
            },
        )
    elif kind == "rename" and masters:
        cal.update_event(user, masters[a % len(masters)].id, {"subject": f"renamed {n}"})
    elif kind == "move" and instances:
        target = instances[a % len(instances)]
        cal.move_event(user, target.id, target.start + dt.timedelta(hours=b * 6))
    elif kind == "edit_occurrence":
        occurrences = [i for i in instances if i.original_start is not None]
        if occurrences:
            cal.update_event(
                user, occurrences[a % len(occurrences)].id, {"subject": f"exception {n}", "showAs": "oof"}
            )
    elif kind == "delete" and instances:
        cal.delete_event(user, instances[a % len(instances)].id)


@settings(max_examples=60, deadline=None)
@given(st.lists(edits, max_size=25))
def test_delta_rounds_converge_to_a_fresh_calendar_view(script: list[Edit]) -> None:
    ctx = EmulatorContext(lambda: "https://127.0.0.1:1")
    tenant = ctx.directory.add_tenant()
    user = ctx.directory.add_user(tenant.id, "adele@contoso.com")
    cal = Calendars(ctx)
    held: dict[str, dict[str, Any]] = {}  # what the client has: id -> event JSON
    snapshot: dict[str, str] = {}

    def delta_round() -> None:
        nonlocal snapshot
        changed, removed, snapshot = plan_round(snapshot, cal.view(user, WINDOW_START, WINDOW_END))
        for instance in changed:
            held[instance.id] = render(instance, user, None)
        for item_id in removed:
            held.pop(item_id, None)

    for n, edit in enumerate(script):
        if edit[0] == "round":
            delta_round()
        else:
            _apply(cal, user, edit, n)
    delta_round()

    fresh = {i.id: render(i, user, None) for i in cal.view(user, WINDOW_START, WINDOW_END)}
    assert held == fresh
    # And a round right after converging has nothing to say.
    assert plan_round(snapshot, cal.view(user, WINDOW_START, WINDOW_END))[:2] == ([], [])
