"""Housekeeping: keeps the state tables small. Today it prunes run rows past their retention;
later capabilities add their own chores here (expired staged documents, delivered outbox rows)."""

from __future__ import annotations

from datetime import timedelta

from core.runs import Clock, RunHandle, track_run, utc_now
from core.store.runs import RunRepository

FUNCTION = "housekeeping"


async def housekeeping(runs: RunRepository, retention_days: int, *, clock: Clock = utc_now) -> RunHandle:
    """Delete runs that started more than `retention_days` ago, recording this run itself."""
    async with track_run(runs, FUNCTION, clock=clock) as run:
        cutoff = clock() - timedelta(days=retention_days)
        run.add("runs_pruned", await runs.delete_older_than(cutoff))
    return run
