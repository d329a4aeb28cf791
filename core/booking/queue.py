"""The `booking-reservations` queue: "finish (or undo) this reservation". A message names the
reservation, never its content: the row says what is left to do."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Protocol

from azure.storage.queue.aio import QueueServiceClient

from core.queues import TextQueue

BOOKING_QUEUE = "booking-reservations"
BOOKING_POISON_QUEUE = BOOKING_QUEUE + "-poison"


@dataclass(frozen=True, slots=True)
class ReservationMessage:
    tenant_id: str
    booking_calendar: str
    reservation_id: str
    attempt: int = 0  # how often it was re-queued because another worker held the reservation

    def again(self) -> ReservationMessage:
        return replace(self, attempt=self.attempt + 1)

    def encode(self) -> str:
        body: dict[str, str | int] = {
            "tenantId": self.tenant_id,
            "bookingCalendarId": self.booking_calendar,
            "reservationId": self.reservation_id,
        }
        if self.attempt:
            body["attempt"] = self.attempt
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> ReservationMessage:
        """The message in a queue message's text; ValueError for anything else."""
        try:
            raw = json.loads(text)
        except ValueError:
            raise ValueError("a booking-reservations message must be JSON") from None
        if not isinstance(raw, dict):
            raise ValueError("a booking-reservations message must be a JSON object")
        values = [raw.get(name) for name in ("tenantId", "bookingCalendarId", "reservationId")]
        if not all(isinstance(v, str) and v for v in values):
            raise ValueError(
                "a booking-reservations message needs tenantId, bookingCalendarId, reservationId"
            )
        attempt = raw.get("attempt", 0)
        if type(attempt) is not int or attempt < 0:
            raise ValueError("a booking-reservations message's attempt must be a non-negative integer")
        tenant_id, booking, reservation = (str(v) for v in values)
        return cls(tenant_id, booking, reservation, attempt)


class ReservationQueue(Protocol):
    async def send(self, message: ReservationMessage, *, delay: float = 0.0) -> None: ...


class AzureReservationQueue:
    def __init__(self, service: QueueServiceClient, name: str = BOOKING_QUEUE) -> None:
        self._queue = TextQueue(service, name)

    async def send(self, message: ReservationMessage, *, delay: float = 0.0) -> None:
        await self._queue.send(message.encode(), delay=delay)


@dataclass
class InMemoryReservationQueue:
    """The fake: records what was sent, with its delay."""

    sent: list[tuple[ReservationMessage, float]] = field(default_factory=list)

    async def send(self, message: ReservationMessage, *, delay: float = 0.0) -> None:
        ReservationMessage.decode(message.encode())  # what the real queue carries must round-trip
        self.sent.append((message, delay))

    def take(self) -> list[ReservationMessage]:
        messages = [m for m, _ in self.sent]
        self.sent.clear()
        return messages
