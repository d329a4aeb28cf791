"""The per-tenant delivery lease: at most one dispatcher POSTs a tenant's events at a time.

The lease lives on the tenant's `DeliveryCursor` row and every write carries the row's etag.
Acquiring is a conditional write over a free or expired lease, so of two dispatchers that read
a free lease only one write succeeds. The holder renews before each POST so the lease outlives
the POST's timeout; a holder that finds the row taken over (its lease expired and another
dispatcher took it) stops at once: `LeaseLost`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from core.errors import AlreadyExists, NotFound, StaleEtag
from core.host.records import DeliveryCursor
from core.runs import Clock
from core.store.repository import Repository

_ATTEMPTS = 5
# A retry nudge may arrive a little before `next_attempt_at` by our clock: whole-second queue
# delays are rounded up, but another instance's clock may run a little ahead.
DUE_TOLERANCE = timedelta(seconds=0.5)


class LeaseLost(Exception):
    """Another dispatcher holds the tenant's lease now; this one must stop delivering."""


class Lease:
    """A held lease and the cursor as last written by its holder."""

    def __init__(
        self,
        cursors: Repository[DeliveryCursor],
        cursor: DeliveryCursor,
        *,
        owner: str,
        seconds: float,
        clock: Clock,
    ) -> None:
        self._cursors = cursors
        self.cursor = cursor
        self.owner = owner
        self._seconds = seconds
        self._clock = clock

    @classmethod
    async def acquire(
        cls,
        cursors: Repository[DeliveryCursor],
        tenant_id: str,
        *,
        owner: str,
        seconds: float,
        clock: Clock,
    ) -> Lease | None:
        """The lease, or None if another dispatcher holds it or the head event is not due yet."""
        key = DeliveryCursor.key(tenant_id)
        for _ in range(_ATTEMPTS):
            now = clock()
            current = await cursors.get(*key) or DeliveryCursor(tenant_id=tenant_id)
            if current.leased_by_other(owner, now):
                return None
            if current.next_attempt_at is not None and current.next_attempt_at > now + DUE_TOLERANCE:
                return None
            wanted = current.model_copy(
                update={
                    "lease_owner": owner,
                    "lease_until": now + timedelta(seconds=seconds),
                    "updated_at": now,
                }
            )
            try:
                return cls(cursors, await cursors.save(wanted), owner=owner, seconds=seconds, clock=clock)
            except (StaleEtag, AlreadyExists, NotFound):
                continue  # someone wrote the row after our read: look again
        return None

    def remaining(self, now: datetime) -> float:
        until = self.cursor.lease_until
        return 0.0 if until is None else (until - now).total_seconds()

    async def update(self, **changes: Any) -> DeliveryCursor:
        """Write `changes` to the cursor, as long as we still hold the lease. Other writers
        (housekeeping moving `pruned_through`) make the etag stale: re-read, check, re-apply."""
        for _ in range(_ATTEMPTS):
            now = self._clock()
            if self.cursor.lease_owner != self.owner or self.remaining(now) <= 0:
                raise LeaseLost()
            try:
                self.cursor = await self._cursors.save(
                    self.cursor.model_copy(update={**changes, "updated_at": now})
                )
                return self.cursor
            except StaleEtag:
                current = await self._cursors.get(*DeliveryCursor.key(self.cursor.tenant_id))
                if current is None:
                    raise LeaseLost() from None
                self.cursor = current
            except NotFound:
                raise LeaseLost() from None
        raise LeaseLost()

    async def renew(self, at_least: float) -> None:
        """Extend the lease if less than `at_least` seconds of it are left."""
        now = self._clock()
        if self.remaining(now) < at_least:
            await self.update(lease_until=now + timedelta(seconds=self._seconds))

    async def release(self) -> None:
        """Give the lease up (a lost lease is already given up)."""
        try:
            await self.update(lease_owner=None, lease_until=None)
        except LeaseLost:
            return
