"""Graph's change notifications arriving at `POST /api/v1/graph/notifications`.

Graph gives the receiver 3 seconds, so nothing here calls Graph: a notification is checked
(its URL names the tenant and target, one point read finds the subscription's row, and its
clientState must hash to the row's) and turned into queue messages — a catch-up of what the
subscription watches (the existing delta sync or mail import, reason `notification`; bursts
coalesce on that job's lease) and, for a lifecycle event, a `graph-subscriptions` message.
A notification that fails the check changes nothing; how many did is logged, never their
content.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from core.calendar.requests import SyncQueue, SyncRequest
from core.mail.importer import ImportQueue, ImportRequest
from core.request_errors import MalformedRequest
from core.store import Tables
from core.store.records import Subscription, SubscriptionKind
from core.subscriptions.queue import LIFECYCLE_EVENTS, Lifecycle, SubscriptionQueue
from core.validators import TENANT_ID_PATTERN

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # Graph batches up to a few hundred small items
_TARGET = re.compile(r"[cm]-[0-9a-f]{32}")
MAX_VALIDATION_TOKEN = 1024


@dataclass(frozen=True, slots=True)
class Notification:
    subscription_id: str
    client_state: str
    lifecycle_event: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    verified: int
    refused: int
    lifecycle: tuple[str, ...] = ()
    caught_up: bool = False


def validation_token(value: str | None) -> str | None:
    """The handshake's token to echo back as text/plain, or None when this is not one."""
    if value is None:
        return None
    if not value or len(value) > MAX_VALIDATION_TOKEN or not value.isprintable():
        raise MalformedRequest("The validationToken is not one Graph would send.")
    return value


def parse_notifications(body: bytes) -> list[Notification]:
    """The items of a notification POST (`{"value": [...]}`); items without a subscription id
    or clientState are dropped (they cannot be checked)."""
    if len(body) > MAX_BODY_BYTES:
        raise MalformedRequest("The notification body is larger than Graph sends.")
    try:
        doc = json.loads(body)
    except ValueError:
        raise MalformedRequest("The notification body is not JSON.") from None
    items = doc.get("value") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise MalformedRequest("The notification body has no 'value' list.")
    out: list[Notification] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        subscription_id, client_state = item.get("subscriptionId"), item.get("clientState")
        if not isinstance(subscription_id, str) or not isinstance(client_state, str):
            continue
        event = item.get("lifecycleEvent")
        out.append(Notification(subscription_id, client_state, event if event in LIFECYCLE_EVENTS else None))
    return out


async def catch_up(row: Subscription, sync_queue: SyncQueue, import_queue: ImportQueue) -> None:
    """Ask for the delta sync or mail import of what the subscription watches."""
    if row.kind is SubscriptionKind.CALENDAR and row.resource_id and row.calendar:
        await sync_queue.send(
            SyncRequest(row.tenant_id, row.resource_id, row.mailbox, row.calendar, reason="notification")
        )
    elif row.kind is SubscriptionKind.MAIL and row.import_id:
        await import_queue.send(ImportRequest(row.tenant_id, row.import_id, reason="notification"))


async def accept(
    tables: Tables,
    queues: tuple[SyncQueue, ImportQueue, SubscriptionQueue],
    tenant_id: str | None,
    target: str | None,
    notifications: list[Notification],
) -> Accepted:
    """Check the notifications of one POST and queue what they ask for: at most one catch-up
    however many changes arrived together, and one message per lifecycle event."""
    sync_queue, import_queue, subscription_queue = queues
    row: Subscription | None = None
    if tenant_id and target and TENANT_ID_PATTERN.fullmatch(tenant_id) and _TARGET.fullmatch(target):
        row = await tables.repo(Subscription).get(*Subscription.key(tenant_id, target))
    verified = [n for n in notifications if row is not None and row.client_state_matches(n.client_state)]
    refused = len(notifications) - len(verified)
    if refused:
        log.warning("notifications refused: clientState or subscription unknown", extra={"refused": refused})
    if row is None or not verified:
        return Accepted(0, refused)
    events = tuple(sorted({n.lifecycle_event for n in verified if n.lifecycle_event}))
    for event in events:
        await subscription_queue.send(Lifecycle(row.tenant_id, row.target, event))
    changed = any(n.lifecycle_event is None for n in verified)
    if changed:
        await catch_up(row, sync_queue, import_queue)
    log.info(
        "notifications accepted",
        extra={"tenant_id": row.tenant_id, "verified": len(verified), "lifecycle": list(events)},
    )
    return Accepted(len(verified), refused, events, changed)
