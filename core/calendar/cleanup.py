"""Forgetting the down-sync state of calendars no longer linked.

When a host removes an account (or a calendar) from a resource, or deletes the resource, its
sync state and event map would stay behind. Housekeeping removes them: any sync-state row whose
(resource, account, calendar) is not in a current link goes, with the event-map entries of that
calendar (and a sync-state row stored under an earlier version's key, alone). A link paused
(`none`) or turned `up` keeps its state, so resuming `down` continues from the stored delta link
instead of re-reading everything. The host is not sent deletions:
it unlinked the calendar itself and decides what its scheduler keeps.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from core.errors import NotFound, StaleEtag
from core.store import Tables, codec
from core.store.keys import escape_key
from core.store.records import CalendarSyncState, EventMapEntry, ResourceLink, calendar_scope


async def forget_unlinked_calendars(tables: Tables, tenant_id: str, now: datetime) -> int:
    """Delete sync states and event-map rows of the tenant's calendars no longer linked;
    returns how many rows went. A calendar being synced right now is left alone (its lease)."""
    partition = escape_key(tenant_id)
    linked = {
        calendar_scope(link.resource_id, account.account, calendar)
        async for link in tables.repo(ResourceLink).list(partition)
        for account in link.accounts
        for calendar in account.calendars
    }
    states = tables.repo(CalendarSyncState)
    entries = tables.store(EventMapEntry)
    removed = 0
    async for row in tables.store(CalendarSyncState).query(partition):
        state = codec.decode(CalendarSyncState, row.data, etag=row.etag)
        if row.row_key != state.row_key:
            # a row stored under the keys of an earlier version: the calendar's state now lives
            # under its current key (its event map is keyed by scope, which did not change)
            with contextlib.suppress(StaleEtag, NotFound):
                await tables.store(CalendarSyncState).delete(partition, row.row_key, etag=row.etag)
                removed += 1
            continue
        leased = state.lease_owner and state.lease_until is not None and state.lease_until > now
        if state.scope in linked or leased:
            continue
        try:
            await states.delete(state)  # with its etag: a worker that just took it wins
        except (StaleEtag, NotFound):
            continue
        low, high = EventMapEntry.calendar_range(state.scope)
        rows = [row.row_key async for row in entries.query(partition, row_key_from=low, row_key_to=high)]
        removed += 1 + await entries.delete_rows(partition, rows)
    return removed
