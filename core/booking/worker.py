"""The `booking-reservations` worker: books a claimed slot in Outlook, or restores it.

Booking, in order, each step recorded on the reservation row before the next:
1. a snapshot of the event as the admin left it (subject, body, attendees, attachments);
2. the booker's documents attached (from Blob Storage), then the PDF summary of the form;
3. the subject suffixed, the booker's details above the body, the booker added as attendee
   when the form asked;
4. the attendees notified (one mail, sent at most once);
5. `booking.reserved` told to the host, then the row marked `booked`.
A retry skips what the row says is done; an attachment a crashed attempt added but did not
record is found by name among the attachments that were not there in the snapshot.

Undoing (a cancellation, or a booking that failed for good) removes exactly what the bridge
added — its attachments, its suffix, its attendee, its lines in the body — then gives the
slot's claim back and tells the host (`booking.cancelled` / `booking.failed`).

One worker at a time per reservation: it leases the row (`lease_owner`/`lease_until`); a
message that finds the lease held comes back when it runs out. A cancellation that arrives
while a booking is under way is carried out by that worker as soon as the booking is done.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from core.booking.queue import ReservationMessage, ReservationQueue
from core.booking.requests import MAX_DOCUMENT_BYTES
from core.booking.summary import BookingSummary, SummaryField, summary_file_name, summary_pdf
from core.calendar.sync import Emitter
from core.errors import NotFound, Reportable, StaleEtag, StoreError, StoreUnavailable, describe
from core.graph.errors import (
    BadRequest,
    ConsentMissing,
    GraphError,
    GraphUnavailable,
    MalformedResponse,
    Throttled,
    TokenUnavailable,
)
from core.graph.errors import NotFound as GraphNotFound
from core.graph.model import Attachment, Attendee, BodyType, Event, EventChanges, OutgoingMail
from core.graph.port import GraphGateway
from core.graph_access import GraphProvider
from core.host import Emission
from core.i18n import Text, text
from core.mail.staging import DocumentStore
from core.runs import Clock, utc_now
from core.store import Tables
from core.store.records import (
    BookingCalendar,
    Reservation,
    ReservationStatus,
    SlotClaim,
    Tenant,
)
from core.timezones import zone_for

log = logging.getLogger(__name__)

# Long enough for 50 MB of uploads at a slow Graph; a crashed worker delays its retry this long.
LEASE = timedelta(minutes=5)
# host.json's maxDequeueCount: the delivery that may not fail again (the next would be poison).
MAX_DELIVERIES = 5
MAX_REQUEUES = 10
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_MAX_BODY_KEPT = 30_000  # characters of the original body the row keeps to restore it

# Failures a later delivery may get past; anything else (the event is gone, consent is
# missing, Graph refuses the request) fails the booking at once.
TRANSIENT = (Throttled, GraphUnavailable, MalformedResponse, StoreUnavailable, StaleEtag)
PERMANENT = (GraphNotFound, ConsentMissing, TokenUnavailable, BadRequest)

RESERVED = "booking.reserved"
CANCELLED = "booking.cancelled"
FAILED = "booking.failed"


class BookingFailed(Reportable):
    """The booking cannot be finished; the message says why in plain words."""


class _Gone(Exception):
    """The reservation row disappeared (its tenant was deleted): nothing is left to do."""


def _attendee_dict(a: Attendee) -> dict[str, str]:
    return {"address": a.address, "name": a.name, "type": a.type}


def _attendee(raw: dict[str, str]) -> Attendee:
    return Attendee(address=raw["address"], name=raw.get("name", ""), type=raw.get("type", "required"))


class ReservationWorker:
    def __init__(
        self,
        tables: Tables,
        graphs: GraphProvider,
        documents: DocumentStore,
        queue: ReservationQueue,
        outbox: Emitter,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._tables = tables
        self._reservations = tables.repo(Reservation)
        self._claims = tables.repo(SlotClaim)
        self._graphs = graphs
        self._documents = documents
        self._queue = queue
        self._outbox = outbox
        self._clock = clock
        self._owner = uuid.uuid4().hex

    async def run(self, message: ReservationMessage, *, delivery: int = 1) -> None:
        """Handle one queue delivery (`delivery` = the queue's dequeue count). A transient
        failure raises, so the queue retries; on the last delivery it fails the booking
        instead, so the slot is released and the host told, not left claimed."""
        tenant = await self._tables.repo(Tenant).get(*Tenant.key(message.tenant_id))
        row = await self._reservations.get(
            *Reservation.key(message.tenant_id, message.booking_calendar, message.reservation_id)
        )
        if (
            tenant is None
            or row is None
            or row.status
            not in (
                ReservationStatus.PENDING,
                ReservationStatus.CANCELLING,
            )
        ):
            return
        row, taken = await self._take(row)
        if not taken:
            if row.lease_until is not None and message.attempt < MAX_REQUEUES:
                wait = max(1.0, (row.lease_until - self._clock()).total_seconds() + 1)
                await self._queue.send(message.again(), delay=wait)
            return
        try:
            await self._work(tenant, row, last=delivery >= MAX_DELIVERIES)
        except _Gone:
            return
        finally:
            with contextlib.suppress(Exception):
                await self._let_go(row)

    # --- the lease -----------------------------------------------------------------------------

    async def _take(self, row: Reservation) -> tuple[Reservation, bool]:
        now = self._clock()
        taken = False

        def take(current: Reservation | None) -> Reservation:
            nonlocal taken
            if current is None:
                raise _Gone
            held = current.lease_owner not in (None, self._owner)
            if held and current.lease_until is not None and current.lease_until > now:
                taken = False
                return current
            taken = True
            return current.model_copy(
                update={
                    "lease_owner": self._owner,
                    "lease_until": now + LEASE,
                    "attempts": current.attempts + 1,
                }
            )

        try:
            row = await self._reservations.mutate(row.partition_key, row.row_key, take)
        except _Gone:
            return row, False
        return row, taken

    async def _let_go(self, row: Reservation) -> None:
        def release(current: Reservation | None) -> Reservation:
            if current is None:
                raise _Gone
            if current.lease_owner != self._owner:
                return current
            return current.model_copy(update={"lease_owner": None, "lease_until": None})

        with contextlib.suppress(_Gone):
            await self._reservations.mutate(row.partition_key, row.row_key, release)

    async def _record(self, row: Reservation, update: Callable[[Reservation], dict[str, Any]]) -> Reservation:
        """Write one step's result onto the current row (whatever its status became meanwhile)."""
        now = self._clock()

        def apply(current: Reservation | None) -> Reservation:
            if current is None:
                raise _Gone
            return current.model_copy(update={**update(current), "updated_at": now})

        return await self._reservations.mutate(row.partition_key, row.row_key, apply)

    # --- what to do ------------------------------------------------------------------------------

    async def _work(self, tenant: Tenant, row: Reservation, *, last: bool) -> None:
        config = await self._tables.repo(BookingCalendar).get(
            *BookingCalendar.key(row.tenant_id, row.booking_calendar)
        )
        gateway = await self._graphs.gateway(tenant)
        if row.status is ReservationStatus.PENDING:
            try:
                if config is None:
                    raise BookingFailed("the booking calendar was deleted before the booking was finished")
                row = await self._book(tenant, config, gateway, row)
            except (*PERMANENT, BookingFailed) as exc:
                await self._undo(
                    tenant, config, gateway, row, ReservationStatus.FAILED, _reason(exc), last=True
                )
                return
            except TRANSIENT as exc:
                reason = _reason(exc)
                if not last:
                    await self._record(row, lambda _: {"error": reason})
                    raise
                reason += f" (gave up after {MAX_DELIVERIES} attempts)"
                await self._undo(tenant, config, gateway, row, ReservationStatus.FAILED, reason, last=True)
                return
        if row.status is ReservationStatus.CANCELLING:
            await self._undo(tenant, config, gateway, row, ReservationStatus.CANCELLED, None, last=last)

    # --- booking ---------------------------------------------------------------------------------

    async def _book(
        self, tenant: Tenant, config: BookingCalendar, gateway: GraphGateway, row: Reservation
    ) -> Reservation:
        owner, event_id = row.owner, row.slot_id
        event = await gateway.get_event(owner, event_id)
        attachments = await gateway.list_event_attachments(owner, event_id)
        if not row.snapshot_taken:
            row = await self._record(row, lambda _: _snapshot(event, attachments))
        unrecorded = _unrecorded(row, attachments)

        for index, document in enumerate(row.documents):
            if document.attachment_id is not None:
                continue
            found = _take_named(unrecorded, document.name)
            if found is None:
                data = await self._documents.load(document.blob_name, max_bytes=MAX_DOCUMENT_BYTES)
                if data is None:
                    raise BookingFailed("an uploaded document was lost before it could be attached")
                added = await gateway.add_event_attachment(
                    owner, event_id, name=document.name, content_type=document.content_type, content=data
                )
                found = added.id

            def attached(current: Reservation, index: int = index, found: str = found) -> dict[str, Any]:
                documents = list(current.documents)
                documents[index] = documents[index].model_copy(update={"attachment_id": found})
                return {"documents": documents}

            row = await self._record(row, attached)

        if config.add_summary and row.summary_attachment_id is None:
            summary = _summary(tenant, config, row)
            name = summary_file_name(summary)
            found = _take_named(unrecorded, name)
            if found is None:
                added = await gateway.add_event_attachment(
                    owner, event_id, name=name, content_type="application/pdf", content=summary_pdf(summary)
                )
                found = added.id
            summary_id = found
            row = await self._record(row, lambda _: {"summary_attachment_id": summary_id})

        if not row.event_marked:
            await gateway.update_event(owner, event_id, _marked(tenant, row, event))
            row = await self._record(row, lambda _: {"event_marked": True, "error": None})

        if config.notify_attendees and not row.notify_started:
            row = await self._record(row, lambda _: {"notify_started": True})
            recipients = _recipients(row, owner)
            if recipients:
                await gateway.send_mail(owner, _booked_mail(tenant, config, row, recipients))

        await self._outbox.emit_many(
            row.tenant_id, [Emission(RESERVED, _event_data(row), f"{RESERVED}:{row.reservation_id}")]
        )

        def booked(current: Reservation) -> dict[str, Any]:
            if current.status is ReservationStatus.PENDING:
                return {"status": ReservationStatus.BOOKED, "error": None}
            return {}  # cancelled meanwhile: the caller undoes it next

        row = await self._record(row, booked)
        log.info(
            "slot booked", extra={"booking_id": row.booking_calendar, "reservation_id": row.reservation_id}
        )
        await self._drop_staged(row)
        return row

    # --- undoing ---------------------------------------------------------------------------------

    async def _undo(
        self,
        tenant: Tenant,
        config: BookingCalendar | None,
        gateway: GraphGateway,
        row: Reservation,
        final: ReservationStatus,
        reason: str | None,
        *,
        last: bool,
    ) -> None:
        try:
            await self._restore_event(tenant, config, gateway, row, final)
        except TRANSIENT as exc:
            why = _reason(exc)
            if not last:
                await self._record(row, lambda _: {"error": why})
                raise
            reason = _join(reason, f"the event could not be restored: {why}")
        except (GraphError, BookingFailed) as exc:
            reason = _join(reason, f"the event could not be restored: {_reason(exc)}")
        await self._release_claim(row)
        kind = CANCELLED if final is ReservationStatus.CANCELLED else FAILED
        data = _event_data(row)
        if reason:
            data["reason"] = reason
        await self._outbox.emit_many(row.tenant_id, [Emission(kind, data, f"{kind}:{row.reservation_id}")])
        row = await self._record(row, lambda _: {"status": final, "error": reason})
        log.info(
            "slot released",
            extra={
                "booking_id": row.booking_calendar,
                "reservation_id": row.reservation_id,
                "status": final.value,
            },
        )
        await self._drop_staged(row)

    async def _restore_event(
        self,
        tenant: Tenant,
        config: BookingCalendar | None,
        gateway: GraphGateway,
        row: Reservation,
        final: ReservationStatus,
    ) -> None:
        owner, event_id = row.owner, row.slot_id
        try:
            event = await gateway.get_event(owner, event_id)
        except GraphNotFound:
            return  # the slot is gone: nothing of ours is left on it
        if row.snapshot_taken:
            attachments = await gateway.list_event_attachments(owner, event_id)
            ours = _ours(row, attachments, tenant, config)
            for attachment in attachments:
                if attachment.id in ours:
                    with contextlib.suppress(GraphNotFound):
                        await gateway.delete_event_attachment(owner, event_id, attachment.id)
        changes = _unmarked(row, event)
        if changes is not None:
            await gateway.update_event(owner, event_id, changes)
        notify = config is not None and config.notify_attendees
        if (
            final is ReservationStatus.CANCELLED
            and notify
            and row.notify_started
            and not row.cancel_notify_started
        ):
            assert config is not None
            row = await self._record(row, lambda _: {"cancel_notify_started": True})
            recipients = _recipients(row, owner)
            if recipients:
                await gateway.send_mail(owner, _cancelled_mail(tenant, config, row, recipients))

    async def _release_claim(self, row: Reservation) -> None:
        claim = await self._claims.get(*SlotClaim.key(row.tenant_id, row.booking_calendar, row.slot_id))
        if claim is not None and claim.reservation_id == row.reservation_id:
            with contextlib.suppress(NotFound, StaleEtag):
                await self._claims.delete(claim)

    async def _drop_staged(self, row: Reservation) -> None:
        for document in row.documents:
            try:
                await self._documents.delete(document.blob_name)
            except (StoreError, ValueError):
                log.warning("could not delete a staged booking document", exc_info=True)


# --- pure helpers -----------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    return describe(exc, limit=500)


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _snapshot(event: Event, attachments: list[Attachment]) -> dict[str, Any]:
    body = event.body if len(event.body) <= _MAX_BODY_KEPT else None
    return {
        "snapshot_taken": True,
        "preexisting_attachments": [a.id for a in attachments],
        "original_subject": event.subject,
        "original_body": body,
        "original_body_type": event.body_type.value,
        "original_attendees": [_attendee_dict(a) for a in event.attendees],
    }


def _unrecorded(row: Reservation, attachments: list[Attachment]) -> list[Attachment]:
    """Attachments neither the admin's (in the snapshot) nor recorded as ours: what a crashed
    attempt may have added."""
    known = set(row.preexisting_attachments)
    known |= {d.attachment_id for d in row.documents if d.attachment_id}
    if row.summary_attachment_id:
        known.add(row.summary_attachment_id)
    return [a for a in attachments if a.id not in known]


def _take_named(candidates: list[Attachment], name: str) -> str | None:
    for attachment in candidates:
        if attachment.name == name:
            candidates.remove(attachment)
            return attachment.id
    return None


def _ours(
    row: Reservation, attachments: list[Attachment], tenant: Tenant, config: BookingCalendar | None
) -> set[str]:
    """What the bridge added: recorded ids, and unrecorded ones with a name it would use."""
    ours = {d.attachment_id for d in row.documents if d.attachment_id}
    if row.summary_attachment_id:
        ours.add(row.summary_attachment_id)
    names = {d.name for d in row.documents}
    if config is not None and config.add_summary:
        names.add(summary_file_name(_summary(tenant, config, row)))
    ours |= {a.id for a in _unrecorded(row, attachments) if a.name in names}
    return ours


def _booker_line(tenant: Tenant, row: Reservation) -> str:
    booker = row.booker
    who = booker.name + (f" <{booker.email}>" if booker.email else "")
    if booker.phone:
        who += f", {booker.phone}"
    return f"{text(Text.BOOKED_BY, tenant.language)}: {who}"


def _reference_line(tenant: Tenant, row: Reservation) -> str:
    return f"{text(Text.BOOKING_REFERENCE, tenant.language)}: {row.reservation_id}"


def _marked(tenant: Tenant, row: Reservation, event: Event) -> EventChanges:
    """The booked event: suffix, booker's details above the admin's body, booker as attendee."""
    base = row.original_subject if row.original_subject is not None else event.subject
    subject = base if base.endswith(row.booked_suffix) else (base + row.booked_suffix)[:255]
    lines = (_booker_line(tenant, row), _reference_line(tenant, row))
    original = row.original_body if row.original_body is not None else event.body
    if event.body_type is BodyType.HTML:
        block = "<p>" + "<br>".join(html.escape(line) for line in lines) + "</p><hr>"
        body = _after_body_tag(original, block)
    else:
        body = "\n".join(lines) + "\n\n" + original
    attendees = None
    if row.add_booker_as_attendee and row.booker.email:
        current = list(event.attendees)
        if all(a.address.lower() != row.booker.email for a in current):
            attendees = (*current, Attendee(address=row.booker.email, name=row.booker.name))
    return EventChanges(subject=subject, body=body, body_type=event.body_type, attendees=attendees)


def _after_body_tag(document: str, block: str) -> str:
    """`block` at the start of an HTML body: after `<body …>` when the document has one (Outlook
    stores whole documents), else in front."""
    match = _BODY_TAG.search(document)
    if match is None:
        return block + document
    return document[: match.end()] + block + document[match.end() :]


def _unmarked(row: Reservation, event: Event) -> EventChanges | None:
    """What takes the bridge's marks off the event, keeping any edits the admin made since."""
    subject = None
    if row.booked_suffix and event.subject.endswith(row.booked_suffix):
        subject = event.subject[: -len(row.booked_suffix)]
    body = body_type = None
    attendees = None
    if row.event_marked:
        if row.original_body is not None:
            body = row.original_body
            body_type = BodyType(row.original_body_type or event.body_type.value)
        if row.add_booker_as_attendee and row.booker.email:
            originally = {a["address"].lower() for a in row.original_attendees}
            if row.booker.email not in originally:
                kept = tuple(a for a in event.attendees if a.address.lower() != row.booker.email)
                if len(kept) != len(event.attendees):
                    attendees = kept
    if subject is None and body is None and attendees is None:
        return None
    return EventChanges(subject=subject, body=body, body_type=body_type, attendees=attendees)


def _recipients(row: Reservation, owner: str) -> tuple[str, ...]:
    """Who hears of the booking: the slot's attendees and, when added, the booker."""
    addresses = [a["address"].lower() for a in row.original_attendees]
    if row.add_booker_as_attendee and row.booker.email:
        addresses.append(row.booker.email)
    seen: dict[str, None] = {}
    for address in addresses:
        if address != owner.lower():
            seen.setdefault(address)
    return tuple(seen)


def _when(row: Reservation, config: BookingCalendar) -> str:
    zone = zone_for(config.time_zone) or UTC
    start = (row.slot_start or datetime.min.replace(tzinfo=UTC)).astimezone(zone)
    end = (row.slot_end or start).astimezone(zone)
    return f"{start:%Y-%m-%d %H:%M}-{end:%H:%M} ({config.time_zone})"


def _booked_mail(
    tenant: Tenant, config: BookingCalendar, row: Reservation, to: tuple[str, ...]
) -> OutgoingMail:
    subject = (row.original_subject or row.slot_subject) + row.booked_suffix
    lines = [subject, _when(row, config), "", _booker_line(tenant, row), _reference_line(tenant, row)]
    return OutgoingMail(subject=subject[:255], body="\n".join(lines), to=to, save_to_sent_items=False)


def _cancelled_mail(
    tenant: Tenant, config: BookingCalendar, row: Reservation, to: tuple[str, ...]
) -> OutgoingMail:
    heading = text(Text.BOOKING_CANCELLED, tenant.language)
    subject = f"{heading}: {row.original_subject or row.slot_subject}"
    lines = [subject, _when(row, config), "", _reference_line(tenant, row)]
    return OutgoingMail(subject=subject[:255], body="\n".join(lines), to=to, save_to_sent_items=False)


def _summary(tenant: Tenant, config: BookingCalendar, row: Reservation) -> BookingSummary:
    start = row.slot_start or datetime.min.replace(tzinfo=UTC)
    return BookingSummary(
        title=config.display_name,
        slot_subject=row.original_subject or row.slot_subject,
        start=start,
        end=row.slot_end or start,
        time_zone=config.time_zone,
        booker_name=row.booker.name,
        booker_email=row.booker.email,
        fields=tuple(
            SummaryField(label, _shown(value, tenant.language)) for label, value in row.answers.items()
        ),
        documents=tuple(d.name for d in row.documents),
        reference=row.reservation_id,
        created_at=row.created_at,
        language=tenant.language,
    )


def _shown(value: object, language: str) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return text(Text.YES if value else Text.NO, language)
    return str(value)


def _event_data(row: Reservation) -> dict[str, Any]:
    """What the host hears: the reservation, without the documents' bytes."""
    return {
        "reservationId": row.reservation_id,
        "bookingCalendarId": row.booking_calendar,
        "slotId": row.slot_id,
        "subject": row.original_subject or row.slot_subject,
        "start": row.slot_start.isoformat() if row.slot_start else None,
        "end": row.slot_end.isoformat() if row.slot_end else None,
        "booker": row.booker.model_dump(exclude_none=True),
        "fields": row.answers,
        "documents": [{"name": d.name, "size": d.size, "sha256": d.sha256} for d in row.documents],
        "summaryAttached": row.summary_attachment_id is not None,
    }
