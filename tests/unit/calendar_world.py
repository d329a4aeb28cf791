"""An in-memory world for calendar sync tests: memory tables, the real outbox over them, the
fake Graph behind a provider, a settable clock, a tenant and a resource linked to Adele.

`host_view()` replays the tenant's outbox the way a host applies it (upserted replaces,
deleted removes), so tests compare what the host ended up with against Outlook itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.calendar.requests import SyncRequest
from core.calendar.sync import CalendarSync
from core.calendar.window import WindowPolicy
from core.graph.fake import InMemoryGraph
from core.graph.model import Event, EventDraft
from core.graph.port import GraphGateway
from core.host import InMemoryDeliveryQueue, Outbox
from core.host.records import OutboxEntry
from core.host.store import OutboxStore
from core.runs import RunHandle
from core.store import Tables, memory_tables
from core.store.records import (
    DEFAULT_CALENDAR,
    Direction,
    EventMapEntry,
    LinkedAccount,
    ResourceLink,
    Tenant,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
TENANT = "acme"
RESOURCE = "room-4b"
ADELE = "adele@acme.example"
GRADY = "grady@acme.example"


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class FakeGraphs:
    graph: InMemoryGraph

    async def gateway(self, tenant: Tenant) -> GraphGateway:
        return self.graph


@dataclass
class CalendarWorld:
    tables: Tables = field(default_factory=memory_tables)
    graph: InMemoryGraph = field(default_factory=InMemoryGraph)
    queue: InMemoryDeliveryQueue = field(default_factory=InMemoryDeliveryQueue)
    clock: Clock = field(default_factory=Clock)
    policy: WindowPolicy = field(
        default_factory=lambda: WindowPolicy(days_back=7, days_ahead=30, slack_days=7)
    )
    page_size: int = 3

    def __post_init__(self) -> None:
        self.graph.add_user(ADELE, "Adele Vance")
        self.graph.add_user(GRADY, "Grady Archie")

    @property
    def outbox(self) -> Outbox:
        return Outbox(self.tables, self.queue, clock=self.clock)

    def sync(self) -> CalendarSync:
        return CalendarSync(
            self.tables,
            self.outbox,
            FakeGraphs(self.graph),
            self.policy,
            clock=self.clock,
            page_size=self.page_size,
        )

    async def add_tenant(self, *, language: str = "en", time_zone: str = "Europe/Oslo") -> Tenant:
        tenant = Tenant(tenant_id=TENANT, language=language, time_zone=time_zone)
        return await self.tables.repo(Tenant).insert(tenant)

    async def link(self, *accounts: LinkedAccount, resource_id: str = RESOURCE) -> ResourceLink:
        link = ResourceLink(tenant_id=TENANT, resource_id=resource_id, accounts=list(accounts))
        return await self.tables.repo(ResourceLink).upsert(link)

    async def setup(self, direction: Direction = Direction.DOWN, calendars: list[str] | None = None) -> None:
        await self.add_tenant()
        await self.link(
            LinkedAccount(account=ADELE, direction=direction, calendars=calendars or [DEFAULT_CALENDAR])
        )

    async def run(self, **request: Any) -> RunHandle | None:
        values = {"tenant_id": TENANT, "resource_id": RESOURCE, **request}
        return await self.sync().run(SyncRequest(**values))

    def create(
        self, subject: str, start: datetime, hours: float = 1, *, mailbox: str = ADELE, **kw: Any
    ) -> Event:
        draft = EventDraft(subject=subject, start=start, end=start + timedelta(hours=hours), **kw)
        return self.graph.outlook_create_event(mailbox, None, draft)

    async def events(self) -> list[dict[str, Any]]:
        """The tenant's outbox, in order, as (type, data) envelopes."""
        store = OutboxStore(self.tables)
        return [
            {"id": e.event_id, "type": e.type, "data": e.payload}
            async for e in store.rows_after(TENANT, 0)
            if isinstance(e, OutboxEntry) and e.type.startswith("appointment.")
        ]

    async def host_view(self) -> dict[str, dict[str, Any]]:
        """event id → appointment, as a host applying every event in order holds it."""
        view: dict[str, dict[str, Any]] = {}
        for event in await self.events():
            if event["type"] not in ("appointment.upserted", "appointment.deleted"):
                continue  # push results (appointment.pushed) are not appointments
            appointment = event["data"]["appointment"]
            if event["type"] == "appointment.upserted":
                view[appointment["eventId"]] = appointment
            else:
                view.pop(appointment["eventId"], None)
        return view

    def outlook_view(self, mailbox: str = ADELE) -> dict[str, Event]:
        """What Outlook holds in the window the host must see."""
        start, end = self.policy.needed(self.clock())
        return {e.id: e for e in self._calendar_view(mailbox, start, end)}

    def _calendar_view(self, mailbox: str, start: datetime, end: datetime) -> list[Event]:
        box = self.graph._box(mailbox)
        return list(self.graph._in_window(box, box.default_calendar, start, end).values())

    async def map_entries(self) -> list[EventMapEntry]:
        return [e async for e in self.tables.repo(EventMapEntry).list(TENANT)]
