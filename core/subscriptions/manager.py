"""Keeps each tenant's Graph subscriptions in step with its configuration, and answers their
lifecycle notifications.

`reconcile` plans (`plan.py`) and carries the plan out: a subscription's row is written, with
the hash of a fresh clientState, before Graph is asked for it (so whatever Graph makes carries a
clientState the bridge recognises), then updated with what Graph granted; renewals ask for a new
expiration and keep the one Graph returns; dropped subscriptions are deleted at Graph, then
their rows. A failure is recorded on the row in plain words; one a retry may fix (throttling,
Graph or Storage unavailable) also fails the run, so the queue tries the tenant again.

A subscription just made is followed by a catch-up of what it watches: a newly linked
calendar syncs (and a new import runs) at once instead of at the next timer.

Lifecycle notifications (`lifecycle`): `reauthorizationRequired` → reauthorize (made again if
Graph no longer has it); `subscriptionRemoved` → made again, then a catch-up sync; `missed` →
a catch-up sync. A catch-up is the existing delta sync or import, asked for with reason
`notification`: delta brings whatever was missed.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from core.calendar.requests import SyncQueue
from core.calendar.sync import find_calendar_id
from core.errors import AlreadyExists, NotFound, Reportable, StaleEtag, describe
from core.graph.errors import GraphError, GraphUnavailable, Throttled
from core.graph.errors import NotFound as GraphNotFound
from core.graph.model import SubscriptionRequest
from core.graph.port import GraphGateway
from core.graph_access import GraphProvider
from core.mail.importer import ImportQueue
from core.runs import Clock, RunHandle, track_run, utc_now
from core.store import Tables
from core.store.keys import escape_key
from core.store.records import (
    MailImport,
    ResourceLink,
    Subscription,
    SubscriptionKind,
    SubscriptionStatus,
    Tenant,
    hash_client_state,
)
from core.subscriptions.notifications import catch_up
from core.subscriptions.plan import Create, Renew, Want, calendar_resource, plan, wanted
from core.subscriptions.queue import Reconcile, SubscriptionQueue

log = logging.getLogger(__name__)

FUNCTION = "graph-subscriptions"
NOTIFICATIONS_ROUTE = "/api/v1/graph/notifications"


@dataclass(frozen=True, slots=True)
class NotificationConfig:
    """Where Graph sends notifications (`BRIDGE_PUBLIC_URL`; none: change notifications are off)
    and how long a subscription is asked for (`GRAPH_SUBSCRIPTION_MINUTES`); it is renewed once
    half of that is left."""

    public_url: str | None
    lifetime: timedelta = timedelta(minutes=4230)

    @property
    def enabled(self) -> bool:
        return bool(self.public_url)

    @property
    def renew_before(self) -> timedelta:
        return self.lifetime / 2

    def notification_url(self, tenant_id: str, target: str) -> str:
        assert self.public_url is not None
        query = urlencode({"tenantId": tenant_id, "target": target})
        return f"{self.public_url.rstrip('/')}{NOTIFICATIONS_ROUTE}?{query}"


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, Throttled | GraphUnavailable)


def want_of(row: Subscription) -> Want:
    """What a stored row watches, to make it again as it was."""
    return Want(
        row.target,
        row.kind,
        row.mailbox,
        resource_id=row.resource_id,
        calendar=row.calendar,
        import_id=row.import_id,
        resource=row.resource if row.kind is SubscriptionKind.MAIL else None,
    )


class SubscriptionManager:
    def __init__(
        self,
        tables: Tables,
        graphs: GraphProvider,
        config: NotificationConfig,
        sync_queue: SyncQueue,
        import_queue: ImportQueue,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._tables = tables
        self._graphs = graphs
        self._config = config
        self._sync_queue = sync_queue
        self._import_queue = import_queue
        self._clock = clock
        self._rows = tables.repo(Subscription)

    async def rows(self, tenant_id: str) -> list[Subscription]:
        return [r async for r in self._rows.list(escape_key(tenant_id))]

    async def reconcile(self, tenant: Tenant) -> RunHandle | None:
        """Make, renew and drop the tenant's subscriptions so they match its configuration (all
        dropped when the tenant is disabled or notifications are off). A run is recorded only
        when there was something to do."""
        partition = escape_key(tenant.tenant_id)
        wants: dict[str, Want] = {}
        if self._config.enabled and tenant.enabled:
            links = [x async for x in self._tables.repo(ResourceLink).list(partition)]
            imports = [x async for x in self._tables.repo(MailImport).list(partition)]
            wants = wanted(links, imports)
        actions = plan(wants, await self.rows(tenant.tenant_id), self._clock(), self._config.renew_before)
        if not actions:
            return None
        async with track_run(self._tables.runs(), FUNCTION, scope=tenant.tenant_id, clock=self._clock) as run:
            try:
                gateway = await self._graphs.gateway(tenant)
            except GraphError as exc:  # no credential: Test settings says why; nothing to retry
                if _transient(exc):
                    raise
                run.add("failed", len(actions))
                log.warning("subscriptions not reconciled", extra={"error": describe(exc)})
                return run
            retry: BaseException | None = None
            for action in actions:
                try:
                    if isinstance(action, Create):
                        made = await self._create(gateway, tenant, action.want, action.replaces)
                        run.add("created" if made else "skipped_in_progress")
                        if made is not None:
                            # from now on notifications bring each change; a catch-up brings
                            # what happened before (a new link's calendar, missed changes)
                            await self.catch_up(made)
                    elif isinstance(action, Renew):
                        await self._renew(gateway, tenant, action.row)
                        run.add("renewed")
                    else:
                        await self._drop(gateway, action.row)
                        run.add("dropped")
                except (GraphError, Reportable) as exc:
                    run.add("failed")
                    retry = retry or (exc if _transient(exc) else None)
            if retry is not None:
                raise retry
        return run

    async def lifecycle(self, tenant: Tenant, target: str, event: str) -> None:
        row = await self._rows.get(*Subscription.key(tenant.tenant_id, target))
        if row is None or row.subscription_id is None:
            log.info("lifecycle notification for a subscription no longer kept", extra={"event": event})
            return
        gateway = await self._graphs.gateway(tenant)
        if event == "reauthorizationRequired":
            try:
                await gateway.reauthorize_subscription(row.mailbox, row.subscription_id)
                log.info("subscription reauthorized")
                return
            except GraphNotFound:
                event = "subscriptionRemoved"  # Graph no longer has it: as if removed
        if event == "subscriptionRemoved":
            removed = row.model_copy(update={"status": SubscriptionStatus.REMOVED})
            await self._create(gateway, tenant, want_of(row), removed)
        await self.catch_up(row)  # what changed while it was gone, or what Graph missed

    async def catch_up(self, row: Subscription) -> None:
        await catch_up(row, self._sync_queue, self._import_queue)

    # --- the actions ----------------------------------------------------------------------

    async def _create(
        self, gateway: GraphGateway, tenant: Tenant, want: Want, replaces: Subscription | None
    ) -> Subscription | None:
        """Make the subscription: its row, or None when another reconcile got to it first."""
        now = self._clock()
        if replaces is not None and replaces.subscription_id is not None:
            try:
                await gateway.delete_subscription(replaces.mailbox, replaces.subscription_id)
            except GraphError as exc:
                # It expires on its own; its clientState is about to be replaced, so Graph's
                # notifications from it will not be honoured meanwhile.
                log.warning("could not delete a replaced subscription", extra={"error": describe(exc)})
        client_state = secrets.token_urlsafe(32)
        row = Subscription(
            tenant_id=tenant.tenant_id,
            target=want.target,
            kind=want.kind,
            mailbox=want.mailbox,
            resource_id=want.resource_id,
            calendar=want.calendar,
            import_id=want.import_id,
            resource=want.resource,
            client_state_sha256=hash_client_state(client_state),
            status=SubscriptionStatus.CREATING,
            created_at=now,
        )
        try:
            if replaces is None:
                row = await self._rows.insert(row)
            else:
                row = await self._rows.save(row.model_copy(update={"etag": replaces.etag}))
        except (AlreadyExists, StaleEtag, NotFound):
            return None
        try:
            resource = want.resource or calendar_resource(
                want.mailbox, await find_calendar_id(gateway, want.mailbox, want.calendar or "")
            )
            url = self._config.notification_url(tenant.tenant_id, want.target)
            request = SubscriptionRequest(
                resource, want.change_types, url, url, client_state, now + self._config.lifetime
            )
            made = await gateway.create_subscription(want.mailbox, request)
        except (GraphError, Reportable) as exc:
            await self._rows.save(
                row.model_copy(update={"status": SubscriptionStatus.FAILED, "error": describe(exc)})
            )
            log.warning("subscription not made", extra={"error": describe(exc)})
            raise
        active = await self._rows.save(
            row.model_copy(
                update={
                    "subscription_id": made.id,
                    "resource": resource,
                    "expiration": made.expiration,
                    "status": SubscriptionStatus.ACTIVE,
                    "error": None,
                    "renewed_at": now,
                }
            )
        )
        log.info("subscription made", extra={"kind": want.kind.value, "expires": made.expiration.isoformat()})
        return active

    async def _renew(self, gateway: GraphGateway, tenant: Tenant, row: Subscription) -> None:
        assert row.subscription_id is not None
        now = self._clock()
        try:
            renewed = await gateway.renew_subscription(
                row.mailbox, row.subscription_id, now + self._config.lifetime
            )
        except GraphNotFound:
            # Gone at Graph (removed, or expired early): make it again and catch up.
            removed = row.model_copy(update={"status": SubscriptionStatus.REMOVED})
            made = await self._create(gateway, tenant, want_of(row), removed)
            if made is not None:
                await self.catch_up(made)
            return
        await self._rows.save(row.model_copy(update={"expiration": renewed.expiration, "renewed_at": now}))

    async def _drop(self, gateway: GraphGateway, row: Subscription) -> None:
        if row.subscription_id is not None:
            try:
                await gateway.delete_subscription(row.mailbox, row.subscription_id)
            except GraphError as exc:
                if _transient(exc):
                    raise
                # refused for good (consent withdrawn): it expires on its own
        with contextlib.suppress(StaleEtag, NotFound):  # changed or gone meanwhile: looked at again
            await self._rows.delete(row)


async def request_reconcile(queue: SubscriptionQueue, config: NotificationConfig, tenant_id: str) -> None:
    """After a tenant's configuration changed (a link, an import): bring its subscriptions in
    step soon, off the request (making one waits for Graph's validation handshake)."""
    if config.enabled:
        await queue.send(Reconcile(tenant_id))


async def request_reconciles(tables: Tables, queue: SubscriptionQueue) -> int:
    """The timer: one reconcile per tenant — renewals, and whatever a lost message left undone
    (a disabled tenant's are dropped). How many were queued."""
    count = 0
    async for tenant in tables.repo(Tenant).list(Tenant.PARTITION):
        await queue.send(Reconcile(tenant.tenant_id))
        count += 1
    return count
