"""The delivery queue port: nudge a tenant's dispatcher (now or later) and dead-letter an event.

Messages are base64 text, as the Functions queue trigger expects (the Python SDK does not
encode by default; FACTS.md). A nudge is `{"tenantId": …}` and carries no event: the
dispatcher reads the outbox, so nudges may be lost, repeated or reordered without harm. A
dead-lettered event's envelope goes to `host-delivery-poison`, the queue the Functions host
also moves repeatedly failing nudges to, and the one Azure Monitor alerts on.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from typing import Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

DELIVERY_QUEUE = "host-delivery"
POISON_QUEUE = DELIVERY_QUEUE + "-poison"
MAX_DELAY_SECONDS = 7 * 24 * 3600  # the longest a queue message can stay invisible


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


def delay_seconds(delay: float) -> int:
    """Queue visibility is whole seconds: round up, so a retry never comes early."""
    return min(MAX_DELAY_SECONDS, max(0, math.ceil(delay)))


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
        self._queue = self._client(service, queue)
        self._poison = self._client(service, poison)

    @staticmethod
    def _client(service: QueueServiceClient, name: str) -> QueueClient:
        # children share the service client's transport: closing the service closes them
        return service.get_queue_client(
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )

    async def nudge(self, tenant_id: str, *, delay: float = 0.0) -> None:
        await self._send(self._queue, nudge_message(tenant_id), delay_seconds(delay))

    async def dead_letter(self, envelope: bytes) -> None:
        await self._send(self._poison, envelope.decode("utf-8"), 0)

    @staticmethod
    async def _send(client: QueueClient, text: str, visibility: int) -> None:
        try:
            await client.send_message(text, visibility_timeout=visibility or None)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                await client.create_queue()
            await client.send_message(text, visibility_timeout=visibility or None)


@dataclass
class InMemoryDeliveryQueue:
    """The fake: records what was sent."""

    nudges: list[tuple[str, float]] = field(default_factory=list)
    dead_letters: list[bytes] = field(default_factory=list)

    async def nudge(self, tenant_id: str, *, delay: float = 0.0) -> None:
        self.nudges.append((tenant_id, float(delay_seconds(delay))))

    async def dead_letter(self, envelope: bytes) -> None:
        self.dead_letters.append(envelope)
