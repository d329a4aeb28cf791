"""A Container over in-memory tables and secrets, installed as the process's container, so
functions can be called directly in unit tests (no Azurite, no host)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueServiceClient

from core import bootstrap
from core.bootstrap import Container
from core.operator_auth import digest
from core.secrets import CachedSecretStore, InMemorySecretStore
from core.settings import Settings, azurite_connection_string
from core.store import memory_tables

OPERATOR_KEY = "m365op_unit-test-operator-key"


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 1, 6, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@asynccontextmanager
async def memory_app(**settings: object) -> AsyncIterator[Container]:
    conn = azurite_connection_string()  # clients are built but never called
    built = Settings.model_validate(
        {
            "storage": {"connection_string": conn},
            "BRIDGE_OPERATOR_KEY_SHA256": digest(OPERATOR_KEY),
            **settings,
        }
    )
    app = Container(
        settings=built,
        tables=memory_tables(),
        secrets=CachedSecretStore(InMemorySecretStore(), 0),
        queues=QueueServiceClient.from_connection_string(conn),
        blob_service=lambda: BlobServiceClient.from_connection_string(conn),
        clock=ManualClock(),
    )
    await bootstrap.reset()
    bootstrap._container = app
    try:
        yield app
    finally:
        await bootstrap.reset()
