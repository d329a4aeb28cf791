"""`GET …/resources/{r}/sync`: where each linked calendar's down-sync stands (the host's "last
synced" display), from the sync-state rows alone — no Graph call."""

from __future__ import annotations

from typing import Any

from core.links import plausible_resource_id
from core.request_errors import ItemNotFound
from core.store import Tables
from core.store.records import CalendarSyncState, ResourceLink


def _iso(value: object) -> str | None:
    return value.isoformat() if value is not None else None  # type: ignore[attr-defined]


async def sync_status(tables: Tables, tenant_id: str, resource_id: str) -> dict[str, Any]:
    link = (
        await tables.repo(ResourceLink).get(*ResourceLink.key(tenant_id, resource_id))
        if plausible_resource_id(resource_id)
        else None
    )
    if link is None:
        raise ItemNotFound(f"Resource '{resource_id}' is not linked.")
    states = tables.repo(CalendarSyncState)
    calendars: list[dict[str, Any]] = []
    for account in link.accounts:
        for calendar in account.calendars:
            state = await states.get(
                *CalendarSyncState.key(tenant_id, resource_id, account.account, calendar)
            )
            calendars.append(
                {
                    "account": account.account,
                    "calendar": calendar,
                    "direction": account.direction.value,
                    "status": state.status.value if state else "never",
                    "lastRunAt": _iso(state.last_run_at) if state else None,
                    "lastSuccessAt": _iso(state.last_success_at) if state else None,
                    "lastFullSyncAt": _iso(state.last_full_sync_at) if state else None,
                    "windowStart": _iso(state.window_start) if state else None,
                    "windowEnd": _iso(state.window_end) if state else None,
                    "error": state.error if state else None,
                    "consecutiveFailures": state.consecutive_failures if state else 0,
                }
            )
    return {"resourceId": resource_id, "calendars": calendars}
