"""Pruning the outbox: events older than OUTBOX_RETENTION_DAYS leave the table (and the feed).

Per tenant, rows go from the oldest up, stopping at the first one that must stay: one that is
too young, a missing sequence, or (for a tenant with a webhook) one not yet delivered or
dead-lettered. The cursor's `pruned_through` moves first, so readers never take the deleted
sequences for gaps still being written. Index rows of pruned events go too: a capability
re-emitting an event id older than the retention makes a new event.
"""

from __future__ import annotations

from datetime import datetime

from core.host.gaps import written_at
from core.host.records import DeliveryCursor, EventIdIndex, OutboxEntry
from core.host.store import OutboxStore
from core.store import Tables
from core.store.keys import sequence_key
from core.store.records import OutboxEvent, Tenant

_BATCH = 100  # rows per delete batch (one entity-group transaction)


async def prune_outbox(tables: Tables, cutoff: datetime) -> int:
    """Delete outbox rows written before `cutoff` that nobody needs any more; returns how many."""
    store = OutboxStore(tables)
    tenants = {t.tenant_id: t async for t in tables.repo(Tenant).list(Tenant.PARTITION)}
    cursors = await store.cursors_by_tenant()
    pruned = 0
    for tenant_id, reserved in (await store.reserved_by_tenant()).items():
        cursor = cursors.get(tenant_id) or DeliveryCursor(tenant_id=tenant_id)
        tenant = tenants.get(tenant_id)
        # a webhook tenant keeps what is not settled yet; a feed-only tenant keeps nothing old
        keep_from = cursor.settled_through if tenant is not None and tenant.webhook_url else reserved
        pruned += await _prune_tenant(store, tables, cursor, cutoff, min(keep_from, reserved))
    return pruned


async def _prune_tenant(
    store: OutboxStore, tables: Tables, cursor: DeliveryCursor, cutoff: datetime, up_to: int
) -> int:
    tenant_id = cursor.tenant_id
    last = cursor.pruned_through
    event_ids: list[str] = []
    async for row in store.rows_after(tenant_id, last):
        if row.sequence != last + 1 or row.sequence > up_to or written_at(row) >= cutoff:
            break
        if isinstance(row, OutboxEntry):
            event_ids.append(row.event_id)
        last = row.sequence
    if last == cursor.pruned_through:
        return 0

    def advance(current: DeliveryCursor | None) -> DeliveryCursor:
        base = current or DeliveryCursor(tenant_id=tenant_id)
        return base.model_copy(update={"pruned_through": max(base.pruned_through, last)})

    await store.cursors.mutate(*DeliveryCursor.key(tenant_id), advance)
    table = tables.store(OutboxEvent)
    keys = [sequence_key(s) for s in range(cursor.pruned_through + 1, last + 1)]
    deleted = 0
    partition = OutboxEvent.key(tenant_id, 0)[0]
    for i in range(0, len(keys), _BATCH):
        deleted += await table.delete_rows(partition, keys[i : i + _BATCH])
    if event_ids:
        index_partition = EventIdIndex.key(tenant_id, "x")[0]
        index_keys = [EventIdIndex.key(tenant_id, e)[1] for e in event_ids]
        for i in range(0, len(index_keys), _BATCH):
            await table.delete_rows(index_partition, index_keys[i : i + _BATCH])
    return deleted
