"""Messages of the `graph-subscriptions` queue: reconcile a tenant's subscriptions with its
configuration, or handle one lifecycle notification. Both need Graph calls, so neither is done
inside the notification request (Graph gives it 3 seconds)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from azure.storage.queue.aio import QueueServiceClient

from core.queues import TextQueue

SUBSCRIPTIONS_QUEUE = "graph-subscriptions"
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})


@dataclass(frozen=True, slots=True)
class Reconcile:
    tenant_id: str


@dataclass(frozen=True, slots=True)
class Lifecycle:
    tenant_id: str
    target: str
    event: str


SubscriptionMessage = Reconcile | Lifecycle


def encode(message: SubscriptionMessage) -> str:
    body: dict[str, Any] = {"kind": "reconcile", "tenantId": message.tenant_id}
    if isinstance(message, Lifecycle):
        body = {
            "kind": "lifecycle",
            "tenantId": message.tenant_id,
            "target": message.target,
            "event": message.event,
        }
    return json.dumps(body, separators=(",", ":"))


def decode(text: str) -> SubscriptionMessage:
    """The message in a queue message's text; ValueError for anything else."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValueError("a graph-subscriptions message must be JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tenantId"), str) or not raw["tenantId"]:
        raise ValueError("a graph-subscriptions message is an object with a tenantId")
    if raw.get("kind") == "reconcile":
        return Reconcile(raw["tenantId"])
    target, event = raw.get("target"), raw.get("event")
    if raw.get("kind") == "lifecycle" and isinstance(target, str) and target and event in LIFECYCLE_EVENTS:
        return Lifecycle(raw["tenantId"], target, event)
    raise ValueError("a graph-subscriptions message is a reconcile, or a lifecycle event of a target")


class SubscriptionQueue(Protocol):
    async def send(self, message: SubscriptionMessage, *, delay: float = 0.0) -> None: ...


class AzureSubscriptionQueue:
    def __init__(self, service: QueueServiceClient, name: str = SUBSCRIPTIONS_QUEUE) -> None:
        self._queue = TextQueue(service, name)

    async def send(self, message: SubscriptionMessage, *, delay: float = 0.0) -> None:
        await self._queue.send(encode(message), delay=delay)


class InMemorySubscriptionQueue:
    def __init__(self) -> None:
        self.sent: list[SubscriptionMessage] = []

    async def send(self, message: SubscriptionMessage, *, delay: float = 0.0) -> None:
        self.sent.append(decode(encode(message)))
