"""Reading an outbox partition in order without ever stepping over an event that is still
being written: pure planning over rows already read.

A missing sequence s between rows means its writer reserved s and has not inserted yet (or
died). Every row is stamped after its own sequence was reserved, and sequences are reserved
in increasing order, so if a later row was written at least `grace` ago, s was reserved at
least `grace` ago too: old enough to close (insert a gap row; see `core.host.outbox`). A
younger gap stops the reader there, to look again later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.host.records import OutboxEntry, OutboxRow


def written_at(row: OutboxRow) -> datetime:
    return row.created_at if isinstance(row, OutboxEntry) else row.closed_at


@dataclass(frozen=True)
class PagePlan:
    events: list[OutboxEntry] = field(default_factory=list)
    last: int = 0  # the highest sequence passed (an event returned, or a gap)
    close: list[int] = field(default_factory=list)  # old gaps to close, then read on from `last`
    blocked: bool = False  # stopped at a gap too young to close


def plan_page(
    rows: Sequence[OutboxRow], after: int, *, limit: int, now: datetime, grace: timedelta
) -> PagePlan:
    """Walk `rows` (sequence order, all above `after`) while sequences are contiguous, taking
    up to `limit` events and passing gap rows. At a missing sequence: close it if the row after
    it is old enough (the plan stops there so the caller closes, then reads again), else stop."""
    events: list[OutboxEntry] = []
    last = after
    for row in rows:
        if len(events) >= limit:
            break
        if row.sequence <= last:
            raise ValueError("rows must be in increasing sequence order, above `after`")
        if row.sequence > last + 1:
            missing = list(range(last + 1, row.sequence))
            if now - written_at(row) >= grace:
                return PagePlan(events, last, close=missing)
            return PagePlan(events, last, blocked=True)
        if isinstance(row, OutboxEntry):
            events.append(row)
        last = row.sequence
    return PagePlan(events, last)
