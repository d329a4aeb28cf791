"""The pull feed: a tenant's events in sequence order, for hosts that cannot take webhooks.

`GET …/events?after=<cursor>&limit=<n>` returns the envelopes after the cursor, delivered or
not, and the cursor to pass next (the last sequence passed, as a string; "0" is the start).
It never skips an event that is still being written: it stops at a missing sequence until the
sequence is old enough to be closed as a gap (`core.host.gaps`), closing it itself if need be,
so every event a later page could hold has a larger sequence than any cursor handed out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from core.host.envelope import envelope
from core.host.gaps import plan_page
from core.host.records import DeliveryCursor, OutboxEntry
from core.host.store import OutboxStore
from core.runs import Clock, utc_now
from core.store import Tables

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_MAX_CURSOR = 2**63 - 2
_ROUNDS = 50  # reads per page at most (each passes at least one row, or stops)


class BadFeedQuery(ValueError):
    """`after` or `limit` is not acceptable; the message says what is wanted."""


def parse_cursor(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > _MAX_CURSOR:
        raise BadFeedQuery("'after' must be a cursor returned as 'next' by this feed (or 0 to start)")
    return int(value)


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise BadFeedQuery(f"'limit' must be a whole number from 1 to {MAX_LIMIT}")
    return min(int(value), MAX_LIMIT)


@dataclass(frozen=True)
class FeedPage:
    events: list[OutboxEntry]
    next: str

    def to_dict(self) -> dict[str, Any]:
        return {"events": [envelope(e) for e in self.events], "next": self.next}


async def read_feed(
    tables: Tables,
    tenant_id: str,
    *,
    after: int,
    limit: int = DEFAULT_LIMIT,
    grace: timedelta,
    clock: Clock = utc_now,
) -> FeedPage:
    store = OutboxStore(tables)
    if after > await store.sequence_reserved(tenant_id):
        raise BadFeedQuery(
            "'after' is beyond the end of this tenant's feed: pass a 'next' this feed returned"
        )
    cursor = await store.cursors.get(*DeliveryCursor.key(tenant_id))
    # rows up to pruned_through are gone by retention, not missing: never "close" them
    last = max(after, cursor.pruned_through if cursor else 0)
    events: list[OutboxEntry] = []
    for _ in range(_ROUNDS):
        need = limit - len(events)
        if need <= 0:
            break
        rows = [row async for row in store.rows_after(tenant_id, last, limit=need)]
        now = clock()
        plan = plan_page(rows, last, limit=need, now=now, grace=grace)
        events += plan.events
        last = plan.last
        if plan.close:
            for sequence in plan.close:
                if isinstance(await store.close_gap(tenant_id, sequence, now), OutboxEntry):
                    break  # the event landed after all: read again from here
            continue
        if plan.blocked or len(rows) < need:
            break
    return FeedPage(events, str(last))
