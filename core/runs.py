"""Recording runs: every job writes one `Run` row when it starts and updates it when it ends,
so operators (and Azure Monitor, through the failed-run log) see what ran, what it did and why
it failed."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.errors import describe
from core.observability import log_context
from core.store.records import SYSTEM_SCOPE, Run, RunStatus
from core.store.runs import RunRepository

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunHandle:
    """What a job tells its run while it works: counters that end up on the run row."""

    run_id: str
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


@asynccontextmanager
async def track_run(
    runs: RunRepository,
    function: str,
    *,
    scope: str = SYSTEM_SCOPE,
    run_id: str | None = None,
    clock: Clock = utc_now,
) -> AsyncIterator[RunHandle]:
    """Record a run of `function` around the block. The row says `running` while the block
    runs, then `succeeded` with the counts, or `failed` with the error's type (never its text,
    which may carry content, unless it is a `Reportable` written to be recorded) — and the
    exception propagates, so the trigger fails as it should."""
    handle = RunHandle(run_id or uuid.uuid4().hex)
    started = await runs.insert(Run(scope=scope, run_id=handle.run_id, function=function, started_at=clock()))
    with log_context(
        run_id=handle.run_id, function=function, tenant_id=None if scope == SYSTEM_SCOPE else scope
    ):
        log.info("run started")
        try:
            yield handle
        except BaseException as exc:
            error = describe(exc)
            log.error("run failed", extra={"error": error, "counts": handle.counts})
            failed = {
                "status": RunStatus.FAILED,
                "ended_at": clock(),
                "counts": dict(handle.counts),
                "error": error,
            }
            try:
                await runs.save(started.model_copy(update=failed))
            except Exception:
                # The job's own error is what the trigger must report; a store outage while
                # recording it is logged, and the row stays `running` for the operator to see.
                log.exception("could not record the failed run")
            raise
        await runs.save(
            started.model_copy(
                update={"status": RunStatus.SUCCEEDED, "ended_at": clock(), "counts": dict(handle.counts)}
            )
        )
        log.info("run succeeded", extra={"counts": handle.counts})
