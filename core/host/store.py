"""The outbox's rows in Table Storage: events, gaps, the event-id index and delivery cursors.

A tenant's outbox partition holds two kinds of row under the same 20-digit sequence keys
(events and gaps, told apart by the `gap` column), so reading it decodes each row by kind;
everything else here is a typed repository.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from core.errors import AlreadyExists
from core.host.records import GAP_COLUMN, DeliveryCursor, EventIdIndex, OutboxEntry, OutboxGap, OutboxRow
from core.store import Tables, codec
from core.store.keys import escape_key, sequence_key
from core.store.records import Counter, OutboxEvent
from core.store.repository import Repository
from core.store.sequences import OUTBOX

# Above every 20-digit sequence key and below any other row key a partition could hold.
_END_OF_SEQUENCES = ":"


class OutboxStore:
    def __init__(self, tables: Tables) -> None:
        self._table = tables.store(OutboxEvent)
        self.counters = tables.counters()
        self.events: Repository[OutboxEntry] = Repository(self._table, OutboxEntry)
        self.gaps: Repository[OutboxGap] = Repository(self._table, OutboxGap)
        self.index: Repository[EventIdIndex] = Repository(self._table, EventIdIndex)
        self.cursors: Repository[DeliveryCursor] = Repository(tables.store(Counter), DeliveryCursor)

    @staticmethod
    def _decode(data: Mapping[str, Any], etag: str) -> OutboxRow:
        if data.get(GAP_COLUMN) is True:
            return codec.decode(OutboxGap, data, etag=etag)
        return codec.decode(OutboxEntry, data, etag=etag)

    async def get(self, tenant_id: str, sequence: int) -> OutboxRow | None:
        row = await self._table.get(escape_key(tenant_id), sequence_key(sequence))
        return None if row is None else self._decode(row.data, row.etag)

    async def rows_after(
        self, tenant_id: str, after: int, *, limit: int | None = None
    ) -> AsyncIterator[OutboxRow]:
        """Events and gaps with a sequence above `after`, in sequence order."""
        rows = self._table.query(
            escape_key(tenant_id),
            row_key_from=sequence_key(after + 1),
            row_key_to=_END_OF_SEQUENCES,
            limit=limit,
        )
        async for row in rows:
            yield self._decode(row.data, row.etag)

    async def close_gap(self, tenant_id: str, sequence: int, now: datetime) -> OutboxRow:
        """Mark `sequence` as never to hold an event, unless its event got there first: returns
        the gap, or the event whose insert won."""
        try:
            return await self.gaps.insert(OutboxGap(tenant_id=tenant_id, sequence=sequence, closed_at=now))
        except AlreadyExists:
            row = await self.get(tenant_id, sequence)
            if row is None:  # only possible if pruning removed it meanwhile; nothing to deliver
                raise
            return row

    async def sequence_reserved(self, tenant_id: str) -> int:
        """The highest sequence handed out for the tenant so far (0 if none)."""
        counter = await self.counters.get(*Counter.key(OUTBOX, tenant_id))
        return 0 if counter is None else counter.value

    async def reserved_by_tenant(self) -> dict[str, int]:
        """Every tenant's highest reserved sequence, in one partition read."""
        out: dict[str, int] = {}
        async for counter in self.counters.list(Counter.key(OUTBOX, "x")[0]):
            out[counter.scope] = counter.value
        return out

    async def cursors_by_tenant(self) -> dict[str, DeliveryCursor]:
        """Every tenant's delivery cursor, in one partition read."""
        return {c.tenant_id: c async for c in self.cursors.list(DeliveryCursor.key("x")[0])}
