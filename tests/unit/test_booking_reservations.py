"""Reserving a slot and the worker that books it, over memory tables, the fake Graph, the
in-memory document store and the real outbox: one claim per slot, nothing written for a bad or
vanished slot, every step of the worker resumable, a cancellation that undoes exactly what the
bridge did."""

from __future__ import annotations

import asyncio
import base64
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pypdf import PdfReader

from core.booking.queue import InMemoryReservationQueue, ReservationMessage
from core.booking.reservations import ReservationService
from core.booking.slots import list_slots
from core.booking.worker import LEASE, MAX_DELIVERIES, ReservationWorker
from core.graph.errors import ConsentMissing, GraphUnavailable
from core.graph.fake import InMemoryGraph
from core.graph.model import Attendee, BodyType, EventChanges, EventDraft
from core.host import InMemoryDeliveryQueue, Outbox
from core.host.records import OutboxEntry
from core.host.store import OutboxStore
from core.housekeeping import housekeeping
from core.mail.staging import InMemoryDocumentStore
from core.request_errors import EditConflict, InvalidInput, ItemGone
from core.store import memory_tables
from core.store.records import BookingCalendar, Reservation, ReservationStatus, SlotClaim, Tenant
from tests.unit.calendar_world import Clock

TENANT = "acme"
OWNER = "booking@acme.example"
COLLEAGUE = "kollega@acme.example"
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # Monday
SLOT_START = datetime(2026, 3, 4, 8, 0, tzinfo=UTC)  # Wednesday 09:00 in Oslo
PDF = b"%PDF-1.7 referral"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class World:
    def __init__(self) -> None:
        self.tables = memory_tables()
        self.graph = InMemoryGraph()
        self.graph.add_user(OWNER, "Booking")
        self.graph.add_user(COLLEAGUE, "Kollega")
        self.calendar = self.graph.add_calendar(OWNER, "Bookable slots")
        self.clock = Clock(NOW)
        self.documents = InMemoryDocumentStore(clock=self.clock)
        self.queue = InMemoryReservationQueue()
        self.outbox = Outbox(self.tables, InMemoryDeliveryQueue(), clock=self.clock)
        self.tenant = Tenant(tenant_id=TENANT, language="nb", time_zone="Europe/Oslo")
        graph = self.graph

        class Graphs:
            async def gateway(self, tenant: Tenant) -> Any:
                return graph

        self.graphs = Graphs()

    async def setup(self, **config: Any) -> BookingCalendar:
        await self.tables.repo(Tenant).upsert(self.tenant)
        self.config = await self.tables.repo(BookingCalendar).upsert(
            BookingCalendar(
                tenant_id=TENANT,
                booking_id="advice",
                display_name="Rådgivning",
                owner=OWNER,
                calendar="Bookable slots",
                calendar_id=self.calendar.id,
                time_zone="Europe/Oslo",
                booked_suffix=" - Booket",
                **config,
            )
        )
        return self.config

    def slot(self, subject: str = "Konsultasjon", day: int = 0, **draft: Any) -> str:
        start = SLOT_START + timedelta(days=day)
        event = EventDraft(subject=subject, start=start, end=start + timedelta(hours=1), **draft)
        return self.graph.outlook_create_event(OWNER, self.calendar.id, event).id

    def service(self) -> ReservationService:
        return ReservationService(
            self.tables, self.graphs, self.documents, self.queue, self.tenant, self.clock
        )

    def worker(self) -> ReservationWorker:
        return ReservationWorker(
            self.tables, self.graphs, self.documents, self.queue, self.outbox, clock=self.clock
        )

    async def reserve(self, slot_id: str, **body: Any) -> Reservation:
        reservation, created = await self.service().reserve(self.config, self.body(slot_id, **body))
        assert created
        return reservation

    def body(self, slot_id: str, **extra: Any) -> dict[str, Any]:
        return {
            "slotId": slot_id,
            "booker": {"name": "Åse Nordmann", "email": "ase@example.org"},
            "fields": {"Årsak": "Kontroll", "Allergier": "Blåbærsyltetøy", "Samtykke": True},
            **extra,
        }

    async def drain(self, *, delivery: int = 1) -> None:
        """Play the queue: run every message sent so far."""
        for message in self.queue.take():
            await self.worker().run(message, delivery=delivery)

    async def row(self, rid: str) -> Reservation:
        found = await self.tables.repo(Reservation).get(*Reservation.key(TENANT, "advice", rid))
        assert found is not None
        return found

    async def claims(self) -> list[SlotClaim]:
        return [c async for c in self.tables.repo(SlotClaim).list(TENANT)]

    async def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (e.type, e.payload)
            async for e in OutboxStore(self.tables).rows_after(TENANT, 0)
            if isinstance(e, OutboxEntry)
        ]

    async def attachments(self, slot_id: str) -> dict[str, bytes]:
        listed = await self.graph.list_event_attachments(OWNER, slot_id)
        return {a.name: self.graph.event_attachment_content(OWNER, slot_id, a.id) for a in listed}


@pytest.fixture
async def world() -> World:
    w = World()
    await w.setup()
    return w


DOCUMENTS = [
    {"name": "henvisning.pdf", "contentType": "application/pdf", "contentBase64": b64(PDF)},
    {"name": "bilde.png", "contentType": "image/png", "contentBase64": b64(PNG)},
]


async def test_a_reservation_is_booked_with_documents_summary_suffix_and_booker_details(world: World):
    """GIVEN a slot WHEN a form reserves it with two documents THEN the answer is a pending
    reservation; after the worker the event carries the suffix, the booker's details above the
    admin's text, both documents and a summary PDF with the form's values; the host hears
    booking.reserved once and the staged copies are gone."""
    slot = world.slot(body="Rom 4", body_type=BodyType.TEXT)
    reservation = await world.reserve(slot, documents=DOCUMENTS)
    assert reservation.status is ReservationStatus.PENDING
    assert [c.slot_id for c in await world.claims()] == [slot]

    await world.drain()

    event = await world.graph.get_event(OWNER, slot)
    assert event.subject == "Konsultasjon - Booket"
    assert event.body.startswith("Booket av: Åse Nordmann <ase@example.org>\n")
    assert event.body.endswith("Rom 4")
    files = await world.attachments(slot)
    assert files["henvisning.pdf"] == PDF
    assert files["bilde.png"] == PNG
    [summary_name] = [n for n in files if n.startswith("Bookingsammendrag ")]
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(files[summary_name])).pages)
    for value in ("Kontroll", "Blåbærsyltetøy", "Åse Nordmann", "henvisning.pdf", reservation.reservation_id):
        assert value in text
    row = await world.row(reservation.reservation_id)
    assert row.status is ReservationStatus.BOOKED
    assert row.summary_attachment_id
    assert [kind for kind, _ in await world.events()] == ["booking.reserved"]
    assert [await world.documents.describe(d.blob_name) for d in row.documents] == [None, None]

    await world.worker().run(ReservationMessage(TENANT, "advice", reservation.reservation_id))
    assert len(await world.attachments(slot)) == 3  # a repeated message changes nothing
    slots = await list_slots(
        world.tables, world.graphs, world.tenant, world.config, NOW, NOW + timedelta(days=7), NOW
    )
    assert slot not in [s.event_id for s in slots]


async def test_of_100_concurrent_reservations_of_one_slot_exactly_one_wins(world: World):
    slot = world.slot()

    async def attempt(n: int) -> str:
        try:
            await world.service().reserve(world.config, world.body(slot, booker={"name": f"Person {n}"}))
        except EditConflict:
            return "409"
        return "201"

    results = await asyncio.gather(*(attempt(n) for n in range(100)))
    assert sorted(results).count("201") == 1
    assert results.count("409") == 99
    await world.drain()
    assert (await world.graph.get_event(OWNER, slot)).subject == "Konsultasjon - Booket"


async def test_a_slot_deleted_in_outlook_answers_gone_and_writes_nothing(world: World):
    slot = world.slot()
    world.graph.outlook_delete_event(OWNER, slot)
    with pytest.raises(ItemGone):
        await world.service().reserve(world.config, world.body(slot, documents=DOCUMENTS))
    assert await world.claims() == []
    assert [r async for r in world.tables.repo(Reservation).list(TENANT)] == []
    assert world.queue.sent == []
    assert repr(world.documents) == "InMemoryDocumentStore(0 documents)"


async def test_a_slot_of_another_calendar_is_gone_for_this_booking_calendar(world: World):
    other = world.graph.outlook_create_event(
        OWNER, None, EventDraft("Private", SLOT_START, SLOT_START + timedelta(hours=1))
    ).id
    with pytest.raises(ItemGone):
        await world.service().reserve(world.config, world.body(other))
    assert await world.claims() == []


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("booked", EditConflict),
        ("changed", EditConflict),
        ("notice", InvalidInput),
        ("evening", InvalidInput),
    ],
)
async def test_a_slot_that_is_not_free_as_listed_gives_its_claim_back(world: World, case: str, error: type):
    if case == "notice":
        await world.setup(notice_days=5)
    slot = world.slot("Konsultasjon - Booket" if case == "booked" else "Konsultasjon")
    extra: dict[str, Any] = {}
    if case == "changed":
        version = (await world.graph.get_event(OWNER, slot)).change_key
        world.graph.outlook_update_event(OWNER, slot, EventChanges(location="Rom 5"))
        extra["slotVersion"] = version
    if case == "evening":
        world.graph.outlook_update_event(
            OWNER,
            slot,
            EventChanges(start=SLOT_START + timedelta(hours=10), end=SLOT_START + timedelta(hours=11)),
        )
    with pytest.raises(error):
        await world.service().reserve(world.config, world.body(slot, **extra))
    assert await world.claims() == []
    assert world.queue.sent == []


async def test_a_repeated_idempotency_key_returns_the_first_reservation(world: World):
    slot = world.slot()
    first, created = await world.service().reserve(world.config, world.body(slot, idempotencyKey="form-7"))
    again, created_again = await world.service().reserve(
        world.config, world.body(slot, idempotencyKey="form-7")
    )
    assert (created, created_again) == (True, False)
    assert again.reservation_id == first.reservation_id
    assert again.idempotency_key != "form-7"  # stored hashed
    with pytest.raises(InvalidInput, match="idempotencyKey"):
        await world.service().reserve(world.config, world.body(world.slot(day=1), idempotencyKey="form-7"))


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (
            {"name": "virus.pdf", "contentType": "application/pdf", "contentBase64": b64(b"MZ\x90\x00")},
            "contentBase64",
        ),
        ({"name": "notes.exe", "contentType": "application/pdf", "contentBase64": b64(PDF)}, "name"),
        ({"name": "a.pdf", "contentType": "image/png", "contentBase64": b64(PDF)}, "contentType"),
        (
            {"name": "a.pdf", "contentType": "application/pdf", "contentBase64": "not base64!"},
            "contentBase64",
        ),
        ({"name": "../a.pdf", "contentType": "application/pdf", "contentBase64": b64(PDF)}, "name"),
    ],
)
async def test_bad_documents_are_refused_before_anything_is_claimed(world: World, document: Any, field: str):
    slot = world.slot()
    with pytest.raises(InvalidInput) as invalid:
        await world.service().reserve(world.config, world.body(slot, documents=[document]))
    assert [p.field for p in invalid.value.problems] == [f"documents[0].{field}"]
    assert await world.claims() == []


async def test_bad_fields_and_booker_are_named(world: World):
    slot = world.slot()
    body = world.body(slot, fields={"x": "a" * 10_001}, addBookerAsAttendee=True)
    body["booker"] = {"name": "Åse"}
    with pytest.raises(InvalidInput) as invalid:
        await world.service().reserve(world.config, body)
    assert "addBookerAsAttendee needs booker.email" in str(invalid.value)
    with pytest.raises(InvalidInput) as invalid:
        await world.service().reserve(world.config, world.body(slot, fields={"x": "a" * 10_001}))
    assert [p.field for p in invalid.value.problems] == ["fields.x"]


async def test_a_field_value_with_a_lone_surrogate_is_named_and_nothing_is_stored(world: World):
    """JSON can carry "\\ud800"; Table Storage cannot. Found by the R4 fuzzing: the value passed
    the checks and the reservation's insert failed with a 500."""
    slot = world.slot()
    body = world.body(slot, fields={"Årsak": "kontroll \ud800", "Alder": 42})
    with pytest.raises(InvalidInput) as invalid:
        await world.service().reserve(world.config, body)
    assert [(p.field, p.detail) for p in invalid.value.problems] == [
        ("fields.Årsak", "must be valid Unicode text")
    ]
    assert await world.claims() == []


async def test_cancelling_removes_what_the_bridge_added_and_frees_the_slot(world: World):
    """GIVEN a booked slot that had an attachment and an attendee of the admin's, with the
    booker added as attendee WHEN the reservation is cancelled THEN the admin's attachment and
    attendee stay, ours go, the subject and body are as before and the slot is listed again."""
    slot = world.slot(
        attendees=(Attendee(COLLEAGUE, "Kollega"),),
        body="<html><body><p>Rom 4</p></body></html>",
        body_type=BodyType.HTML,
    )
    await world.graph.add_event_attachment(
        OWNER, slot, name="agenda.pdf", content_type="application/pdf", content=PDF
    )
    reservation = await world.reserve(slot, documents=DOCUMENTS[:1], addBookerAsAttendee=True)
    await world.drain()
    booked = await world.graph.get_event(OWNER, slot)
    assert {a.address for a in booked.attendees} == {COLLEAGUE, "ase@example.org"}
    assert booked.body.startswith("<html><body><p>Booket av: Åse Nordmann &lt;ase@example.org&gt;<br>")

    cancelled = await world.service().cancel(world.config, reservation.reservation_id)
    assert cancelled.status is ReservationStatus.CANCELLING
    await world.drain()

    event = await world.graph.get_event(OWNER, slot)
    assert (event.subject, event.body) == ("Konsultasjon", "<html><body><p>Rom 4</p></body></html>")
    assert [a.address for a in event.attendees] == [COLLEAGUE]
    assert list(await world.attachments(slot)) == ["agenda.pdf"]
    assert await world.claims() == []
    assert (await world.row(reservation.reservation_id)).status is ReservationStatus.CANCELLED
    assert [kind for kind, _ in await world.events()] == ["booking.reserved", "booking.cancelled"]
    again = await world.reserve(slot)  # free again
    assert again.reservation_id != reservation.reservation_id


async def test_a_crash_after_an_attachment_was_added_does_not_attach_it_twice(world: World):
    slot = world.slot()
    reservation = await world.reserve(slot, documents=DOCUMENTS)
    [message] = world.queue.take()
    real = world.graph.add_event_attachment
    calls = 0

    async def add_then_die(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        attachment = await real(*args, **kwargs)
        if calls == 2:
            raise GraphUnavailable("the connection dropped after the second attachment")
        return attachment

    world.graph.add_event_attachment = add_then_die  # type: ignore[method-assign]
    with pytest.raises(GraphUnavailable):
        await world.worker().run(message, delivery=1)
    world.graph.add_event_attachment = real  # type: ignore[method-assign]
    world.clock.advance(LEASE + timedelta(seconds=1))  # the dead worker's lease runs out
    await world.worker().run(message, delivery=2)

    names = sorted(a.name for a in await world.graph.list_event_attachments(OWNER, slot))
    assert len(names) == 3
    assert names.count("bilde.png") == 1
    assert names.count("henvisning.pdf") == 1
    assert (await world.row(reservation.reservation_id)).status is ReservationStatus.BOOKED


async def test_a_permanent_failure_releases_the_slot_and_tells_the_host(world: World):
    slot = world.slot()
    reservation = await world.reserve(slot)
    world.graph.inject(OWNER, ConsentMissing("update_event: Calendars.ReadWrite is not granted"), times=1)
    await world.drain()
    row = await world.row(reservation.reservation_id)
    assert row.status is ReservationStatus.FAILED
    assert "Calendars.ReadWrite" in (row.error or "")
    assert await world.claims() == []
    [(kind, data)] = await world.events()
    assert kind == "booking.failed"
    assert "Calendars.ReadWrite" in data["reason"]


async def test_a_transient_failure_retries_and_the_last_delivery_gives_the_slot_back(world: World):
    slot = world.slot()
    reservation = await world.reserve(slot)
    [message] = world.queue.take()
    world.graph.inject(OWNER, GraphUnavailable("get_event: Graph failed (503)"), times=100)
    for delivery in range(1, MAX_DELIVERIES):
        with pytest.raises(GraphUnavailable):
            await world.worker().run(message, delivery=delivery)
        assert (await world.row(reservation.reservation_id)).status is ReservationStatus.PENDING
    await world.worker().run(message, delivery=MAX_DELIVERIES)
    row = await world.row(reservation.reservation_id)
    assert row.status is ReservationStatus.FAILED
    assert "gave up" in (row.error or "")
    assert await world.claims() == []


async def test_a_message_that_finds_the_reservation_leased_comes_back_later(world: World):
    slot = world.slot()
    reservation = await world.reserve(slot)
    [message] = world.queue.take()
    key = Reservation.key(TENANT, "advice", reservation.reservation_id)
    await world.tables.repo(Reservation).mutate(
        *key,
        lambda r: r.model_copy(update={"lease_owner": "other", "lease_until": NOW + timedelta(seconds=30)}),  # type: ignore[union-attr]
    )
    await world.worker().run(message)
    [(again, delay)] = world.queue.sent
    assert again.attempt == 1
    assert 30 <= delay <= 32
    assert (await world.graph.get_event(OWNER, slot)).subject == "Konsultasjon"


async def test_attendees_are_notified_once_when_the_calendar_asks_for_it(world: World):
    await world.setup(notify_attendees=True)
    slot = world.slot(attendees=(Attendee(COLLEAGUE, "Kollega"),))
    reservation = await world.reserve(slot)
    await world.drain()
    await world.worker().run(ReservationMessage(TENANT, "advice", reservation.reservation_id))
    [mail] = world.graph.sent_mail(OWNER)
    assert mail.to == (COLLEAGUE,)
    assert mail.subject == "Konsultasjon - Booket"
    await world.service().cancel(world.config, reservation.reservation_id)
    await world.drain()
    assert [m.subject for m in world.graph.sent_mail(OWNER)][1].startswith("Booking avlyst")


async def test_housekeeping_releases_orphaned_claims_and_requeues_stuck_reservations(world: World):
    """GIVEN a claim whose request died before its reservation row, and a pending reservation
    whose queue message was lost WHEN housekeeping runs 10 minutes later THEN the orphaned
    claim is gone (its slot listed again) and the stuck reservation is queued and then booked;
    a fresh claim is left alone."""
    orphan_slot, stuck_slot, fresh_slot = world.slot(), world.slot(day=1), world.slot(day=2)
    claims = world.tables.repo(SlotClaim)
    await claims.insert(
        SlotClaim(
            tenant_id=TENANT,
            booking_calendar="advice",
            slot_id=orphan_slot,
            reservation_id="r-x",
            claimed_at=NOW,
        )
    )
    stuck = await world.reserve(stuck_slot)
    world.queue.take()  # the message is lost
    world.clock.advance(timedelta(minutes=11))
    await claims.insert(
        SlotClaim(
            tenant_id=TENANT,
            booking_calendar="advice",
            slot_id=fresh_slot,
            reservation_id="r-y",
            claimed_at=world.clock(),
        )
    )

    run = await housekeeping(
        world.tables.runs(), 30, clock=world.clock, outbox=world.tables, reservations=world.queue
    )

    assert run.counts["orphaned_slot_claims_released"] == 1
    assert run.counts["stuck_reservations_requeued"] == 1
    assert sorted(c.slot_id for c in await world.claims()) == sorted([stuck_slot, fresh_slot])
    await world.drain()
    assert (await world.row(stuck.reservation_id)).status is ReservationStatus.BOOKED
