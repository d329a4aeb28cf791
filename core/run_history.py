"""What a tenant's runs say, newest first: the host's "last sync" display and the operator's
first look (`GET /api/v1/tenants/{tenantId}/runs`)."""

from __future__ import annotations

import re
from typing import Any

from core.request_errors import InvalidInput
from core.store.keys import escape_key
from core.store.records import Run
from core.store.runs import RunRepository
from core.validators import plain_text, query_int

_RUN_ID = re.compile(r"[0-9a-f]{32}")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def parse_query(function: str | None, limit: str | None) -> tuple[str | None, int]:
    """The `function` and `limit` query parameters, validated."""
    count = query_int("limit", limit, default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    if function is not None:
        try:
            if not function or len(function) > 100:
                raise ValueError("must be 1-100 characters")
            plain_text(function)
        except ValueError as exc:
            raise InvalidInput.one("function", str(exc)) from None
    return function, count


def parse_run_id(run_id: str | None) -> str | None:
    """The `runId` query parameter: a run or tracking id (32 hex digits)."""
    if run_id is None or run_id == "":
        return None
    if not _RUN_ID.fullmatch(run_id):
        raise InvalidInput.one("runId", "must be a run id (32 hexadecimal digits)")
    return run_id


async def recent_runs(
    runs: RunRepository, tenant_id: str, *, function: str | None, limit: int, run_id: str | None = None
) -> list[Run]:
    """The tenant's runs, newest first (row keys start with the inverted start time)."""
    where: dict[str, str] = {}
    if function:
        where["function"] = function
    if run_id:
        where["run_id"] = run_id
    return [run async for run in runs.list(escape_key(tenant_id), where=where or None, limit=limit)]


def run_view(run: Run) -> dict[str, Any]:
    return {
        "id": run.run_id,
        "function": run.function,
        "status": run.status.value,
        "startedAt": run.started_at.isoformat(),
        "endedAt": run.ended_at.isoformat() if run.ended_at else None,
        "counts": dict(run.counts),
        "error": run.error,
    }
