"""The composition root: settings → adapters → services, built once per process.

Triggers call `await container()`; nothing else constructs adapters. The container is built
lazily on first use (not at import) so that importing `function_app` stays cheap and a
misconfigured app still starts and answers with a clear problem naming the bad setting.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from azure.storage.queue.aio import QueueServiceClient

from core.calendar.push import AppointmentPush
from core.calendar.push_queue import AzurePushQueue
from core.calendar.window import WindowPolicy
from core.delegated import ConnectService, TokenEndpoint

# Cheap imports only: the port, the limiter and the options. msgraph-sdk, kiota and httpx load
# when the first gateway is opened (`Container.graph_for`), not when `function_app` is imported.
from core.graph import GraphGateway, MailboxLimiter
from core.graph.client import GraphClientOptions
from core.graph_access import DelegatedAccess, TenantGraphs
from core.health import Probe
from core.host import (
    AiohttpWebhookSender,
    AzureDeliveryQueue,
    DeliveryConfig,
    Dispatcher,
    Emission,
    Outbox,
    WebhookSender,
)
from core.observability import configure_logging
from core.queues import TextQueue
from core.runs import Clock, utc_now
from core.secrets import CachedSecretStore, build_secret_store
from core.settings import LogFormat, Settings, StorageSettings
from core.store import Tables, open_tables
from core.store.records import Tenant

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.storage.blob.aio import BlobServiceClient

    from core.booking.queue import AzureReservationQueue
    from core.booking.worker import ReservationWorker
    from core.calendar.requests import AzureSyncQueue
    from core.calendar.sync import CalendarSync
    from core.mail.importer import AzureImportQueue, MailImporter
    from core.mail.outgoing import AzureSendQueue, OutgoingService
    from core.mail.send_worker import MailSendWorker
    from core.mail.staging import AzureDocumentStore
    from core.presence.monitor import AzurePresenceQueue, PresenceMonitor
    from core.subscriptions import (
        AzureSubscriptionQueue,
        NotificationConfig,
        SubscriptionManager,
    )

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    tables: Tables
    secrets: CachedSecretStore
    queues: QueueServiceClient
    # Built on first use: only staged documents need Blob Storage, and azure-storage-blob costs
    # ~150 ms of a cold start to import (TARGETS P4).
    blob_service: Callable[[], BlobServiceClient]
    graph_options: GraphClientOptions = field(default_factory=GraphClientOptions)
    # One per process: Exchange allows 4 concurrent requests per app and mailbox, and the
    # process may hold several gateways for a tenant at once (concurrent invocations), so every
    # gateway the container opens draws from this one limiter.
    mailbox_limiter: MailboxLimiter = field(default_factory=MailboxLimiter)
    clock: Clock = field(default=utc_now)
    # The host webhook client: one HTTP session per process (its connections are reused).
    webhooks: WebhookSender = field(default_factory=AiohttpWebhookSender)
    _graphs: TenantGraphs | None = field(default=None, init=False, repr=False)
    _blobs: BlobServiceClient | None = field(default=None, init=False, repr=False)
    _prepared: bool = field(default=False, init=False, repr=False)
    _prepare_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @property
    def blobs(self) -> BlobServiceClient:
        if self._blobs is None:
            self._blobs = self.blob_service()
        return self._blobs

    async def prepare(self) -> None:
        """Create the state tables once per process (idempotent; in Azure they exist already and
        this is one round trip each). Retried on the next call if it failed."""
        if self._prepared:
            return
        async with self._prepare_lock:
            if not self._prepared:
                await self.tables.create_tables()
                self._prepared = True

    def storage_probes(self) -> dict[str, Probe]:
        """One cheap read per storage service, each allowed by the app's data-plane roles."""

        async def tables() -> None:
            await self.prepare()
            async for _ in self.tables.runs().list(limit=1):
                break

        async def queues() -> None:
            async for _ in self.queues.list_queues(results_per_page=1):
                break

        async def blobs() -> None:
            async for _ in self.blobs.list_containers(results_per_page=1):
                break

        return {"tables": tables, "queues": queues, "blobs": blobs}

    def graph_for(self, credential: AsyncTokenCredential) -> GraphGateway:
        """A Graph gateway for one tenant's app credential, with the settings' base URL, CA,
        timeout and retry budget, sharing the process's mailbox limiter. The caller closes the
        gateway when done (the credential stays the caller's)."""
        from core.graph.gateway import open_gateway
        from core.graph.sender import RetryPolicy

        retry = RetryPolicy(max_total_wait=self.settings.graph_retry_budget_seconds)
        return open_gateway(credential, self.graph_options, limiter=self.mailbox_limiter, retry=retry)

    @property
    def graphs(self) -> TenantGraphs:
        """Each tenant's Graph gateway, built from its credential and kept for the process."""
        if self._graphs is None:
            ca = self.settings.graph_ca_bundle
            self._graphs = TenantGraphs(
                self.secrets,
                self.graph_for,
                authority=self.settings.graph_authority_host,
                ca_bundle=str(ca) if ca else None,
                managed_identity_client_id=self.settings.managed_identity_client_id,
                bridge_app_client_id=self.settings.bridge_app_client_id,
                delegated=DelegatedAccess(self.tables, self.token_endpoint(), self._emit_one, self.clock),
            )
        return self._graphs

    def token_endpoint(self) -> TokenEndpoint:
        """Entra ID's token endpoint for delegated sign-ins (GRAPH_AUTHORITY_HOST, GRAPH_CA_BUNDLE)."""
        ca = self.settings.graph_ca_bundle
        return TokenEndpoint(self.settings.graph_authority_host, str(ca) if ca else None)

    def connect(self) -> ConnectService:
        """ "Connect your calendar" (delegated sign-in): start and callback."""
        return ConnectService(self.tables, self.secrets, self.token_endpoint(), self.clock)

    async def _emit_one(self, tenant_id: str, event: Emission) -> None:
        await self.outbox().emit_many(tenant_id, [event])

    def sync_queue(self) -> AzureSyncQueue:
        """Calendar sync requests for the `calendar-sync` queue trigger."""
        from core.calendar.requests import AzureSyncQueue

        return AzureSyncQueue(self.queues)

    def calendar_sync(self) -> CalendarSync:
        """Runs calendar sync requests (the `calendar-sync` queue trigger)."""
        from core.calendar.sync import CalendarSync

        policy = WindowPolicy(
            self.settings.calendar_days_back,
            self.settings.calendar_days_ahead,
            self.settings.calendar_window_slack_days,
        )
        return CalendarSync(self.tables, self.outbox(), self.graphs, policy, clock=self.clock)

    def push_queue(self) -> AzurePushQueue:
        """Host appointments to apply, and unlink cleanups, for the `calendar-push` trigger."""
        return AzurePushQueue(self.queues)

    def appointment_push(self) -> AppointmentPush:
        """Accepts host appointments and writes them to Outlook (`POST …/appointments` and the
        `calendar-push` queue trigger)."""
        return AppointmentPush(self.tables, self.outbox(), self.graphs, self.push_queue(), clock=self.clock)

    def documents(self) -> AzureDocumentStore:
        """Staged documents (Blob Storage) with their download URLs."""
        from core.mail.staging import AzureDocumentStore

        return AzureDocumentStore(self.blobs)

    def import_queue(self) -> AzureImportQueue:
        """Mail import requests for the `mail-import` queue trigger."""
        from core.mail.importer import AzureImportQueue

        return AzureImportQueue(self.queues)

    def mail_importer(self) -> MailImporter:
        """Runs mail imports (the `mail-import` queue trigger)."""
        from core.mail.importer import MailImporter

        return MailImporter(
            self.tables,
            self.outbox(),
            self.graphs,
            self.documents(),
            clock=self.clock,
            url_lifetime=timedelta(seconds=self.settings.mail_document_url_seconds),
            queue=self.import_queue(),
        )

    def send_queue(self) -> AzureSendQueue:
        """Mail to send, for the `mail-send` queue trigger."""
        from core.mail.outgoing import SEND_QUEUE, AzureSendQueue

        return AzureSendQueue(TextQueue(self.queues, SEND_QUEUE))

    def outgoing(self, tenant: Tenant) -> OutgoingService:
        """A tenant's outgoing mail (`POST …/mail-senders/{id}/messages`)."""
        from core.mail.outgoing import OutgoingService

        limit = self.settings.mail_send_max_mb * 1024 * 1024
        return OutgoingService(self.tables, self.documents(), self.send_queue(), tenant, self.clock, limit)

    def mail_send_worker(self) -> MailSendWorker:
        """Sends accepted mail (the `mail-send` queue trigger)."""
        from core.mail.send_worker import MailSendWorker

        return MailSendWorker(
            self.tables,
            self.graphs,
            self.documents(),
            self.send_queue(),
            self.outbox(),
            clock=self.clock,
            authority=self.settings.graph_authority_host,
        )

    def reservation_queue(self) -> AzureReservationQueue:
        """Reservations to finish or undo, for the `booking-reservations` trigger."""
        from core.booking.queue import AzureReservationQueue

        return AzureReservationQueue(self.queues)

    def reservation_worker(self) -> ReservationWorker:
        """Books claimed slots in Outlook and restores cancelled ones (the
        `booking-reservations` queue trigger)."""
        from core.booking.worker import ReservationWorker

        return ReservationWorker(
            self.tables,
            self.graphs,
            self.documents(),
            self.reservation_queue(),
            self.outbox(),
            clock=self.clock,
        )

    def presence_queue(self) -> AzurePresenceQueue:
        """Presence reads and ticks, for the `presence` queue trigger."""
        from core.presence.monitor import AzurePresenceQueue

        return AzurePresenceQueue(self.queues)

    def presence_monitor(self) -> PresenceMonitor:
        """Reads free/busy and tells the host of presence changes (the `presence` trigger)."""
        from core.presence.monitor import PresenceMonitor

        return PresenceMonitor(
            self.tables, self.graphs, self.presence_queue(), self.outbox(), clock=self.clock
        )

    def subscription_queue(self) -> AzureSubscriptionQueue:
        """Reconciles and lifecycle events for the `graph-subscriptions` queue trigger."""
        from core.subscriptions import AzureSubscriptionQueue

        return AzureSubscriptionQueue(self.queues)

    def notification_config(self) -> NotificationConfig:
        from core.subscriptions import NotificationConfig

        return NotificationConfig(
            self.settings.bridge_public_url, timedelta(minutes=self.settings.graph_subscription_minutes)
        )

    def subscriptions(self) -> SubscriptionManager:
        """Keeps tenants' Graph subscriptions in step with their configuration."""
        from core.subscriptions import SubscriptionManager

        return SubscriptionManager(
            self.tables,
            self.graphs,
            self.notification_config(),
            self.sync_queue(),
            self.import_queue(),
            clock=self.clock,
        )

    async def configuration_changed(self, tenant_id: str) -> None:
        """A link or import changed: its subscriptions follow soon (`graph-subscriptions`)."""
        from core.subscriptions import request_reconcile

        await request_reconcile(self.subscription_queue(), self.notification_config(), tenant_id)

    def delivery_queue(self) -> AzureDeliveryQueue:
        """Nudges for the delivery trigger, and the poison queue of dead-lettered events."""
        return AzureDeliveryQueue(self.queues)

    def outbox(self) -> Outbox:
        """Where capabilities emit events for their tenant's host."""
        return Outbox(self.tables, self.delivery_queue(), clock=self.clock)

    def dispatcher(self) -> Dispatcher:
        """Delivers tenants' outboxes to their webhooks (the delivery queue trigger)."""
        return Dispatcher(
            self.tables,
            self.secrets,
            self.webhooks,
            self.delivery_queue(),
            DeliveryConfig.from_settings(self.settings),
            clock=self.clock,
        )

    async def close(self) -> None:
        if self._graphs is not None:
            await self._graphs.close()
        await asyncio.gather(
            self.tables.close(),
            self.secrets.close(),
            self.queues.close(),
            *([self._blobs.close()] if self._blobs is not None else []),
            self.webhooks.close(),
        )


C = TypeVar("C", "QueueServiceClient", "BlobServiceClient")


_STORAGE_RETRY: dict[str, Any] = {
    "initial_backoff": 1,
    "increment_base": 3,
    "retry_total": 3,
    "random_jitter_range": 1,
}


def _storage_client(cls: type[C], storage: StorageSettings, service: str) -> C:
    """A Queue or Blob service client. Its retry starts sooner than the SDKs' default, whose first
    retry waits 15 s: a connection the service had closed while it sat in the pool (Azurite closes
    idle ones after 5 s) held an outbox nudge, a reservation's queue message or a mail accepted
    for sending for 15 s. Here 1 s + 3^n (2 s, 4 s, 10 s), jittered by up to 1 s, 3 retries."""
    if storage.connection_string is not None:
        return cls.from_connection_string(storage.connection_string.get_secret_value(), **_STORAGE_RETRY)
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    credential = (
        ManagedIdentityCredential(client_id=storage.client_id)
        if storage.client_id
        else DefaultAzureCredential()
    )
    return cls(
        account_url=storage.service_uri(service),
        credential=credential,
        **_STORAGE_RETRY,
    )


def _blob_client(storage: StorageSettings) -> BlobServiceClient:
    from azure.storage.blob.aio import BlobServiceClient

    return _storage_client(BlobServiceClient, storage, "blob")


def graph_client_options(settings: Settings) -> GraphClientOptions:
    """Where Graph is and how to reach it, from GRAPH_BASE_URL, GRAPH_CA_BUNDLE and
    GRAPH_TIMEOUT_SECONDS."""
    return GraphClientOptions(
        base_url=settings.graph_base_url,
        ca_bundle=str(settings.graph_ca_bundle) if settings.graph_ca_bundle else None,
        timeout_seconds=settings.graph_timeout_seconds,
    )


def build_container(settings: Settings) -> Container:
    """Wire the adapters for `settings`. No I/O happens here (see `Container.prepare`)."""
    configure_logging(settings.log_level, context_in_message=settings.log_format is LogFormat.MESSAGE)
    return Container(
        settings=settings,
        tables=open_tables(settings.storage, settings.table_prefix),
        secrets=build_secret_store(settings),
        queues=_storage_client(QueueServiceClient, settings.storage, "queue"),
        blob_service=functools.partial(_blob_client, settings.storage),
        graph_options=graph_client_options(settings),
        webhooks=AiohttpWebhookSender(settings.webhook_timeout_seconds),
    )


_container: Container | None = None
_lock = asyncio.Lock()  # guards the first build against concurrent invocations


async def container(*, prepare: bool = True) -> Container:
    """The process's container, built on first use from the environment; with `prepare`, its
    state tables are ready too."""
    global _container
    if _container is None:
        async with _lock:
            if _container is None:
                _container = build_container(Settings.from_env())
    if prepare:
        await _container.prepare()
    return _container


async def reset() -> None:
    """Close and forget the container (tests change the environment between apps)."""
    global _container
    current, _container = _container, None
    if current is not None:
        await current.close()
