"""An in-memory world for outbox and delivery tests: memory tables, the fake queue, the fake
webhook, a settable clock, and a tenant with a webhook and a signing secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core.host import DeliveryConfig, Dispatcher, InMemoryDeliveryQueue, InMemoryWebhookSender, Outbox
from core.host.retry import RetryPolicy
from core.host.store import OutboxStore
from core.secrets import InMemorySecretStore, secret_name
from core.store import Tables, memory_tables
from core.store.records import Tenant

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
SECRET = "whsec_unit_test_secret"
URL = "https://host.example/webhooks/m365"


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    tables: Tables = field(default_factory=memory_tables)
    queue: InMemoryDeliveryQueue = field(default_factory=InMemoryDeliveryQueue)
    webhook: InMemoryWebhookSender = field(default_factory=InMemoryWebhookSender)
    secrets: InMemorySecretStore = field(default_factory=InMemorySecretStore)
    clock: Clock = field(default_factory=Clock)
    config: DeliveryConfig = field(
        default_factory=lambda: DeliveryConfig(
            timeout_seconds=5,
            retry=RetryPolicy(base_seconds=1, cap_seconds=8, budget_seconds=3600),
            gap_grace=timedelta(seconds=10),
        )
    )

    @property
    def outbox(self) -> Outbox:
        return Outbox(self.tables, self.queue, clock=self.clock)

    @property
    def store(self) -> OutboxStore:
        return OutboxStore(self.tables)

    def dispatcher(self) -> Dispatcher:
        # jitter pinned to the ceiling, so waits are predictable
        return Dispatcher(
            self.tables,
            self.secrets,
            self.webhook,
            self.queue,
            self.config,
            clock=self.clock,
            uniform=lambda lo, hi: hi,
        )

    async def add_tenant(self, tenant_id: str = "acme", *, url: str | None = URL) -> Tenant:
        name = secret_name("tenant", tenant_id, "webhook-signing")
        await self.secrets.set(name, SECRET)
        tenant = Tenant(tenant_id=tenant_id, webhook_url=url, webhook_secret_name=name)
        return await self.tables.repo(Tenant).insert(tenant)
