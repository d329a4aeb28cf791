"""Run tracking and housekeeping against the in-memory tables (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.housekeeping import housekeeping
from core.runs import track_run
from core.store import memory_tables
from core.store.records import SYSTEM_SCOPE, Run, RunStatus

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_given_a_job_that_succeeds_then_its_run_row_says_so_with_counts_and_times() -> None:
    runs = memory_tables().runs()
    clock = Clock(T0)
    async with track_run(runs, "sync", scope="tenant-a", clock=clock) as run:
        (row,) = [r async for r in runs.list("tenant-a")]
        assert row.status is RunStatus.RUNNING
        run.add("events", 3)
        run.add("events")
        clock.now = T0 + timedelta(seconds=5)
    (row,) = [r async for r in runs.list("tenant-a")]
    assert (row.status, row.counts, row.started_at, row.ended_at) == (
        RunStatus.SUCCEEDED,
        {"events": 4},
        T0,
        T0 + timedelta(seconds=5),
    )


async def test_given_a_failing_job_then_the_run_fails_with_the_error_type_only_and_it_propagates() -> None:
    runs = memory_tables().runs()

    async def job() -> None:
        async with track_run(runs, "import", clock=Clock(T0)) as run:
            run.add("mails")
            raise KeyError("subject: secret quarterly numbers")

    with pytest.raises(KeyError):
        await job()
    (row,) = [r async for r in runs.list(SYSTEM_SCOPE)]
    assert row.status is RunStatus.FAILED
    assert row.error == "KeyError"
    assert row.counts == {"mails": 1}
    assert "secret" not in row.model_dump_json()


async def test_housekeeping_prunes_runs_older_than_retention_across_tenants_and_records_itself() -> None:
    runs = memory_tables().runs()
    for scope in ("a", "b"):
        await runs.insert(
            Run(scope=scope, run_id="old", function="x", started_at=T0 - timedelta(days=10, seconds=1))
        )
        await runs.insert(Run(scope=scope, run_id="edge", function="x", started_at=T0 - timedelta(days=10)))
    result = await housekeeping(runs, retention_days=10, clock=Clock(T0))
    assert result.counts == {"runs_pruned": 2}
    remaining = sorted([(r.scope, r.run_id) async for r in runs.list()])
    assert remaining == [("_system", result.run_id), ("a", "edge"), ("b", "edge")]


async def test_given_the_store_fails_while_recording_a_failure_then_the_jobs_own_error_still_propagates() -> (
    None
):
    from core.errors import StoreUnavailable

    runs = memory_tables().runs()

    async def broken_save(record: Run) -> Run:
        raise StoreUnavailable("table down")

    async def job() -> None:
        async with track_run(runs, "import", clock=Clock(T0)):
            runs.save = broken_save  # type: ignore[method-assign]
            raise ValueError("the job's error")

    with pytest.raises(ValueError, match="the job's error"):
        await job()
