"""Housekeeping: keeps the state tables small. Today it prunes run rows past their retention;
later capabilities add their own chores here (expired staged documents, delivered outbox rows)."""

from __future__ import annotations

from datetime import timedelta

from core.host.retention import prune_outbox
from core.runs import Clock, RunHandle, track_run, utc_now
from core.store import Tables
from core.store.runs import RunRepository

FUNCTION = "housekeeping"


async def housekeeping(
    runs: RunRepository,
    retention_days: int,
    *,
    clock: Clock = utc_now,
    outbox: Tables | None = None,
    outbox_retention_days: int = 30,
) -> RunHandle:
    """Delete runs that started more than `retention_days` ago and, given the tables, outbox
    rows older than `outbox_retention_days` that are settled (core.host.retention), recording
    this run itself."""
    async with track_run(runs, FUNCTION, clock=clock) as run:
        cutoff = clock() - timedelta(days=retention_days)
        run.add("runs_pruned", await runs.delete_older_than(cutoff))
        if outbox is not None:
            outbox_cutoff = clock() - timedelta(days=outbox_retention_days)
            run.add("outbox_rows_pruned", await prune_outbox(outbox, outbox_cutoff))
    return run
