"""Presence for a switchboard on the local stack: the real `function_app` on the local Functions
host (routes, the `presence` queue worker and its ticks), Azurite, and the Graph emulator's
getSchedule over HTTPS with the real clients. Meetings are made in the emulator as people make
them in Outlook; what the switchboard hears comes to its webhook receiver.

The boundaries are real ones a few seconds ahead, so "at the event's start" is measured on the
wall clock: a change must not arrive before its moment, and must arrive within seconds after
(queue delays are whole seconds and the local host polls its queues every 2 s). The unit tests
(tests/unit/test_presence.py) drive the same code with a controlled clock."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.bridge_api import api_env  # noqa: F401 - fixture
from tests.integration.test_calendar_sync_down import (  # noqa: F401 - fixtures
    Bridge,
    eventually,
    graph,
    start_bridge,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def when(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def meeting(bridge: Bridge, upn: str, start: datetime, end: datetime, **extra: Any) -> None:
    body = {"subject": "Styremøte", "start": when(start), "end": when(end), **extra}
    bridge.graph.calendar.create_event(upn, body)


def changes(bridge: Bridge, email: str | None = None) -> list[tuple[float, dict[str, Any]]]:
    """(arrival time, data) of every presence.changed the switchboard received."""
    out = []
    for received in bridge.receiver.accepted:
        envelope = json.loads(received.body)
        if envelope["type"] == "presence.changed" and (email is None or envelope["data"]["email"] == email):
            out.append((float(received.headers.get("X-Arrived", "0")), envelope["data"]))
    return out


async def presence(bridge: Bridge, *users: str) -> dict[str, dict[str, Any]]:
    reply = await bridge.call("GET", "/presence", params={"users": ",".join(users)})
    assert reply.status == 200, reply.text
    return {u["email"]: u for u in reply.body["users"]}


async def read_all(bridge: Bridge, *users: str, after: float, ask: bool = True) -> dict[str, dict[str, Any]]:
    """Ask for a read now (with `ask`) and wait until every user was read after `after`
    (epoch seconds)."""
    if ask:
        reply = await bridge.call("POST", "/presence/refresh")
        assert reply.status == 202, reply.text

    async def done() -> dict[str, dict[str, Any]] | None:
        views = await presence(bridge, *users)
        fresh = all(
            v.get("readAt") and datetime.fromisoformat(v["readAt"]).timestamp() >= after
            for v in views.values()
        )
        return views if fresh else None

    views: dict[str, dict[str, Any]] = await eventually(done, what="every user to be read")
    return views


async def monitor(bridge: Bridge, *users: str) -> None:
    for upn in users:
        reply = await bridge.call("PUT", f"/presence/monitors/{upn}", json_body={})
        assert reply.status == 201, reply.text


async def test_a_busy_meeting_makes_the_user_busy_at_its_start_and_free_at_its_end(
    start_bridge: Callable[..., Any],
) -> None:
    async with start_bridge() as bridge:
        original = bridge.receiver.answer

        def stamp(received: Any) -> int:
            received.headers["X-Arrived"] = str(time.time())
            return int(original(received))

        bridge.receiver.answer = stamp
        kari = bridge.outlook.mailbox("kari")
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
        end = start + timedelta(seconds=5)
        meeting(bridge, kari, start, end, location={"displayName": "Rom 4"})
        await monitor(bridge, kari)

        async def told(count: int) -> list[Any] | None:
            found = changes(bridge, kari)
            return found if len(found) >= count else None

        found = await eventually(lambda: told(3), what="free, busy and free again", within=40)
        statuses = [(data["status"], data["since"], data["until"]) for _, data in found]
        assert statuses == [
            ("free", None, start.isoformat()),
            ("busy", start.isoformat(), end.isoformat()),
            ("free", end.isoformat(), None),
        ]
        (_, _), (busy_at, busy), (free_at, _) = found
        assert start.timestamp() <= busy_at <= start.timestamp() + 5, busy_at - start.timestamp()
        assert end.timestamp() <= free_at <= end.timestamp() + 5, free_at - end.timestamp()
        assert (busy["subject"], busy["location"], busy["showAs"]) == ("Styremøte", "Rom 4", "busy")

        # repeated reads after the fact tell nothing again
        await read_all(bridge, kari, after=time.time())
        await read_all(bridge, kari, after=time.time())
        assert len(changes(bridge, kari)) == 3


async def test_which_show_as_values_count_private_events_and_unreadable_calendars(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN users in a tentative, an out-of-office, a free and a private busy meeting now, and
    an address with no mailbox WHEN read THEN only the private one is busy, with no subject;
    the unknown address is unknown with the reason; WHEN tentative and oof count THEN those
    users are busy too."""
    async with start_bridge() as bridge:
        now = datetime.now(UTC)
        people = {name: bridge.outlook.mailbox(name) for name in ("tove", "ola", "frida", "per")}
        for name, show_as in (("tove", "tentative"), ("ola", "oof"), ("frida", "free"), ("per", "busy")):
            extra = {"sensitivity": "private", "subject": "Legetime"} if name == "per" else {}
            meeting(
                bridge,
                people[name],
                now - timedelta(minutes=5),
                now + timedelta(hours=1),
                showAs=show_as,
                **extra,
            )
        ghost = f"ghost@{bridge.outlook.domain}"
        await monitor(bridge, *people.values(), ghost)
        settings = await bridge.call(
            "PUT", "/presence/settings", json_body={"monitorAccount": people["tove"]}
        )
        assert settings.status == 200, settings.text

        views = await read_all(bridge, *people.values(), after=now.timestamp())
        assert {name: views[upn]["status"] for name, upn in people.items()} == {
            "tove": "free",
            "ola": "free",
            "frida": "free",
            "per": "busy",
        }
        assert "subject" not in views[people["per"]]

        async def ghost_read() -> dict[str, Any] | None:
            # a failed read leaves readAt (the last good read) alone: wait for its reason instead
            view = (await presence(bridge, ghost))[ghost]
            return view if view.get("reason") != "not read yet" else None

        ghost_view = await eventually(ghost_read, what="the ghost's read")
        assert ghost_view["status"] == "unknown"
        assert "ErrorMailRecipientNotFound" in ghost_view["reason"]

        def busy_told() -> list[Any] | None:
            return [c for c in changes(bridge, people["per"]) if c[1]["status"] == "busy"] or None

        [(_, private)] = await eventually(busy_told, what="per's busy change at the host")
        assert "subject" not in private

        body = {"busyStatuses": ["busy", "tentative", "oof"], "monitorAccount": people["tove"]}
        assert (await bridge.call("PUT", "/presence/settings", json_body=body)).status == 200
        views = await read_all(bridge, *people.values(), after=time.time())
        assert {name: views[upn]["status"] for name, upn in people.items()} == {
            "tove": "busy",
            "ola": "busy",
            "frida": "free",
            "per": "busy",
        }
        assert views[people["tove"]]["showAs"] == "tentative"


async def test_45_users_are_read_in_3_get_schedule_calls(start_bridge: Callable[..., Any]) -> None:
    async with start_bridge() as bridge:
        switchboard = bridge.outlook.mailbox("sentralbord")
        users = [bridge.outlook.mailbox(f"ansatt{n:02d}") for n in range(45)]
        assert (
            await bridge.call("PUT", "/presence/settings", json_body={"monitorAccount": switchboard})
        ).status == 200
        await monitor(bridge, *users)
        await read_all(bridge, *users, after=0, ask=False)  # the reads of enabling them, one by one
        before = bridge.graph.counters(switchboard).requests
        started = time.time()
        reply = await bridge.call("POST", "/presence/refresh")
        assert reply.body == {"batches": 3}
        await read_all(bridge, *users, after=started, ask=False)
        assert bridge.graph.counters(switchboard).requests - before == 3
