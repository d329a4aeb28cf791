"""Writing event-map entries when two workers may write the same one.

The down worker (what Outlook reported) and the push worker (what the bridge just wrote) both
record an event's change key and fingerprint. Each writes with the etag it read; when the other
got in between, the entry is re-read and the newer Outlook state — by `last_modified` — wins.
An older view never overwrites a newer one, so the down worker cannot put back a change key the
push worker has moved past (which would make the bridge's own write come back as an echo).

An event the push worker created is in no down round's view yet, and delta reports changes
against what the last round saw: if Outlook loses the event before a round sees it (a person
deletes it within the timer's 15 minutes), no round ever reports it, while the host holds it
from `appointment.pushed`. So its entry's change key is `UNSEEN` until a round reports the event
(the planner's `Touch` then stores the real one), and an incremental round reads the unseen
entries it did not hear about from Graph (`CalendarSync._check_unseen`).

The same check repairs the order the host heard things in. A down round tells the host before
it writes the map, the push after; so the host may hear an older state last — a round's
`appointment.upserted` of what it read before a push, after the push's `appointment.pushed`
of the next version, or the push's news after a round's report of a later Outlook edit. The
writer that notices — its write finds a newer state stored (`superseded`), or a round writes
over what the push stored meanwhile — calls `recheck`: the entry records what the host may
have been told last and is marked unseen, so the next round sends Outlook's state if it differs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from core.calendar.planner import UNSEEN as UNSEEN  # the mark lives with the planner, which reads it
from core.errors import AlreadyExists, NotFound, StaleEtag
from core.store.records import EventMapEntry
from core.store.repository import Repository

_ATTEMPTS = 5


def _newer(stored: EventMapEntry, wanted: EventMapEntry) -> bool:
    return (
        stored.last_modified is not None
        and wanted.last_modified is not None
        and stored.last_modified > wanted.last_modified
    )


def superseded(stored: EventMapEntry, told: datetime | None) -> bool:
    """Whether `stored` describes a later Outlook state than one last modified at `told`."""
    return stored.last_modified is not None and told is not None and stored.last_modified > told


async def recheck(
    repo: Repository[EventMapEntry], stored: EventMapEntry, told: str, now: datetime
) -> EventMapEntry:
    """Mark `stored` (as read, with its etag): the host was last told the state whose
    fingerprint is `told`, and no round has confirmed it since (see the module docstring).
    Returns what is stored afterwards."""
    current: EventMapEntry | None = stored
    for _ in range(_ATTEMPTS):
        if current is None:
            return stored  # forgotten meanwhile (deleted): nothing left to repair
        try:
            return await repo.save(
                current.model_copy(update={"fingerprint": told, "change_key": UNSEEN, "updated_at": now})
            )
        except (StaleEtag, NotFound):
            current = await repo.get(current.partition_key, current.row_key)
    raise StaleEtag("the event-map entry kept changing while it was marked")


async def write_entry(
    repo: Repository[EventMapEntry],
    key: tuple[str, str],
    read: EventMapEntry | None,
    build: Callable[[EventMapEntry | None], EventMapEntry],
) -> EventMapEntry:
    """Write `build(current)` over the entry at `key`, starting from `read` (what the caller
    last read, with its etag; None if it saw none). Returns what is stored afterwards: the
    caller's entry, or the stored one when that describes a newer state of the event."""
    current = read
    for _ in range(_ATTEMPTS):
        wanted = build(current)
        if current is not None and _newer(current, wanted):
            return current
        try:
            if current is None or current.etag is None:
                return await repo.insert(wanted.model_copy(update={"etag": None}))
            return await repo.save(wanted.model_copy(update={"etag": current.etag}))
        except (StaleEtag, AlreadyExists, NotFound):
            current = await repo.get(*key)
    raise StaleEtag("the event-map entry kept changing while it was written")
