"""The safety net: nudge every tenant whose outbox has due, undelivered events.

Nudges are best effort (`Outbox.emit` does not fail when its nudge does, a delayed retry
message can be lost, a dispatcher can crash holding the lease), so a timer runs this every
minute. It costs three partition reads whatever the number of tenants: the tenants, the
outbox sequence counters and the delivery cursors.
"""

from __future__ import annotations

from core.host.delivery import is_due
from core.host.queues import DeliveryQueue
from core.host.store import OutboxStore
from core.runs import Clock, RunHandle, track_run, utc_now
from core.store import Tables
from core.store.records import Tenant

FUNCTION = "deliver-sweep"
# Fixed rather than an app setting: an unset `%SETTING%` stops the Functions host from starting,
# and a minute is the latency the safety net promises.
SCHEDULE = "0 * * * * *"


async def nudge_due_tenants(tables: Tables, queue: DeliveryQueue, *, clock: Clock = utc_now) -> RunHandle:
    """Queue a nudge for each enabled tenant with a webhook and due events; records a run."""
    store = OutboxStore(tables)
    async with track_run(tables.runs(), FUNCTION, clock=clock) as run:
        reserved = await store.reserved_by_tenant()
        cursors = await store.cursors_by_tenant()
        now = clock()
        async for tenant in tables.repo(Tenant).list(Tenant.PARTITION):
            if not tenant.enabled or not tenant.webhook_url:
                continue
            if is_due(reserved.get(tenant.tenant_id, 0), cursors.get(tenant.tenant_id), now):
                await queue.nudge(tenant.tenant_id)
                run.add("nudged")
        run.add("tenants_with_events", len(reserved))
    return run
