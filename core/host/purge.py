"""Forgetting a deleted tenant's delivery state.

Besides its outbox partition, a tenant's delivery leaves rows keyed outside that partition:
the event-id index (`tenant|ids`), its delivery cursor and its outbox sequence counter. They
must go with the tenant, or a tenant re-created under the same id would inherit them: an old
event id would be "deduplicated" onto a sequence the old cursor already settled, and that
event would never be delivered.
"""

from __future__ import annotations

from core.host.records import DeliveryCursor, EventIdIndex
from core.store import Tables
from core.store.records import Counter, OutboxEvent
from core.store.sequences import OUTBOX


async def purge_delivery_state(tables: Tables, tenant_id: str) -> int:
    """Delete the tenant's event-id index, delivery cursor and sequence counter (idempotent);
    returns how many rows went. The outbox partition itself is the caller's (tenant delete)."""
    outbox, counters = tables.store(OutboxEvent), tables.store(Counter)
    removed = await outbox.delete_partition(EventIdIndex.key(tenant_id, "-")[0])
    for partition_key, row_key in (DeliveryCursor.key(tenant_id), Counter.key(OUTBOX, tenant_id)):
        if await counters.get(partition_key, row_key) is not None:
            await counters.delete(partition_key, row_key)
            removed += 1
    return removed
