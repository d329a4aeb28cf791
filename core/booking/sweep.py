"""The booking safety net, run by housekeeping: what a crashed process can leave behind.

- A claim whose reservation row never got written (the request died between the two inserts)
  holds its slot for nobody: once it is `STALE_AFTER` old it is deleted, with its etag.
- A pending or cancelling reservation whose queue message was lost (the request died before
  queueing it) is queued again once it has not moved for `STALE_AFTER` and no worker holds it.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from core.booking.queue import ReservationMessage, ReservationQueue
from core.errors import NotFound, StaleEtag
from core.store import Tables
from core.store.records import Reservation, ReservationStatus, SlotClaim

STALE_AFTER = timedelta(minutes=10)


async def sweep_reservations(
    tables: Tables, tenant_id: str, queue: ReservationQueue, now: datetime
) -> tuple[int, int]:
    """(orphaned claims released, stuck reservations queued again) for one tenant."""
    cutoff = now - STALE_AFTER
    reservations = {
        (r.booking_calendar, r.reservation_id): r async for r in tables.repo(Reservation).list(tenant_id)
    }
    released = 0
    claims = tables.repo(SlotClaim)
    async for claim in claims.list(SlotClaim.key(tenant_id, "-", "-")[0]):
        if claim.claimed_at is not None and claim.claimed_at > cutoff:
            continue
        holder = reservations.get((claim.booking_calendar, claim.reservation_id))
        if holder is None or holder.status in (ReservationStatus.CANCELLED, ReservationStatus.FAILED):
            with contextlib.suppress(NotFound, StaleEtag):
                await claims.delete(claim)
                released += 1
    requeued = 0
    for row in reservations.values():
        stuck = row.status in (ReservationStatus.PENDING, ReservationStatus.CANCELLING)
        idle = (row.updated_at or row.created_at or now) <= cutoff
        free = row.lease_until is None or row.lease_until <= now
        if stuck and idle and free:
            await queue.send(ReservationMessage(row.tenant_id, row.booking_calendar, row.reservation_id))
            requeued += 1
    return released, requeued
