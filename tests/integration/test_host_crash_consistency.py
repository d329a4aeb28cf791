"""TARGETS R2 for outbox delivery on the local stack: the workload of
tests/unit/test_host_crash_consistency.py — three `emit`s and a dispatch, an `emit_many` of
three and a dispatch — over the real adapters: Table Storage on Azurite (its etags and
conditional writes), the delivery queue on Azurite, and webhook POSTs over real HTTP
(`AiohttpWebhookSender`) to a real receiver on loopback. The process is killed right after each
step boundary (every table operation, secret read, queue message and POST: see
tests/unit/crash_points.py), then the workload is rerun and delivery goes on — the clock moves
past the dead holder's lease and the gap grace, the safety net nudges, the dispatcher runs —
until the outbox is settled.

Asserted per boundary, with the host deduplicating by event id: every event delivered, in
order; each stored once; raw POSTs never go back in sequence; a raw redelivery only after a
kill between the host's 2xx and its record, exactly one there; nothing dead-lettered.

No Functions host runs here: each boundary's tenant lives in tables and queues of this test
alone, so no queue trigger or timer dispatches behind the test's back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from azure.storage.queue.aio import QueueServiceClient
from pydantic import SecretStr

from core.host import AzureDeliveryQueue
from core.host.webhook import AiohttpWebhookSender
from core.secrets import InMemorySecretStore
from core.settings import StorageSettings
from core.store import Tables
from core.store.azure_table import AzureTableStore
from core.store.catalog import open_tables
from tests.unit.crash_points import Boundaries, Killed
from tests.unit.host_world import Clock, World
from tests.unit.test_host_crash_consistency import (
    EVENTS,
    POST,
    boundaries_of,
    check,
    go_on,
    instrument,
    stored_ids,
    workload,
)
from tests.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ADAPTERS: dict[str, type[Any]] = {
    "table": AzureTableStore,
    "sender": AiohttpWebhookSender,
    "queue": AzureDeliveryQueue,
    "secrets": InMemorySecretStore,
}


@pytest.fixture
async def azure_storage(
    storage_connection_string: str, unique_name: str
) -> AsyncIterator[tuple[Tables, QueueServiceClient]]:
    storage = StorageSettings(connection_string=SecretStr(storage_connection_string))
    async with open_tables(storage, unique_name) as tables:
        await tables.create_tables()
        async with QueueServiceClient.from_connection_string(storage_connection_string) as queues:
            yield tables, queues


def on_azurite(tables: Tables, queues: QueueServiceClient, name: str, sender: AiohttpWebhookSender) -> World:
    """The unit tests' world over the real adapters (the same fields, the port's other side)."""
    queue = AzureDeliveryQueue(queues, queue=f"{name}-d", poison=f"{name}-p")
    return World(tables=tables, queue=cast(Any, queue), webhook=cast(Any, sender), clock=Clock())


def received_by(receiver: WebhookReceiver, tenant: str) -> list[tuple[str, int]]:
    """(event id, sequence) of each POST the receiver got for `tenant`, in arrival order."""
    return [
        (r.event_id, int(r.headers["M365Bridge-Sequence"]))
        for r in receiver.received
        if json.loads(r.body)["tenantId"] == tenant
    ]


async def test_r2_outbox_delivery_on_azurite_killed_at_every_step_boundary_then_rerun_delivers_in_order(
    azure_storage: tuple[Tables, QueueServiceClient],
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, Any], None],
) -> None:
    """R2 (delivery) on Azurite and real HTTP: killed after each step boundary, then rerun →
    every event delivered, in order, in the host's deduplicated view; raw redeliveries only
    after a kill between the host's 2xx and its record, one each."""
    tables, queues = azure_storage
    sender = AiohttpWebhookSender(5.0)
    async with WebhookReceiver() as receiver:
        clean = on_azurite(tables, queues, unique_name, sender)
        await clean.add_tenant("clean", url=receiver.url)
        labels = await boundaries_of(clean, monkeypatch, "clean", **ADAPTERS)
        assert [e for e, _ in received_by(receiver, "clean")] == EVENTS  # unkilled: each once
        assert {POST, "secrets.get", "queue.nudge"} <= set(labels)
        problems: dict[str, list[str]] = {}
        redelivered = lost = duplicated = 0
        for at, label in enumerate(labels, start=1):
            tenant = f"k{at:03d}"
            world = on_azurite(tables, queues, unique_name, sender)
            await world.add_tenant(tenant, url=receiver.url)
            with monkeypatch.context() as patch:
                boundaries = Boundaries(kill_at=at)
                instrument(boundaries, patch, **ADAPTERS)
                with pytest.raises(Killed):
                    await workload(world, tenant)
            assert boundaries.killed == label, "the workload is not deterministic"
            await workload(world, tenant)  # the rerun emits the same ids again
            await go_on(world, tenant)
            posts = received_by(receiver, tenant)
            raw = [event_id for event_id, _ in posts]
            redelivered += len(raw) - len(set(raw))
            lost += len(set(EVENTS) - set(raw))
            stored = await stored_ids(world, tenant)
            duplicated += len(stored) - len(set(stored))
            found = await check(world, label, posts, tenant)
            if found:
                problems[f"{at:03d} after {label}"] = found
    await sender.close()
    record_property("operations", len(labels) * 2)
    record_property("step_boundaries", len(labels))
    record_property("crashes_injected", len(labels))
    record_property("events", len(EVENTS) * len(labels))
    record_property("lost", lost)
    record_property("duplicated", duplicated)
    record_property("redelivered", redelivered)
    assert problems == {}
    assert redelivered == labels.count(POST)
