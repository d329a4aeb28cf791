"""The outbox: how capabilities tell a host something. They call `Outbox.emit` and nothing else.

`emit` appends the event to the tenant's outbox partition under the next sequence number and
nudges the dispatcher. The protocol (reads and writes in this order) keeps three promises:

1. **Order without holes a reader could skip.** A sequence is reserved (`reserve_sequences`)
   before its row is written, so for a moment a later row can exist while an earlier one does
   not. Readers never step over a missing sequence: they wait, and only after the gap is
   `OUTBOX_GAP_GRACE_SECONDS` old do they *close* it by inserting a gap row there. A writer
   whose insert then meets that gap (AlreadyExists) reserves a new sequence and writes there.
   Inserts are atomic, so the slow event and the gap can never both land: nothing is skipped,
   whatever the timing. The grace only decides how long a crashed writer holds readers up.
2. **Idempotent by event id.** With `event_id`, an index row (partition `tenant|ids`, row =
   event id) is inserted before the event and names its sequence; it is the arbiter. A retried
   emit finds it and either returns the event already written there or, if the first attempt
   died between the two inserts, writes it now. Two concurrent emits of one id: one index
   insert wins, the loser closes the sequence it had reserved as a gap and follows the winner.
   If the sequence the index names was closed as a gap (too slow), the index is moved, with its
   etag, to a new sequence. So one id is written at most once, at the sequence its index names.
3. **Never lost.** The event row is the commit point. The nudge after it is best effort: if it
   fails, the safety-net timer (`core.host.sweep`) finds the tenant within a minute.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.errors import AlreadyExists, StaleEtag
from core.host.envelope import check_event
from core.host.queues import DeliveryQueue
from core.host.records import EventIdIndex, OutboxEntry, OutboxGap
from core.host.store import OutboxStore
from core.runs import Clock, utc_now
from core.store import Tables, codec
from core.store.records import OutboxEvent
from core.store.sequences import OUTBOX, reserve_sequences

log = logging.getLogger(__name__)

# Each round either returns or lost a race to another writer or reader (which then made
# progress), so this bound is only reached under pathological contention.
_ROUNDS = 20


class EmitFailed(RuntimeError):
    """The event could not be appended after many lost races; nothing was emitted twice."""


@dataclass(frozen=True, slots=True)
class Emission:
    """One event of an `emit_many` batch."""

    type: str
    data: dict[str, Any]
    event_id: str


class Outbox:
    def __init__(self, tables: Tables, queue: DeliveryQueue, *, clock: Clock = utc_now) -> None:
        self._store = OutboxStore(tables)
        self._queue = queue
        self._clock = clock

    async def emit(
        self,
        tenant_id: str,
        type: str,  # the envelope's field name (shadowing the builtin here is harmless)
        data: dict[str, Any],
        *,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> OutboxEvent:
        """Append `{id, type, tenantId, occurredAt, data}` to the tenant's outbox and nudge its
        dispatcher. With `event_id`, emitting the same id again returns the first event and
        appends nothing (its type and data are the first call's). Raises ValueError for an
        invalid event, before anything is written. Many events at once: `emit_many`."""
        occurred = occurred_at or self._clock()
        self._check(tenant_id, type, data, event_id, occurred)
        if event_id is None:
            event = await self._append(tenant_id, str(uuid.uuid4()), type, data, occurred)
        else:
            event = await self._append_once(tenant_id, event_id, type, data, occurred)
        await self.nudge(tenant_id)
        return event

    async def emit_many(
        self, tenant_id: str, events: Sequence[Emission], *, nudge: bool = True
    ) -> list[OutboxEvent]:
        """Emit `events` in order, each idempotent by its event id as with `emit`, reserving
        their sequences with one counter write instead of one each: many workers of a tenant
        emitting pages of changes at once would otherwise queue up on that one counter row.
        A sequence left unused (its event was emitted before) is closed as a gap at once, so
        readers never wait on it. Raises ValueError for an invalid event, before anything is
        written."""
        if not events:
            return []
        occurred = self._clock()
        for event in events:
            self._check(tenant_id, event.type, event.data, event.event_id, occurred)
        first = await self._reserve(tenant_id, len(events))
        written = [
            await self._append_once(
                tenant_id, event.event_id, event.type, event.data, occurred, reserved=first + offset
            )
            for offset, event in enumerate(events)
        ]
        if nudge:
            await self.nudge(tenant_id)
        return list(written)

    async def nudge(self, tenant_id: str) -> None:
        """Ask the tenant's dispatcher to deliver what is due. Best effort: the events are
        committed already, and the safety-net timer nudges the tenant if this is lost."""
        try:
            await self._queue.nudge(tenant_id)
        except Exception:
            log.warning("could not nudge the dispatcher", exc_info=True, extra={"tenant_id": tenant_id})

    def _check(
        self, tenant_id: str, type_: str, data: dict[str, Any], event_id: str | None, occurred: datetime
    ) -> None:
        """ValueError for an invalid event, or one whose row Table Storage would refuse (too
        large): before a sequence is taken."""
        check_event(type_, data, event_id)
        codec.encode(self._entry(tenant_id, 0, event_id or "size-check", type_, data, occurred))

    async def _reserve(self, tenant_id: str, count: int = 1) -> int:
        return await reserve_sequences(self._store.counters, OUTBOX, tenant_id, count)

    def _entry(
        self,
        tenant_id: str,
        sequence: int,
        event_id: str,
        type_: str,
        data: dict[str, Any],
        occurred: datetime,
    ) -> OutboxEntry:
        # created_at is stamped after the sequence was reserved: readers rely on it being no
        # earlier than the reservation of every smaller sequence (core.host.gaps)
        return OutboxEntry(
            tenant_id=tenant_id,
            sequence=sequence,
            event_id=event_id,
            type=type_,
            occurred_at=occurred,
            payload=data,
            created_at=self._clock(),
        )

    async def _write(self, entry: OutboxEntry) -> OutboxEntry | None:
        """Insert the event row; None if its sequence was closed as a gap first (reserve anew).
        An insert that failed in an unknown state is settled by closing the sequence: if the
        gap goes in, the event did not; if the event is there, it is ours."""
        try:
            written = await self._store.events.insert(entry)
        except AlreadyExists:
            existing = await self._store.get(entry.tenant_id, entry.sequence)
            if isinstance(existing, OutboxEntry) and existing.event_id == entry.event_id:
                return existing  # a concurrent emit of the same id wrote it
            if isinstance(existing, OutboxGap):
                return None
            raise  # a different event under a reserved sequence: a bug, never silently skipped
        except Exception:
            try:
                settled = await self._store.close_gap(entry.tenant_id, entry.sequence, self._clock())
            except Exception:
                log.warning("could not settle a failed outbox write", extra={"sequence": entry.sequence})
                raise
            if isinstance(settled, OutboxEntry) and settled.event_id == entry.event_id:
                return settled
            raise
        log.info(
            "event appended",
            extra={"tenant_id": entry.tenant_id, "event_id": entry.event_id, "sequence": entry.sequence},
        )
        return written

    async def _append(
        self, tenant_id: str, event_id: str, type_: str, data: dict[str, Any], occurred: datetime
    ) -> OutboxEntry:
        for _ in range(_ROUNDS):
            sequence = await self._reserve(tenant_id)
            written = await self._write(self._entry(tenant_id, sequence, event_id, type_, data, occurred))
            if written is not None:
                return written
        raise EmitFailed(f"could not append an event for tenant {tenant_id!r}: every sequence was closed")

    async def _append_once(
        self,
        tenant_id: str,
        event_id: str,
        type_: str,
        data: dict[str, Any],
        occurred: datetime,
        *,
        reserved: int | None = None,
    ) -> OutboxEntry:
        """`reserved`: a sequence already reserved for this event (`emit_many`); it is used for
        the first attempt or closed as a gap."""
        index_key = EventIdIndex.key(tenant_id, event_id)
        for _ in range(_ROUNDS):
            index = None if reserved is not None else await self._store.index.get(*index_key)
            if index is None:
                sequence = reserved if reserved is not None else await self._reserve(tenant_id)
                reserved = None
                try:
                    index = await self._store.index.insert(
                        EventIdIndex(tenant_id=tenant_id, event_id=event_id, sequence=sequence)
                    )
                except AlreadyExists:
                    # a concurrent emit of this id won: give our sequence up, follow theirs
                    await self._store.close_gap(tenant_id, sequence, self._clock())
                    continue
            existing = await self._store.get(tenant_id, index.sequence)
            if isinstance(existing, OutboxEntry):
                if existing.event_id == event_id:
                    return existing  # emitted before: the retry appends nothing
                raise AssertionError("an event id index names another event's sequence")
            if existing is None:
                entry = self._entry(tenant_id, index.sequence, event_id, type_, data, occurred)
                written = await self._write(entry)
                if written is not None:
                    return written
            # the indexed sequence is a gap (we, or a crashed attempt, were too slow): move the
            # index to a fresh sequence; the etag makes concurrent movers agree on one
            sequence = await self._reserve(tenant_id)
            try:
                await self._store.index.save(index.model_copy(update={"sequence": sequence}))
            except StaleEtag:
                await self._store.close_gap(tenant_id, sequence, self._clock())
        raise EmitFailed(f"could not append event {event_id!r} for tenant {tenant_id!r}")
