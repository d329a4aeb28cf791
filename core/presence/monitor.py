"""Presence for a switchboard (seed 002): who is busy, told to the host the moment it changes.

Reads. A timer asks each tenant's monitored users' free/busy with `getSchedule`, at most 20
users a call, every `refreshMinutes` (`presence` queue, `poll` messages). Each user's calendar
items for the next day are kept on their row.

Changes. From the items the user's state now is worked out (`core.presence.timeline`), and the
moment it next changes — the end of the busy stretch, or the start of the next one. A `tick`
message is queued to arrive then, so `presence.changed` goes out at the event's start and end,
not at the next read. A tick needs no Graph call: it works from the stored items.

Never twice. The row keeps the status last told (`emitted`); a change is told only when the
status differs, under an event id made of user, status and since, so a retry after a crash
finds the event it already appended. A user whose calendar cannot be read is `unknown` with
the reason, never `free`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.storage.queue.aio import QueueServiceClient

from core.calendar.sync import Emitter
from core.errors import StaleEtag
from core.graph.errors import ConsentMissing, GraphError, NotFound, TokenUnavailable
from core.graph.model import Schedule
from core.graph_access import GraphProvider
from core.host import Emission
from core.presence.timeline import MAX_ITEMS, Item, State, state_at
from core.queues import TextQueue
from core.runs import Clock, utc_now
from core.store import Tables
from core.store.keys import short_hash
from core.store.records import Presence, PresenceSettings, PresenceStatus, Tenant

log = logging.getLogger(__name__)

PRESENCE_QUEUE = "presence"
BATCH = 20  # getSchedule's documented limit of schedules per call
HORIZON = timedelta(hours=24)
LOOKBACK = timedelta(minutes=1)
CHANGED = "presence.changed"
_ROUNDS = 5
# A failure of the whole read that a person must fix: every user of the batch is unknown.
_UNREADABLE = (ConsentMissing, TokenUnavailable, NotFound)


# --- messages -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Poll:
    tenant_id: str
    emails: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    tenant_id: str
    email: str


PresenceMessage = Poll | Tick


def encode(message: PresenceMessage) -> str:
    if isinstance(message, Poll):
        body: dict[str, Any] = {"kind": "poll", "tenantId": message.tenant_id, "emails": list(message.emails)}
    else:
        body = {"kind": "tick", "tenantId": message.tenant_id, "email": message.email}
    return json.dumps(body, separators=(",", ":"))


def decode(text: str) -> PresenceMessage:
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValueError("a presence message must be JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tenantId"), str) or not raw["tenantId"]:
        raise ValueError("a presence message is an object with a tenantId")
    if raw.get("kind") == "poll":
        emails = raw.get("emails")
        if not isinstance(emails, list) or not all(isinstance(e, str) and e for e in emails):
            raise ValueError("a presence poll names its emails")
        return Poll(raw["tenantId"], tuple(emails))
    if raw.get("kind") == "tick" and isinstance(raw.get("email"), str) and raw["email"]:
        return Tick(raw["tenantId"], raw["email"])
    raise ValueError("a presence message's kind is poll or tick")


class PresenceQueue(Protocol):
    async def send(self, message: PresenceMessage, *, delay: float = 0.0) -> None: ...


class AzurePresenceQueue:
    def __init__(self, service: QueueServiceClient, name: str = PRESENCE_QUEUE) -> None:
        self._queue = TextQueue(service, name)

    async def send(self, message: PresenceMessage, *, delay: float = 0.0) -> None:
        await self._queue.send(encode(message), delay=delay)


@dataclass
class InMemoryPresenceQueue:
    sent: list[tuple[PresenceMessage, float]]

    def __init__(self) -> None:
        self.sent = []

    async def send(self, message: PresenceMessage, *, delay: float = 0.0) -> None:
        decode(encode(message))
        self.sent.append((message, delay))

    def take(self) -> list[tuple[PresenceMessage, float]]:
        out, self.sent = self.sent, []
        return out


def batches(emails: Sequence[str]) -> list[tuple[str, ...]]:
    return [tuple(emails[i : i + BATCH]) for i in range(0, len(emails), BATCH)]


async def settings_of(tables: Tables, tenant_id: str) -> PresenceSettings:
    found = await tables.repo(PresenceSettings).get(*PresenceSettings.key(tenant_id))
    return found or PresenceSettings(tenant_id=tenant_id)


async def monitored(tables: Tables, tenant_id: str) -> list[Presence]:
    return [row async for row in tables.repo(Presence).list(Presence.key(tenant_id, "-")[0])]


# --- the worker -----------------------------------------------------------------------------------


class PresenceMonitor:
    def __init__(
        self,
        tables: Tables,
        graphs: GraphProvider,
        queue: PresenceQueue,
        outbox: Emitter,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._tables = tables
        self._rows = tables.repo(Presence)
        self._graphs = graphs
        self._queue = queue
        self._outbox = outbox
        self._clock = clock

    async def run(self, message: PresenceMessage) -> None:
        tenant = await self._tables.repo(Tenant).get(*Tenant.key(message.tenant_id))
        if tenant is None or not tenant.enabled:
            return
        settings = await settings_of(self._tables, tenant.tenant_id)
        if isinstance(message, Poll):
            await self.poll(tenant, settings, message.emails)
        else:
            await self._update(tenant, settings, message.email, None)

    async def poll(self, tenant: Tenant, settings: PresenceSettings, emails: Sequence[str]) -> None:
        """One getSchedule read for up to 20 users, then each user's state. A failure Graph may
        get past (throttling, unavailable) raises, so the queue retries the batch."""
        now = self._clock()
        asker = settings.monitor_account or emails[0]
        gateway = await self._graphs.gateway(tenant)
        reads: dict[str, Schedule | str]
        try:
            found = await gateway.get_schedule(asker, list(emails), now - LOOKBACK, now + HORIZON)
            reads = {email: schedule for email, schedule in zip(emails, found, strict=True)}
        except _UNREADABLE as exc:
            reason = _batch_reason(exc, asker)
            reads = dict.fromkeys(emails, reason)
        for email, read in reads.items():
            await self._update(tenant, settings, email, read)
        log.info("presence read", extra={"users": len(emails)})

    async def _update(
        self, tenant: Tenant, settings: PresenceSettings, email: str, read: Schedule | str | None
    ) -> None:
        """Bring one user's row up to now: with a fresh read (a schedule, or why there is none)
        or, for a tick, from the stored items. Tells the host of a status change."""
        for _ in range(_ROUNDS):
            row = await self._rows.get(*Presence.key(tenant.tenant_id, email))
            if row is None:
                return  # no longer monitored
            now = self._clock()
            fields = _read_fields(read, settings, now) if read is not None else {}
            base = row.model_copy(update=fields)
            state = _state(base, settings, now)
            updated = base.model_copy(
                update={
                    "status": state.status,
                    "since": state.since,
                    "until": state.until,
                    "show_as": state.show_as,
                    "subject": state.subject,
                    "location": state.location,
                    "updated_at": now,
                }
            )
            if state.status.value != row.emitted:
                await self._outbox.emit_many(tenant.tenant_id, [_change(updated)])
                updated = updated.model_copy(update={"emitted": state.status.value})
            due = state.until if state.status is not PresenceStatus.UNKNOWN else None
            if due is not None and due != row.tick_at and due <= now + HORIZON:
                # Sent before the row records it: a crash in between sends another tick, which
                # finds nothing new; the other order could leave a change untold until the next read.
                await self._queue.send(Tick(tenant.tenant_id, row.email), delay=(due - now).total_seconds())
                updated = updated.model_copy(update={"tick_at": due})
            try:
                await self._rows.save(updated)
                return
            except StaleEtag:
                continue  # another read or tick wrote the row: work it out again
        raise StaleEtag(f"presence of one user kept changing; gave up after {_ROUNDS} rounds")


def _batch_reason(exc: GraphError, asker: str) -> str:
    if isinstance(exc, NotFound):
        return (
            f"the monitor account {asker} is not a mailbox of the tenant: "
            "set monitorAccount in the presence settings"
        )
    return str(exc)


def _read_fields(read: Schedule | str, settings: PresenceSettings, now: datetime) -> dict[str, Any]:
    if isinstance(read, str):
        return {"reason": read, "items": []}
    if read.error is not None:
        reason = (
            f"the calendar cannot be read ({read.error}): check that the address is a mailbox of the "
            "tenant and that the monitor account may see its free/busy"
        )
        return {"reason": reason, "items": []}
    items = sorted((Item.from_schedule(i) for i in read.items), key=lambda i: i.start)[:MAX_ITEMS]
    return {
        "reason": None,
        "items": [i.to_dict(keep_subject=settings.show_subjects) for i in items],
        "read_at": now,
    }


def _state(row: Presence, settings: PresenceSettings, now: datetime) -> State:
    if row.reason is not None or row.read_at is None:
        since = row.since if row.status is PresenceStatus.UNKNOWN and row.since else now
        return State(PresenceStatus.UNKNOWN, since, None)
    items = [Item.from_dict(raw) for raw in row.items]
    return state_at(items, frozenset(settings.busy_statuses), now, show_subjects=settings.show_subjects)


def _change(row: Presence) -> Emission:
    since = row.since.isoformat() if row.since else ""
    data: dict[str, Any] = {
        "email": row.email,
        "status": row.status.value,
        "since": row.since.isoformat() if row.since else None,
        "until": row.until.isoformat() if row.until else None,
        "showAs": row.show_as,
        "location": row.location,
    }
    if row.subject is not None:
        data["subject"] = row.subject
    if row.reason is not None:
        data["reason"] = row.reason
    event_id = "presence-" + short_hash(f"{row.tenant_id}\n{row.email}\n{row.status.value}\n{since}")
    return Emission(CHANGED, data, event_id)


async def fan_out(tables: Tables, queue: PresenceQueue, *, clock: Clock = utc_now) -> int:
    """Queue a read of every tenant whose refresh interval has passed: one poll per 20 users.
    Returns how many polls were queued."""
    now = clock()
    queued = 0
    async for tenant in tables.repo(Tenant).list(Tenant.PARTITION):
        if not tenant.enabled:
            continue
        rows = await monitored(tables, tenant.tenant_id)
        if not rows:
            continue
        settings = await settings_of(tables, tenant.tenant_id)
        due = settings.last_poll_at is None or now - settings.last_poll_at >= timedelta(
            minutes=settings.refresh_minutes
        )
        if not due:
            continue
        queued += await request_reads(tables, queue, tenant.tenant_id, [r.email for r in rows], now)
    return queued


async def request_reads(
    tables: Tables, queue: PresenceQueue, tenant_id: str, emails: Sequence[str], now: datetime
) -> int:
    """Queue reads of `emails` now and note the time on the tenant's settings."""
    for batch in batches(list(emails)):
        await queue.send(Poll(tenant_id, batch))

    def noted(current: PresenceSettings | None) -> PresenceSettings:
        return (current or PresenceSettings(tenant_id=tenant_id)).model_copy(update={"last_poll_at": now})

    await tables.repo(PresenceSettings).mutate(*PresenceSettings.key(tenant_id), noted)
    return len(batches(list(emails)))
