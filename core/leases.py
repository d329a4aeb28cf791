"""Taking a job's lease on its state row (`core.store.records.LeasedState`).

`claim` is the pure step a `Repository.mutate` applies: it takes a free (or expired) lease for
`owner`, or — when another worker holds it — asks that worker for one more round instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from core.store.records import LeasedState, SyncStatus

S = TypeVar("S", bound=LeasedState)


def claim(
    current: S | None, new: Callable[[], S], owner: str, now: datetime, lease: timedelta
) -> tuple[S, bool]:
    """(the row to write, whether `owner` now holds the lease)."""
    if current is not None and current.lease_owner and current.lease_until and current.lease_until > now:
        held = current if current.rerun_requested else current.model_copy(update={"rerun_requested": True})
        return held, False
    base = current or new()
    taken = base.model_copy(
        update={
            "lease_owner": owner,
            "lease_until": now + lease,
            "rerun_requested": False,
            "status": SyncStatus.RUNNING,
            "last_run_at": now,
        }
    )
    return taken, True
