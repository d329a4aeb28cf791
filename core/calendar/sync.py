"""The down-sync shell: one sync request → delta rounds → host events, safely.

For each down-linked calendar the request covers, a worker:

1. takes the calendar's lease on its sync-state row (a request that finds it taken asks the
   holder for one more round and leaves: bursts coalesce);
2. runs a round — incremental from the stored delta link while the link's window still covers
   what the host needs, otherwise (first sync, an expired delta state, a window that must roll
   forward) a full round over a fresh window;
3. per page: reads the event map for the page's ids, asks the planner what to do, and applies
   it in order (outbox first, then the map; each host event id is derived from the change, so a
   repeat after a crash emits nothing new);
4. after the last page only, stores the new delta link — and, after a full round, reconciles:
   known events the round did not report are deleted in the host (or, if they aged out of the
   window, forgotten);
5. releases the lease, running again first if someone asked meanwhile.

A `SyncBatch` (the timer's) runs its calendars the same way, side by side, with the state rows
read by one range query and the leases taken and released by one Table transaction each; when
a row changed meanwhile (a notification asked for a rerun), the batch falls back to the
one-calendar path for that step.

A read that fails never deletes anything: reconciliation needs a complete full round, and a
failed round stores nothing, so the next run starts from the same delta link (the planner's
fingerprints make the repeated part a no-op). A page with items that cannot be parsed is
applied, but the link is not advanced and the run fails, naming them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from core.calendar.eventmap import UNSEEN, recheck, superseded, write_entry
from core.calendar.payload import CalendarContext
from core.calendar.planner import (
    Action,
    Delete,
    Forget,
    Known,
    Touch,
    Upsert,
    deleted_payload,
    plan_items,
    plan_reconcile,
)
from core.calendar.requests import CalendarRef, SyncBatch, SyncQueue, SyncRequest, Target, select_targets
from core.calendar.window import WindowPolicy
from core.errors import AlreadyExists, Reportable, StaleEtag, StoreUnavailable, describe
from core.errors import NotFound as NotFoundRow
from core.graph.errors import (
    GraphError,
    GraphUnavailable,
    MalformedItem,
    MalformedResponse,
    NotFound,
    SyncStateExpired,
    Throttled,
)
from core.graph.model import Calendar, DeltaPage, DeltaStart, Event
from core.graph.port import DEFAULT_DELTA_PAGE_SIZE, GraphGateway
from core.graph_access import GraphProvider
from core.host import Emission
from core.leases import claim
from core.runs import Clock, RunHandle, track_run, utc_now
from core.store import Tables
from core.store.records import (
    DEFAULT_CALENDAR,
    CalendarScope,
    CalendarSyncState,
    EventMapEntry,
    EventTransaction,
    Origin,
    ResourceLink,
    SyncStatus,
    Tenant,
    calendar_scope,
    sync_state_key,
)
from core.store.table import MAX_TRANSACTION

log = logging.getLogger(__name__)

FUNCTION = "calendar-sync"
UPSERTED = "appointment.upserted"
DELETED = "appointment.deleted"
LEASE = timedelta(minutes=10)
EXTRA_ROUNDS = 3  # coalesced requests served by one holder before it lets go
_LOOKUPS = 16  # event-map point reads in flight per page

# What a queue retry may fix: the rest (consent, a missing calendar, unreadable items) waits
# for the next timer run or for an operator, instead of filling the poison queue.
TRANSIENT = (Throttled, GraphUnavailable, MalformedResponse, SyncStateExpired, StoreUnavailable, StaleEtag)


class Emitter(Protocol):
    async def emit_many(
        self, tenant_id: str, events: Sequence[Emission], *, nudge: bool = True
    ) -> Sequence[object]: ...


class CalendarNotFound(Reportable):
    """A linked calendar name that the mailbox does not have (renamed or deleted in Outlook)."""


class UnreadableItems(Reportable):
    """Graph sent items that could not be parsed; the delta link was not advanced."""


class CalendarSyncFailed(Reportable):
    """One or more calendars of a request failed. `retryable` when a queue retry may help."""

    def __init__(
        self, failures: list[tuple[Target, BaseException]], refs: list[CalendarRef] | None = None
    ) -> None:
        self.failures = failures
        self.refs = refs or []  # the failed calendars, as (resource id, account, calendar)
        self.retryable = any(
            isinstance(exc, TRANSIENT) or not isinstance(exc, Reportable) for _, exc in failures
        )
        # Graph's advice for when to come back, when it throttled a calendar
        self.retry_after = max(
            (exc.retry_after or 0.0 for _, exc in failures if isinstance(exc, Throttled)), default=0.0
        )
        super().__init__("; ".join(f"{target.name}: {describe(exc)}" for target, exc in failures))


class CalendarSync:
    def __init__(
        self,
        tables: Tables,
        outbox: Emitter,
        graphs: GraphProvider,
        policy: WindowPolicy,
        *,
        clock: Clock = utc_now,
        page_size: int = DEFAULT_DELTA_PAGE_SIZE,
        lease: timedelta = LEASE,
    ) -> None:
        self._tables = tables
        self._outbox = outbox
        self._graphs = graphs
        self._policy = policy
        self._clock = clock
        self._page_size = page_size
        self._lease = lease
        self._states = tables.repo(CalendarSyncState)
        self._map = tables.repo(EventMapEntry)
        self._tx = tables.repo(EventTransaction)

    async def run(self, request: SyncRequest | SyncBatch) -> RunHandle | None:
        """Sync what `request` covers, recorded as one run in the tenant's history. Returns
        None (and records nothing) for a tenant that no longer exists or is disabled. Raises
        `CalendarSyncFailed` when a calendar failed, after every other one was synced."""
        tenant = await self._tables.repo(Tenant).get(*Tenant.key(request.tenant_id))
        if tenant is None or not tenant.enabled:
            log.info(
                "sync request for a missing or disabled tenant dropped",
                extra={"tenant_id": request.tenant_id},
            )
            return None
        async with track_run(
            self._tables.runs(), FUNCTION, scope=tenant.tenant_id, run_id=request.run_id, clock=self._clock
        ) as run:
            if isinstance(request, SyncBatch):
                targets = await self._batch_targets(tenant, request, run)
                results = await self._sync_many(tenant, targets, run)
            else:
                link = await self._tables.repo(ResourceLink).get(
                    *ResourceLink.key(tenant.tenant_id, request.resource_id)
                )
                if link is None:
                    run.add("resource_not_linked")
                    return run
                chosen, skipped = select_targets(link, request)
                if skipped:
                    run.add("calendars_skipped_not_down", skipped)
                targets = [(link, target) for target in chosen]
                results = await asyncio.gather(
                    *(self._sync(tenant, link, target, run) for link, target in targets),
                    return_exceptions=True,
                )
            failed = [
                (link, t, r)
                for (link, t), r in zip(targets, results, strict=True)
                if isinstance(r, BaseException)
            ]
            failures = [(t, r) for _, t, r in failed]
            for target, exc in failures:
                if not isinstance(exc, Exception):
                    raise exc  # cancellation and the like are not a calendar's failure
                log.warning("calendar sync failed", extra={"calendar": target.name, "error": describe(exc)})
            run.add("calendars_synced", len(targets) - len(failures))
            if failures:
                run.add("calendars_failed", len(failures))
                refs = [(link.resource_id, t.account.account, t.calendar) for link, t, _ in failed]
                raise CalendarSyncFailed(failures, refs)
        return run

    # --- a batch of calendars --------------------------------------------------------------------

    async def _batch_targets(
        self, tenant: Tenant, batch: SyncBatch, run: RunHandle
    ) -> list[tuple[ResourceLink, Target]]:
        """The batch's calendars that are still linked down, with their links (read once each)."""
        resources = list(dict.fromkeys(resource for resource, _, _ in batch.calendars))
        repo = self._tables.repo(ResourceLink)
        found = await asyncio.gather(*(repo.get(*ResourceLink.key(tenant.tenant_id, r)) for r in resources))
        links = {r: link for r, link in zip(resources, found, strict=True) if link is not None}
        targets: list[tuple[ResourceLink, Target]] = []
        seen: set[str] = set()
        for resource, account, calendar in batch.calendars:
            link = links.get(resource)
            if link is None:
                run.add("resource_not_linked")
                continue
            chosen, skipped = select_targets(link, SyncRequest(tenant.tenant_id, resource, account, calendar))
            if skipped:
                run.add("calendars_skipped_not_down", skipped)
            elif not chosen:
                run.add("calendars_not_linked")
            for target in chosen:
                scope = sync_state_key(resource, target.account.account, target.calendar)
                if scope not in seen:  # a calendar named twice is synced once
                    seen.add(scope)
                    targets.append((link, target))
        return targets

    async def _sync_many(
        self, tenant: Tenant, targets: list[tuple[ResourceLink, Target]], run: RunHandle
    ) -> list[BaseException | None]:
        """Each target's outcome (None: synced), as `_sync` would have it, with the state rows
        read by one query and the leases taken and released in transactions."""
        contexts = [self._context(tenant, link, target) for link, target in targets]
        owner = uuid.uuid4().hex
        held = await self._acquire_many(tenant.tenant_id, contexts, owner)
        if held is None:  # the rows changed while they were read: one calendar at a time
            one_by_one = await asyncio.gather(
                *(self._sync(tenant, link, target, run) for link, target in targets), return_exceptions=True
            )
            return [r if isinstance(r, BaseException) else None for r in one_by_one]
        if coalesced := sum(1 for state in held if state is None):
            run.add("calendars_coalesced", coalesced)
        leased = [(i, ctx, state) for i, (ctx, state) in enumerate(zip(contexts, held, strict=True)) if state]
        try:
            first = await self._first_pages(tenant, leased)
        except GraphError:  # no token, say: each calendar meets it alone and records it
            first = {}
        outcomes = await asyncio.gather(
            *(self._round(tenant, ctx, state, run, first.get(i)) for i, ctx, state in leased),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome
        finished = await self._release_many(owner, [(ctx, state) for _, ctx, state in leased], outcomes)
        results: list[BaseException | None] = [None] * len(contexts)
        late: list[tuple[int, Awaitable[None]]] = []
        for (i, ctx, state), outcome, done in zip(leased, outcomes, finished, strict=True):
            if done:
                results[i] = outcome if isinstance(outcome, BaseException) else None
            else:
                late.append((i, self._finish(tenant, ctx, owner, state, outcome, run)))
        ended = await asyncio.gather(*(job for _, job in late), return_exceptions=True)
        for (i, _), end in zip(late, ended, strict=True):
            results[i] = end if isinstance(end, BaseException) else None
        return results

    async def _acquire_many(
        self, tenant_id: str, contexts: list[CalendarContext], owner: str
    ) -> list[CalendarSyncState | None] | None:
        """Take each calendar's lease: the rows come from one range query (a batch's keys are
        contiguous) and are written in one transaction. Per context, the leased state or None
        (another worker holds it and was asked for one more round); None for all when a row
        changed between the read and the write (the caller goes one calendar at a time)."""
        if not contexts:
            return []
        if len(contexts) > MAX_TRANSACTION:
            raise ValueError(f"a batch holds at most {MAX_TRANSACTION} calendars")
        keys = [_state_key(ctx)[1] for ctx in contexts]
        partition = _state_key(contexts[0])[0]
        wanted = set(keys)
        rows = {
            state.row_key: state
            async for state in self._states.list(
                partition, row_key_from=min(keys), row_key_to=max(keys) + "~"
            )
            if state.row_key in wanted
        }
        now = self._clock()
        writes: list[CalendarSyncState] = []
        held: list[CalendarSyncState | None] = []
        for ctx, key in zip(contexts, keys, strict=True):
            current = rows.get(key)
            state, leased = claim(current, functools.partial(_new_state, ctx), owner, now, self._lease)
            if current is None or state.model_dump() != current.model_dump():
                writes.append(state)
            held.append(state if leased else None)
        try:
            saved = {state.row_key: state for state in await self._states.save_many(writes)}
        except (StaleEtag, NotFoundRow, AlreadyExists):
            return None  # all or nothing: no lease was taken
        return [saved.get(key, state) if state else None for key, state in zip(keys, held, strict=True)]

    async def _release_many(
        self,
        owner: str,
        leased: list[tuple[CalendarContext, CalendarSyncState]],
        outcomes: list[dict[str, Any] | BaseException],
    ) -> list[bool]:
        """Store each round's progress (or failure) and let go, a transaction at a time, with the
        etags the leases were taken with, in one transaction. Per calendar, whether that is done:
        the transaction fails as a whole when one of its rows changed (someone asked for a
        rerun), and the calendars are then finished one at a time by the caller."""
        now = self._clock()
        rows = [
            state.model_copy(
                update=_failed_updates(state, outcome)
                if isinstance(outcome, BaseException)
                else _done_updates(outcome, now, again=False, current=state)
            )
            for (_, state), outcome in zip(leased, outcomes, strict=True)
        ]
        try:
            await self._states.save_many(rows)
        except (StaleEtag, NotFoundRow):
            return [False] * len(rows)
        return [True] * len(rows)

    async def _finish(
        self,
        tenant: Tenant,
        ctx: CalendarContext,
        owner: str,
        state: CalendarSyncState,
        outcome: dict[str, Any] | BaseException,
        run: RunHandle,
    ) -> None:
        """Release one calendar of a batch whose transaction failed, as `_sync` does, running
        the extra rounds asked for meanwhile."""
        if isinstance(outcome, BaseException):
            await self._release_failed(ctx, owner, outcome)
            raise outcome
        again = await self._release(ctx, owner, outcome, state, allow_again=True)
        if again is not None:
            await self._rounds(tenant, ctx, owner, again, run, done=1)

    # --- one calendar --------------------------------------------------------------------------

    @staticmethod
    def _context(tenant: Tenant, link: ResourceLink, target: Target) -> CalendarContext:
        return CalendarContext(
            tenant_id=tenant.tenant_id,
            resource_id=link.resource_id,
            account=target.account.account,
            calendar=target.calendar,
            language=tenant.language,
            time_zone=tenant.time_zone,
            writable=target.account.direction.uploads and target.account.scope is CalendarScope.READ_WRITE,
        )

    async def _sync(self, tenant: Tenant, link: ResourceLink, target: Target, run: RunHandle) -> None:
        ctx = self._context(tenant, link, target)
        owner = uuid.uuid4().hex
        state = await self._acquire(ctx, owner)
        if state is None:
            run.add("calendars_coalesced")
            return
        await self._rounds(tenant, ctx, owner, state, run)

    async def _rounds(
        self,
        tenant: Tenant,
        ctx: CalendarContext,
        owner: str,
        state: CalendarSyncState,
        run: RunHandle,
        *,
        done: int = 0,
    ) -> None:
        """Run rounds under the held lease until no one asks for another (at most
        `EXTRA_ROUNDS` more than the first), releasing it after each."""
        rounds = done
        while True:
            rounds += 1
            try:
                progress = await self._round(tenant, ctx, state, run)
            except Exception as exc:
                await self._release_failed(ctx, owner, exc)
                raise
            again = await self._release(ctx, owner, progress, state, allow_again=rounds <= EXTRA_ROUNDS)
            if again is None:
                return
            state = again

    def _incremental_start(self, ctx: CalendarContext, state: CalendarSyncState) -> DeltaStart | None:
        """Where the round will start when it is certain to be incremental without a Graph
        call first (its stored link still covers the window, its calendar id is known)."""
        known_id = state.calendar_id is not None or ctx.calendar.casefold() == DEFAULT_CALENDAR
        if (
            state.delta_link
            and known_id
            and self._policy.covers(state.window_start, state.window_end, self._clock())
        ):
            return DeltaStart(ctx.account, state.delta_link, self._page_size)
        return None

    async def _first_pages(
        self, tenant: Tenant, leased: list[tuple[int, CalendarContext, CalendarSyncState]]
    ) -> dict[int, DeltaPage[Event] | SyncStateExpired]:
        """The first delta page of each incremental round of a batch, read with Graph's JSON
        batching (20 per call instead of one call each). A calendar whose answer was an error
        reads its round alone, as it would have (a 410 goes straight to a full round)."""
        starts = [(i, start) for i, ctx, state in leased if (start := self._incremental_start(ctx, state))]
        if len(starts) < 2:
            return {}
        gateway = await self._graphs.gateway(tenant)
        pages = await gateway.first_delta_pages([start for _, start in starts])
        return {
            i: page
            for (i, _), page in zip(starts, pages, strict=True)
            if isinstance(page, DeltaPage | SyncStateExpired)
        }

    async def _round(
        self,
        tenant: Tenant,
        ctx: CalendarContext,
        state: CalendarSyncState,
        run: RunHandle,
        first: DeltaPage[Event] | SyncStateExpired | None = None,
    ) -> dict[str, Any]:
        """One round; returns what it changes on the sync state. `first`: the incremental
        round's first page, read already (or the 410 it got)."""
        gateway = await self._graphs.gateway(tenant)
        now = self._clock()
        calendar_id = await self._calendar_id(gateway, ctx, state)
        progress: dict[str, Any] = {"calendar_id": calendar_id}
        if (
            state.delta_link
            and state.calendar_id == calendar_id
            and self._policy.covers(state.window_start, state.window_end, now)
        ):
            try:
                if isinstance(first, SyncStateExpired):
                    raise first
                progress["delta_link"] = await self._incremental(gateway, ctx, calendar_id, state, run, first)
                return progress
            except SyncStateExpired:
                run.add("delta_state_expired")
                log.info(
                    "delta state expired; full resync", extra={"calendar": f"{ctx.account}/{ctx.calendar}"}
                )
        start, end = self._policy.fresh(now)
        try:
            delta_link = await self._full(gateway, ctx, calendar_id, start, end, run)
        except SyncStateExpired:
            # the paging state expired inside the round: once more from the start (what was
            # applied already is a no-op the second time)
            run.add("delta_state_expired")
            delta_link = await self._full(gateway, ctx, calendar_id, start, end, run)
        progress |= {
            "delta_link": delta_link,
            "window_start": start,
            "window_end": end,
            "last_full_sync_at": now,
        }
        return progress

    async def _calendar_id(
        self, gateway: GraphGateway, ctx: CalendarContext, state: CalendarSyncState
    ) -> str | None:
        if state.calendar_id and ctx.calendar.casefold() != DEFAULT_CALENDAR:
            return state.calendar_id
        return await find_calendar_id(gateway, ctx.account, ctx.calendar)

    async def _incremental(
        self,
        gateway: GraphGateway,
        ctx: CalendarContext,
        calendar_id: str | None,
        state: CalendarSyncState,
        run: RunHandle,
        first: DeltaPage[Event] | None = None,
    ) -> str:
        # covers() checked both
        assert state.window_start is not None
        assert state.window_end is not None
        rejected: list[MalformedItem] = []
        delta_link = ""

        async def pages() -> AsyncIterator[DeltaPage[Event]]:
            link = state.delta_link
            if first is not None:
                yield first
                if first.next_link is None:
                    return
                link = first.next_link
            assert state.window_start is not None
            assert state.window_end is not None
            async for page in gateway.calendar_delta(
                ctx.account,
                calendar_id,
                start=state.window_start,
                end=state.window_end,
                delta_link=link,
                page_size=self._page_size,
            ):
                yield page

        reported: set[str] = set()
        async for page in pages():
            run.add("pages")
            rejected += page.rejected
            reported.update(item.id for item in page.items)
            known = await self._lookup(ctx, {item.id for item in page.items})
            await self._apply_page(page, known, ctx, run)
            delta_link = page.delta_link or delta_link
        if rejected:
            raise _unreadable(rejected)
        if ctx.writable:  # a calendar the push writes to: it may hold events no round has seen
            await self._check_unseen(gateway, ctx, state, reported, run)
        return delta_link

    async def _check_unseen(
        self,
        gateway: GraphGateway,
        ctx: CalendarContext,
        state: CalendarSyncState,
        reported: set[str],
        run: RunHandle,
    ) -> None:
        """Entries no round has confirmed (`core.calendar.eventmap`: UNSEEN) that this one did
        not report either, their events read from Graph one by one. Delta reports changes
        against what the last round saw, so an event the push made after it and a person
        deleted before this one is never reported: gone, it is deleted at the host (which holds
        it from appointment.pushed). Still there, it is in this round's view — delta reports
        what happens to it from now on — and is marked seen; if it is not what the host was told
        last (the host heard two states in the wrong order), it is sent again. An entry written
        after this round took its lease is left for the next one: its event may be younger
        than this round's view."""
        began = state.last_run_at  # when the lease was taken, before this round's first request
        scope = calendar_scope(ctx.resource_id, ctx.account, ctx.calendar)
        low, high = EventMapEntry.calendar_range(scope)
        unseen = [
            entry
            async for entry in self._map.list(
                _partition(ctx), row_key_from=low, row_key_to=high, where={"change_key": UNSEEN}
            )
            if entry.event_id not in reported
            and (began is None or (entry.updated_at is not None and entry.updated_at <= began))
        ]
        for entry in unseen:
            try:
                event = await gateway.get_event(ctx.account, entry.event_id)
            except NotFound:
                assert state.window_start is not None  # an incremental round's window is known
                actions = plan_reconcile([_known(entry)], set(), state.window_start, ctx)
            else:
                # as a delta item: unchanged for the host (a Touch records its change key: seen),
                # or not what the host was told last (an Upsert tells it again)
                actions = plan_items([event], {entry.event_id: _known(entry)}, ctx)
            await self._apply(actions, {entry.event_id: entry}, ctx, run)

    async def _full(
        self,
        gateway: GraphGateway,
        ctx: CalendarContext,
        calendar_id: str | None,
        start: datetime,
        end: datetime,
        run: RunHandle,
    ) -> str:
        run.add("full_rounds")
        scope = calendar_scope(ctx.resource_id, ctx.account, ctx.calendar)
        low, high = EventMapEntry.calendar_range(scope)
        known = {
            entry.event_id: entry
            async for entry in self._map.list(_partition(ctx), row_key_from=low, row_key_to=high)
        }
        seen: set[str] = set()
        rejected: list[MalformedItem] = []
        delta_link = ""
        async for page in gateway.calendar_delta(
            ctx.account, calendar_id, start=start, end=end, page_size=self._page_size
        ):
            run.add("pages")
            rejected += page.rejected
            seen.update(item.id for item in page.items if isinstance(item, Event) and not item.is_cancelled)
            await self._apply_page(page, known, ctx, run)
            delta_link = page.delta_link or delta_link
        if rejected:
            # Which known events the unreadable items are is uncertain: delete nothing.
            raise _unreadable(rejected)
        await self._apply(
            plan_reconcile([_known(e) for e in known.values()], seen, start, ctx), known, ctx, run
        )
        return delta_link

    async def _apply_page(
        self, page: DeltaPage[Event], known: dict[str, EventMapEntry], ctx: CalendarContext, run: RunHandle
    ) -> None:
        page_known = {item.id: _known(known[item.id]) for item in page.items if item.id in known}
        unknown_tx = {
            item.transaction_id
            for item in page.items
            if isinstance(item, Event) and item.transaction_id and item.id not in known
        }
        bridge = await self._bridge_transactions(ctx, unknown_tx)
        actions = plan_items(
            page.items, page_known, ctx, {tx: row.host_appointment_id for tx, row in bridge.items()}
        )
        await self._apply(actions, known, ctx, run, bridge)

    async def _apply(
        self,
        actions: Iterable[Action],
        known: dict[str, EventMapEntry],
        ctx: CalendarContext,
        run: RunHandle,
        bridge: Mapping[str, EventTransaction] | None = None,
    ) -> None:
        """Apply in order: the page's host events first (one outbox batch, one dispatcher
        nudge), then the map (see the module's docstring)."""
        actions = list(actions)
        base = {"resourceId": ctx.resource_id, "account": ctx.account, "calendar": ctx.calendar}
        emissions = [
            Emission(UPSERTED, {**base, "appointment": a.payload}, a.host_event_id)
            if isinstance(a, Upsert)
            else Emission(DELETED, {**base, "appointment": deleted_payload(a.known)}, a.host_event_id)
            for a in actions
            if isinstance(a, Upsert | Delete)
        ]
        await self._outbox.emit_many(ctx.tenant_id, emissions)
        now = self._clock()
        for action in actions:
            if isinstance(action, Upsert):
                await self._record(ctx, action.known, known, action.event, bridge, now)
                run.add("upserted")
            elif isinstance(action, Touch):
                await self._record(ctx, action.known, known, None, None, now)
                run.add("unchanged")
            elif isinstance(action, Delete):
                await self._forget(ctx, action.known.event_id, known)
                run.add("deleted")
            elif isinstance(action, Forget):
                await self._forget(ctx, action.known.event_id, known)
                run.add("aged_out")

    async def _record(
        self,
        ctx: CalendarContext,
        wanted: Known,
        known: dict[str, EventMapEntry],
        event: Event | None,
        bridge: Mapping[str, EventTransaction] | None,
        now: datetime,
    ) -> None:
        """Write one entry; if the push worker wrote it meanwhile, the newer state wins. For an
        upsert (already told the host), a push meanwhile may have put the host's news out of
        order (`core.calendar.eventmap`): the entry is then marked for the next round."""
        key = EventMapEntry.key(ctx.tenant_id, ctx.resource_id, ctx.account, ctx.calendar, wanted.event_id)
        read = known.get(wanted.event_id)
        pushed: list[EventMapEntry] = []  # what the push wrote since this round read the entry

        def build(current: EventMapEntry | None) -> EventMapEntry:
            if current is not None and (read is None or current.etag != read.etag):
                pushed.append(current)
            return _entry(ctx, wanted, current, event, bridge, now)

        stored = await write_entry(self._map, key, read, build)
        if event is not None and wanted.fingerprint:
            if superseded(stored, wanted.last_modified):
                # the upsert just emitted is older than what the push stored (and told the
                # host) meanwhile: the host may hold this older state now
                stored = await recheck(self._map, stored, wanted.fingerprint, now)
            elif pushed and pushed[-1].fingerprint not in (None, wanted.fingerprint):
                # the push wrote an older state over which this newer one went; its
                # appointment.pushed may reach the host after this upsert
                stored = await recheck(self._map, stored, pushed[-1].fingerprint or "", now)
        known[wanted.event_id] = stored

    async def _forget(self, ctx: CalendarContext, event_id: str, known: dict[str, EventMapEntry]) -> None:
        key = EventMapEntry.key(ctx.tenant_id, ctx.resource_id, ctx.account, ctx.calendar, event_id)
        await self._map.store.delete(*key)
        known.pop(event_id, None)

    async def _lookup(self, ctx: CalendarContext, ids: set[str]) -> dict[str, EventMapEntry]:
        gate = asyncio.Semaphore(_LOOKUPS)

        async def one(event_id: str) -> EventMapEntry | None:
            async with gate:
                key = EventMapEntry.key(ctx.tenant_id, ctx.resource_id, ctx.account, ctx.calendar, event_id)
                return await self._map.get(*key)

        found = await asyncio.gather(*(one(i) for i in ids))
        return {entry.event_id: entry for entry in found if entry is not None}

    async def _bridge_transactions(self, ctx: CalendarContext, ids: set[str]) -> dict[str, EventTransaction]:
        found = [await self._tx.get(*EventTransaction.key(ctx.tenant_id, ctx.account, tx)) for tx in ids]
        return {row.transaction_id: row for row in found if row is not None}

    # --- the lease ------------------------------------------------------------------------------

    async def _acquire(self, ctx: CalendarContext, owner: str) -> CalendarSyncState | None:
        leased = False

        def take(current: CalendarSyncState | None) -> CalendarSyncState:
            nonlocal leased
            state, leased = claim(
                current,
                lambda: CalendarSyncState(
                    tenant_id=ctx.tenant_id,
                    resource_id=ctx.resource_id,
                    account=ctx.account,
                    calendar=ctx.calendar,
                ),
                owner,
                self._clock(),
                self._lease,
            )
            return state

        state = await self._states.mutate(*_state_key(ctx), take)
        return state if leased else None

    async def _release(
        self,
        ctx: CalendarContext,
        owner: str,
        progress: dict[str, Any],
        held: CalendarSyncState,
        *,
        allow_again: bool,
    ) -> CalendarSyncState | None:
        """Store the round's progress. Returns the state to run again with (the lease kept)
        when a rerun was asked for, else None (the lease released). The first write goes with
        the etag the lease was taken with (no read); only if the row changed since — a request
        asked for a rerun — is it read again."""
        now = self._clock()
        current: CalendarSyncState | None = held
        for attempt in range(5):
            if attempt:
                current = await self._states.get(*_state_key(ctx))
            if current is None or current.lease_owner != owner:
                # The lease ran out and another worker took it (or the tenant was deleted):
                # its view wins; ours is not written over it.
                log.warning(
                    "calendar lease lost before release", extra={"calendar": f"{ctx.account}/{ctx.calendar}"}
                )
                return None
            again = current.rerun_requested and allow_again
            updates = _done_updates(progress, now, again=again, current=current)
            if again:
                updates |= {"lease_owner": owner, "lease_until": now + self._lease}
            try:
                saved = await self._states.save(current.model_copy(update=updates))
            except (StaleEtag, NotFoundRow):
                continue
            return saved if again else None
        raise StaleEtag("the calendar's sync state kept changing while its lease was released")

    async def _release_failed(self, ctx: CalendarContext, owner: str, exc: BaseException) -> None:
        """Record the failure and let go; the delta link stays where it was."""
        try:
            for _ in range(5):
                current = await self._states.get(*_state_key(ctx))
                if current is None or current.lease_owner != owner:
                    return
                try:
                    await self._states.save(current.model_copy(update=_failed_updates(current, exc)))
                    return
                except StaleEtag:
                    continue
        except Exception:
            # The sync's own error is what the caller must see; the lease expires by itself.
            log.exception("could not record the calendar's failure")


def _new_state(ctx: CalendarContext) -> CalendarSyncState:
    return CalendarSyncState(
        tenant_id=ctx.tenant_id, resource_id=ctx.resource_id, account=ctx.account, calendar=ctx.calendar
    )


def _done_updates(
    progress: dict[str, Any], now: datetime, *, again: bool, current: CalendarSyncState
) -> dict[str, Any]:
    """A successful round's changes to the state row; the lease let go unless `again`."""
    return {
        **progress,
        "status": SyncStatus.RUNNING if again else SyncStatus.OK,
        "error": None,
        "consecutive_failures": 0,
        "last_success_at": now,
        "rerun_requested": False,
        "lease_owner": None,
        "lease_until": None,
        "last_run_at": now if again else current.last_run_at,
    }


def _failed_updates(current: CalendarSyncState, exc: BaseException) -> dict[str, Any]:
    """A failed round's changes: the error recorded, the lease let go, the link where it was."""
    updates: dict[str, Any] = {
        "status": SyncStatus.FAILED,
        "error": describe(exc),
        "consecutive_failures": current.consecutive_failures + 1,
        "lease_owner": None,
        "lease_until": None,
    }
    if isinstance(exc, NotFound | CalendarNotFound):
        updates["calendar_id"] = None  # resolve the calendar's name again next time
    return updates


async def find_calendar_id(gateway: GraphGateway, account: str, name: str) -> str | None:
    """The Graph id of the account's calendar called `name` (None for the default calendar);
    `CalendarNotFound` when the mailbox has none by that name."""
    if name.casefold() == DEFAULT_CALENDAR:
        return None
    found = calendar_named(await gateway.list_calendars(account), name)
    if found is None:
        raise CalendarNotFound(
            f"mailbox {account!r} has no calendar named {name!r}: fix the resource's link "
            "or the calendar's name in Outlook"
        )
    return found.id


def calendar_named(calendars: Sequence[Calendar], name: str) -> Calendar | None:
    """The calendar a link's `name` means: matched case-insensitively, as Outlook shows it."""
    wanted = name.casefold()
    return next((c for c in calendars if c.name.casefold() == wanted), None)


def _partition(ctx: CalendarContext) -> str:
    return EventMapEntry.key(ctx.tenant_id, ctx.resource_id, ctx.account, ctx.calendar, "-")[0]


def _state_key(ctx: CalendarContext) -> tuple[str, str]:
    return CalendarSyncState.key(ctx.tenant_id, ctx.resource_id, ctx.account, ctx.calendar)


def _known(entry: EventMapEntry) -> Known:
    return Known(
        entry.event_id,
        entry.fingerprint,
        entry.change_key,
        entry.host_appointment_id,
        entry.series_id,
        entry.start,
        entry.end,
        entry.last_modified,
    )


def _entry(
    ctx: CalendarContext,
    known: Known,
    existing: EventMapEntry | None,
    event: Event | None,
    bridge: Mapping[str, EventTransaction] | None,
    now: datetime,
) -> EventMapEntry:
    updates: dict[str, Any] = {
        "host_appointment_id": known.host_appointment_id,
        "series_id": known.series_id,
        "change_key": known.change_key,
        "fingerprint": known.fingerprint,
        "start": known.start,
        "end": known.end,
        "last_modified": known.last_modified,
        "updated_at": now,
    }
    if existing is None:
        existing = EventMapEntry(
            tenant_id=ctx.tenant_id,
            resource_id=ctx.resource_id,
            account=ctx.account,
            calendar=ctx.calendar,
            event_id=known.event_id,
        )
        tx = bridge.get(event.transaction_id) if bridge and event and event.transaction_id else None
        if tx is not None:
            updates |= {"origin": Origin.BRIDGE, "transaction_id": tx.transaction_id, "version": tx.version}
    return existing.model_copy(update=updates)


def _unreadable(rejected: list[MalformedItem]) -> UnreadableItems:
    ids = sorted({r.item_id for r in rejected if r.item_id})
    shown = ", ".join(ids[:5]) + (" …" if len(ids) > 5 else "")
    return UnreadableItems(
        f"Graph sent {len(rejected)} item(s) that could not be read ({shown or 'without ids'}: "
        f"{rejected[0].reason}); the delta link was not advanced, so nothing is lost"
    )


# The queue's own retry comes after host.json's visibilityTimeout; a longer Retry-After from
# Graph is honoured by re-queueing the request with that delay instead.
QUEUE_RETRY_SECONDS = 10.0
MAX_ATTEMPTS = 5


async def run_queued(sync: CalendarSync, queue: SyncQueue, request: SyncRequest | SyncBatch) -> None:
    """Run a request from the `calendar-sync` queue. Returns when the message is done: synced,
    failed for a reason only a person can fix (the run says which), or re-queued to honour a
    Retry-After longer than the queue's own retry. Raises when the queue should retry it. A
    batch whose calendars failed for a reason a retry may fix queues each of them as a request
    of its own (the others are done: a retry of the whole batch would read them again), and
    those follow the rules above."""
    try:
        await sync.run(request)
    except CalendarSyncFailed as failed:
        if not failed.retryable:
            return
        if isinstance(request, SyncBatch):
            retry = [
                ref
                for ref, (_, exc) in zip(failed.refs, failed.failures, strict=True)
                if isinstance(exc, TRANSIENT) or not isinstance(exc, Reportable)
            ]
            delay = max(failed.retry_after, QUEUE_RETRY_SECONDS)
            for ref in retry:
                await queue.send(request.single(ref), delay=delay)
            log.info(
                "calendars of a batch re-queued one by one",
                extra={"calendars": len(retry), "delay_seconds": delay},
            )
            return
        if failed.retry_after > QUEUE_RETRY_SECONDS and request.attempt + 1 < MAX_ATTEMPTS:
            await queue.send(request.retry(), delay=failed.retry_after)
            log.info("throttled; sync request re-queued", extra={"delay_seconds": failed.retry_after})
            return
        raise
