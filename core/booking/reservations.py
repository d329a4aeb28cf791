"""Reserving a slot (`POST …/booking-calendars/{id}/reservations`), reading and cancelling a
reservation.

Booking is two steps. The request claims the slot (an insert of the slot's `SlotClaim` key:
of concurrent requests exactly one wins, the rest answer 409), then re-reads the slot event in
Graph — still there (else 410, and the claim is given back), unchanged if the form said which
version it listed, not booked, inside the calendar's rules — stages the documents, records the
reservation and queues it: 201. The `booking-reservations` worker (`core.booking.worker`) then
does the Outlook part. Whatever fails before the 201 gives the claim back and leaves nothing
behind, so a failed request changes nothing.

A cancellation marks the reservation `cancelling` and queues it; the worker restores the slot.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from typing import Any

from core.booking.queue import ReservationMessage, ReservationQueue
from core.booking.requests import ReservationIn, Upload, parse_reservation
from core.booking.slots import plan_slots
from core.errors import AlreadyExists, NotFound, StaleEtag, StoreError
from core.graph.errors import ConsentMissing, GraphUnavailable, Throttled, TokenUnavailable
from core.graph.errors import NotFound as GraphNotFound
from core.graph.model import Event
from core.graph_access import GraphProvider
from core.mail.staging import DocumentStore
from core.request_errors import EditConflict, InvalidInput, ItemGone, ItemNotFound, UpstreamUnavailable
from core.runs import Clock
from core.store import Tables
from core.store.keys import short_hash
from core.store.records import (
    Booker,
    BookingCalendar,
    Reservation,
    ReservationStatus,
    ReservedDocument,
    SlotClaim,
    Tenant,
)

log = logging.getLogger(__name__)

_ID_PREFIX = "r-"


def reservation_id(tenant_id: str, booking_id: str, idempotency_key: str | None) -> str:
    """A new reservation's id; with the host's idempotency key, the same id every time, so a
    retried POST finds the reservation it made."""
    if idempotency_key is None:
        return _ID_PREFIX + uuid.uuid4().hex
    return _ID_PREFIX + short_hash(f"{tenant_id}\n{booking_id}\n{idempotency_key}")


def blob_name(tenant_id: str, reservation: str, index: int) -> str:
    """Where a reservation's document waits for the worker (names never carry file names)."""
    return f"bookings/{short_hash(tenant_id)}/{reservation}/{index}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def reservation_view(reservation: Reservation) -> dict[str, Any]:
    return {
        "id": reservation.reservation_id,
        "bookingCalendarId": reservation.booking_calendar,
        "slotId": reservation.slot_id,
        "status": reservation.status.value,
        "slot": {
            "subject": reservation.slot_subject,
            "start": _iso(reservation.slot_start),
            "end": _iso(reservation.slot_end),
        },
        "booker": reservation.booker.model_dump(exclude_none=True),
        "addBookerAsAttendee": reservation.add_booker_as_attendee,
        "fields": reservation.answers,
        "documents": [
            {
                "name": d.name,
                "contentType": d.content_type,
                "size": d.size,
                "sha256": d.sha256,
                "attached": d.attachment_id is not None,
            }
            for d in reservation.documents
        ],
        "summaryAttached": reservation.summary_attachment_id is not None,
        "error": reservation.error,
        "createdAt": _iso(reservation.created_at),
        "updatedAt": _iso(reservation.updated_at),
    }


async def _single(data: bytes) -> Any:
    yield data


class ReservationService:
    """One tenant's reservations."""

    def __init__(
        self,
        tables: Tables,
        graphs: GraphProvider,
        documents: DocumentStore,
        queue: ReservationQueue,
        tenant: Tenant,
        clock: Clock,
    ) -> None:
        self._claims = tables.repo(SlotClaim)
        self._reservations = tables.repo(Reservation)
        self._graphs = graphs
        self._documents = documents
        self._queue = queue
        self._tenant = tenant
        self._clock = clock

    # --- reserving ---------------------------------------------------------------------------

    async def reserve(self, config: BookingCalendar, body: object) -> tuple[Reservation, bool]:
        """(the reservation, whether this request made it). Raises EditConflict (409) when the
        slot is taken or changed, ItemGone (410) when it was deleted in Outlook, InvalidInput
        (422) for bad input or a slot the calendar's rules do not offer."""
        request = parse_reservation(body)
        spec = request.spec
        tenant_id = self._tenant.tenant_id
        rid = reservation_id(tenant_id, config.booking_id, spec.idempotency_key)
        if spec.idempotency_key is not None:
            earlier = await self._reservations.get(*Reservation.key(tenant_id, config.booking_id, rid))
            if earlier is not None:
                if earlier.slot_id != spec.slot_id:
                    raise InvalidInput.one("idempotencyKey", "was used before for another slot")
                return earlier, False
        claim = SlotClaim(
            tenant_id=tenant_id,
            booking_calendar=config.booking_id,
            slot_id=spec.slot_id,
            reservation_id=rid,
            claimed_at=self._clock(),
        )
        try:
            claim = await self._claims.insert(claim)
        except AlreadyExists:
            raise EditConflict("The slot is already reserved.") from None
        staged: list[ReservedDocument] = []
        recorded = False
        try:
            event = await self._check_slot(config, spec)
            if config.attach_documents:
                staged = await self._stage(rid, request.uploads)
            reservation = await self._reservations.insert(
                Reservation(
                    tenant_id=tenant_id,
                    booking_calendar=config.booking_id,
                    reservation_id=rid,
                    slot_id=spec.slot_id,
                    owner=config.owner,
                    booked_suffix=config.booked_suffix,
                    booker=Booker(name=spec.booker.name, email=spec.booker.email, phone=spec.booker.phone),
                    answers=request.fields,
                    add_booker_as_attendee=spec.add_booker_as_attendee,
                    idempotency_key=_key_hash(spec.idempotency_key),
                    slot_subject=event.subject,
                    slot_start=event.start,
                    slot_end=event.end,
                    documents=staged,
                    created_at=self._clock(),
                    updated_at=self._clock(),
                )
            )
            recorded = True
            await self._queue.send(ReservationMessage(tenant_id, config.booking_id, rid))
        except BaseException:
            await self._undo_claim(claim, rid if recorded else None, staged)
            raise
        log.info("slot reserved", extra={"booking_id": config.booking_id, "reservation_id": rid})
        return reservation, True

    async def _check_slot(self, config: BookingCalendar, spec: ReservationIn) -> Event:
        gateway = await self._graphs.gateway(self._tenant)
        try:
            event = await gateway.get_event(config.owner, spec.slot_id, calendar_id=config.calendar_id)
        except GraphNotFound:
            raise ItemGone("The slot no longer exists in Outlook.") from None
        except (Throttled, GraphUnavailable):
            raise UpstreamUnavailable("Microsoft Graph is unavailable; retry later.") from None
        except (ConsentMissing, TokenUnavailable) as exc:
            raise UpstreamUnavailable(f"The bridge cannot read the booking calendar: {exc}") from None
        if event.is_cancelled:
            raise ItemGone("The slot was cancelled in Outlook.")
        if event.subject.endswith(config.booked_suffix):
            raise EditConflict("The slot is already booked.")
        if spec.slot_version is not None and spec.slot_version != event.change_key:
            raise EditConflict("The slot changed since it was listed; list the slots again.")
        slots = plan_slots([event], config, self._clock(), set())
        if not slots:
            raise InvalidInput.one(
                "slotId",
                "is not a slot this booking calendar offers (outside its hours or days, all-day or past)",
            )
        if not slots[0].available:
            raise InvalidInput.one("slotId", f"cannot be booked yet: {slots[0].reason}")
        return event

    async def _stage(self, rid: str, uploads: tuple[Upload, ...]) -> list[ReservedDocument]:
        staged: list[ReservedDocument] = []
        for index, upload in enumerate(uploads):
            name = blob_name(self._tenant.tenant_id, rid, index)
            try:
                stored = await self._documents.stage(
                    name, _single(upload.content), content_type=upload.content_type
                )
            except StoreError:
                raise UpstreamUnavailable("Document storage is unavailable; retry later.") from None
            staged.append(
                ReservedDocument(
                    name=upload.name,
                    content_type=upload.content_type,
                    size=stored.size,
                    sha256=stored.sha256,
                    blob_name=name,
                )
            )
        return staged

    async def _undo_claim(self, claim: SlotClaim, rid: str | None, staged: list[ReservedDocument]) -> None:
        """Give the slot back after a request that failed before its 201 (best effort: what
        cannot be undone now is an orphan the sweeper finds)."""
        try:
            if rid is not None:
                with contextlib.suppress(NotFound):
                    await self._reservations.delete(
                        Reservation(
                            tenant_id=claim.tenant_id,
                            booking_calendar=claim.booking_calendar,
                            reservation_id=rid,
                            slot_id=claim.slot_id,
                        )
                    )
            for document in staged:
                await self._documents.delete(document.blob_name)
            with contextlib.suppress(NotFound, StaleEtag):
                await self._claims.delete(claim)
        except Exception:
            log.exception("could not give back a slot claim after a failed reservation")

    # --- reading and cancelling -----------------------------------------------------------------

    async def get(self, config: BookingCalendar, rid: str) -> Reservation:
        found = None
        if rid.startswith(_ID_PREFIX) and len(rid) <= 64 and rid.isascii() and rid.isprintable():
            found = await self._reservations.get(
                *Reservation.key(self._tenant.tenant_id, config.booking_id, rid)
            )
        if found is None:
            raise ItemNotFound(f"Reservation '{rid[:64]}' does not exist.")
        return found

    async def list(self, config: BookingCalendar) -> list[Reservation]:
        low, high = Reservation.calendar_range(config.booking_id)
        partition = Reservation.key(self._tenant.tenant_id, config.booking_id, "-")[0]
        rows = self._reservations.list(partition, row_key_from=low, row_key_to=high)
        return sorted(
            [r async for r in rows], key=lambda r: (r.created_at or self._clock(), r.reservation_id)
        )

    async def cancel(self, config: BookingCalendar, rid: str) -> Reservation:
        """Mark the reservation `cancelling` and queue the worker that restores the slot.
        Cancelling again, or after it was cancelled, changes nothing; a failed reservation has
        released its slot already."""
        current = await self.get(config, rid)

        def cancelling(row: Reservation | None) -> Reservation:
            if row is None:
                raise ItemNotFound(f"Reservation '{rid}' does not exist.")
            if row.status in (ReservationStatus.PENDING, ReservationStatus.BOOKED):
                return row.model_copy(
                    update={"status": ReservationStatus.CANCELLING, "updated_at": self._clock()}
                )
            return row

        row = await self._reservations.mutate(current.partition_key, current.row_key, cancelling)
        if row.status is ReservationStatus.CANCELLING:
            await self._queue.send(
                ReservationMessage(row.tenant_id, row.booking_calendar, row.reservation_id)
            )
        return row


def _key_hash(key: str | None) -> str | None:
    return hashlib.sha256(key.encode("utf-8")).hexdigest() if key is not None else None
