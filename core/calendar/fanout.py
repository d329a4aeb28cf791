"""Fan-out: the down-linked calendars in batches, for the queue workers to run in parallel.

The timer does it for every enabled tenant: each tenant's calendars, sorted by their sync-state
key, go out in batches of `BATCH_SIZE`, so a worker reads a batch's states with one range query
and takes and releases their leases a transaction at a time (per calendar, that would be about
seven Table calls and three queue calls; the key puts a resource's calendars side by side, so a
batch also spans few resources). `request_resource_sync` queues one resource now (the
guides' "Sync calendar" button) and answers with the run id its worker records.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.calendar.requests import CalendarRef, SyncQueue, SyncRequest, Target, batches, linked_calendars
from core.links import plausible_resource_id
from core.request_errors import ItemNotFound
from core.runs import Clock, RunHandle, track_run, utc_now
from core.store import Tables
from core.store.keys import escape_key
from core.store.records import (
    CalendarSyncState,
    ResourceLink,
    Subscription,
    SubscriptionKind,
    Tenant,
    calendar_scope,
    subscription_target,
    sync_state_key,
)

log = logging.getLogger(__name__)

FUNCTION = "calendar-sync-fanout"
_SENDS = 16  # queue sends in flight


def timer_requests(link: ResourceLink) -> list[SyncRequest]:
    """One request per calendar of each account whose direction includes down."""
    down, _ = linked_calendars(link)
    return [
        SyncRequest(link.tenant_id, link.resource_id, t.account.account, t.calendar, reason="timer")
        for t in down
    ]


class Coverage:
    """Which of a tenant's calendars change notifications cover well enough for the timer to
    leave them alone this time: a healthy subscription, and a successful sync less than
    `poll_every` ago (a notification brings each change in seconds; the timer stays the
    safety net, just less often)."""

    def __init__(
        self,
        subscriptions: dict[str, Subscription],
        synced: dict[str, datetime],
        now: datetime,
        poll_every: timedelta,
    ) -> None:
        self._subscriptions = subscriptions
        self._synced = synced
        self._now = now
        self._poll_every = poll_every

    @classmethod
    async def of(cls, tables: Tables, tenant_id: str, now: datetime, poll_every: timedelta) -> Coverage:
        if poll_every <= timedelta(0):
            return cls({}, {}, now, poll_every)
        partition = escape_key(tenant_id)
        subscriptions = {
            s.target: s async for s in tables.repo(Subscription).list(partition) if s.healthy(now)
        }
        synced: dict[str, datetime] = {}
        if subscriptions:
            async for state in tables.repo(CalendarSyncState).list(partition):
                if state.last_success_at is not None:
                    synced[state.scope] = state.last_success_at
        return cls(subscriptions, synced, now, poll_every)

    def covers(self, request: SyncRequest) -> bool:
        if request.account is None or request.calendar is None:
            return False
        names = (request.resource_id, request.account, request.calendar)
        if subscription_target(SubscriptionKind.CALENDAR, *names) not in self._subscriptions:
            return False
        last = self._synced.get(calendar_scope(*names))
        return last is not None and self._now - last < self._poll_every


async def fan_out(
    tables: Tables, queue: SyncQueue, *, clock: Clock = utc_now, subscribed_poll: timedelta = timedelta(0)
) -> RunHandle:
    """Queue a sync of every down-linked calendar of every enabled tenant (one system run), in
    batches, but for calendars change notifications cover (`Coverage`, with `subscribed_poll`).
    Up to `_SENDS` queue sends are in flight; a send that fails fails the run (the timer's
    next run sends everything again)."""
    pending: set[asyncio.Task[None]] = set()

    async def drain(below: int) -> None:
        while len(pending) > below:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            pending.difference_update(done)
            for task in done:
                task.result()  # re-raise a failed send

    async with track_run(tables.runs(), FUNCTION, clock=clock) as run:
        try:
            async for tenant in tables.repo(Tenant).list(Tenant.PARTITION):
                if not tenant.enabled:
                    continue
                run.add("tenants")
                coverage = await Coverage.of(tables, tenant.tenant_id, clock(), subscribed_poll)
                refs: dict[str, CalendarRef] = {}
                async for link in tables.repo(ResourceLink).list(ResourceLink.key(tenant.tenant_id, "-")[0]):
                    for request in timer_requests(link):
                        if coverage.covers(request):
                            run.add("calendars_covered_by_notifications")
                            continue
                        assert request.account is not None
                        assert request.calendar is not None
                        ref = (request.resource_id, request.account, request.calendar)
                        refs.setdefault(sync_state_key(*ref), ref)
                for batch in batches(tenant.tenant_id, [refs[scope] for scope in sorted(refs)]):
                    await drain(_SENDS - 1)
                    pending.add(asyncio.create_task(queue.send(batch)))
                    run.add("batches_queued")
                    run.add("calendars_queued", len(batch.calendars))
            await drain(0)
        finally:
            for task in pending:
                task.cancel()
    return run


def _named(target: Target) -> dict[str, str]:
    return {"account": target.account.account, "calendar": target.calendar}


@dataclass(frozen=True, slots=True)
class Requested:
    run_id: str
    calendars: list[dict[str, str]]
    skipped: list[dict[str, str]]


async def request_resource_sync(
    tables: Tables, queue: SyncQueue, tenant_id: str, resource_id: str
) -> Requested:
    """Queue a sync of every down-linked calendar of one resource now. 404 when the resource
    is not linked; a resource with no down calendar is still accepted (its run says so)."""
    link = (
        await tables.repo(ResourceLink).get(*ResourceLink.key(tenant_id, resource_id))
        if plausible_resource_id(resource_id)
        else None
    )
    if link is None:
        raise ItemNotFound(f"Resource '{resource_id}' is not linked.")
    run_id = uuid.uuid4().hex
    await queue.send(SyncRequest(tenant_id, resource_id, run_id=run_id, reason="manual"))
    down, other = linked_calendars(link)
    calendars = [{"account": t.account.account, "calendar": t.calendar} for t in down]
    skipped = [
        {
            "account": t.account.account,
            "calendar": t.calendar,
            "reason": f"direction is {t.account.direction.value}",
        }
        for t in other
    ]
    log.info("manual calendar sync queued", extra={"tenant_id": tenant_id, "run_id": run_id})
    return Requested(run_id, calendars, skipped)
