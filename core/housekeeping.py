"""Housekeeping: keeps the state tables small — run rows past their retention, settled outbox
rows, the sync state of unlinked calendars; later capabilities add their own chores here
(expired staged documents)."""

from __future__ import annotations

from datetime import timedelta

from core.booking.queue import ReservationQueue
from core.booking.sweep import sweep_reservations
from core.calendar.cleanup import forget_unlinked_calendars
from core.host.retention import prune_outbox
from core.runs import Clock, RunHandle, track_run, utc_now
from core.store import Tables
from core.store.records import Tenant
from core.store.runs import RunRepository

FUNCTION = "housekeeping"


async def housekeeping(
    runs: RunRepository,
    retention_days: int,
    *,
    clock: Clock = utc_now,
    outbox: Tables | None = None,
    outbox_retention_days: int = 30,
    reservations: ReservationQueue | None = None,
) -> RunHandle:
    """Delete runs that started more than `retention_days` ago and, given the tables, outbox
    rows older than `outbox_retention_days` that are settled (core.host.retention) and the
    sync state of calendars no longer linked (core.calendar.cleanup), and, given the
    reservation queue, what crashed bookings left behind (core.booking.sweep), recording this
    run itself."""
    async with track_run(runs, FUNCTION, clock=clock) as run:
        cutoff = clock() - timedelta(days=retention_days)
        run.add("runs_pruned", await runs.delete_older_than(cutoff))
        if outbox is not None:
            outbox_cutoff = clock() - timedelta(days=outbox_retention_days)
            run.add("outbox_rows_pruned", await prune_outbox(outbox, outbox_cutoff))
            forgotten = 0
            async for tenant in outbox.repo(Tenant).list(Tenant.PARTITION):
                forgotten += await forget_unlinked_calendars(outbox, tenant.tenant_id, clock())
                if reservations is not None:
                    released, requeued = await sweep_reservations(
                        outbox, tenant.tenant_id, reservations, clock()
                    )
                    run.add("orphaned_slot_claims_released", released)
                    run.add("stuck_reservations_requeued", requeued)
            run.add("unlinked_calendar_rows_removed", forgotten)
    return run
