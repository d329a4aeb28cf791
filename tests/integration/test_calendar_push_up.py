"""Calendar push up (host → Outlook), end to end on the local stack: the real `function_app` on
the local Functions host (`POST …/appointments`, the `calendar-push` queue worker with its
retries and poison queue), Azurite, and the Graph emulator over HTTPS with the real
azure-identity and msgraph-sdk clients.

"Outlook" is read and edited through the emulator's own store (what a person sees and does);
what the host was told is read from the pull feed. The shared stack (one emulator per module, a
Functions host and a tenant per test) comes from the down-sync tests' fixtures.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.queue import TextBase64DecodePolicy
from azure.storage.queue.aio import QueueClient

from core.calendar.push_queue import PUSH_POISON_QUEUE
from core.graph.model import transaction_id
from tests.integration.bridge_api import api_env  # noqa: F401 - fixture
from tests.integration.test_calendar_sync_down import (  # noqa: F401 - fixtures
    Bridge,
    create_event,
    event_json,
    eventually,
    graph,
    start_bridge,
    today_at,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PUSHED = "appointment.pushed"
UPSERTED = "appointment.upserted"
RESOURCE = "tech-7"


def change(host_id: str, version: int, **fields: Any) -> dict[str, Any]:
    start = today_at(10, 2)
    body: dict[str, Any] = {
        "hostAppointmentId": host_id,
        "resourceId": RESOURCE,
        "version": version,
        "subject": f"Service visit {host_id} v{version}",
        "body": "Replace the filter",
        "location": "Storgata 1",
        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timeZone": "Europe/Oslo",
        "categories": ["ERP"],
    }
    return body | fields


def delete(host_id: str, version: int) -> dict[str, Any]:
    return {"hostAppointmentId": host_id, "resourceId": RESOURCE, "version": version, "op": "delete"}


def events_of(bridge: Bridge, mailbox: str) -> list[Any]:
    """Every event in the mailbox, as Outlook holds it."""
    return sorted(bridge.graph.calendar.mailbox(mailbox).events.values(), key=lambda r: r.created)


async def post(bridge: Bridge, body: dict[str, Any], *, status: int = 202) -> dict[str, Any]:
    reply = await bridge.call("POST", "/appointments", json_body=body)
    assert reply.status == status, reply.text
    result: dict[str, Any] = reply.body
    return result


async def pushed(bridge: Bridge) -> list[dict[str, Any]]:
    await bridge.read_feed()
    return [e["data"] for e in bridge.feed if e["type"] == PUSHED]


async def runs_of(bridge: Bridge, tracking_id: str) -> list[dict[str, Any]]:
    reply = await bridge.call("GET", "/runs", params={"runId": tracking_id})
    assert reply.status == 200, reply.text
    return list(reply.body["runs"])


async def link_adele(bridge: Bridge, direction: str = "both") -> str:
    """Adele's mailbox, linked to the resource; her address."""
    adele = bridge.outlook.mailbox("adele")
    await bridge.link(RESOURCE, {"account": adele, "direction": direction})
    return adele


async def test_create_update_delete_round_trip(start_bridge: Callable[..., Any]) -> None:
    """GIVEN a resource linked both ways to Adele
    WHEN the host POSTs an appointment, then a new version, then a delete
    THEN the 202 of each says it is done in Outlook, Outlook holds exactly what the host sent
    (times in the host's zone), the host hears each result, and GET …/appointments/{id} tells
    where it stands."""
    async with start_bridge() as bridge:
        adele = await link_adele(bridge)
        created = await post(bridge, change("SO-1", 1, start="2026-12-01T10:00", end="2026-12-01T11:30"))
        [item] = created["appointments"]
        assert (item["status"], item["result"]) == ("applied", "created")
        [record] = events_of(bridge, adele)
        assert record.id == item["eventId"]
        assert record.fields["subject"] == "Service visit SO-1 v1"
        assert record.fields["location"]["displayName"] == "Storgata 1"
        assert record.start.utc == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # 10:00 Oslo in winter
        assert record.end.utc == datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
        assert record.transaction_id == transaction_id("SO-1", 1)

        updated = await post(
            bridge, change("SO-1", 2, subject="Moved visit", start="2026-12-02T08:00", end="2026-12-02T09:00")
        )
        assert updated["appointments"][0]["result"] == "updated"
        [record] = events_of(bridge, adele)
        assert (record.id, record.fields["subject"]) == (item["eventId"], "Moved visit")
        assert record.start.utc == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)

        state = await bridge.call("GET", f"/resources/{RESOURCE}/appointments/SO-1")
        assert state.status == 200, state.text
        assert (state.body["status"], state.body["appliedVersion"], state.body["eventId"]) == (
            "applied",
            2,
            record.id,
        )

        deleted = await post(bridge, delete("SO-1", 3))
        assert deleted["appointments"][0]["result"] == "deleted"
        assert events_of(bridge, adele) == []
        assert [(p["version"], p["result"]) for p in await pushed(bridge)] == [
            (1, "created"),
            (2, "updated"),
            (3, "deleted"),
        ]
        [run] = await runs_of(bridge, created["trackingId"])
        assert (run["function"], run["status"], run["counts"]) == (
            "calendar-push",
            "succeeded",
            {"created": 1},
        )

        missing = await bridge.call("GET", f"/resources/{RESOURCE}/appointments/never-sent")
        assert missing.is_problem(404)


async def test_the_same_post_twice_and_a_create_retried_after_a_503_leave_one_event(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN Graph makes the event but the answer never arrives (the connection drops after
    the create, every time, until the POST's own attempt gives up), and the host POSTs the same
    appointment twice
    THEN the queue worker retries the create later and Outlook holds exactly one event for it;
    AND a plain 503 before the create (retried by the gateway) also leaves exactly one event."""
    async with start_bridge() as bridge:
        adele = await link_adele(bridge)
        bridge.graph.add_fault("drop_after", count=1000, mailbox=adele, path=r"/events$", method="POST")
        first = await post(bridge, change("SO-2", 1))
        assert first["appointments"][0]["status"] == "queued"  # the POST's attempt ran out of time
        assert len(events_of(bridge, adele)) == 1  # made, though the bridge never heard so
        bridge.graph.clear_faults()
        second = await post(bridge, change("SO-2", 1))
        assert second["appointments"][0]["status"] in ("queued", "applied")

        bridge.graph.add_fault("status", status=503, mailbox=adele, path=r"/events$", method="POST")
        third = await post(bridge, change("SO-3", 1))
        assert third["appointments"][0]["status"] == "applied"

        async def so2_applied() -> bool | None:
            state = await bridge.call("GET", f"/resources/{RESOURCE}/appointments/SO-2")
            return state.body["status"] == "applied" or None

        await eventually(so2_applied, what="the queue worker to finish SO-2")
        await asyncio.sleep(QUEUE_SETTLE)  # room for every queued message: they must change nothing
        subjects = sorted(r.fields["subject"] for r in events_of(bridge, adele))
        assert subjects == ["Service visit SO-2 v1", "Service visit SO-3 v1"]


QUEUE_SETTLE = 7.0  # the queue message becomes visible 5 s after the POST


async def test_versions_delivered_out_of_order_end_in_the_newest(start_bridge: Callable[..., Any]) -> None:
    """GIVEN versions 3, 1, 2 of one appointment in one batch and versions 5 and 4 in two POSTs
    THEN Outlook ends with version 5, the older ones answered `ignored`."""
    async with start_bridge() as bridge:
        adele = await link_adele(bridge)
        batch = await post(
            bridge, {"appointments": [change("SO-4", 3), change("SO-4", 1), change("SO-4", 2)]}
        )
        assert [i["status"] for i in batch["appointments"]] == ["applied", "ignored", "ignored"]
        await asyncio.gather(post(bridge, change("SO-4", 5)), post(bridge, change("SO-4", 4)))
        await eventually(
            lambda: (
                [r.fields["subject"] for r in events_of(bridge, adele)] == ["Service visit SO-4 v5"] or None
            ),
            what="version 5 in Outlook",
        )
        await asyncio.sleep(QUEUE_SETTLE)
        assert [r.fields["subject"] for r in events_of(bridge, adele)] == ["Service visit SO-4 v5"]
        state = await bridge.call("GET", f"/resources/{RESOURCE}/appointments/SO-4")
        assert (state.body["version"], state.body["appliedVersion"]) == (5, 5)


async def test_a_pushed_event_edited_in_outlook_comes_back_as_the_same_host_appointment(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN an appointment pushed up, and the host syncs down
    THEN the down sync does not echo it;
    WHEN Adele edits it in Outlook and the host syncs
    THEN the host receives one update carrying its own hostAppointmentId, never a new
    appointment; and a host edit made before Adele's loses (last writer wins), the host told."""
    async with start_bridge() as bridge:
        adele = await link_adele(bridge)
        created = await post(bridge, change("SO-5", 1))
        event_id = created["appointments"][0]["eventId"]
        await bridge.sync(RESOURCE)
        assert [e for e in bridge.feed if e["type"] == UPSERTED] == []  # no echo

        host_edit_time = datetime.now(UTC)
        await asyncio.sleep(0.05)
        bridge.graph.calendar.update_event(adele, event_id, {"subject": "Adele moved it"})
        await bridge.sync(RESOURCE)
        [upserted] = [e["data"]["appointment"] for e in bridge.feed if e["type"] == UPSERTED]
        assert (upserted["eventId"], upserted["hostAppointmentId"], upserted["subject"]) == (
            event_id,
            "SO-5",
            "Adele moved it",
        )

        late = await post(bridge, change("SO-5", 2, modifiedAt=host_edit_time.isoformat()))
        assert late["appointments"][0]["status"] == "conflict"
        assert events_of(bridge, adele)[0].fields["subject"] == "Adele moved it"
        told = (await pushed(bridge))[-1]
        assert told["conflict"]["winner"] == "outlook"

        newer = await post(bridge, change("SO-5", 3, subject="Host wins now"))
        assert newer["appointments"][0]["result"] == "updated"
        assert events_of(bridge, adele)[0].fields["subject"] == "Host wins now"
        assert (await pushed(bridge))[-1]["conflict"]["winner"] == "host"
        await bridge.sync(RESOURCE)
        assert len([e for e in bridge.feed if e["type"] == UPSERTED]) == 1  # still only Adele's edit


async def test_unlink_with_cleanup_removes_exactly_the_bridges_events(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN Adele's calendar with her own appointment and two the bridge pushed, one of them
    edited by her since
    WHEN the host unlinks her account with cleanup=true
    THEN the two bridge events are deleted and hers stays; without cleanup nothing is deleted."""
    async with start_bridge() as bridge:
        adele = await link_adele(bridge)
        own = create_event(bridge.graph, adele, event_json("Adele's dentist", today_at(8, 3)))
        await post(
            bridge,
            {
                "appointments": [
                    change("SO-6", 1),
                    change("SO-7", 1, start=today_at(13, 2).isoformat(), end=today_at(14, 2).isoformat()),
                ]
            },
        )
        pushed_ids = [r.id for r in events_of(bridge, adele) if r.id != own]
        assert len(pushed_ids) == 2
        bridge.graph.calendar.update_event(adele, pushed_ids[0], {"subject": "edited by Adele"})

        reply = await bridge.call(
            "DELETE", f"/resources/{RESOURCE}/accounts/{adele}", params={"cleanup": "true"}
        )
        assert reply.status == 202, reply.text
        assert reply.body["cleanup"] == [adele]
        await eventually(
            lambda: [r.id for r in events_of(bridge, adele)] == [own] or None,
            what="the bridge's events deleted",
        )
        [run] = await eventually(lambda: _ended(bridge, reply.body["trackingId"]), what="the cleanup run")
        assert (run["function"], run["status"], run["counts"]) == (
            "calendar-cleanup",
            "succeeded",
            {"events_deleted": 2},
        )
        link = await bridge.call("GET", f"/resources/{RESOURCE}")
        assert link.body["accounts"] == []

        # without cleanup, the guides' behaviour: the events stay
        await bridge.call(
            "PUT", f"/resources/{RESOURCE}", json_body={"accounts": [{"account": adele, "direction": "up"}]}
        )
        await post(bridge, change("SO-8", 1))
        kept = await bridge.call("DELETE", f"/resources/{RESOURCE}")
        assert kept.status == 204
        assert len(events_of(bridge, adele)) == 2
        bad = await bridge.call("DELETE", f"/resources/{RESOURCE}", params={"cleanup": "maybe"})
        assert bad.is_problem(422)


async def _ended(bridge: Bridge, tracking_id: str) -> list[dict[str, Any]] | None:
    runs = await runs_of(bridge, tracking_id)
    return runs if runs and all(r["status"] in ("succeeded", "failed") for r in runs) else None


async def test_skipped_items_and_bad_items_are_reported_per_item(start_bridge: Callable[..., Any]) -> None:
    """GIVEN a resource linked down only, and a batch with one valid and one invalid change
    THEN the valid one is skipped with the reason in its run, the invalid one gets a problem,
    and a request with nothing valid is a 422 problem that stores nothing."""
    async with start_bridge() as bridge:
        adele = await link_adele(bridge, "down")
        answer = await post(
            bridge, {"appointments": [change("SO-9", 1), change("SO-10", 1, end="yesterday")]}
        )
        assert [(i["hostAppointmentId"], i["status"]) for i in answer["appointments"]] == [
            ("SO-9", "skipped")
        ]
        [rejected] = answer["rejected"]
        assert (rejected["index"], rejected["errors"][0]["field"]) == (1, "appointments[1].end")
        [run] = await runs_of(bridge, answer["trackingId"])
        assert run["counts"] == {"skipped_no_main_account": 1}
        assert events_of(bridge, adele) == []

        invalid = await bridge.call("POST", "/appointments", json_body=change("SO-11", -1))
        assert invalid.is_problem(422)
        assert invalid.body["errors"][0]["field"] == "version"
        state = await bridge.call("GET", f"/resources/{RESOURCE}/appointments/SO-11")
        assert state.is_problem(404)


async def test_a_permanent_403_ends_in_the_poison_queue_with_a_failed_run_naming_the_permission(
    start_bridge: Callable[..., Any], api_env: dict[str, str]
) -> None:
    """GIVEN the tenant's app may read calendars but not write them (admin consent for
    Calendars.ReadWrite missing)
    WHEN the host POSTs an appointment
    THEN it is tried by the POST and five times by the queue, the message lands in
    `calendar-push-poison`, every run of its tracking id failed naming Calendars.ReadWrite, and
    the host is told it failed."""
    async with start_bridge(queue_visibility=0.5) as bridge:
        adele = await link_adele(bridge)
        outlook = bridge.outlook
        bridge.graph.revoke(outlook.tenant_id, outlook.client_id, "Calendars.ReadWrite")
        bridge.graph.grant(outlook.tenant_id, outlook.client_id, "Calendars.Read")
        answer = await post(bridge, change("SO-12", 1))
        tracking_id = answer["trackingId"]
        assert answer["appointments"][0]["status"] == "queued"

        async def poisoned() -> bool | None:
            async with QueueClient.from_connection_string(
                api_env["AzureWebJobsStorage"],
                PUSH_POISON_QUEUE,
                message_decode_policy=TextBase64DecodePolicy(),
            ) as poison:
                try:
                    found = [m async for m in poison.receive_messages(visibility_timeout=1, max_messages=32)]
                except Exception:
                    return None  # the poison queue does not exist yet
                return any(tracking_id in m.content for m in found) or None

        await eventually(poisoned, within=60, what="the message in calendar-push-poison")
        runs = await eventually(lambda: _ended(bridge, tracking_id), what="every run to end")
        assert len(runs) == 6  # the POST's attempt and five deliveries
        assert all(r["status"] == "failed" and "Calendars.ReadWrite" in r["error"] for r in runs)
        failed = [p for p in await pushed(bridge) if p["result"] == "failed"]
        assert len(failed) == 1
        assert "Calendars.ReadWrite" in failed[0]["reason"]
        assert events_of(bridge, adele) == []
        state = await bridge.call("GET", f"/resources/{RESOURCE}/appointments/SO-12")
        assert state.body["status"] == "failed"
        assert json.dumps(state.body).count("Calendars.ReadWrite") >= 1
