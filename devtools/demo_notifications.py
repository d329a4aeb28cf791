"""The demo's near-real-time job: change notifications switched on, as infra/ does in Azure by
setting BRIDGE_PUBLIC_URL, and an Outlook edit reaching the host in seconds."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import aiohttp

from devtools.demo_support import DemoReceiver, as_check, run_function, say, wait_for


def _upserted(receiver: DemoReceiver, subject: str) -> bool:
    for body, _ in receiver.received:
        event = json.loads(body)
        if event["type"] == "appointment.upserted" and event["data"]["appointment"]["subject"] == subject:
            return True
    return False


async def job_notifications(
    http: aiohttp.ClientSession, host: Any, demo: Any, receiver: DemoReceiver
) -> None:
    """BRIDGE_PUBLIC_URL set (the running app picks it up as a restart would); the hourly
    reconcile, run now through the admin API, subscribes to every synced calendar and import
    folder (Graph validates the endpoint first); then Adele renames an appointment in Outlook and
    Graph's notification brings it to the host — no timer, no "Sync calendar"."""
    from core import bootstrap
    from devtools.graph_emulator.subscriptions import SubscriptionsModule

    os.environ["BRIDGE_PUBLIC_URL"] = host.base_url
    app = await bootstrap.container()
    app.settings = app.settings.model_copy(update={"bridge_public_url": host.base_url})
    accepted = await run_function(http, host, "graph_subscriptions_timer")
    module = SubscriptionsModule.of(demo.graph)

    async def subscribed() -> bool:
        rows = await app.subscriptions().rows("contoso-demo")
        return len(rows) >= 3 and all(r.status.value == "active" for r in rows)

    await wait_for("job notifications (subscriptions)", subscribed, seconds=30)
    rows = await app.subscriptions().rows("contoso-demo")
    kinds = sorted(r.kind.value for r in rows)
    subject = "Customer visit (confirmed)"
    started = time.monotonic()
    demo.graph.calendar.update_event(demo.adele, demo.event_ids[2], {"subject": subject})
    await wait_for("job notifications (delivery)", as_check(lambda: _upserted(receiver, subject)), seconds=30)
    took = time.monotonic() - started
    delivered = sum(module.stats(r.subscription_id or "").delivered for r in rows)
    say(
        f"✓ job notifications: BRIDGE_PUBLIC_URL set; reconcile timer (admin API HTTP {accepted}) → "
        f"{len(rows)} subscriptions at Graph {kinds}, endpoint validated; Adele renamed an appointment "
        f"in Outlook → appointment.upserted {subject!r} at the host webhook {took:.1f} s later "
        f"({delivered} change notification(s) delivered; no timer, no Sync calendar)"
    )
