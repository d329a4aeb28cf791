"""The dispatcher: delivers a tenant's outbox to its webhook, in sequence order, one at a time.

One `dispatch(tenant_id)` (a delivery-queue message) takes the tenant's lease
(`core.host.lease`), then repeatedly takes the head, the event right after `settled_through`:

- POST it, signed; on 2xx record `delivered_at` on the event, then move the cursor past it;
- on failure (refused, timeout, non-2xx) record attempts, last_error and next_attempt_at on the
  event and the cursor, put a delayed nudge on the queue (backoff with full jitter,
  `core.host.retry`) and stop: nothing after the head goes out before it (order);
- after the retry budget, dead-letter it instead: its envelope goes to `host-delivery-poison`,
  the event is marked, the run ends `failed`, and delivery goes on with the next event;
- a missing head sequence (an emit still writing, or one that died) is waited for and closed
  as a gap once it is `OUTBOX_GAP_GRACE_SECONDS` old (`core.host.gaps`).

Exactly once, from the bridge's side: an event is POSTed until a 2xx, never after a recorded
2xx, and never by two dispatchers at once. One window remains: a crash (or a lease lost to a
stall longer than the lease) after the host's 2xx and before `delivered_at` is written makes
the next dispatcher POST it again. Hosts dedupe by `M365Bridge-Event-Id`.

Logs carry tenant, event id, sequence and status, never payloads.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from core.errors import BridgeError, StaleEtag
from core.host.envelope import dead_letter_bytes, envelope_bytes
from core.host.gaps import written_at
from core.host.lease import Lease, LeaseLost
from core.host.queues import DeliveryQueue
from core.host.records import DeliveryCursor, OutboxEntry, OutboxGap, OutboxRow
from core.host.retry import DeadLetter, RetryPolicy, Uniform, after_failure
from core.host.signing import delivery_headers
from core.host.store import OutboxStore
from core.host.webhook import WebhookError, WebhookMisconfigured, WebhookSender
from core.observability import log_context
from core.runs import Clock, RunHandle, track_run, utc_now
from core.secrets import SecretStore, secret_name
from core.settings import Settings
from core.store import Tables
from core.store.records import Tenant

log = logging.getLogger(__name__)

FUNCTION = "deliver"


def previous_webhook_secret_name(tenant_id: str) -> str:
    """Where the previous signing secret is kept while a rotation is in progress: while it
    exists, every delivery carries a v1 signature for it as well."""
    return secret_name("tenant", tenant_id, "webhook-signing-previous")


@dataclass(frozen=True)
class DeliveryConfig:
    timeout_seconds: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    gap_grace: timedelta = timedelta(seconds=10)
    batch: int = 100  # rows read per range query
    max_events_per_dispatch: int = 500  # then hand over to a fresh invocation
    max_dispatch_seconds: float = 240.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig:
        return cls(
            timeout_seconds=settings.webhook_timeout_seconds,
            retry=RetryPolicy.from_settings(settings),
            gap_grace=timedelta(seconds=settings.outbox_gap_grace_seconds),
        )

    @property
    def lease_seconds(self) -> float:
        # renewed before every POST whenever less than a POST's worth (plus margin) is left
        return 2 * self.timeout_seconds + 30

    @property
    def renew_below(self) -> float:
        return self.timeout_seconds + 15


class Stop(StrEnum):
    CAUGHT_UP = "caught_up"  # no event left to deliver
    RETRY_LATER = "retry_later"  # the head failed; a delayed nudge is queued
    WAITING_FOR_GAP = "waiting_for_gap"  # the head sequence is still being written
    HANDED_OVER = "handed_over"  # enough for one invocation; a nudge continues
    LEASE_LOST = "lease_lost"  # another dispatcher took over


@dataclass(frozen=True)
class DispatchResult:
    run_id: str
    stop: Stop
    delivered: int = 0
    failed: int = 0
    dead_lettered: int = 0


class EventsDeadLettered(BridgeError):
    """Ends a delivery run that dead-lettered events as `failed` (the trigger itself succeeds:
    the events are accounted for, on the poison queue)."""


class Dispatcher:
    def __init__(
        self,
        tables: Tables,
        secrets: SecretStore,
        sender: WebhookSender,
        queue: DeliveryQueue,
        config: DeliveryConfig,
        *,
        clock: Clock = utc_now,
        uniform: Uniform = random.uniform,
    ) -> None:
        self._tables = tables
        self._store = OutboxStore(tables)
        self._secrets = secrets
        self._sender = sender
        self._queue = queue
        self._config = config
        self._clock = clock
        self._uniform = uniform

    async def dispatch(self, tenant_id: str) -> DispatchResult | None:
        """Deliver what is due for `tenant_id`. None when there was nothing to do here: no such
        tenant or no webhook, another dispatcher holds the lease, the head is not due yet, or
        the outbox is empty past the cursor (no run is recorded for these)."""
        with log_context(tenant_id=tenant_id):
            tenant = await self._tables.repo(Tenant).get(*Tenant.key(tenant_id))
            if tenant is None or not tenant.enabled or not tenant.webhook_url:
                return None
            lease = await Lease.acquire(
                self._store.cursors,
                tenant_id,
                owner=uuid.uuid4().hex,
                seconds=self._config.lease_seconds,
                clock=self._clock,
            )
            if lease is None:
                return None
            result: DispatchResult | None = None
            try:
                if await self._rows_waiting(lease.cursor) or await self._trailing_gap_closed(lease):
                    result = await self._run(tenant, lease)
            except LeaseLost:
                return None
            finally:
                await lease.release()
            waiting = result is None or result.stop in (Stop.CAUGHT_UP, Stop.WAITING_FOR_GAP)
            if waiting and await self._head_arrived(lease.cursor):
                # the head was written while we held the lease, and its nudge found the lease
                # taken: look again rather than leave it to a delayed nudge or the safety net
                await self._queue.nudge(tenant_id)
            return result

    async def _rows_waiting(self, cursor: DeliveryCursor) -> bool:
        async for _ in self._store.rows_after(cursor.tenant_id, _start(cursor), limit=1):
            return True
        return False

    async def _head_arrived(self, cursor: DeliveryCursor) -> bool:
        return await self._store.get(cursor.tenant_id, _start(cursor) + 1) is not None

    async def _trailing_gap_closed(self, lease: Lease) -> bool:
        """No rows past the cursor, but sequences were reserved there: an emit is writing (its
        own nudge follows), or one died. Closed once old enough, without recording a run for
        the wait; True if a gap was closed (a run then passes it)."""
        start = _start(lease.cursor)
        if await self._store.sequence_reserved(lease.cursor.tenant_id) <= start:
            return False
        return await self._missing_head(lease, start + 1, later=None)

    async def _run(self, tenant: Tenant, lease: Lease) -> DispatchResult:
        stop = Stop.CAUGHT_UP
        run_id = uuid.uuid4().hex
        counts: dict[str, int] = {}
        try:
            async with track_run(
                self._tables.runs(), FUNCTION, scope=tenant.tenant_id, run_id=run_id, clock=self._clock
            ) as run:
                counts = run.counts
                stop = await self._deliver(tenant, lease, run)
                if run.counts.get("dead_lettered"):
                    raise EventsDeadLettered(f"{run.counts['dead_lettered']} event(s) dead-lettered")
        except EventsDeadLettered:
            pass  # recorded as the run's failure by track_run
        return DispatchResult(
            run_id=run_id,
            stop=stop,
            delivered=counts.get("delivered", 0),
            failed=counts.get("failed", 0),
            dead_lettered=counts.get("dead_lettered", 0),
        )

    async def _deliver(self, tenant: Tenant, lease: Lease, run: RunHandle) -> Stop:
        started = time.monotonic()
        handled = 0
        tenant_id = tenant.tenant_id
        try:
            while True:
                if handled >= self._config.max_events_per_dispatch or (
                    time.monotonic() - started > self._config.max_dispatch_seconds
                ):
                    await self._queue.nudge(tenant_id)
                    return Stop.HANDED_OVER
                start = _start(lease.cursor)
                rows = [r async for r in self._store.rows_after(tenant_id, start, limit=self._config.batch)]
                if not rows:
                    if await self._store.sequence_reserved(tenant_id) <= start:
                        return Stop.CAUGHT_UP
                    if not await self._missing_head(lease, start + 1, later=None):
                        return Stop.WAITING_FOR_GAP
                    continue
                for row in rows:
                    expected = _start(lease.cursor) + 1
                    if row.sequence != expected:
                        if not await self._missing_head(lease, expected, later=row):
                            return Stop.WAITING_FOR_GAP
                        break  # gaps closed: read again from the cursor
                    if isinstance(row, OutboxGap) or row.settled:
                        await lease.update(settled_through=row.sequence, gap_sequence=None, gap_seen_at=None)
                        continue
                    handled += 1
                    if not await self._attempt(tenant, lease, row, run):
                        return Stop.RETRY_LATER
        except LeaseLost:
            log.warning("delivery lease lost to another dispatcher; stopping")
            return Stop.LEASE_LOST

    async def _missing_head(self, lease: Lease, sequence: int, *, later: OutboxRow | None) -> bool:
        """The head sequence has no row. Close it (and any gap up to `later`) once it is known
        to be older than the grace; else remember since when it is missing, queue a nudge for
        when it will be old enough, and return False."""
        now = self._clock()
        grace = self._config.gap_grace
        tenant_id = lease.cursor.tenant_id
        if later is not None and now - written_at(later) >= grace:
            for missing in range(sequence, later.sequence):
                closed = await self._store.close_gap(tenant_id, missing, now)
                if isinstance(closed, OutboxEntry):
                    break  # it landed after all: deliver it
            return True
        cursor = lease.cursor
        if cursor.gap_sequence == sequence and cursor.gap_seen_at is not None:
            if now - cursor.gap_seen_at >= grace:
                await self._store.close_gap(tenant_id, sequence, now)
                return True
            seen = cursor.gap_seen_at
        else:
            await lease.update(gap_sequence=sequence, gap_seen_at=now)
            seen = now
        wait = (grace - (now - seen)).total_seconds()
        log.info("waiting for a sequence still being written", extra={"sequence": sequence})
        await self._queue.nudge(tenant_id, delay=wait)
        return False

    async def _signing_secrets(self, tenant: Tenant) -> list[str]:
        if not tenant.webhook_secret_name:
            raise WebhookMisconfigured("the tenant has no webhook signing secret")
        current = await self._secrets.get(tenant.webhook_secret_name)
        if not current:
            raise WebhookMisconfigured("the tenant's webhook signing secret is not set")
        previous = await self._secrets.get(previous_webhook_secret_name(tenant.tenant_id))
        return [current, previous] if previous and previous != current else [current]

    async def _attempt(self, tenant: Tenant, lease: Lease, event: OutboxEntry, run: RunHandle) -> bool:
        """POST the head event once. True if delivery can go on with the next event."""
        await lease.renew(self._config.renew_below)
        body = envelope_bytes(event)
        ids = {"event_id": event.event_id, "sequence": event.sequence, "event_type": event.type}
        try:
            secrets = await self._signing_secrets(tenant)
            headers = delivery_headers(
                secrets,
                body,
                self._clock(),
                event_id=event.event_id,
                event_type=event.type,
                sequence=event.sequence,
            )
            assert tenant.webhook_url is not None  # dispatch() only runs for tenants with one
            status = await self._sender.post(tenant.webhook_url, body, headers)
        except WebhookError as exc:
            run.add("failed")
            return await self._failed(lease, event, str(exc), run)
        now = self._clock()
        await self._save(
            event, attempts=event.attempts + 1, delivered_at=now, last_error=None, next_attempt_at=None
        )
        await lease.update(
            settled_through=event.sequence, next_attempt_at=None, gap_sequence=None, gap_seen_at=None
        )
        run.add("delivered")
        lag = round((now - event.created_at).total_seconds(), 3)  # emitted → delivered
        log.info(
            "event delivered",
            extra={**ids, "status": status, "attempts": event.attempts + 1, "lag_seconds": lag},
        )
        return True

    async def _failed(self, lease: Lease, event: OutboxEntry, error: str, run: RunHandle) -> bool:
        now = self._clock()
        failures = event.attempts + 1
        ids = {"event_id": event.event_id, "sequence": event.sequence, "attempts": failures, "error": error}
        decision = after_failure(
            self._config.retry, failures=failures, created_at=event.created_at, now=now, uniform=self._uniform
        )
        if isinstance(decision, DeadLetter):
            await self._queue.dead_letter(dead_letter_bytes(event))
            await self._save(
                event, attempts=failures, dead_lettered_at=now, last_error=error, next_attempt_at=None
            )
            await lease.update(settled_through=event.sequence, next_attempt_at=None)
            run.add("dead_lettered")
            log.error("event dead-lettered after its retry budget", extra=ids)
            return True
        await self._save(event, attempts=failures, last_error=error, next_attempt_at=decision.at)
        await lease.update(next_attempt_at=decision.at)
        delay = max(0.0, (decision.at - now).total_seconds())
        await self._queue.nudge(event.tenant_id, delay=delay)
        log.warning(
            "event delivery failed; retry scheduled", extra={**ids, "retry_in_seconds": round(delay, 3)}
        )
        return False

    async def _save(self, event: OutboxEntry, **changes: object) -> None:
        try:
            await self._store.events.save(event.model_copy(update=changes))
        except StaleEtag:
            # only a dispatcher writes an event after it is appended: another one took over
            raise LeaseLost() from None


def _start(cursor: DeliveryCursor) -> int:
    return max(cursor.settled_through, cursor.pruned_through)


def is_due(reserved: int, cursor: DeliveryCursor | None, now: datetime) -> bool:
    """Whether the safety net should nudge a tenant: sequences beyond the cursor exist, no retry
    is pending in the future, and nobody holds the lease (a crashed holder's lease expires)."""
    if cursor is None:
        return reserved > 0
    if reserved <= _start(cursor):
        return False
    if cursor.next_attempt_at is not None and cursor.next_attempt_at > now:
        return False
    return not (
        cursor.lease_until is not None and cursor.lease_until > now and cursor.lease_owner is not None
    )
