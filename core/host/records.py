"""The rows the outbox keeps, beyond `core.store.records.OutboxEvent`.

They live in the existing tables, so the catalog needs no new table:

- `OutboxEntry` (outbox table; partition tenant, row 20-digit sequence): an event. Row order
  is delivery order and feed order.
- `OutboxGap` (same keys): a reserved sequence that will never hold an event.
- `EventIdIndex` (outbox table; partition `tenant|ids`, row event id): makes emit with a
  caller's event id idempotent.
- `DeliveryCursor` (counters table; partition `outbox-delivery`, row tenant): the
  dispatcher's lease and progress; one partition read lists every tenant's.

An escaped tenant id never contains a raw `|` (`escape_key` encodes it), so `tenant|ids`
partitions can never collide with a tenant's event partition, and `outbox-delivery` is a
counter name no other counter uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from core.store.keys import SEPARATOR, escape_key, sequence_key
from core.store.records import OutboxEvent
from core.store.repository import Record

GAP_COLUMN = "gap"  # the column that tells a gap row from an event row in a tenant's partition
DELIVERY_CURSORS = "outbox-delivery"  # the counters partition of the delivery cursors
_ID_PARTITION_SUFFIX = SEPARATOR + "ids"


class OutboxEntry(OutboxEvent):
    """An event as the outbox stores it: `OutboxEvent` plus when its row was written and whether
    it was dead-lettered. `created_at` is stamped after the sequence was reserved, so it bounds
    how old every smaller reservation is (see `core.host.gaps`)."""

    created_at: datetime
    dead_lettered_at: datetime | None = None

    @property
    def settled(self) -> bool:
        """Delivered or dead-lettered: the dispatcher never POSTs it again."""
        return self.delivered_at is not None or self.dead_lettered_at is not None


class OutboxGap(Record):
    """A sequence that was reserved but will never hold an event: its writer gave it up, or a
    reader closed it after the writer took too long. Written with an insert, so a gap and the
    late event cannot both exist: whichever insert comes first wins, and a writer that loses
    reserves a new sequence."""

    table: ClassVar[str] = OutboxEvent.table

    tenant_id: str
    sequence: int
    gap: bool = True
    closed_at: datetime

    @property
    def partition_key(self) -> str:
        return OutboxEvent.key(self.tenant_id, self.sequence)[0]

    @property
    def row_key(self) -> str:
        return sequence_key(self.sequence)


OutboxRow = OutboxEntry | OutboxGap


class EventIdIndex(Record):
    """Which sequence an event id was given: the arbiter of idempotent emits. Inserted before the
    event row; a second emit with the same id finds it and completes or returns that event."""

    table: ClassVar[str] = OutboxEvent.table

    tenant_id: str
    event_id: str
    sequence: int

    @classmethod
    def key(cls, tenant_id: str, event_id: str) -> tuple[str, str]:
        return escape_key(tenant_id) + _ID_PARTITION_SUFFIX, escape_key(event_id)

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id, self.event_id)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.event_id)[1]


class DeliveryCursor(Record):
    """Where delivery to one tenant's webhook stands, and who may deliver now.

    Every sequence up to `settled_through` is delivered, dead-lettered or a gap; every row up to
    `pruned_through` is gone (retention), so no reader takes those sequences for gaps. Only the
    holder of an unexpired lease POSTs; every write is etag-guarded, so two dispatchers can
    never both believe they hold it. `next_attempt_at` is the head event's retry time (nobody
    delivers before it: order); `gap_*` remember since when the head sequence has been missing."""

    table: ClassVar[str] = "counters"

    tenant_id: str
    settled_through: int = 0
    pruned_through: int = 0  # housekeeping deleted every row up to here (readers start above it)
    lease_owner: str | None = None
    lease_until: datetime | None = None
    next_attempt_at: datetime | None = None
    gap_sequence: int | None = None
    gap_seen_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def key(cls, tenant_id: str) -> tuple[str, str]:
        return DELIVERY_CURSORS, escape_key(tenant_id)

    @property
    def partition_key(self) -> str:
        return DELIVERY_CURSORS

    @property
    def row_key(self) -> str:
        return escape_key(self.tenant_id)

    def leased_by_other(self, owner: str, now: datetime) -> bool:
        return (
            self.lease_owner is not None
            and self.lease_owner != owner
            and self.lease_until is not None
            and self.lease_until > now
        )
