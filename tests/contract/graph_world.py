"""What the Graph contract suite needs from an implementation besides the port itself.

A `GraphHarness` pairs a `GraphGateway` under test with a `GraphWorld`: the other side of Graph,
through which a test acts as a person in Outlook or as Exchange (seeding mailboxes, editing
events, delivering mail, expiring delta links) and reads what only the server can see (how many
requests were in flight at once per mailbox, what mail was sent).

The fake provides both from one object (`FakeWorld` below). The emulator-backed harness — the
real `GraphApiGateway` over HTTPS to `devtools/graph_emulator` — implements `GraphWorld` with
the emulator's control API and is registered in `GRAPH_IMPLEMENTATIONS` in
`test_graph_contract.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core.graph.fake import InMemoryGraph, SeedAttachment, SentMail
from core.graph.model import EventChanges, EventDraft
from core.graph.port import GraphGateway


class GraphWorld(Protocol):
    async def add_user(self, upn: str, display_name: str = "") -> None:
        """A licensed user with a mailbox, a default calendar and the well-known folders."""
        ...

    async def add_calendar(self, mailbox: str, name: str) -> str:
        """A secondary calendar; returns its id."""
        ...

    async def outlook_create_event(self, mailbox: str, calendar_id: str | None, draft: EventDraft) -> str:
        """The person creates an event in Outlook; returns its (immutable) id."""
        ...

    async def outlook_create_daily_series(
        self, mailbox: str, calendar_id: str | None, draft: EventDraft, count: int
    ) -> str:
        """A daily recurring series of `count` occurrences starting at `draft`; returns the
        series master's id."""
        ...

    async def outlook_update_event(self, mailbox: str, event_id: str, changes: EventChanges) -> None: ...

    async def outlook_delete_event(self, mailbox: str, event_id: str) -> None: ...

    async def expire_delta_links(self, mailbox: str) -> None:
        """Every delta link issued for the mailbox answers 410 SyncStateNotFound from now on."""
        ...

    async def add_mail_folder(self, mailbox: str, path: str) -> str:
        """Create the folders of a path such as "Inbox/Invoices"; returns the last one's id."""
        ...

    async def deliver_mail(
        self,
        mailbox: str,
        folder_path: str,
        subject: str,
        sender: str,
        attachments: Sequence[SeedAttachment] = (),
    ) -> str:
        """Mail arrives in the folder; returns the message id."""
        ...

    async def sent_mail(self, mailbox: str) -> list[SentMail]:
        """What the mailbox sent or forwarded, oldest first."""
        ...

    async def set_latency(self, seconds: float) -> None:
        """Delay every Graph answer by `seconds` (0 to stop)."""
        ...

    async def peak_concurrency(self, mailbox: str) -> int:
        """The most requests to the mailbox the server had in flight at once since the last
        reset."""
        ...

    async def reset_peaks(self) -> None: ...


@dataclass
class GraphHarness:
    gateway: GraphGateway
    world: GraphWorld
    name: str


class FakeWorld:
    """`GraphWorld` over `InMemoryGraph`: its seeding methods, made async."""

    def __init__(self, graph: InMemoryGraph) -> None:
        self.graph = graph

    async def add_user(self, upn: str, display_name: str = "") -> None:
        self.graph.add_user(upn, display_name)

    async def add_calendar(self, mailbox: str, name: str) -> str:
        return self.graph.add_calendar(mailbox, name).id

    async def outlook_create_event(self, mailbox: str, calendar_id: str | None, draft: EventDraft) -> str:
        return self.graph.outlook_create_event(mailbox, calendar_id, draft).id

    async def outlook_create_daily_series(
        self, mailbox: str, calendar_id: str | None, draft: EventDraft, count: int
    ) -> str:
        return self.graph.outlook_create_daily_series(mailbox, calendar_id, draft, count)

    async def outlook_update_event(self, mailbox: str, event_id: str, changes: EventChanges) -> None:
        self.graph.outlook_update_event(mailbox, event_id, changes)

    async def outlook_delete_event(self, mailbox: str, event_id: str) -> None:
        self.graph.outlook_delete_event(mailbox, event_id)

    async def expire_delta_links(self, mailbox: str) -> None:
        self.graph.expire_delta_links(mailbox)

    async def add_mail_folder(self, mailbox: str, path: str) -> str:
        return self.graph.add_mail_folder(mailbox, path).id

    async def deliver_mail(
        self,
        mailbox: str,
        folder_path: str,
        subject: str,
        sender: str,
        attachments: Sequence[SeedAttachment] = (),
    ) -> str:
        return self.graph.deliver_mail(mailbox, folder_path, subject, sender, attachments).id

    async def sent_mail(self, mailbox: str) -> list[SentMail]:
        return self.graph.sent_mail(mailbox)

    async def set_latency(self, seconds: float) -> None:
        self.graph.latency = seconds

    async def peak_concurrency(self, mailbox: str) -> int:
        return self.graph.peak_concurrency(mailbox)

    async def reset_peaks(self) -> None:
        self.graph.reset_peaks()
