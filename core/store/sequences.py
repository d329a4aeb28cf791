"""Monotonic sequence numbers (the outbox's row keys), allocated with optimistic concurrency."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field

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


@dataclass
class _Group:
    """Reservations of one counter waiting in one event loop."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: list[tuple[int, asyncio.Future[int]]] = field(default_factory=list)


_groups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str, str], _Group]] = (
    weakref.WeakKeyDictionary()
)


async def reserve_sequences(counters: Repository[Counter], name: str, scope: str, count: int = 1) -> int:
    """`next_sequence`, with the reservations a process makes at the same time sharing one
    counter write: while a write is in flight, later callers wait and the next write serves
    all of them at once (consecutive ranges, in arrival order). Many workers of one tenant
    emitting at once would otherwise each read and write the same counter row and lose most
    races; across processes, `next_sequence`'s optimistic retries still arbitrate."""
    if count < 1:
        raise ValueError("count must be at least 1")
    loop = asyncio.get_running_loop()
    group = _groups.setdefault(loop, {}).setdefault((counters.store.name, name, scope), _Group())
    mine: asyncio.Future[int] = loop.create_future()
    group.waiting.append((count, mine))
    async with group.lock:
        if not mine.done():  # no earlier write served it: lead the next one
            wave, group.waiting = group.waiting, []
            try:
                first = await next_sequence(counters, name, scope, sum(n for n, _ in wave))
            except Exception as exc:
                for _, future in wave:
                    if not future.done():
                        future.set_exception(exc)
            except BaseException:
                # cancelled while leading: the others wait for the next holder of the lock
                group.waiting[:0] = [(n, f) for n, f in wave if f is not mine and not f.done()]
                raise
            else:
                for n, future in wave:
                    if not future.done():
                        future.set_result(first)
                    first += n
    return await mine
