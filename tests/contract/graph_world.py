"""What the Graph contract suite needs from an implementation besides the port itself.

A `GraphHarness` pairs a `GraphGateway` under test with a `GraphWorld`: the other side of Graph,
through which a test acts as a person in Outlook or as Exchange (seeding mailboxes, editing
events, delivering mail, expiring delta links) and reads what only the server can see (how many
requests were in flight at once per mailbox, what mail was sent).

The fake provides both from one object (`FakeWorld` below). `EmulatorWorld` is the other side
of the real `GraphApiGateway` talking HTTPS to `devtools/graph_emulator`: it acts through the
emulator's Python control API (the same code path as Graph writes, so changes show up in delta)
and reads the emulator's per-mailbox counters. `emulator_harness` builds that gateway the way
production does: `open_gateway` with a real azure-identity `ClientSecretCredential`, the base
URL and CA set as the GRAPH_* settings would set them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Protocol

from aiohttp import web
from azure.identity.aio import ClientSecretCredential

from core.graph import MailboxLimiter
from core.graph.client import GraphClientOptions
from core.graph.fake import InMemoryGraph, SeedAttachment, SentMail
from core.graph.gateway import GraphApiGateway, open_gateway
from core.graph.model import AttachmentKind, EventChanges, EventDraft
from core.graph.port import GraphGateway
from core.graph.render import event_body, event_changes_body
from core.graph.sender import RetryPolicy
from devtools.graph_emulator import App, GraphEmulator, Tenant
from devtools.graph_emulator.mail_ops import file
from devtools.graph_emulator.subscriptions import SubscriptionsModule


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

    async def event_attachment_content(self, mailbox: str, event_id: str, attachment_id: str) -> bytes:
        """The bytes Exchange stored for an event's attachment."""
        ...

    async def upload_sessions(self, mailbox: str) -> int:
        """How many attachment upload sessions were created for the mailbox (a file of more
        than 3 MB goes through one)."""
        ...

    async def set_latency(self, seconds: float) -> None:
        """Delay every Graph answer by `seconds` (0 to stop)."""
        ...

    async def peak_concurrency(self, mailbox: str) -> int:
        """The most requests to the mailbox the server had in flight at once since the last
        reset."""
        ...

    async def reset_peaks(self) -> None: ...

    async def notification_url(self) -> str:
        """A URL that answers Graph's validation handshake (and takes notifications)."""
        ...

    async def subscription_ids(self, mailbox: str) -> set[str]:
        """The ids of the live subscriptions Graph holds for resources of `mailbox`."""
        ...


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

    async def event_attachment_content(self, mailbox: str, event_id: str, attachment_id: str) -> bytes:
        return self.graph.event_attachment_content(mailbox, event_id, attachment_id)

    async def upload_sessions(self, mailbox: str) -> int:
        return self.graph.upload_sessions(mailbox)

    async def set_latency(self, seconds: float) -> None:
        self.graph.latency = seconds

    async def peak_concurrency(self, mailbox: str) -> int:
        return self.graph.peak_concurrency(mailbox)

    async def reset_peaks(self) -> None:
        self.graph.reset_peaks()

    async def notification_url(self) -> str:
        return "https://bridge.example/api/v1/graph/notifications?tenantId=t"

    async def subscription_ids(self, mailbox: str) -> set[str]:
        key = mailbox.casefold()
        return {i for i, (box, _, _) in self.graph.subscriptions.items() if box == key}


# --- the emulator ------------------------------------------------------------------------------

SECRET = "contract-s3cret"
# The application permissions the bridge's app registration is granted in a customer tenant.
BRIDGE_PERMISSIONS = (
    "Calendars.ReadWrite",
    "Mail.ReadWrite",
    "Mail.Send",
    "MailboxSettings.Read",
    "User.Read.All",
)


class EmulatorWorld:
    """`GraphWorld` over a running `GraphEmulator`, scoped to one tenant: users are made in it,
    Outlook's actions go through the emulator's Python control API (the code path Graph writes
    take, so they emit the same change hooks and show up in delta) and the peaks are the
    emulator's own per-mailbox counters, i.e. what the server saw on the wire."""

    def __init__(self, emulator: GraphEmulator, tenant_id: str) -> None:
        self.emulator = emulator
        self.tenant_id = tenant_id
        self._users: list[str] = []
        self._receiver: web.AppRunner | None = None
        self._receiver_url = ""

    async def add_user(self, upn: str, display_name: str = "") -> None:
        self.emulator.add_user(self.tenant_id, upn, display_name=display_name or None)
        self._users.append(upn)

    async def add_calendar(self, mailbox: str, name: str) -> str:
        return self.emulator.calendar.create_calendar(mailbox, name).id

    async def outlook_create_event(self, mailbox: str, calendar_id: str | None, draft: EventDraft) -> str:
        body = _outlook_body(draft)
        record, _ = self.emulator.calendar.create_event(mailbox, body, calendar_id=calendar_id)
        return record.id

    async def outlook_create_daily_series(
        self, mailbox: str, calendar_id: str | None, draft: EventDraft, count: int
    ) -> str:
        body = _outlook_body(draft)
        body["recurrence"] = {
            "pattern": {"type": "daily", "interval": 1},
            "range": {
                "type": "numbered",
                "startDate": draft.start.astimezone(UTC).date().isoformat(),
                "numberOfOccurrences": count,
                "recurrenceTimeZone": "UTC",
            },
        }
        record, _ = self.emulator.calendar.create_event(mailbox, body, calendar_id=calendar_id)
        return record.id

    async def outlook_update_event(self, mailbox: str, event_id: str, changes: EventChanges) -> None:
        self.emulator.calendar.update_event(mailbox, event_id, event_changes_body(changes))

    async def outlook_delete_event(self, mailbox: str, event_id: str) -> None:
        self.emulator.calendar.delete_event(mailbox, event_id)

    async def expire_delta_links(self, mailbox: str) -> None:
        self.emulator.expire_delta_tokens(mailbox)

    # Mail, through the emulator's mail module (`devtools/graph_emulator/mail_ops.py`). Its
    # ids are the immutable ones, which is what the gateway always asks for.

    @property
    def _mail(self) -> Any:
        return self.emulator.module("mail").mail

    async def add_mail_folder(self, mailbox: str, path: str) -> str:
        folder = self._mail.ensure_folder_path(mailbox, path)
        return str(self._mail.mailbox(mailbox).folder_id(folder))

    async def deliver_mail(
        self,
        mailbox: str,
        folder_path: str,
        subject: str,
        sender: str,
        attachments: Sequence[SeedAttachment] = (),
    ) -> str:
        specs = []
        for a in attachments:
            if a.kind is not AttachmentKind.FILE:
                raise NotImplementedError("EmulatorWorld seeds file attachments only")
            specs.append(file(a.name, a.content, a.content_type, inline=a.is_inline, content_id=a.content_id))
        self._mail.ensure_folder_path(mailbox, folder_path)
        return str(
            self._mail.deliver_mail(mailbox, folder_path, subject=subject, from_=sender, attachments=specs)
        )

    async def sent_mail(self, mailbox: str) -> list[SentMail]:
        return [
            SentMail(
                kind=entry.kind,
                mailbox=mailbox,
                to=tuple(a.address for a in entry.record.to),
                subject=entry.record.subject,
                attachment_names=tuple(a.name for a in entry.record.attachments),
                comment=entry.comment,
                attachment_sizes=tuple(a.size for a in entry.record.attachments),
            )
            for entry in self._mail.sent_mail(mailbox)
        ]

    async def event_attachment_content(self, mailbox: str, event_id: str, attachment_id: str) -> bytes:
        return bytes(self.emulator.calendar.attachment(mailbox, event_id, attachment_id).data)

    async def upload_sessions(self, mailbox: str) -> int:
        # The emulator's counter of createUploadSession calls (messages and events).
        return self.emulator.counters(mailbox).upload_sessions

    async def set_latency(self, seconds: float) -> None:
        self.emulator.latency = seconds

    async def peak_concurrency(self, mailbox: str) -> int:
        return self.emulator.counters(mailbox).max_concurrent

    async def reset_peaks(self) -> None:
        for upn in self._users:
            self.emulator.reset_counters(upn)

    async def notification_url(self) -> str:
        """A receiver on loopback that echoes the validation token (started on first use)."""
        if self._receiver is None:

            async def receive(request: web.Request) -> web.Response:
                token = request.query.get("validationToken")
                if token is not None:
                    return web.Response(text=token, content_type="text/plain")
                return web.Response(status=202)

            app = web.Application()
            app.router.add_post("/notifications", receive)
            self._receiver = web.AppRunner(app, access_log=None)
            await self._receiver.setup()
            site = web.TCPSite(self._receiver, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._receiver_url = f"http://127.0.0.1:{port}/notifications"
        return self._receiver_url

    async def subscription_ids(self, mailbox: str) -> set[str]:
        module = SubscriptionsModule.of(self.emulator)
        user = self.emulator.ctx.directory.user(self.tenant_id, mailbox)
        return {
            s.id for s in module.subscriptions(self.tenant_id) if user is not None and s.user_id == user.id
        }

    async def close(self) -> None:
        if self._receiver is not None:
            await self._receiver.cleanup()


def _outlook_body(draft: EventDraft) -> dict[str, Any]:
    """The Graph JSON Outlook would write for `draft`: the gateway's own rendering, without the
    transactionId (only API clients set one; Outlook's events have none)."""
    body = event_body(draft, "unused")
    del body["transactionId"]
    return body


@dataclass
class EmulatedTenant:
    """One tenant of the emulator with the bridge's app registration in it."""

    emulator: GraphEmulator
    tenant: Tenant
    app: App
    secret: str

    @classmethod
    def create(
        cls, emulator: GraphEmulator, permissions: Sequence[str] = BRIDGE_PERMISSIONS
    ) -> EmulatedTenant:
        """A fresh tenant (unique name and domain) so tests sharing one emulator never meet."""
        name = f"t{uuid.uuid4().hex[:12]}"
        tenant = emulator.add_tenant(name=name, domain=f"{name}.onmicrosoft.com")
        app = emulator.add_app(tenant.id, secrets=[SECRET], application_permissions=permissions)
        return cls(emulator, tenant, app, SECRET)

    def credential(self, secret: str | None = None) -> ClientSecretCredential:
        """The production credential for a client-secret tenant, pointed at the emulator's
        identity platform (which must speak HTTPS and skip instance discovery; FACTS)."""
        return ClientSecretCredential(
            self.tenant.id,
            self.app.client_id,
            self.secret if secret is None else secret,
            authority=self.emulator.authority,
            disable_instance_discovery=True,
            connection_verify=str(self.emulator.ca_cert),
        )

    def options(self) -> GraphClientOptions:
        """What GRAPH_BASE_URL and GRAPH_CA_BUNDLE give when set to the emulator's."""
        return GraphClientOptions(base_url=self.emulator.graph_url, ca_bundle=str(self.emulator.ca_cert))

    def world(self) -> EmulatorWorld:
        return EmulatorWorld(self.emulator, self.tenant.id)

    @contextlib.asynccontextmanager
    async def gateway(
        self,
        *,
        secret: str | None = None,
        limiter: MailboxLimiter | None = None,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GraphApiGateway]:
        """The real gateway (`open_gateway`) for this tenant, closed with its credential."""
        credential = self.credential(secret)
        gateway = open_gateway(credential, self.options(), limiter=limiter, retry=retry, **kwargs)
        try:
            yield gateway
        finally:
            await gateway.close()
            await credential.close()


@contextlib.asynccontextmanager
async def emulator_harness(emulator: GraphEmulator) -> AsyncIterator[GraphHarness]:
    """The emulator-backed harness for one test: a fresh tenant, the real gateway."""
    tenant = EmulatedTenant.create(emulator)
    world = tenant.world()
    async with tenant.gateway() as gateway:
        try:
            yield GraphHarness(gateway=gateway, world=world, name="emulator")
        finally:
            await world.close()
