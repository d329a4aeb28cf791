"""Sending mail for host systems, over memory tables, the fake Graph, the in-memory document
store and the real outbox: checked whole before anything is kept, one mail per idempotency key
whatever is retried, each step of the worker resumable, and refusals only a person can fix failed
at once with the fix."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.graph.errors import ConsentMissing, GraphError, GraphUnavailable, Throttled, TokenUnavailable
from core.graph.fake import InMemoryGraph
from core.graph.model import OutgoingMail
from core.host import InMemoryDeliveryQueue, Outbox
from core.host.records import OutboxEntry
from core.host.store import OutboxStore
from core.mail.outgoing import InMemorySendQueue, OutgoingService, message_view
from core.mail.send_worker import DELEGATED_REASON, LEASE, MAX_DELIVERIES, MailSendWorker
from core.mail.senders import SenderService, sender_view
from core.mail.staging import InMemoryDocumentStore
from core.request_errors import EditConflict, InvalidInput, ItemNotFound
from core.store import memory_tables
from core.store.records import CredentialMode, MailSender, OutgoingMessage, OutgoingStatus, Tenant
from tests.unit.calendar_world import Clock

TENANT = "acme"
SENDER = "skjema@acme.example"
MEGAN = "megan@acme.example"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
PDF = b"%PDF-1.7 receipt"
MB = 1024 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pdf(size: int) -> bytes:
    return (b"%PDF-1.7\n" + bytes(range(256)) * (size // 256 + 1))[:size]


class World:
    def __init__(self, graph: InMemoryGraph | None = None) -> None:
        self.tables = memory_tables()
        self.graph = graph or InMemoryGraph()
        self.graph.add_user(SENDER, "Skjema")
        self.graph.add_user(MEGAN, "Megan")
        self.clock = Clock(NOW)
        self.documents = InMemoryDocumentStore(clock=self.clock)
        self.queue = InMemorySendQueue()
        self.outbox = Outbox(self.tables, InMemoryDeliveryQueue(), clock=self.clock)
        self.tenant = Tenant(tenant_id=TENANT)
        graph_ = self.graph

        class Graphs:
            async def gateway(self, tenant: Tenant) -> Any:
                return graph_

        self.graphs = Graphs()

    async def setup(self, **profile: Any) -> MailSender:
        await self.tables.repo(Tenant).upsert(self.tenant)
        sender, created = await self.senders().put("forms", {"mailbox": SENDER, **profile})
        assert created
        self.sender = sender
        return sender

    def senders(self) -> SenderService:
        return SenderService(self.tables, self.tenant, self.clock)

    def service(self, max_mb: int = 35) -> OutgoingService:
        return OutgoingService(self.tables, self.documents, self.queue, self.tenant, self.clock, max_mb * MB)

    def worker(self) -> MailSendWorker:
        return MailSendWorker(
            self.tables, self.graphs, self.documents, self.queue, self.outbox, clock=self.clock
        )

    async def post(self, **body: Any) -> OutgoingMessage:
        row, _ = await self.service().submit(self.sender, self.body(**body))
        return row

    def body(self, **extra: Any) -> dict[str, Any]:
        return {
            "idempotencyKey": "receipt-42",
            "to": [MEGAN],
            "subject": "Kvittering",
            "body": {"contentType": "html", "content": "<p>Takk for søknaden.</p>"},
            "attachments": [
                {"name": "kvittering.pdf", "contentType": "application/pdf", "contentBase64": b64(PDF)}
            ],
            **extra,
        }

    async def drain(self, *, delivery: int = 1) -> None:
        for tenant_id, message, _ in self.queue.take():
            await self.worker().run(tenant_id, message, delivery=delivery)

    async def row(self, message: str) -> OutgoingMessage:
        found = await self.tables.repo(OutgoingMessage).get(*OutgoingMessage.key(TENANT, message))
        assert found is not None
        return found

    async def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (e.type, e.payload)
            async for e in OutboxStore(self.tables).rows_after(TENANT, 0)
            if isinstance(e, OutboxEntry)
        ]

    async def folder(self, mailbox: str, name: str) -> list[Any]:
        folder = await self.graph.resolve_folder_path(mailbox, name)
        return self.graph.messages_in(mailbox, folder.id)


@pytest.fixture
async def world() -> World:
    w = World()
    await w.setup()
    return w


# --- sender profiles -----------------------------------------------------------------------------


async def test_a_sender_profile_is_created_replaced_listed_and_deleted(world: World) -> None:
    assert sender_view(world.sender) == {
        "id": "forms",
        "mailbox": SENDER,
        "sendAs": None,
        "saveToSentItems": True,
        "createdAt": NOW.isoformat(),
        "updatedAt": NOW.isoformat(),
    }
    replaced, created = await world.senders().put(
        "forms", {"mailbox": SENDER, "sendAs": "post@acme.example", "saveToSentItems": False}
    )
    assert not created
    assert (replaced.send_as, replaced.save_to_sent_items) == ("post@acme.example", False)
    assert [s.sender_id for s in await world.senders().list()] == ["forms"]
    await world.senders().delete("forms")
    with pytest.raises(ItemNotFound):
        await world.senders().get("forms")


async def test_a_bad_sender_profile_is_refused_naming_each_field(world: World) -> None:
    with pytest.raises(InvalidInput) as refused:
        await world.senders().put("forms", {"mailbox": "not an address", "sendAs": "x@", "extra": 1})
    assert {p.field for p in refused.value.problems} == {"mailbox", "sendAs", "extra"}
    assert (await world.senders().get("forms")).mailbox == SENDER  # unchanged


async def test_a_delegated_tenant_cannot_have_a_sender(world: World) -> None:
    world.tenant = world.tenant.model_copy(update={"credential_mode": CredentialMode.DELEGATED})
    with pytest.raises(EditConflict, match=r"Mail\.Send application permission"):
        await world.senders().put("other", {"mailbox": SENDER})


# --- accepting a mail ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": [], "cc": [], "bcc": []}, ""),
        ({"to": ["megan at acme"]}, "to[0]"),
        ({"to": [MEGAN] * 501}, "to"),
        ({"subject": "x" * 256}, "subject"),
        ({"importance": "urgent"}, "importance"),
        ({"body": {"contentType": "rtf", "content": "x"}}, "body.contentType"),
        ({"idempotencyKey": ""}, "idempotencyKey"),
        (
            {
                "attachments": [
                    {"name": "setup.exe", "contentType": "application/octet-stream", "contentBase64": "TVo="}
                ]
            },
            "attachments[0].name",
        ),
        (
            {
                "attachments": [
                    {"name": "faktura.pdf", "contentType": "application/pdf", "contentBase64": b64(b"MZ\x90")}
                ]
            },
            "attachments[0].contentBase64",
        ),
        (
            {
                "attachments": [
                    {"name": "a.pdf", "contentType": "application/pdf", "contentBase64": "not base64!"}
                ]
            },
            "attachments[0].contentBase64",
        ),
        (
            {"attachments": [{"name": "a.pdf", "contentType": "pdf", "contentBase64": b64(PDF)}]},
            "attachments[0].contentType",
        ),
    ],
)
async def test_a_bad_mail_is_refused_and_nothing_is_kept(
    world: World, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await world.post(**change)
    assert field in {p.field for p in refused.value.problems}
    assert [r async for r in world.tables.repo(OutgoingMessage).list(TENANT)] == []
    assert world.queue.sent == []
    assert repr(world.documents) == "InMemoryDocumentStore(0 documents)"


async def test_the_size_limit_counts_files_as_exchange_does_base64_encoded(world: World) -> None:
    """3 MB of files is 4 MB as sent: over a 3 MB limit, and the message says why."""
    files = [{"name": "big.pdf", "contentType": "application/pdf", "contentBase64": b64(pdf(3 * MB - 1024))}]
    with pytest.raises(InvalidInput) as refused:
        await world.service(max_mb=3).submit(world.sender, world.body(attachments=files))
    [problem] = refused.value.problems
    assert problem.field == "attachments"
    assert "base64-encoded" in problem.detail
    assert "the limit is 3 MB" in problem.detail
    row, _ = await world.service(max_mb=4).submit(world.sender, world.body(attachments=files))
    assert row.status is OutgoingStatus.QUEUED


async def test_the_row_holds_no_content_and_the_view_no_addresses(world: World) -> None:
    row = await world.post()
    stored = json.dumps(row.model_dump(mode="json"))
    view = json.dumps(message_view(row))
    for secret in ("Kvittering", "Takk", MEGAN, b64(PDF)):
        assert secret not in stored
        assert secret not in view
    assert message_view(row)["status"] == "queued"
    assert message_view(row)["recipients"] == 1
    assert message_view(row)["attachments"] == [{"name": "kvittering.pdf", "size": len(PDF)}]


async def test_the_same_post_twice_is_one_mail(world: World) -> None:
    first, accepted = await world.service().submit(world.sender, world.body())
    again, accepted_again = await world.service().submit(world.sender, world.body())
    assert (accepted, accepted_again) == (True, False)
    assert again.message_id == first.message_id
    assert len(world.queue.sent) == 2  # queued again while it waits, in case the first was lost
    await world.drain()
    assert len(world.graph.sent_mail(SENDER)) == 1
    third, _ = await world.service().submit(world.sender, world.body())
    assert third.status is OutgoingStatus.SENT
    assert world.queue.sent == []  # sent: nothing to queue


async def test_two_posts_of_one_mail_at_once_keep_one_row_and_one_copy_of_its_content(world: World) -> None:
    (first, a), (second, b) = await asyncio.gather(
        world.service().submit(world.sender, world.body()),
        world.service().submit(world.sender, world.body()),
    )
    assert first.message_id == second.message_id
    assert sorted([a, b]) == [False, True]
    assert repr(world.documents) == "InMemoryDocumentStore(2 documents)"  # the mail and its PDF
    await world.drain()
    assert len(world.graph.sent_mail(SENDER)) == 1


async def test_a_key_reused_for_another_mail_is_a_conflict(world: World) -> None:
    await world.post()
    with pytest.raises(EditConflict, match="idempotencyKey"):
        await world.post(subject="Something else")


async def test_the_same_key_through_another_sender_is_another_mail(world: World) -> None:
    first = await world.post()
    other, _ = await world.senders().put("invoices", {"mailbox": SENDER})
    second, _ = await world.service().submit(other, world.body())
    assert second.message_id != first.message_id
    with pytest.raises(ItemNotFound):
        await world.service().get(other, first.message_id)


# --- the worker ----------------------------------------------------------------------------------


async def test_a_small_mail_goes_in_one_send_mail_and_the_host_hears_it(world: World) -> None:
    row = await world.post(cc=["kopi@example.org"], replyTo=["post@acme.example"], importance="high")
    await world.drain()
    [sent] = world.graph.sent_mail(SENDER)
    assert (sent.to, sent.subject, sent.attachment_names) == (
        (MEGAN, "kopi@example.org"),
        "Kvittering",
        ("kvittering.pdf",),
    )
    assert [op for op, _ in world.graph.calls if op in ("send_mail", "create_draft")] == ["send_mail"]
    done = await world.row(row.message_id)
    assert (done.status, done.sent_at, done.attempts) == (OutgoingStatus.SENT, NOW, 1)
    [(kind, data)] = await world.events()
    assert kind == "mail.sent"
    assert (data["messageId"], data["senderId"], data["path"], data["recipients"]) == (
        row.message_id,
        "forms",
        "sendMail",
        2,
    )
    assert "Kvittering" not in json.dumps(data)
    assert repr(world.documents) == "InMemoryDocumentStore(0 documents)"  # content forgotten once sent


async def test_send_mail_carries_what_the_host_asked_for(world: World) -> None:
    seen: list[OutgoingMail] = []

    class Recording(InMemoryGraph):
        async def send_mail(self, mailbox: str, mail: OutgoingMail) -> None:
            seen.append(mail)
            await super().send_mail(mailbox, mail)

    w = World(Recording())
    await w.setup(sendAs="post@acme.example", saveToSentItems=False)
    await w.post(bcc=["arkiv@acme.example"], replyTo=["post@acme.example"], importance="high")
    await w.drain()
    [mail] = seen
    assert (mail.from_address, mail.save_to_sent_items, mail.importance.value) == (
        "post@acme.example",
        False,
        "high",
    )
    assert (mail.bcc, mail.reply_to, mail.body_type.value) == (
        ("arkiv@acme.example",),
        ("post@acme.example",),
        "html",
    )
    assert mail.attachments[0].content == PDF


async def test_a_mail_with_a_file_over_3_mb_goes_as_a_draft_with_an_upload_session(world: World) -> None:
    big = pdf(5 * MB)
    files = [
        {"name": "stor.pdf", "contentType": "application/pdf", "contentBase64": b64(big)},
        {"name": "liten.pdf", "contentType": "application/pdf", "contentBase64": b64(PDF)},
    ]
    row = await world.post(attachments=files)
    await world.drain()
    [sent] = world.graph.sent_mail(SENDER)
    assert (sent.attachment_names, sent.attachment_sizes) == (("stor.pdf", "liten.pdf"), (5 * MB, len(PDF)))
    assert world.graph.upload_sessions(SENDER) == 1
    done = await world.row(row.message_id)
    assert done.status is OutgoingStatus.SENT
    assert done.draft_id is not None
    assert all(a.attached for a in done.attachments)
    [(kind, data)] = await world.events()
    assert (kind, data["path"]) == ("mail.sent", "draft")
    [kept] = await world.folder(SENDER, "SentItems")  # the sent draft, under its own id
    assert (kept.id, kept.is_draft) == (done.draft_id, False)
    assert await world.folder(SENDER, "Drafts") == []


async def test_the_draft_path_without_sent_items_removes_the_copy(world: World) -> None:
    w = World()
    await w.setup(saveToSentItems=False)
    await w.post(
        attachments=[
            {"name": "stor.pdf", "contentType": "application/pdf", "contentBase64": b64(pdf(4 * MB))}
        ]
    )
    await w.drain()
    assert len(w.graph.sent_mail(SENDER)) == 1
    assert await w.folder(SENDER, "SentItems") == []


async def test_a_file_added_but_not_recorded_is_not_added_twice(world: World) -> None:
    """The worker dies after Graph took a file but before the row says so: the retry finds the
    file on the draft by name and does not add it again."""

    class DiesAfterAttaching(InMemoryGraph):
        died = False

        async def add_message_attachment(self, mailbox: str, message_id: str, **file: Any) -> None:
            await super().add_message_attachment(mailbox, message_id, **file)
            if not self.died:
                self.died = True
                raise GraphUnavailable("the connection dropped", operation="add_message_attachment")

    w = World(DiesAfterAttaching())
    await w.setup()
    files = [
        {"name": "stor.pdf", "contentType": "application/pdf", "contentBase64": b64(pdf(4 * MB))},
        {"name": "kopi.pdf", "contentType": "application/pdf", "contentBase64": b64(PDF)},
        {"name": "kopi.pdf", "contentType": "application/pdf", "contentBase64": b64(PDF + b"2")},
    ]
    row = await w.post(attachments=files)
    [(tenant_id, message, _)] = w.queue.take()
    with pytest.raises(GraphUnavailable):
        await w.worker().run(tenant_id, message)
    assert (await w.row(row.message_id)).status is OutgoingStatus.QUEUED
    await w.worker().run(tenant_id, message, delivery=2)
    [sent] = w.graph.sent_mail(SENDER)
    assert sorted(sent.attachment_names) == ["kopi.pdf", "kopi.pdf", "stor.pdf"]
    assert [op for op, _ in w.graph.calls].count("create_draft") == 1


async def test_a_draft_sent_but_not_recorded_is_not_sent_again(world: World) -> None:
    """Graph sent the draft but its answer was lost: the retry sees the draft is no longer a
    draft and records it as sent, without a second send."""

    class LosesTheAnswer(InMemoryGraph):
        lost = False

        async def send_draft(self, mailbox: str, message_id: str) -> None:
            await super().send_draft(mailbox, message_id)
            if not self.lost:
                self.lost = True
                raise GraphUnavailable("no answer", operation="send_draft")

    w = World(LosesTheAnswer())
    await w.setup()
    row = await w.post(
        attachments=[
            {"name": "stor.pdf", "contentType": "application/pdf", "contentBase64": b64(pdf(4 * MB))}
        ]
    )
    [(tenant_id, message, _)] = w.queue.take()
    with pytest.raises(GraphUnavailable):
        await w.worker().run(tenant_id, message)
    await w.worker().run(tenant_id, message, delivery=2)
    assert len(w.graph.sent_mail(SENDER)) == 1
    assert [op for op, _ in w.graph.calls].count("send_draft") == 1
    assert (await w.row(row.message_id)).status is OutgoingStatus.SENT
    assert [k for k, _ in await w.events()] == ["mail.sent"]


async def test_a_draft_not_sent_yet_is_sent_on_the_retry(world: World) -> None:
    big = [{"name": "stor.pdf", "contentType": "application/pdf", "contentBase64": b64(pdf(4 * MB))}]
    row = await world.post(attachments=big)
    [(tenant_id, message, _)] = world.queue.take()
    # the draft is made and filled, then the send is answered 504: Graph did not send it
    original = world.graph.send_draft
    calls = 0

    async def flaky(mailbox: str, message_id: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise GraphUnavailable("gateway timeout", status=504, operation="send_draft")
        await original(mailbox, message_id)

    world.graph.send_draft = flaky  # type: ignore[method-assign]
    with pytest.raises(GraphUnavailable):
        await world.worker().run(tenant_id, message)
    await world.worker().run(tenant_id, message, delivery=2)
    assert calls == 2
    assert len(world.graph.sent_mail(SENDER)) == 1
    assert (await world.row(row.message_id)).status is OutgoingStatus.SENT


async def test_a_send_mail_without_an_answer_is_not_repeated(world: World) -> None:
    """sendMail returns nothing to look for: a send Graph never answered may have gone out, so
    the mail fails as outcome unknown instead of risking a second one."""

    class NoAnswer(InMemoryGraph):
        async def send_mail(self, mailbox: str, mail: OutgoingMail) -> None:
            await super().send_mail(mailbox, mail)
            raise GraphUnavailable("the connection dropped", operation="send_mail")

    w = World(NoAnswer())
    await w.setup()
    row = await w.post()
    await w.drain()
    failed = await w.row(row.message_id)
    assert (failed.status, failed.outcome_unknown) == (OutgoingStatus.FAILED, True)
    assert failed.fix is not None
    assert "Sent Items of " + SENDER in failed.fix
    [(kind, data)] = await w.events()
    assert (kind, data["outcomeUnknown"]) == ("mail.failed", True)
    await w.worker().run(TENANT, row.message_id, delivery=2)  # a redelivery changes nothing
    assert len(w.graph.sent_mail(SENDER)) == 1


async def test_a_worker_that_died_mid_send_leaves_the_outcome_unknown(world: World) -> None:
    row = await world.post()
    world.queue.take()
    started = (await world.row(row.message_id)).model_copy(
        update={"send_started_at": NOW, "lease_owner": "gone", "lease_until": NOW + LEASE}
    )
    await world.tables.repo(OutgoingMessage).save(started)
    world.clock.advance(LEASE + timedelta(seconds=1))
    await world.worker().run(TENANT, row.message_id, delivery=2)
    assert world.graph.sent_mail(SENDER) == []
    failed = await world.row(row.message_id)
    assert (failed.status, failed.outcome_unknown) == (OutgoingStatus.FAILED, True)


@pytest.mark.parametrize("status", [503, 429])
async def test_a_send_graph_refused_to_take_is_tried_again(world: World, status: int) -> None:
    row = await world.post()
    [(tenant_id, message, _)] = world.queue.take()
    error = (
        Throttled("throttled", retry_after=120, status=429, operation="send_mail")
        if status == 429
        else GraphUnavailable("unavailable", status=503, operation="send_mail")
    )
    world.graph.inject(SENDER, error)
    if status == 429:
        await world.worker().run(tenant_id, message)
        [(_, again, delay)] = world.queue.take()
        assert (again, delay) == (message, 120)  # after Retry-After, by the queue
    else:
        with pytest.raises(GraphUnavailable):  # the queue's own retry
            await world.worker().run(tenant_id, message)
    waiting = await world.row(row.message_id)
    assert (waiting.status, waiting.send_started_at, waiting.lease_owner) == (
        OutgoingStatus.QUEUED,
        None,
        None,
    )
    await world.worker().run(tenant_id, message, delivery=2)
    assert len(world.graph.sent_mail(SENDER)) == 1
    assert (await world.row(row.message_id)).status is OutgoingStatus.SENT


@pytest.mark.parametrize(
    ("error", "reason", "fix"),
    [
        (
            ConsentMissing(
                "admin consent missing", permission="Mail.Send", status=403, code="ErrorAccessDenied"
            ),
            "Mail.Send is not granted",
            "Grant the application permission Mail.Send",
        ),
        (
            ConsentMissing("denied", permission="Mail.Send", status=403, code="ErrorSendAsDenied"),
            "may not send as post@acme.example",
            "Send as",
        ),
        (TokenUnavailable("Entra ID refused the secret", aad_code="AADSTS7000222"), "refused", "expired"),
    ],
)
async def test_a_refusal_only_a_person_can_fix_fails_at_once_with_the_fix(
    error: GraphError, reason: str, fix: str
) -> None:
    w = World()
    await w.setup(sendAs="post@acme.example")
    row = await w.post(
        attachments=[
            {"name": "stor.pdf", "contentType": "application/pdf", "contentBase64": b64(pdf(4 * MB))}
        ]
    )
    w.graph.inject(SENDER, error)
    await w.drain()
    failed = await w.row(row.message_id)
    assert failed.status is OutgoingStatus.FAILED
    assert not failed.outcome_unknown
    assert reason in (failed.error or "")
    assert fix in (failed.fix or "")
    [(kind, data)] = await w.events()
    assert (kind, data["reason"], data["fix"]) == ("mail.failed", failed.error, failed.fix)
    assert w.queue.sent == []  # not retried
    assert repr(w.documents) == "InMemoryDocumentStore(0 documents)"


async def test_an_unknown_sender_mailbox_fails_with_the_fix() -> None:
    w = World()
    await w.setup()
    w.sender = (await w.senders().put("ghost", {"mailbox": "ghost@acme.example"}))[0]
    row = await w.post()
    await w.drain()
    failed = await w.row(row.message_id)
    assert failed.status is OutgoingStatus.FAILED
    assert "ghost@acme.example does not exist" in (failed.error or "")
    assert "PUT /api/v1/tenants/acme/mail-senders/ghost" in (failed.fix or "")


async def test_a_draft_given_up_is_deleted(world: World) -> None:
    row = await world.post(
        attachments=[
            {"name": "stor.pdf", "contentType": "application/pdf", "contentBase64": b64(pdf(4 * MB))}
        ]
    )
    [(tenant_id, message, _)] = world.queue.take()
    original = world.graph.add_message_attachment

    async def refuse(mailbox: str, message_id: str, **file: Any) -> None:
        raise ConsentMissing("denied", permission="Mail.ReadWrite", status=403)

    world.graph.add_message_attachment = refuse  # type: ignore[method-assign]
    await world.worker().run(tenant_id, message)
    world.graph.add_message_attachment = original  # type: ignore[method-assign]
    failed = await world.row(row.message_id)
    assert failed.status is OutgoingStatus.FAILED
    assert "more than 3 MB of files is sent as a draft" in (failed.error or "")
    assert "permission Mail.ReadWrite" in (failed.fix or "")
    assert await world.folder(SENDER, "Drafts") == []


async def test_graph_failing_on_the_last_delivery_fails_the_mail(world: World) -> None:
    row = await world.post()
    [(tenant_id, message, _)] = world.queue.take()
    world.graph.inject(SENDER, GraphUnavailable("down", status=503), times=MAX_DELIVERIES)
    for delivery in range(1, MAX_DELIVERIES):
        with pytest.raises(GraphUnavailable):
            await world.worker().run(tenant_id, message, delivery=delivery)
    await world.worker().run(tenant_id, message, delivery=MAX_DELIVERIES)
    failed = await world.row(row.message_id)
    assert failed.status is OutgoingStatus.FAILED
    assert "Graph kept failing" in (failed.error or "")
    assert [k for k, _ in await world.events()] == ["mail.failed"]


async def test_a_second_worker_waits_for_the_lease(world: World) -> None:
    row = await world.post()
    world.queue.take()
    held = (await world.row(row.message_id)).model_copy(
        update={"lease_owner": "other", "lease_until": NOW + timedelta(minutes=2)}
    )
    await world.tables.repo(OutgoingMessage).save(held)
    await world.worker().run(TENANT, row.message_id)
    assert world.graph.sent_mail(SENDER) == []
    [(_, again, delay)] = world.queue.take()
    assert again == row.message_id
    assert delay == pytest.approx(121)


async def test_a_sent_mail_is_not_sent_or_told_again(world: World) -> None:
    row = await world.post()
    await world.drain()
    await world.worker().run(TENANT, row.message_id, delivery=2)
    assert len(world.graph.sent_mail(SENDER)) == 1
    assert [k for k, _ in await world.events()] == ["mail.sent"]


async def test_a_tenant_switched_to_delegated_fails_the_mail_with_the_fix(world: World) -> None:
    row = await world.post()
    delegated = world.tenant.model_copy(update={"credential_mode": CredentialMode.DELEGATED})
    await world.tables.repo(Tenant).upsert(delegated)
    await world.drain()
    failed = await world.row(row.message_id)
    assert (failed.status, failed.error) == (OutgoingStatus.FAILED, DELEGATED_REASON)
    assert world.graph.calls == []


async def test_content_removed_by_retention_fails_the_mail_in_words(world: World) -> None:
    row = await world.post()
    await world.documents.delete(row.attachments[0].blob_name)
    await world.drain()
    failed = await world.row(row.message_id)
    assert failed.status is OutgoingStatus.FAILED
    assert "kvittering.pdf" in (failed.error or "")
    assert "no longer stored" in (failed.error or "")


async def test_mail_of_a_tenant_disabled_meanwhile_fails_instead_of_waiting_forever(world: World) -> None:
    row = await world.post()
    await world.tables.repo(Tenant).upsert(world.tenant.model_copy(update={"enabled": False}))
    await world.drain()
    failed = await world.row(row.message_id)
    assert (failed.status, failed.error) == (
        OutgoingStatus.FAILED,
        "The tenant was disabled before the mail was sent.",
    )
    assert '"enabled": true' in (failed.fix or "")
    assert world.graph.calls == []
