"""Writing event-map entries when two workers may write the same one.

The down worker (what Outlook reported) and the push worker (what the bridge just wrote) both
record an event's change key and fingerprint. Each writes with the etag it read; when the other
got in between, the entry is re-read and the newer Outlook state — by `last_modified` — wins.
An older view never overwrites a newer one, so the down worker cannot put back a change key the
push worker has moved past (which would make the bridge's own write come back as an echo).
"""

from __future__ import annotations

from collections.abc import Callable

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
