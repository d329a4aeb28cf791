"""Sync requests: what the timer, `POST …/resources/{r}/sync` and change notifications put on
the `calendar-sync` queue for a worker to run.

A `SyncRequest` names a resource and, from a notification, one calendar of it (`account` +
`calendar`); without them it means every down-linked calendar of the resource. A `SyncBatch`
(the timer's) names up to `BATCH_SIZE` calendars of one tenant, so one worker reads and writes
their sync states a transaction at a time. Neither carries state: the worker reads the links
and the sync states, so a message may be repeated or arrive late without harm (a duplicate
coalesces on the calendar's lease).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

from azure.storage.queue.aio import QueueServiceClient

from core.queues import TextQueue
from core.store.records import LinkedAccount, ResourceLink
from core.store.table import MAX_TRANSACTION

CALENDAR_QUEUE = "calendar-sync"
CALENDAR_POISON_QUEUE = CALENDAR_QUEUE + "-poison"
REASONS = frozenset({"timer", "manual", "notification"})


@dataclass(frozen=True, slots=True)
class SyncRequest:
    tenant_id: str
    resource_id: str
    account: str | None = None
    calendar: str | None = None
    run_id: str | None = None
    reason: str = "timer"
    attempt: int = 0  # re-queued after a long Retry-After this many times

    def retry(self) -> SyncRequest:
        return replace(self, attempt=self.attempt + 1)

    def __post_init__(self) -> None:
        if not self.tenant_id or not self.resource_id:
            raise ValueError("a sync request names a tenant and a resource")
        if (self.account is None) != (self.calendar is None):
            raise ValueError("a sync request names both an account and a calendar, or neither")
        if self.reason not in REASONS:
            raise ValueError(f"a sync request's reason is one of {sorted(REASONS)}")
        if not isinstance(self.attempt, int) or self.attempt < 0:
            raise ValueError("a sync request's attempt is a non-negative integer")

    def to_message(self) -> str:
        fields = {
            "tenantId": self.tenant_id,
            "resourceId": self.resource_id,
            "account": self.account,
            "calendar": self.calendar,
            "runId": self.run_id,
            "reason": self.reason,
            "attempt": self.attempt or None,
        }
        return json.dumps({k: v for k, v in fields.items() if v is not None}, separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> SyncRequest:
        """The request in a queue message; ValueError for anything else."""
        try:
            raw = json.loads(text)
        except ValueError:
            raise ValueError("a calendar-sync message must be JSON") from None
        if not isinstance(raw, dict):
            raise ValueError("a calendar-sync message must be a JSON object")
        values = {
            "tenant_id": raw.get("tenantId"),
            "resource_id": raw.get("resourceId"),
            "account": raw.get("account"),
            "calendar": raw.get("calendar"),
            "run_id": raw.get("runId"),
            "reason": raw.get("reason", "timer"),
        }
        for name, value in values.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"a calendar-sync message's {name} must be a string")
        attempt = raw.get("attempt", 0)
        if type(attempt) is not int:
            raise ValueError("a calendar-sync message's attempt must be an integer")
        return cls(**values, attempt=attempt)


# One calendar as linked: (resource id, account, calendar name as the link names it).
CalendarRef = tuple[str, str, str]
# Calendars per timer message: one Table transaction (≤ 100 writes) holds a batch's leases, and
# a batch is small enough to spread over instances when the queue grows.
BATCH_SIZE = 100
# A queue message holds 64 KiB once base64-encoded: a batch's JSON stays well below.
MAX_BATCH_JSON = 40_000


@dataclass(frozen=True, slots=True)
class SyncBatch:
    """Several calendars of one tenant, synced by one worker (the timer's fan-out)."""

    tenant_id: str
    calendars: tuple[CalendarRef, ...]
    run_id: str | None = None
    reason: str = "timer"
    attempt: int = 0

    def __post_init__(self) -> None:
        if not self.tenant_id:
            raise ValueError("a sync batch names a tenant")
        if not 1 <= len(self.calendars) <= MAX_TRANSACTION:  # its leases are one transaction
            raise ValueError(f"a sync batch names 1 to {MAX_TRANSACTION} calendars")
        for ref in self.calendars:
            if len(ref) != 3 or not all(isinstance(part, str) and part for part in ref):
                raise ValueError("a sync batch's calendar is [resourceId, account, calendar]")
        if self.reason not in REASONS:
            raise ValueError(f"a sync batch's reason is one of {sorted(REASONS)}")
        if not isinstance(self.attempt, int) or self.attempt < 0:
            raise ValueError("a sync batch's attempt is a non-negative integer")

    def retry(self) -> SyncBatch:
        return replace(self, attempt=self.attempt + 1)

    def single(self, ref: CalendarRef) -> SyncRequest:
        """One of the batch's calendars as a request of its own (to retry it alone)."""
        return SyncRequest(self.tenant_id, *ref, reason=self.reason, attempt=self.attempt)

    def to_message(self) -> str:
        fields = {
            "tenantId": self.tenant_id,
            "calendars": [list(ref) for ref in self.calendars],
            "runId": self.run_id,
            "reason": self.reason,
            "attempt": self.attempt or None,
        }
        return json.dumps({k: v for k, v in fields.items() if v is not None}, separators=(",", ":"))


def batches(tenant_id: str, refs: list[CalendarRef], *, reason: str = "timer") -> list[SyncBatch]:
    """`refs` in batches of at most `BATCH_SIZE` calendars and `MAX_BATCH_JSON` characters, in
    the order given (the fan-out sorts them by sync-state key, so a batch's states are one
    contiguous key range)."""
    out: list[SyncBatch] = []
    chunk: list[CalendarRef] = []
    size = 0
    for ref in refs:
        cost = len(json.dumps(list(ref))) + 1
        if chunk and (len(chunk) == BATCH_SIZE or size + cost > MAX_BATCH_JSON):
            out.append(SyncBatch(tenant_id, tuple(chunk), reason=reason))
            chunk, size = [], 0
        chunk.append(ref)
        size += cost
    if chunk:
        out.append(SyncBatch(tenant_id, tuple(chunk), reason=reason))
    return out


def parse_message(text: str) -> SyncRequest | SyncBatch:
    """The request or batch in a `calendar-sync` queue message; ValueError for anything else."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValueError("a calendar-sync message must be JSON") from None
    if isinstance(raw, dict) and "calendars" in raw:
        calendars = raw["calendars"]
        if not isinstance(calendars, list) or not all(isinstance(c, list) for c in calendars):
            raise ValueError("a sync batch's calendars are a list of [resourceId, account, calendar]")
        for name in ("tenantId", "runId", "reason"):
            if raw.get(name) is not None and not isinstance(raw[name], str):
                raise ValueError(f"a calendar-sync message's {name} must be a string")
        attempt = raw.get("attempt", 0)
        if type(attempt) is not int:
            raise ValueError("a calendar-sync message's attempt must be an integer")
        return SyncBatch(
            raw.get("tenantId") or "",
            tuple(tuple(c) for c in calendars),
            run_id=raw.get("runId"),
            reason=raw.get("reason", "timer"),
            attempt=attempt,
        )
    return SyncRequest.parse(text)


@dataclass(frozen=True, slots=True)
class Target:
    """One calendar of one linked account of a resource."""

    account: LinkedAccount
    calendar: str

    @property
    def name(self) -> str:
        return f"{self.account.account}/{self.calendar}"


def linked_calendars(link: ResourceLink) -> tuple[list[Target], list[Target]]:
    """A resource's calendars in link order: those synced down (direction down or both), and
    the rest (up or none)."""
    down: list[Target] = []
    other: list[Target] = []
    for account in link.accounts:
        (down if account.direction.downloads else other).extend(Target(account, c) for c in account.calendars)
    return down, other


def select_targets(link: ResourceLink, request: SyncRequest) -> tuple[list[Target], int]:
    """The down-linked calendars the request covers, and how many it covers that are not down
    (direction up or none: skipped)."""

    def covered(target: Target) -> bool:
        return (request.account is None or target.account.account.lower() == request.account.lower()) and (
            request.calendar is None or target.calendar.casefold() == request.calendar.casefold()
        )

    down, other = linked_calendars(link)
    return [t for t in down if covered(t)], sum(1 for t in other if covered(t))


class SyncQueue(Protocol):
    async def send(self, request: SyncRequest | SyncBatch, *, delay: float = 0.0) -> None: ...


class AzureSyncQueue:
    def __init__(self, service: QueueServiceClient, name: str = CALENDAR_QUEUE) -> None:
        self._queue = TextQueue(service, name)

    async def send(self, request: SyncRequest | SyncBatch, *, delay: float = 0.0) -> None:
        await self._queue.send(request.to_message(), delay=delay)


@dataclass
class InMemorySyncQueue:
    """The fake: records what was sent (each message must parse back to itself)."""

    sent: list[SyncRequest | SyncBatch] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)

    async def send(self, request: SyncRequest | SyncBatch, *, delay: float = 0.0) -> None:
        if parse_message(request.to_message()) != request:
            raise ValueError("the message would not parse back to the request")
        self.sent.append(request)
        self.delays.append(delay)

    def as_dicts(self) -> list[dict[str, object]]:
        return [asdict(r) for r in self.sent]
