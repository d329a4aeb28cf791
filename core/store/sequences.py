"""Monotonic sequence numbers (the outbox's row keys), allocated with optimistic concurrency."""

from __future__ import annotations

from core.store.records import Counter
from core.store.repository import Repository

OUTBOX = "outbox"

# Many workers of one tenant may enqueue at once; each lost race means another one won, so a
# generous bound costs nothing in the common, uncontended case.
_ATTEMPTS = 20


async def next_sequence(counters: Repository[Counter], name: str, scope: str, count: int = 1) -> int:
    """Reserve `count` consecutive numbers of counter `name` in `scope` (e.g. OUTBOX, tenant id)
    and return the first. Numbers start at 1 and are never handed out twice; a number whose
    writer crashed before using it is simply skipped (a gap, never a duplicate)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    partition_key, row_key = Counter.key(name, scope)

    def advance(current: Counter | None) -> Counter:
        start = current or Counter(name=name, scope=scope)
        return start.model_copy(update={"value": start.value + count})

    counter = await counters.mutate(partition_key, row_key, advance, attempts=_ATTEMPTS)
    return counter.value - count + 1
