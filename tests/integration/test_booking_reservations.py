"""Booking a slot end to end on the local stack: the real `function_app` on the local Functions
host (HTTP routes and the `booking-reservations` queue worker), Azurite (tables, queue, staged
documents) and the Graph emulator over HTTPS with the real msgraph-sdk and azure-identity
clients. The admin's slots are made in the emulator as a person would in Outlook; what the host
hears is read from its webhook receiver."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader

from core.graph.gateway import GraphApiGateway
from core.store.records import Reservation, SlotClaim
from devtools.graph_emulator.hooks import Change
from tests.integration.bridge_api import api_env  # noqa: F401 - fixture
from tests.integration.test_calendar_sync_down import (  # noqa: F401 - fixtures
    Bridge,
    eventually,
    graph,
    start_bridge,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

OSLO = ZoneInfo("Europe/Oslo")
PDF = b"%PDF-1.7\n% a referral letter\n" + b"0" * 2000
# Above 3 MB: the worker must attach it through an upload session.
SCAN = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (5 * 1024 * 1024 // 256)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def next_weekday(weekday: int, weeks: int = 1) -> date:
    today = datetime.now(OSLO).date()
    return today + timedelta(days=(weekday - today.weekday()) % 7 + 7 * weeks)


async def booking_calendar(bridge: Bridge, **settings: Any) -> tuple[str, str]:
    """A booking calendar 'advice' over a new 'Bookable slots' calendar: (owner, calendar id)."""
    owner = bridge.outlook.mailbox("booking")
    calendar_id = bridge.graph.calendar.create_calendar(owner, "Bookable slots").id
    body = {"displayName": "Rådgivning", "owner": owner, "calendar": "Bookable slots", **settings}
    saved = await bridge.call("PUT", "/booking-calendars/advice", json_body=body)
    assert saved.status == 201, saved.text
    return owner, calendar_id


def add_slot(bridge: Bridge, owner: str, calendar_id: str, day: date, hour: int = 10, **extra: Any) -> str:
    start = {"dateTime": f"{day.isoformat()}T{hour:02d}:00:00", "timeZone": "Europe/Oslo"}
    end = {"dateTime": f"{day.isoformat()}T{hour + 1:02d}:00:00", "timeZone": "Europe/Oslo"}
    body = {"subject": "Konsultasjon", "start": start, "end": end, **extra}
    record, _ = bridge.graph.calendar.create_event(owner, body, calendar_id=calendar_id)
    return str(record.id)


def received(bridge: Bridge, kind: str) -> list[dict[str, Any]]:
    return [
        json.loads(r.body) for r in bridge.receiver.accepted if r.headers.get("M365Bridge-Event-Type") == kind
    ]


async def slot_ids(bridge: Bridge, day: date) -> list[str]:
    reply = await bridge.call(
        "GET",
        "/booking-calendars/advice/slots",
        params={"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()},
    )
    assert reply.status == 200, reply.text
    return [s["slotId"] for s in reply.body["slots"] if s["available"]]


async def stored(bridge: Bridge) -> tuple[list[Any], list[Any]]:
    """Every slot claim and reservation row of the tenant."""
    claims = [c async for c in bridge.app.tables.repo(SlotClaim).list(bridge.tenant_id)]
    reservations = [r async for r in bridge.app.tables.repo(Reservation).list(bridge.tenant_id)]
    return claims, reservations


async def test_a_reservation_with_two_documents_and_the_summary_then_cancel_restores_the_slot(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a listed slot WHEN a form books it with a PDF and a 5 MB scan THEN 201 pending; the
    worker attaches both (the scan through an upload session) and a summary PDF that opens and
    holds the form's values, suffixes the subject once, and the host hears booking.reserved;
    WHEN the host cancels THEN the subject and attachments are as the admin left them, the slot
    is listed again and the host hears booking.cancelled."""
    async with start_bridge() as bridge:
        owner, calendar_id = await booking_calendar(bridge)
        day = next_weekday(2)  # a Wednesday
        agenda_slot = add_slot(
            bridge, owner, calendar_id, day, body={"contentType": "text", "content": "Rom 4"}
        )
        bridge.graph.calendar.add_attachment(owner, agenda_slot, name="agenda.pdf", data=PDF)
        assert await slot_ids(bridge, day) == [agenda_slot]
        sessions_before = bridge.graph.counters(owner).upload_sessions

        body = {
            "slotId": agenda_slot,
            "booker": {"name": "Åse Nordmann", "email": "ase@example.org", "phone": "+47 900 00 000"},
            "fields": {"Årsak": "Årskontroll", "Allergier": "Blåbærsyltetøy", "Samtykke": True},
            "documents": [
                {"name": "henvisning.pdf", "contentType": "application/pdf", "contentBase64": b64(PDF)},
                {"name": "skann.png", "contentType": "image/png", "contentBase64": b64(SCAN)},
            ],
        }
        reply = await bridge.call("POST", "/booking-calendars/advice/reservations", json_body=body)
        assert reply.status == 201, reply.text
        rid = reply.body["id"]
        assert reply.body["status"] == "pending"
        assert [d["size"] for d in reply.body["documents"]] == [len(PDF), len(SCAN)]

        async def booked() -> dict[str, Any] | None:
            got = await bridge.call("GET", f"/booking-calendars/advice/reservations/{rid}")
            return got.body if got.body["status"] == "booked" else None

        view = await eventually(booked, what="the reservation to be booked")
        assert view["summaryAttached"] is True
        assert all(d["attached"] for d in view["documents"])

        event = bridge.graph.calendar.find(owner, agenda_slot).record
        assert event.fields["subject"] == "Konsultasjon - Booket"
        assert event.fields["body"]["content"].startswith("Booket av: Åse Nordmann <ase@example.org>")
        files = {a.name: a.data for a in event.attachments}
        assert files["agenda.pdf"] == PDF
        assert files["henvisning.pdf"] == PDF
        assert files["skann.png"] == SCAN
        assert bridge.graph.counters(owner).upload_sessions == sessions_before + 1
        [summary] = [data for name, data in files.items() if name.startswith("Bookingsammendrag")]
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(summary)).pages)
        for value in ("Årskontroll", "Blåbærsyltetøy", "Åse Nordmann", "henvisning.pdf", rid):
            assert value in text
        assert await slot_ids(bridge, day) == []
        await eventually(lambda: received(bridge, "booking.reserved") or None, what="booking.reserved")
        [reserved] = received(bridge, "booking.reserved")
        assert reserved["data"]["reservationId"] == rid
        assert reserved["data"]["fields"]["Allergier"] == "Blåbærsyltetøy"

        cancel = await bridge.call("DELETE", f"/booking-calendars/advice/reservations/{rid}")
        assert cancel.status == 202, cancel.text
        assert cancel.body["status"] == "cancelling"

        async def free() -> list[str] | None:
            return await slot_ids(bridge, day) or None

        assert await eventually(free, what="the slot to be free again") == [agenda_slot]
        event = bridge.graph.calendar.find(owner, agenda_slot).record
        assert event.fields["subject"] == "Konsultasjon"
        assert event.fields["body"]["content"] == "Rom 4"
        assert [a.name for a in event.attachments] == ["agenda.pdf"]
        await eventually(lambda: received(bridge, "booking.cancelled") or None, what="booking.cancelled")
        final = await bridge.call("GET", f"/booking-calendars/advice/reservations/{rid}")
        assert final.body["status"] == "cancelled"
        listed = await bridge.call("GET", "/booking-calendars/advice/reservations")
        assert [r["id"] for r in listed.body["reservations"]] == [rid]


async def test_r3_100_concurrent_reservations_of_one_slot_1_succeeds_99_get_409_the_event_is_marked_once(
    start_bridge: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, Any], None],
) -> None:
    """R3: 100 forms book one slot at the same moment through the local host → exactly one 201,
    99 problem+json 409s, and the Outlook event is marked once: the worker PATCHes it once, its
    subject turns "Konsultasjon - Booket" once (every change Outlook saw, from the emulator's
    change hooks) and never carries the suffix twice; one claim, one reservation, and the host
    hears booking.reserved once."""
    patches: list[tuple[str, Any]] = []
    update_event = GraphApiGateway.update_event

    async def counted(self: GraphApiGateway, mailbox: str, event_id: str, changes: Any, **kw: Any) -> Any:
        patches.append((event_id, changes))
        return await update_event(self, mailbox, event_id, changes, **kw)

    monkeypatch.setattr(GraphApiGateway, "update_event", counted)
    async with start_bridge() as bridge:
        owner, calendar_id = await booking_calendar(bridge)
        day = next_weekday(3)
        slot = add_slot(bridge, owner, calendar_id, day)
        subjects: list[str] = []

        def seen(change: Change) -> None:
            if change.resource_id == slot and change.change_type == "updated":
                subjects.append(str(bridge.graph.calendar.find(owner, slot).record.fields["subject"]))

        unsubscribe = bridge.graph.ctx.hooks.subscribe(seen)

        async def book(n: int) -> Any:
            body = {"slotId": slot, "booker": {"name": f"Person {n}", "email": f"p{n}@example.org"}}
            return await bridge.call("POST", "/booking-calendars/advice/reservations", json_body=body)

        try:
            replies = await asyncio.gather(*(book(n) for n in range(100)))
            statuses = sorted(r.status for r in replies)
            winners = [r for r in replies if r.status == 201]
            assert winners, statuses

            async def booked() -> bool | None:
                got = await bridge.call(
                    "GET", f"/booking-calendars/advice/reservations/{winners[0].body['id']}"
                )
                return True if got.body["status"] == "booked" else None

            await eventually(booked, what="the one reservation to be booked")
            reserved = await eventually(
                lambda: received(bridge, "booking.reserved") or None, what="booking.reserved at the host"
            )
            await asyncio.sleep(1.0)  # room for a second marking or a second event, which must not come
        finally:
            unsubscribe()
        final = bridge.graph.calendar.find(owner, slot).record.fields["subject"]
        claims, reservations = await stored(bridge)
        marks = [changes for event_id, changes in patches if event_id == slot]
        record_property("operations", len(replies))
        record_property("succeeded", statuses.count(201))
        record_property("conflicts_409", statuses.count(409))
        record_property("event_marked", len(marks))
        record_property("lost", 0 if len(reservations) == statuses.count(201) else 1)
        record_property("duplicated", max(0, len(marks) - 1) + max(0, len(reservations) - 1))
        assert statuses == [201] + [409] * 99, statuses
        assert all(r.is_problem(409) for r in replies if r.status == 409)
        [winner] = winners
        assert len(marks) == 1, marks
        assert final == "Konsultasjon - Booket"
        assert final.count(" - Booket") == 1
        # what Outlook showed after each change of the event (attachments come first): the
        # subject turned "… - Booket" once and stayed so
        shown = [subject for subject, _ in itertools.groupby(subjects)]
        assert shown, subjects
        assert shown[-1] == "Konsultasjon - Booket", subjects
        assert shown.count("Konsultasjon - Booket") == 1, subjects
        assert all(subject.count(" - Booket") <= 1 for subject in subjects), subjects
        assert [c.reservation_id for c in claims] == [winner.body["id"]]
        assert [r.reservation_id for r in reservations] == [winner.body["id"]]
        assert [e["data"]["reservationId"] for e in reserved] == [winner.body["id"]]
        assert len(received(bridge, "booking.reserved")) == 1


async def test_a_slot_deleted_in_outlook_after_listing_answers_410_and_writes_nothing(
    start_bridge: Callable[..., Any],
) -> None:
    async with start_bridge() as bridge:
        owner, calendar_id = await booking_calendar(bridge)
        day = next_weekday(1)
        slot = add_slot(bridge, owner, calendar_id, day)
        assert await slot_ids(bridge, day) == [slot]
        bridge.graph.calendar.delete_event(owner, slot)
        body = {
            "slotId": slot,
            "booker": {"name": "Åse"},
            "documents": [{"name": "a.pdf", "contentType": "application/pdf", "contentBase64": b64(PDF)}],
        }
        reply = await bridge.call("POST", "/booking-calendars/advice/reservations", json_body=body)
        assert reply.is_problem(410), reply.text
        assert await stored(bridge) == ([], [])
        blobs = [b async for b in bridge.app.blobs.get_container_client("staged-documents").list_blobs()]
        assert [b.name for b in blobs if b.name.startswith("bookings/")] == []
        assert received(bridge, "booking.reserved") == []


async def test_a_booking_the_app_may_not_write_fails_releases_the_slot_and_tells_the_host(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN admin consent for Calendars.ReadWrite missing (Calendars.Read only) THEN the worker
    fails the booking in plain words naming the permission, gives the slot back, and the host
    hears booking.failed."""
    async with start_bridge() as bridge:
        outlook = bridge.outlook
        # Before the bridge's first token: tokens carry the roles consented when issued.
        bridge.graph.revoke(outlook.tenant_id, outlook.client_id, "Calendars.ReadWrite")
        bridge.graph.grant(outlook.tenant_id, outlook.client_id, "Calendars.Read")
        owner, calendar_id = await booking_calendar(bridge)
        day = next_weekday(4)
        slot = add_slot(bridge, owner, calendar_id, day, hour=9)
        body = {"slotId": slot, "booker": {"name": "Åse", "email": "ase@example.org"}}
        reply = await bridge.call("POST", "/booking-calendars/advice/reservations", json_body=body)
        assert reply.status == 201, reply.text

        async def failed() -> list[dict[str, Any]] | None:
            return received(bridge, "booking.failed") or None

        [event] = await eventually(failed, what="booking.failed")
        assert "Calendars.ReadWrite" in event["data"]["reason"]
        assert await slot_ids(bridge, day) == [slot]
        assert bridge.graph.calendar.find(owner, slot).record.fields["subject"] == "Konsultasjon"
        assert datetime.now(UTC) < datetime.fromisoformat(event["data"]["start"])


async def test_the_attendees_hear_of_the_booking_and_its_cancellation_once_each(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a booking calendar that notifies attendees and a slot with a colleague invited
    WHEN a form books it with the booker added as attendee, then the host cancels THEN the
    colleague's inbox holds one booking mail and one cancellation, sent from the owner's
    mailbox through Graph, and the booker was an attendee only while booked."""
    async with start_bridge() as bridge:
        outlook = bridge.outlook
        bridge.graph.grant(outlook.tenant_id, outlook.client_id, "Mail.Send")  # before the first token
        owner, calendar_id = await booking_calendar(bridge, notifyAttendees=True, addSummary=False)
        colleague = outlook.mailbox("kollega")
        attendee = {"emailAddress": {"address": colleague, "name": "Kollega"}, "type": "required"}
        day = next_weekday(2, weeks=2)
        slot = add_slot(bridge, owner, calendar_id, day, attendees=[attendee])
        body = {
            "slotId": slot,
            "booker": {"name": "Åse Nordmann", "email": "ase@example.org"},
            "addBookerAsAttendee": True,
        }
        reply = await bridge.call("POST", "/booking-calendars/advice/reservations", json_body=body)
        assert reply.status == 201, reply.text
        mail = bridge.graph.module("mail").mail

        def inbox() -> list[str]:
            return [m.subject for m in mail.messages(colleague, "inbox")]

        await eventually(lambda: inbox() or None, what="the booking mail")
        assert inbox() == ["Konsultasjon - Booket"]
        attendees = bridge.graph.calendar.find(owner, slot).record.fields["attendees"]
        assert sorted(a["emailAddress"]["address"] for a in attendees) == sorted(
            [colleague, "ase@example.org"]
        )

        await bridge.call("DELETE", f"/booking-calendars/advice/reservations/{reply.body['id']}")
        await eventually(lambda: len(inbox()) == 2 or None, what="the cancellation mail")
        assert sorted(inbox()) == ["Booking avlyst: Konsultasjon", "Konsultasjon - Booket"]
        attendees = bridge.graph.calendar.find(owner, slot).record.fields["attendees"]
        assert [a["emailAddress"]["address"] for a in attendees] == [colleague]
