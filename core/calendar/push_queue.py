"""Messages of the `calendar-push` queue: "apply these host appointments" and "remove what the
bridge created in an unlinked account".

A message names rows, never appointment content: the newest version the host sent is kept in
its `HostAppointment` row, so a message that arrives late or twice applies whatever is newest
(or nothing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from azure.storage.queue.aio import QueueServiceClient

from core.queues import TextQueue

PUSH_QUEUE = "calendar-push"
PUSH_POISON_QUEUE = PUSH_QUEUE + "-poison"
MAX_MESSAGE_BYTES = 45_000  # UTF-8 before base64: a queue message is at most 64 KiB encoded


@dataclass(frozen=True, slots=True)
class ApplyRequest:
    """Apply the newest desired state of these appointments ((resource id, host id) pairs)."""

    tenant_id: str
    tracking_id: str
    items: tuple[tuple[str, str], ...]
    attempt: int = 0

    def retry(self, items: tuple[tuple[str, str], ...] | None = None) -> ApplyRequest:
        return replace(self, items=self.items if items is None else items, attempt=self.attempt + 1)


@dataclass(frozen=True, slots=True)
class CleanupRequest:
    """Delete every event the bridge created for `resource_id` in `account` (after an unlink
    with `cleanup=true`)."""

    tenant_id: str
    tracking_id: str
    resource_id: str
    account: str
    attempt: int = 0

    def retry(self) -> CleanupRequest:
        return replace(self, attempt=self.attempt + 1)


PushMessage = ApplyRequest | CleanupRequest


def encode(message: PushMessage) -> str:
    body: dict[str, Any]
    if isinstance(message, ApplyRequest):
        body = {
            "kind": "apply",
            "tenantId": message.tenant_id,
            "trackingId": message.tracking_id,
            "items": [list(item) for item in message.items],
        }
    else:
        body = {
            "kind": "cleanup",
            "tenantId": message.tenant_id,
            "trackingId": message.tracking_id,
            "resourceId": message.resource_id,
            "account": message.account,
        }
    if message.attempt:
        body["attempt"] = message.attempt
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _string(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"a calendar-push message needs {name} (a string)")
    return value


def decode(text: str) -> PushMessage:
    """The message in a queue message's text; ValueError for anything else."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValueError("a calendar-push message must be JSON") from None
    if not isinstance(raw, dict):
        raise ValueError("a calendar-push message must be a JSON object")
    attempt = raw.get("attempt", 0)
    if type(attempt) is not int or attempt < 0:
        raise ValueError("a calendar-push message's attempt must be a non-negative integer")
    tenant_id, tracking_id = _string(raw, "tenantId"), _string(raw, "trackingId")
    kind = raw.get("kind")
    if kind == "apply":
        items = raw.get("items")
        if not isinstance(items, list) or not all(
            isinstance(i, list) and len(i) == 2 and all(isinstance(p, str) and p for p in i) for i in items
        ):
            raise ValueError(
                "a calendar-push apply message's items are [resourceId, hostAppointmentId] pairs"
            )
        return ApplyRequest(tenant_id, tracking_id, tuple((r, h) for r, h in items), attempt)
    if kind == "cleanup":
        return CleanupRequest(
            tenant_id, tracking_id, _string(raw, "resourceId"), _string(raw, "account"), attempt
        )
    raise ValueError("a calendar-push message's kind is apply or cleanup")


def split(request: ApplyRequest) -> list[ApplyRequest]:
    """The request as messages that each fit a queue message, in order."""
    out: list[ApplyRequest] = []
    chunk: list[tuple[str, str]] = []
    empty = _bytes(encode(replace(request, items=())))
    size = empty
    for item in request.items:
        item_size = _bytes(json.dumps(list(item), ensure_ascii=False)) + 1
        if chunk and size + item_size > MAX_MESSAGE_BYTES:
            out.append(replace(request, items=tuple(chunk)))
            chunk, size = [], empty
        chunk.append(item)
        size += item_size
    if chunk:
        out.append(replace(request, items=tuple(chunk)))
    return out


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))


class PushQueue(Protocol):
    async def send(self, message: PushMessage, *, delay: float = 0.0) -> None: ...


class AzurePushQueue:
    def __init__(self, service: QueueServiceClient, name: str = PUSH_QUEUE) -> None:
        self._queue = TextQueue(service, name)

    async def send(self, message: PushMessage, *, delay: float = 0.0) -> None:
        await self._queue.send(encode(message), delay=delay)


@dataclass
class InMemoryPushQueue:
    """The fake: records what was sent, with its delay."""

    sent: list[tuple[PushMessage, float]] = field(default_factory=list)

    async def send(self, message: PushMessage, *, delay: float = 0.0) -> None:
        decode(encode(message))  # what the real queue would carry must round-trip
        self.sent.append((message, delay))

    def take(self) -> list[PushMessage]:
        """Everything sent so far, forgetting it (a test plays the queue worker)."""
        messages = [m for m, _ in self.sent]
        self.sent.clear()
        return messages
