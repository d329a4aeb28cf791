"""The delivery queue port: nudge a tenant's dispatcher (now or later) and dead-letter an event.

Messages are base64 text, as the Functions queue trigger expects (the Python SDK does not
encode by default; FACTS.md). A nudge is `{"tenantId": …}` and carries no event: the
dispatcher reads the outbox, so nudges may be lost, repeated or reordered without harm. A
dead-lettered event's envelope goes to `host-delivery-poison`, the queue the Functions host
also moves repeatedly failing nudges to, and the one Azure Monitor alerts on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

from azure.storage.queue.aio import QueueServiceClient

from core.queues import TextQueue, delay_seconds

DELIVERY_QUEUE = "host-delivery"
POISON_QUEUE = DELIVERY_QUEUE + "-poison"


def nudge_message(tenant_id: str) -> str:
    return json.dumps({"tenantId": tenant_id}, separators=(",", ":"))


def parse_nudge(text: str) -> str:
    """The tenant id of a delivery-queue message. Raises ValueError for anything else; a
    replayed dead-lettered envelope also names its tenant, so it nudges that tenant."""
    try:
        message = json.loads(text)
    except ValueError:
        raise ValueError("a delivery queue message must be JSON with a tenantId") from None
    tenant_id = message.get("tenantId") if isinstance(message, dict) else None
    if not isinstance(tenant_id, str) or not tenant_id:
        raise ValueError("a delivery queue message must be JSON with a tenantId")
    return tenant_id


class DeliveryQueue(Protocol):
    async def nudge(self, tenant_id: str, *, delay: float = 0.0) -> None:
        """Ask for the tenant's dispatcher to run, after `delay` seconds."""
        ...

    async def dead_letter(self, envelope: bytes) -> None:
        """Put a dead-lettered event's envelope on the poison queue."""
        ...


class AzureDeliveryQueue:
    """The port over Azure Storage queues (Azurite locally). Creates a queue on first use."""

    def __init__(
        self, service: QueueServiceClient, *, queue: str = DELIVERY_QUEUE, poison: str = POISON_QUEUE
    ) -> None:
        self._queue = TextQueue(service, queue)
        self._poison = TextQueue(service, poison)

    async def nudge(self, tenant_id: str, *, delay: float = 0.0) -> None:
        await self._queue.send(nudge_message(tenant_id), delay=delay)

    async def dead_letter(self, envelope: bytes) -> None:
        await self._poison.send(envelope.decode("utf-8"))


@dataclass
class InMemoryDeliveryQueue:
    """The fake: records what was sent."""

    nudges: list[tuple[str, float]] = field(default_factory=list)
    dead_letters: list[bytes] = field(default_factory=list)

    async def nudge(self, tenant_id: str, *, delay: float = 0.0) -> None:
        self.nudges.append((tenant_id, float(delay_seconds(delay))))

    async def dead_letter(self, envelope: bytes) -> None:
        self.dead_letters.append(envelope)
