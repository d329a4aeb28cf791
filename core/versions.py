"""HTTP ETags for stored records, and If-Match / If-None-Match checks against them.

The API's ETag is a strong tag derived from the row's Table Storage ETag (opaque, stable while
the row is unchanged, different after every write), so callers can send it back in `If-Match`
for optimistic concurrency without learning anything about the store.
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

from core.errors import AlreadyExists, NotFound, StaleEtag
from core.request_errors import EditConflict, PreconditionFailed
from core.store.repository import Record, Repository


def public_etag(record: Record) -> str | None:
    if record.etag is None:
        return None
    return '"' + hashlib.sha256(record.etag.encode("utf-8")).hexdigest()[:32] + '"'


def _tags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def check_preconditions(
    current: Record | None, if_match: str | None, if_none_match: str | None = None
) -> None:
    """Raise PreconditionFailed when `If-Match` (one of these versions, or `*`: any) or
    `If-None-Match: *` (must not exist yet) does not hold for `current` (None = no record)."""
    if if_match and if_match.strip():
        tags = _tags(if_match)
        if current is None or ("*" not in tags and public_etag(current) not in tags):
            raise PreconditionFailed(
                "The item changed since you read it (If-Match does not match its ETag); re-read it and retry."
                if current is not None
                else "If-Match was sent, but the item does not exist."
            )
    if if_none_match and if_none_match.strip() == "*" and current is not None:
        raise PreconditionFailed("The item exists already (If-None-Match: *).")


R = TypeVar("R", bound=Record)


async def create_or_replace(
    repo: Repository[R], current: R | None, wanted: R, *, conditional: bool, what: str
) -> R:
    """Write `wanted` as a PUT does: insert when nothing was there, else replace what was read
    (with its ETag). Losing a race is a 412 when the caller sent a precondition (its version is
    gone), else a 409 to retry. `what` names the item in the message ("The import")."""
    try:
        if current is None:
            return await repo.insert(wanted)
        return await repo.save(wanted.model_copy(update={"etag": current.etag}))
    except (AlreadyExists, StaleEtag, NotFound):
        if conditional:
            raise PreconditionFailed(f"{what} changed since you read it; re-read it and retry.") from None
        raise EditConflict(f"{what} changed while this request was applied; retry.") from None
