"""Calendar push up: host appointments → the resource's main account in Outlook.

`accept` (the `POST …/appointments` handler's core) validates a change or a batch, stores each
valid change as the *desired* state of its `HostAppointment` row — only if its version is newer
than the row's, so versions resolve at the store whatever order they arrive in — queues one
`calendar-push` message as the durable path, and then applies small requests at once, so the
event is in Outlook before the host has its 202. The message becomes visible only after that
attempt's budget; a worker then applies whatever the attempt did not finish (and finds nothing
to do when it did).

Applying one appointment, under a lease on its row (one writer at a time; a newer version that
arrives meanwhile is picked up by the holder before it lets go):

- `delete`: delete the event (already gone is fine) and forget it in the event map.
- `upsert` with no event yet: create it in the main account's first linked calendar with the
  `transactionId` of (host id, version). The transactionId is saved on the row and in the
  `eventtx` table *before* the create, so a retried create returns the same event, and the down
  sync recognises the event even if the bridge died before it learnt its id.
- `upsert` of an existing event: PATCH with `If-Match` = the change key the bridge last wrote.
  412 means Outlook changed it since: the **conflict rule** (documented in the README) is last
  writer wins by modification time — Outlook's `lastModifiedDateTime` against the host's
  `modifiedAt` (or when the bridge accepted the change). The host is told either way.
  404 means it was deleted in Outlook: it is created again.
- The main account changed (the link was edited): the event moves — deleted in the old
  account, created in the new one.
- No link, or no account with direction up/both: skipped, with the reason on the row, in the
  run's counts and in the host event.

Each applied change updates the event map (host id ↔ event id ↔ change key and the fingerprint
the down sync computes), so the down sync does not echo the bridge's own writes and reports an
Outlook edit of a pushed event as an update of the same host appointment. The host hears the
result as `appointment.pushed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from core.calendar.changes import Change, changes_of, draft_of, parse_batch, prefixed
from core.calendar.eventmap import UNSEEN, recheck, superseded, write_entry
from core.calendar.payload import CalendarContext, appointment, fingerprint
from core.calendar.push_queue import ApplyRequest, CleanupRequest, PushQueue, split
from core.calendar.sync import Emitter, find_calendar_id
from core.errors import NotFound as RowNotFound
from core.errors import Reportable, StaleEtag, StoreUnavailable, describe
from core.graph.errors import Conflict, GraphUnavailable, MalformedResponse, NotFound, Throttled
from core.graph.model import Event, EventChanges, EventDraft, transaction_id
from core.graph.port import GraphGateway
from core.graph_access import GraphProvider
from core.host import Emission
from core.request_errors import InvalidInput
from core.runs import Clock, RunHandle, track_run, utc_now
from core.store import Tables
from core.store.keys import escape_key
from core.store.records import (
    DEFAULT_CALENDAR,
    CalendarScope,
    EventMapEntry,
    EventTransaction,
    HostAppointment,
    Origin,
    PushOp,
    PushStatus,
    ResourceLink,
    Tenant,
)

log = logging.getLogger(__name__)

FUNCTION = "calendar-push"
CLEANUP_FUNCTION = "calendar-cleanup"
PUSHED = "appointment.pushed"
LEASE = timedelta(seconds=60)
INLINE_ITEMS = 20  # a POST with at most this many changes is applied before it answers
INLINE_BUDGET = 3.0  # seconds the POST waits for that
QUEUE_DELAY = 5.0  # the queue message's first visibility: after the inline attempt
CONCURRENCY = 8  # appointments applied at once per request (the mailbox limiter still caps Graph)
QUEUE_RETRY_SECONDS = 10.0
MAX_ATTEMPTS = 5

TRANSIENT = (Throttled, GraphUnavailable, MalformedResponse, StoreUnavailable, StaleEtag, Conflict)


class Result(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    RECREATED = "recreated"  # deleted in Outlook, then updated by the host
    MOVED = "moved"  # the resource's main account changed
    DELETED = "deleted"
    CONFLICT_OUTLOOK_WON = "conflict_outlook_won"
    SKIPPED = "skipped"
    FAILED = "failed"


class Skip(StrEnum):
    RESOURCE_NOT_LINKED = "resource_not_linked"
    NO_MAIN_ACCOUNT = "no_main_account"


_SKIP_REASONS = {
    Skip.RESOURCE_NOT_LINKED: "the resource is not linked to any account: PUT …/resources/{resourceId} first",
    Skip.NO_MAIN_ACCOUNT: "no account of the resource has direction up or both, so nothing receives uploads",
}


class PushFailed(Reportable):
    """One or more appointments of a request could not be applied. `retryable` when a queue
    retry may help; `retry_after` is Graph's advice when it throttled."""

    def __init__(self, failures: list[tuple[str, BaseException]]) -> None:
        self.failures = failures
        self.retry_after = max(
            (exc.retry_after or 0.0 for _, exc in failures if isinstance(exc, Throttled)), default=0.0
        )
        super().__init__("; ".join(f"appointment {host_id!r}: {describe(exc)}" for host_id, exc in failures))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What applying one appointment did."""

    result: Result
    row: HostAppointment
    reason: str | None = None
    conflict: dict[str, Any] | None = None


@dataclass
class ItemView:
    """One accepted change, as the POST answers it."""

    index: int
    change: Change
    status: str  # queued | applied | conflict | skipped | failed | ignored
    result: str | None = None
    event_id: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "hostAppointmentId": self.change.host_appointment_id,
            "resourceId": self.change.resource_id,
            "version": self.change.version,
            "status": self.status,
        }
        if self.result:
            out["result"] = self.result
        if self.event_id:
            out["eventId"] = self.event_id
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class Accepted:
    tracking_id: str
    items: list[ItemView]
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trackingId": self.tracking_id,
            "appointments": [i.to_dict() for i in self.items],
            "rejected": self.rejected,
        }


Key = tuple[str, str]  # (resource id, host appointment id)


def _key(tenant_id: str, item: Key) -> tuple[str, str]:
    return HostAppointment.key(tenant_id, item[0], item[1])


def row_view(row: HostAppointment) -> dict[str, Any]:
    """`GET …/resources/{r}/appointments/{id}`: where a host appointment stands."""
    return {
        "hostAppointmentId": row.host_appointment_id,
        "resourceId": row.resource_id,
        "version": row.version,
        "op": row.op.value,
        "appliedVersion": row.applied_version,
        "status": PushStatus.PENDING.value
        if row.applied_version != row.version and row.status not in (PushStatus.FAILED, PushStatus.SKIPPED)
        else row.status.value,
        "reason": row.reason,
        "account": row.account,
        "calendar": row.calendar,
        "eventId": row.event_id,
        "trackingId": row.tracking_id,
        "acceptedAt": row.accepted_at.isoformat() if row.accepted_at else None,
        "updatedAt": row.updated_at.isoformat() if row.updated_at else None,
    }


class AppointmentPush:
    def __init__(
        self,
        tables: Tables,
        outbox: Emitter,
        graphs: GraphProvider,
        queue: PushQueue,
        *,
        clock: Clock = utc_now,
        lease: timedelta = LEASE,
        inline_budget: float = INLINE_BUDGET,
        queue_delay: float = QUEUE_DELAY,
    ) -> None:
        self._tables = tables
        self._outbox = outbox
        self._graphs = graphs
        self._queue = queue
        self._clock = clock
        self._lease = lease
        self._inline_budget = inline_budget
        self._queue_delay = queue_delay
        self._rows = tables.repo(HostAppointment)
        self._map = tables.repo(EventMapEntry)
        self._tx = tables.repo(EventTransaction)

    def _track(
        self, function: str, tenant: Tenant, tracking_id: str
    ) -> AbstractAsyncContextManager[RunHandle]:
        """The run of one request in the tenant's history: its id is the request's tracking id."""
        return track_run(
            self._tables.runs(), function, scope=tenant.tenant_id, run_id=tracking_id, clock=self._clock
        )

    # --- accepting (the POST) ---------------------------------------------------------------

    async def accept(self, tenant: Tenant, body: object) -> Accepted:
        """Validate and store; queue; apply small requests at once. InvalidInput when nothing
        in the request is valid (nothing is stored then)."""
        batch = parse_batch(body, tenant.time_zone)
        rejected = [
            (index, prefixed(exc.problems, None if batch.single else index), host_id)
            for index, exc, host_id in batch.rejected
        ]
        if not batch.changes:
            raise InvalidInput([p for _, problems, _ in rejected for p in problems])
        tracking_id = uuid.uuid4().hex
        now = self._clock()
        views = await self._store_all(tenant.tenant_id, batch.changes, tracking_id, now)
        pending = list(dict.fromkeys(_item(v.change) for v in views if v.status == "queued"))
        if pending:
            request = ApplyRequest(tenant.tenant_id, tracking_id, tuple(pending))
            for message in split(request):
                await self._queue.send(message, delay=self._queue_delay)
            if len(pending) <= INLINE_ITEMS:
                await self._apply_inline(tenant, request, views)
        accepted = Accepted(
            tracking_id,
            views,
            [
                {"index": index, "hostAppointmentId": host_id, "errors": [p.to_dict() for p in problems]}
                for index, problems, host_id in rejected
            ],
        )
        log.info(
            "appointments accepted",
            extra={"tracking_id": tracking_id, "accepted": len(views), "rejected": len(rejected)},
        )
        return accepted

    async def _store_all(
        self, tenant_id: str, changes: list[tuple[int, Change]], tracking_id: str, now: datetime
    ) -> list[ItemView]:
        """Store each change's desired state; the changes of one appointment in request order,
        different appointments concurrently."""
        groups: dict[Key, list[tuple[int, Change]]] = {}
        for index, change in changes:
            groups.setdefault(_item(change), []).append((index, change))
        gate = asyncio.Semaphore(CONCURRENCY * 2)

        async def store_group(group: list[tuple[int, Change]]) -> list[ItemView]:
            async with gate:
                return [await self._store(tenant_id, index, c, tracking_id, now) for index, c in group]

        stored = await asyncio.gather(*(store_group(g) for g in groups.values()))
        return sorted((v for group in stored for v in group), key=lambda v: v.index)

    async def _store(
        self, tenant_id: str, index: int, change: Change, tracking_id: str, now: datetime
    ) -> ItemView:
        view = ItemView(index, change, "queued")

        def desired(current: HostAppointment | None) -> HostAppointment:
            view.status, view.reason = "queued", None
            if current is not None and current.version > change.version:
                view.status = "ignored"
                view.reason = (
                    f"version {change.version} is older than version {current.version}, already received"
                )
                return current
            if current is not None and current.version == change.version:
                if current.status in (PushStatus.FAILED, PushStatus.SKIPPED):
                    # the same version again after a failure or a skip: try it again
                    return current.model_copy(
                        update={"status": PushStatus.PENDING, "reason": None, "tracking_id": tracking_id}
                    )
                view.status = "ignored" if current.settled else "queued"
                view.reason = f"version {change.version} was already received" if current.settled else None
                view.event_id = current.event_id
                return current
            base = current or HostAppointment(
                tenant_id=tenant_id,
                resource_id=change.resource_id,
                host_appointment_id=change.host_appointment_id,
                version=change.version,
            )
            return base.model_copy(
                update={
                    "version": change.version,
                    "op": change.op,
                    "change": change.fields,
                    "host_modified_at": change.modified_at or now,
                    "tracking_id": tracking_id,
                    "status": PushStatus.PENDING,
                    "reason": None,
                    "accepted_at": now,
                }
            )

        await self._rows.mutate(*_key(tenant_id, _item(change)), desired)
        return view

    async def _apply_inline(self, tenant: Tenant, request: ApplyRequest, views: list[ItemView]) -> None:
        outcomes: dict[Key, Outcome] = {}
        try:
            async with asyncio.timeout(self._inline_budget):
                await self._run(tenant, request, outcomes, inline=True)
        except TimeoutError:
            log.info(
                "inline push ran out of time; the queue finishes it",
                extra={"tracking_id": request.tracking_id},
            )
        except Exception as exc:
            log.info(
                "inline push failed; the queue retries it",
                extra={"tracking_id": request.tracking_id, "error": describe(exc)},
            )
        for view in views:
            outcome = outcomes.get(_item(view.change))
            if view.status != "queued" or outcome is None:
                continue
            view.result = outcome.result.value
            view.event_id = outcome.row.event_id
            view.reason = outcome.reason
            view.status = _status_of(outcome.result)

    # --- applying (the worker, and the POST's first attempt) -------------------------------

    async def run_queued(self, request: ApplyRequest) -> None:
        """Apply a `calendar-push` message. Returns when done (or re-queued to honour a long
        Retry-After); raises when the queue should retry it."""
        tenant = await self._tables.repo(Tenant).get(*Tenant.key(request.tenant_id))
        if tenant is None or not tenant.enabled:
            log.info("push for a missing or disabled tenant dropped", extra={"tenant_id": request.tenant_id})
            return
        rows = await asyncio.gather(*(self._rows.get(*_key(tenant.tenant_id, i)) for i in request.items))
        open_items = tuple(i for i, row in zip(request.items, rows, strict=True) if row and not row.settled)
        if not open_items:
            return  # applied already (by the POST's own attempt, or an earlier delivery)
        try:
            await self._run(
                tenant, ApplyRequest(request.tenant_id, request.tracking_id, open_items, request.attempt), {}
            )
        except PushFailed as failed:
            throttled = [h for h, exc in failed.failures if isinstance(exc, Throttled)]
            if (
                failed.retry_after > QUEUE_RETRY_SECONDS
                and len(throttled) == len(failed.failures)
                and request.attempt + 1 < MAX_ATTEMPTS
            ):
                await self._queue.send(request.retry(open_items), delay=failed.retry_after)
                log.info("throttled; push re-queued", extra={"delay_seconds": failed.retry_after})
                return
            raise

    async def _run(
        self, tenant: Tenant, request: ApplyRequest, outcomes: dict[Key, Outcome], *, inline: bool = False
    ) -> None:
        async with self._track(FUNCTION, tenant, request.tracking_id) as run:
            gate = asyncio.Semaphore(CONCURRENCY)
            busy: list[tuple[Key, float]] = []

            async def one(item: Key) -> None:
                async with gate:
                    outcome = await self._apply(tenant, item, run, busy)
                if outcome is not None:
                    outcomes[item] = outcome

            results = await asyncio.gather(*(one(i) for i in request.items), return_exceptions=True)
            failures: list[tuple[str, BaseException]] = []
            for item, result in zip(request.items, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result
                    failures.append((item[1], result))
            if busy and not inline:
                # another worker holds these; if it dies, its lease runs out and this message
                # (sent again for when it does) takes over
                delay = max(wait for _, wait in busy)
                await self._queue.send(request.retry(tuple(i for i, _ in busy)), delay=delay)
                run.add("requeued_busy", len(busy))
            if failures:
                run.add("failed", len(failures))
                raise PushFailed(failures)

    async def _apply(
        self, tenant: Tenant, item: Key, run: RunHandle, busy: list[tuple[Key, float]]
    ) -> Outcome | None:
        owner = uuid.uuid4().hex
        row = await self._take(tenant.tenant_id, item, owner, busy)
        if row is None:
            return None
        outcome: Outcome | None = None
        try:
            while True:
                try:
                    outcome = await self._apply_once(tenant, row, owner)
                except (Exception, asyncio.CancelledError) as exc:
                    await asyncio.shield(self._release_failed(row, owner, exc))
                    if isinstance(exc, Exception) and not isinstance(exc, TRANSIENT):
                        await self._tell_failed(row, exc)
                    raise
                run.add(
                    outcome.result.value
                    if outcome.result is not Result.SKIPPED
                    else f"skipped_{outcome.reason}"
                )
                await self._tell(outcome)
                again = await self._release(outcome.row, owner)
                if again is None:
                    return outcome
                row = again
        finally:
            if outcome is not None:
                log.info(
                    "appointment pushed",
                    extra={"result": outcome.result.value, "version": outcome.row.applied_version},
                )

    # --- unlink with cleanup --------------------------------------------------------------

    async def clean_up(self, request: CleanupRequest) -> None:
        """Delete every event the bridge created for the resource in the unlinked account, and
        nothing else: the events its appointment rows name, and any other event-map entry the
        bridge made there. Raises (for the queue to retry) while a push of one of them is under
        way or Graph fails; what was deleted stays deleted."""
        tenant = await self._tables.repo(Tenant).get(*Tenant.key(request.tenant_id))
        if tenant is None:
            return
        account = request.account.lower()
        async with self._track(CLEANUP_FUNCTION, tenant, request.tracking_id) as run:
            gateway = await self._graphs.gateway(tenant)
            partition = escape_key(tenant.tenant_id)
            low, high = HostAppointment.resource_range(request.resource_id)
            rows = [
                row
                async for row in self._rows.list(partition, row_key_from=low, row_key_to=high)
                if row.resource_id == request.resource_id and (row.account or "").lower() == account
            ]
            handled: set[str] = set()
            failures: list[tuple[str, BaseException]] = []
            for row in rows:
                try:
                    event_id = await self._clean_row(tenant, gateway, row, run)
                except Exception as exc:
                    failures.append((row.host_appointment_id, exc))
                    continue
                if event_id:
                    handled.add(event_id)
            where = {"resource_id": request.resource_id, "account": account, "origin": Origin.BRIDGE.value}
            async for entry in self._map.list(partition, where=where):
                if entry.event_id in handled:
                    continue
                with contextlib.suppress(NotFound):
                    await gateway.delete_event(entry.account, entry.event_id)
                await self._map.store.delete(entry.partition_key, entry.row_key)
                run.add("events_deleted")
            link = await self._tables.repo(ResourceLink).get(
                *ResourceLink.key(tenant.tenant_id, request.resource_id)
            )
            if link is None and not failures:
                # the resource is gone: so is what the bridge kept about its appointments
                for row in rows:
                    with contextlib.suppress(RowNotFound, StaleEtag):
                        await self._rows.store.delete(row.partition_key, row.row_key)
            if failures:
                run.add("failed", len(failures))
                raise PushFailed(failures)

    async def _clean_row(
        self, tenant: Tenant, gateway: GraphGateway, row: HostAppointment, run: RunHandle
    ) -> str | None:
        owner = uuid.uuid4().hex
        busy: list[tuple[Key, float]] = []
        held = await self._take(
            tenant.tenant_id, (row.resource_id, row.host_appointment_id), owner, busy, settled_too=True
        )
        if held is None:
            if busy:
                raise StaleEtag("a push of this appointment is under way; the cleanup retries")
            return None
        held = await _find_unseen_create(gateway, held)
        event_id = held.event_id
        if event_id is not None:
            await self._remove_event(gateway, held)
            run.add("events_deleted")
        await self._save_held(
            held,
            owner,
            {
                "event_id": None,
                "change_key": None,
                "account": None,
                "calendar": None,
                "creating_transaction_id": None,
                "applied_version": held.version,
                "status": PushStatus.SKIPPED,
                "reason": "the account was unlinked with cleanup: its event was deleted",
                "lease_owner": None,
                "lease_until": None,
            },
        )
        return event_id

    # --- the lease ------------------------------------------------------------------------

    async def _take(
        self,
        tenant_id: str,
        item: Key,
        owner: str,
        busy: list[tuple[Key, float]],
        *,
        settled_too: bool = False,
    ) -> HostAppointment | None:
        for _ in range(5):
            row = await self._rows.get(*_key(tenant_id, item))
            if row is None or (row.settled and not settled_too):
                return None
            now = self._clock()
            if row.lease_owner and row.lease_until and row.lease_until > now:
                busy.append((item, (row.lease_until - now).total_seconds() + 1))
                return None
            try:
                return await self._rows.save(
                    row.model_copy(update={"lease_owner": owner, "lease_until": now + self._lease})
                )
            except (StaleEtag, RowNotFound):
                continue
        raise StaleEtag("the appointment kept changing while its lease was taken")

    async def _save_held(self, row: HostAppointment, owner: str, updates: dict[str, Any]) -> HostAppointment:
        """Write applied-side fields while holding the lease (a POST may have written a newer
        desired version meanwhile: those fields are kept)."""
        current: HostAppointment | None = row
        for attempt in range(5):
            if attempt:
                current = await self._rows.get(
                    *row.key(row.tenant_id, row.resource_id, row.host_appointment_id)
                )
            if current is None or current.lease_owner != owner:
                raise StaleEtag("the appointment's lease was lost")
            try:
                return await self._rows.save(current.model_copy(update=updates))
            except (StaleEtag, RowNotFound):
                continue
        raise StaleEtag("the appointment kept changing while it was written")

    async def _release(self, row: HostAppointment, owner: str) -> HostAppointment | None:
        """Let go, or — when a newer version arrived meanwhile — keep the lease and return the
        row to apply again."""
        current: HostAppointment | None = row
        for attempt in range(5):
            if attempt:
                current = await self._rows.get(
                    *row.key(row.tenant_id, row.resource_id, row.host_appointment_id)
                )
                if current is None or current.lease_owner != owner:
                    log.warning("appointment lease lost before release")
                    return None
                current = current.model_copy(update=_applied_fields(row))
            assert current is not None
            again = current.version != current.applied_version
            now = self._clock()
            updates: dict[str, Any] = {
                "lease_owner": owner if again else None,
                "lease_until": now + self._lease if again else None,
                "updated_at": now,
            }
            if again:
                updates["status"] = PushStatus.PENDING
            try:
                saved = await self._rows.save(current.model_copy(update=updates))
            except (StaleEtag, RowNotFound):
                continue
            return saved if again else None
        raise StaleEtag("the appointment kept changing while its lease was released")

    async def _release_failed(self, row: HostAppointment, owner: str, exc: BaseException) -> None:
        try:
            updates: dict[str, Any] = {"lease_owner": None, "lease_until": None, "updated_at": self._clock()}
            if isinstance(exc, Exception):
                updates |= {"status": PushStatus.FAILED, "reason": describe(exc)}
            await self._save_held(row, owner, updates)
        except Exception:
            log.exception("could not record the appointment's failure")  # the lease runs out by itself

    # --- one write ------------------------------------------------------------------------

    async def _apply_once(self, tenant: Tenant, row: HostAppointment, owner: str) -> Outcome:
        if row.op is PushOp.DELETE:
            return await self._delete(tenant, row, owner)
        link = await self._tables.repo(ResourceLink).get(*ResourceLink.key(tenant.tenant_id, row.resource_id))
        main = link.main_account if link else None
        if main is None:
            skip = Skip.RESOURCE_NOT_LINKED if link is None else Skip.NO_MAIN_ACCOUNT
            return Outcome(
                Result.SKIPPED,
                _settle(row, PushStatus.SKIPPED, _SKIP_REASONS[skip]),
                skip.value,
            )
        gateway = await self._graphs.gateway(tenant)
        calendar = main.calendars[0] if main.calendars else DEFAULT_CALENDAR
        ctx = CalendarContext(
            tenant_id=tenant.tenant_id,
            resource_id=row.resource_id,
            account=main.account,
            calendar=calendar,
            language=tenant.language,
            time_zone=tenant.time_zone,
            writable=main.scope is CalendarScope.READ_WRITE,
        )
        moved = False
        if row.event_id and not _same_target(row, main.account, calendar):
            await self._remove_event(gateway, row)
            row = row.model_copy(
                update={"event_id": None, "change_key": None, "account": None, "calendar": None}
            )
            moved = True
        if row.event_id is None:
            return await self._create(gateway, ctx, row, owner, Result.MOVED if moved else Result.CREATED)
        return await self._update(gateway, ctx, row, owner, host_always_wins=not main.direction.downloads)

    async def _create(
        self, gateway: GraphGateway, ctx: CalendarContext, row: HostAppointment, owner: str, result: Result
    ) -> Outcome:
        wanted = transaction_id(row.host_appointment_id, row.version)
        # A create of an earlier version may have happened without the bridge learning the
        # event's id: its transactionId finds that event instead of making a second one.
        tx = row.creating_transaction_id or wanted
        # both before the create: the row so a later attempt reuses the transactionId, the
        # transaction so the down sync knows the event whoever sees it first
        row, _ = await asyncio.gather(
            self._save_held(
                row, owner, {"creating_transaction_id": tx, "account": ctx.account, "calendar": ctx.calendar}
            ),
            self._tx.upsert(
                EventTransaction(
                    tenant_id=ctx.tenant_id,
                    account=ctx.account,
                    transaction_id=tx,
                    resource_id=row.resource_id,
                    host_appointment_id=row.host_appointment_id,
                    version=row.version,
                    created_at=self._clock(),
                )
            ),
        )
        calendar_id = await find_calendar_id(gateway, ctx.account, ctx.calendar)
        event = await gateway.create_event(ctx.account, calendar_id, draft_of(row.change), tx)
        if tx != wanted:
            event = await gateway.update_event(ctx.account, event.id, changes_of(row.change))
        await self._record(ctx, row, event, tx)
        return Outcome(result, _settle(row, PushStatus.APPLIED, None, event, ctx, clear_tx=True))

    async def _update(
        self,
        gateway: GraphGateway,
        ctx: CalendarContext,
        row: HostAppointment,
        owner: str,
        *,
        host_always_wins: bool,
    ) -> Outcome:
        """PATCH the event. On a conflict with an Outlook edit: for a link with direction
        `both`, the later modification wins; for `up` the host is the only source of truth."""
        assert row.event_id is not None
        conflict: dict[str, Any] | None = None
        changes = changes_of(row.change)
        try:
            try:
                event = await gateway.update_event(
                    ctx.account, row.event_id, changes, if_match=row.change_key
                )
            except Conflict:
                current = await gateway.get_event(ctx.account, row.event_id)
                if _shows(current, changes):
                    # Outlook already shows this version. Typically it is the bridge's own
                    # write: its answer was lost (a dropped connection, a timeout) and the
                    # retry met it as a 412. Taken for an Outlook edit, it would "win" against
                    # this version, the row would keep the stale change key, and every later
                    # version would lose to it too (found by the R1 chaos run).
                    await self._record(ctx, row, current, None)
                    return Outcome(Result.UPDATED, _settle(row, PushStatus.APPLIED, None, current, ctx))
                host_time = row.host_modified_at or row.accepted_at
                conflict = {
                    "outlookModified": _iso(current.last_modified),
                    "hostModified": _iso(host_time),
                }
                if (
                    not host_always_wins
                    and current.last_modified
                    and host_time
                    and current.last_modified > host_time
                ):
                    # Outlook was edited after the host's change: Outlook's state stands
                    await self._record(ctx, row, current, None)
                    return Outcome(
                        Result.CONFLICT_OUTLOOK_WON,
                        _settle(
                            row, PushStatus.CONFLICT, "Outlook was changed later than this version", None, ctx
                        ),
                        "Outlook was changed later than this version",
                        {
                            **conflict,
                            "winner": "outlook",
                            "appointment": appointment(current, ctx, row.host_appointment_id),
                        },
                    )
                conflict["winner"] = "host"
                event = await gateway.update_event(
                    ctx.account, row.event_id, changes, if_match=current.change_key
                )
        except NotFound:
            # deleted in Outlook; the host still has it (it sent a newer version): create again
            stale = row.model_copy(update={"event_id": None, "change_key": None})
            await self._forget(ctx.tenant_id, row)
            return await self._create(gateway, ctx, stale, owner, Result.RECREATED)
        await self._record(ctx, row, event, None)
        return Outcome(Result.UPDATED, _settle(row, PushStatus.APPLIED, None, event, ctx), None, conflict)

    async def _delete(self, tenant: Tenant, row: HostAppointment, owner: str) -> Outcome:
        if row.event_id is not None or row.creating_transaction_id:
            gateway = await self._graphs.gateway(tenant)
            row = await _find_unseen_create(gateway, row)
            if row.event_id is not None:
                await self._remove_event(gateway, row)
        return Outcome(
            Result.DELETED,
            row.model_copy(
                update={
                    "applied_version": row.version,
                    "status": PushStatus.APPLIED,
                    "reason": None,
                    "event_id": None,
                    "change_key": None,
                    "creating_transaction_id": None,
                }
            ),
        )

    async def _remove_event(self, gateway: GraphGateway, row: HostAppointment) -> None:
        assert row.event_id is not None
        assert row.account is not None
        with contextlib.suppress(NotFound):  # deleted in Outlook already
            await gateway.delete_event(row.account, row.event_id)
        await self._forget(row.tenant_id, row)

    async def _forget(self, tenant_id: str, row: HostAppointment) -> None:
        if row.event_id is None or row.account is None:
            return
        key = EventMapEntry.key(
            tenant_id, row.resource_id, row.account, row.calendar or DEFAULT_CALENDAR, row.event_id
        )
        with contextlib.suppress(RowNotFound):
            await self._map.store.delete(*key)

    async def _record(self, ctx: CalendarContext, row: HostAppointment, event: Event, tx: str | None) -> None:
        """The event map learns the event as the down sync would see it, so it is not echoed."""
        payload = appointment(event, ctx, row.host_appointment_id)
        key = EventMapEntry.key(ctx.tenant_id, ctx.resource_id, ctx.account, ctx.calendar, event.id)
        now = self._clock()

        def build(current: EventMapEntry | None) -> EventMapEntry:
            base = current or EventMapEntry(
                tenant_id=ctx.tenant_id,
                resource_id=ctx.resource_id,
                account=ctx.account,
                calendar=ctx.calendar,
                event_id=event.id,
                origin=Origin.BRIDGE,
            )
            # An event no down round has seen yet — one this write created, or one created
            # earlier and not seen since — stays UNSEEN, so a round that never hears of it
            # checks it (`core.calendar.eventmap`); one a round saw keeps its real change key.
            unseen = current is None or current.change_key == UNSEEN
            updates: dict[str, Any] = {
                "host_appointment_id": row.host_appointment_id,
                "change_key": UNSEEN if unseen else event.change_key,
                "fingerprint": fingerprint(payload),
                "version": row.version,
                "start": event.start,
                "end": event.end,
                "last_modified": event.last_modified,
                "updated_at": now,
            }
            if tx is not None:
                updates |= {"transaction_id": tx, "origin": Origin.BRIDGE}
            return base.model_copy(update=updates)

        # a created event has no entry yet (write_entry inserts, and re-reads only if the down
        # sync got there first); an updated one has: read it for its ETag
        read = None if tx is not None else await self._map.get(*key)
        stored = await write_entry(self._map, key, read, build)
        if superseded(stored, event.last_modified):
            # a down round stored (and told the host) a later Outlook state first; the
            # appointment.pushed told after it would leave the host with this older one
            await recheck(self._map, stored, fingerprint(payload), now)

    # --- telling the host -----------------------------------------------------------------

    async def _tell(self, outcome: Outcome) -> None:
        row = outcome.row
        extra: dict[str, Any] = {"account": row.account, "calendar": row.calendar, "eventId": row.event_id}
        if outcome.reason:
            extra["reason"] = outcome.reason
        if outcome.conflict:
            extra["conflict"] = outcome.conflict
        assert row.applied_version is not None  # an outcome settles its version
        await self._outbox.emit_many(
            row.tenant_id, [_pushed(row, outcome.result, row.applied_version, extra)]
        )

    async def _tell_failed(self, row: HostAppointment, exc: Exception) -> None:
        try:
            emission = _pushed(row, Result.FAILED, row.version, {"reason": describe(exc)})
            await self._outbox.emit_many(row.tenant_id, [emission])
        except Exception:
            log.exception("could not tell the host about a failed push")


# --- helpers ---------------------------------------------------------------------------------


def _item(change: Change) -> Key:
    return (change.resource_id, change.host_appointment_id)


def _status_of(result: Result) -> str:
    return {
        Result.CONFLICT_OUTLOOK_WON: "conflict",
        Result.SKIPPED: "skipped",
        Result.FAILED: "failed",
    }.get(result, "applied")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _shows(event: Event, changes: EventChanges) -> bool:
    """Whether the event already shows what `changes` writes, in what a person sees of an
    appointment: subject, times, all-day, place, show-as, sensitivity, categories."""
    seen = (event.subject, event.start, event.end, event.is_all_day, event.location, event.show_as)
    wanted = (
        changes.subject,
        changes.start,
        changes.end,
        changes.is_all_day,
        changes.location,
        changes.show_as,
    )
    return (
        seen == wanted
        and event.sensitivity == changes.sensitivity
        and tuple(event.categories) == tuple(changes.categories or ())
    )


def _same_target(row: HostAppointment, account: str, calendar: str) -> bool:
    return (row.account or "").lower() == account.lower() and (
        row.calendar or ""
    ).casefold() == calendar.casefold()


def _applied_fields(row: HostAppointment) -> dict[str, Any]:
    names = (
        "applied_version",
        "status",
        "reason",
        "account",
        "calendar",
        "event_id",
        "change_key",
        "creating_transaction_id",
    )
    return {name: getattr(row, name) for name in names}


def _settle(
    row: HostAppointment,
    status: PushStatus,
    reason: str | None,
    event: Event | None = None,
    ctx: CalendarContext | None = None,
    *,
    clear_tx: bool = False,
) -> HostAppointment:
    updates: dict[str, Any] = {"applied_version": row.version, "status": status, "reason": reason}
    if event is not None and ctx is not None:
        updates |= {
            "event_id": event.id,
            "change_key": event.change_key,
            "account": ctx.account,
            "calendar": ctx.calendar,
        }
    if clear_tx:
        updates["creating_transaction_id"] = None
    return row.model_copy(update=updates)


def _pushed(row: HostAppointment, result: Result, version: int, extra: dict[str, Any]) -> Emission:
    """The `appointment.pushed` event of one result for one version; its id derives from both,
    so a retry emits it once."""
    data: dict[str, Any] = {
        "resourceId": row.resource_id,
        "hostAppointmentId": row.host_appointment_id,
        "version": version,
        "op": row.op.value,
        "result": result.value,
        **extra,
        "trackingId": row.tracking_id,
    }
    return Emission(PUSHED, data, _host_event_id(row, result.value))


def _host_event_id(row: HostAppointment, result: str) -> str:
    material = "\x1f".join(
        (row.tenant_id, row.resource_id, row.host_appointment_id, str(row.version), result)
    )
    return "push-" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:40]


async def _find_unseen_create(gateway: GraphGateway, row: HostAppointment) -> HostAppointment:
    """The row with the event of a create that may have happened without the bridge learning
    its id: the saved transactionId finds that event (or makes a placeholder, to be deleted by
    the caller along with the rest). Rows without such a create come back as they are."""
    if row.event_id is not None or not row.creating_transaction_id or not row.account:
        return row
    calendar = await find_calendar_id(gateway, row.account, row.calendar or DEFAULT_CALENDAR)
    event = await gateway.create_event(row.account, calendar, _placeholder(), row.creating_transaction_id)
    return row.model_copy(update={"event_id": event.id})


def _placeholder() -> EventDraft:
    start = datetime(2000, 1, 1, tzinfo=UTC)
    return EventDraft(subject="", start=start, end=start + timedelta(minutes=1))


async def request_cleanup(queue: PushQueue, tenant_id: str, resource_id: str, accounts: list[str]) -> str:
    """Queue the removal of the bridge's events from each unlinked account; the tracking id
    is the run id the cleanup records."""
    tracking_id = uuid.uuid4().hex
    for account in dict.fromkeys(a.lower() for a in accounts):
        await queue.send(CleanupRequest(tenant_id, tracking_id, resource_id, account))
    return tracking_id


def cleanup_flag(value: str | None) -> bool:
    """The `cleanup` query parameter: true or false (default false)."""
    if value is None or value == "" or value.lower() == "false":
        return False
    if value.lower() == "true":
        return True
    raise InvalidInput.one("cleanup", "must be true or false")
