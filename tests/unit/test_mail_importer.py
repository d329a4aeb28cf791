"""Mail document import over memory tables, the real outbox, the fake Graph and the in-memory
document store: what each kind of mail ends as, crash safety at every step, bounded retries."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from core.graph.errors import BadRequest, ConsentMissing, GraphUnavailable, Throttled
from core.graph.fake import InMemoryGraph, SeedAttachment
from core.graph.model import AttachmentKind
from core.host import InMemoryDeliveryQueue, Outbox
from core.host.records import OutboxEntry
from core.host.store import OutboxStore
from core.mail.importer import (
    LEASE,
    MAX_MAIL_ATTEMPTS,
    ImportRequest,
    InMemoryImportQueue,
    MailboxFailed,
    MailImporter,
    fan_out,
)
from core.mail.staging import InMemoryDocumentStore
from core.store import memory_tables
from core.store.memory_table import MemoryTableStore
from core.store.records import (
    LedgerStatus,
    MailImport,
    MailImportState,
    MailLedgerEntry,
    SyncStatus,
    Tenant,
)
from tests.unit.calendar_world import Clock
from tests.unit.crash_points import TABLE_OPERATIONS, Boundaries, Killed

TENANT = "acme"
BOX = "invoices@acme.example"
PDF = b"%PDF-1.7 invoice 1001"


class World:
    def __init__(self) -> None:
        self.tables = memory_tables()
        self.graph = InMemoryGraph()
        self.graph.add_user(BOX, "Invoices")
        self.inbox = self.graph.add_mail_folder(BOX, "Inbox/Invoices")
        self.archive = self.graph.add_mail_folder(BOX, "Archive/Invoices")
        self.clock = Clock()
        self.documents = InMemoryDocumentStore(clock=self.clock)
        self.clock = Clock()
        self.outbox = Outbox(self.tables, InMemoryDeliveryQueue(), clock=self.clock)

    async def setup(self, **config: Any) -> MailImport:
        await self.tables.repo(Tenant).insert(Tenant(tenant_id=TENANT))
        return await self.tables.repo(MailImport).insert(
            MailImport(
                tenant_id=TENANT,
                import_id="invoices",
                mailbox=BOX,
                import_folder="Inbox/Invoices",
                import_folder_id=self.inbox.id,
                archive_folder="Archive/Invoices",
                archive_folder_id=self.archive.id,
                forward_to="accounts@acme.example",
                allowed_types=["pdf", "xml", "png"],
                max_size_bytes=10 * 1024 * 1024,
                **config,
            )
        )

    def importer(self, documents: Any = None, queue: InMemoryImportQueue | None = None) -> MailImporter:
        graph = self.graph

        class Graphs:
            async def gateway(self, tenant: Tenant) -> Any:
                return graph

        return MailImporter(
            self.tables, self.outbox, Graphs(), documents or self.documents, clock=self.clock, queue=queue
        )

    async def run(self, importer: MailImporter | None = None) -> Any:
        self.clock.advance(timedelta(seconds=1))
        return await (importer or self.importer()).run(ImportRequest(TENANT, "invoices"))

    def mail(self, subject: str, *attachments: SeedAttachment) -> str:
        return self.graph.deliver_mail(BOX, "Inbox/Invoices", subject, attachments=attachments).id

    async def events(self) -> list[dict[str, Any]]:
        return [
            {"type": e.type, "data": e.payload, "id": e.event_id}
            async for e in OutboxStore(self.tables).rows_after(TENANT, 0)
            if isinstance(e, OutboxEntry)
        ]

    def folder(self, folder_id: str) -> list[str]:
        return [m.subject for m in self.graph.messages_in(BOX, folder_id)]


@pytest.fixture
async def world() -> World:
    w = World()
    await w.setup()
    return w


def pdf(name: str = "invoice-1001.pdf", content: bytes = PDF) -> SeedAttachment:
    return SeedAttachment(name, "application/pdf", content)


async def test_each_kind_of_mail_ends_as_specified(world: World):
    logo = SeedAttachment("logo.png", "image/png", b"\x89PNG logo", is_inline=True, content_id="logo")
    eml = SeedAttachment(
        "Original invoice", "message/rfc822", b"Subject: hi\r\n\r\nbody", kind=AttachmentKind.ITEM
    )
    world.mail("Invoice 1001", pdf(), logo)
    world.mail("Only a logo", logo)
    world.mail("Forwarded invoice", eml)
    world.mail("A spreadsheet", SeedAttachment("costs.xlsx", "application/vnd.ms-excel", b"PK.."))
    world.mail("Nothing attached")

    run = await world.run()

    assert world.folder(world.inbox.id) == []
    assert sorted(world.folder(world.archive.id)) == sorted(
        ["Invoice 1001", "Only a logo", "Forwarded invoice", "A spreadsheet", "Nothing attached"]
    )
    events = await world.events()
    imported = {e["data"]["fileName"]: e["data"] for e in events if e["type"] == "document.imported"}
    assert set(imported) == {"invoice-1001.pdf", "Original invoice.eml"}
    invoice = imported["invoice-1001.pdf"]
    assert invoice["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert invoice["size"] == len(PDF)
    assert invoice["subject"] == "Invoice 1001"
    assert invoice["skipped"] == []  # the inline logo is not a document nor worth listing
    assert world.documents.read(invoice["downloadUrl"], world.clock()) == PDF
    assert imported["Original invoice.eml"]["contentType"] == "message/rfc822"
    forwarded = {e["data"]["subject"]: e["data"] for e in events if e["type"] == "mail.forwarded"}
    assert set(forwarded) == {"Only a logo", "A spreadsheet", "Nothing attached"}
    assert forwarded["A spreadsheet"]["skipped"][0]["name"] == "costs.xlsx"
    sent = world.graph.sent_mail(BOX)
    assert sorted(s.subject for s in sent) == ["FW: A spreadsheet", "FW: Nothing attached", "FW: Only a logo"]
    assert all(s.to == ("accounts@acme.example",) for s in sent)
    assert "costs.xlsx: file type not allowed" in next(
        s.comment for s in sent if s.subject == "FW: A spreadsheet"
    )
    assert run.counts["documents_imported"] == 2
    assert run.counts["mails_archived"] == 5
    assert run.counts["mails_forwarded"] == 3


async def test_a_download_url_stops_working_when_it_expires(world: World):
    world.mail("Invoice", pdf())
    await world.run()
    [event] = [e for e in await world.events() if e["type"] == "document.imported"]
    url = event["data"]["downloadUrl"]
    assert world.documents.read(url, world.clock()) == PDF
    with pytest.raises(PermissionError):
        world.documents.read(url, world.clock() + timedelta(days=8))


async def test_a_rerun_delivers_nothing_twice(world: World):
    world.mail("Invoice", pdf())
    await world.run()
    world.mail("Second invoice", pdf("invoice-1002.pdf", b"%PDF second"))
    await world.run()
    await world.run()
    imported = [e["data"]["fileName"] for e in await world.events() if e["type"] == "document.imported"]
    assert imported == ["invoice-1001.pdf", "invoice-1002.pdf"]


class Crash(BaseException):
    """The process dies: nothing in the importer handles it, its lease stays until it expires."""


@pytest.mark.parametrize("step", ["staged", "announced", "forwarded", "moved"])
async def test_r2_a_crash_after_each_named_step_then_a_rerun_delivers_each_document_once(
    world: World, step: str, monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, Any], None]
):
    """R2: crash right after a step completed (its effect done, and recorded where the step
    records it), then run again. Every boundary between the steps, including inside them:
    `test_r2_mail_import_killed_at_every_step_boundary_…` below."""
    world.mail("Invoice", pdf(), pdf("invoice-1001-copy.pdf", b"%PDF copy"))
    world.mail("No attachment")
    importer = world.importer()
    armed = {"on": True}

    def crash_after(obj: Any, name: str) -> None:
        real = getattr(obj, name)

        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            result = await real(*args, **kwargs)
            if armed["on"]:
                armed["on"] = False
                raise Crash(name)
            return result

        monkeypatch.setattr(obj, name, wrapped)

    if step == "staged":
        crash_after(world.documents, "stage")
    elif step == "announced":
        crash_after(world.outbox, "emit_many")
    elif step == "forwarded":
        # after the forward's draft was sent and the ledger recorded it (the boundaries between,
        # the draft made and the send accepted: `test_r2_mail_import_killed_…` below)
        real_step = importer._step

        async def step_then_crash(config: Any, message_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
            result = await real_step(config, message_id, name, *args, **kwargs)
            if name == "forward" and args[0] is LedgerStatus.DONE and armed["on"]:
                armed["on"] = False
                raise Crash("forwarded")
            return result

        monkeypatch.setattr(importer, "_step", step_then_crash)
    else:
        crash_after(world.graph, "move_message")
    with pytest.raises(Crash):
        await world.run(importer)
    armed["on"] = False
    world.clock.advance(LEASE)  # the dead worker's lease runs out
    await world.run(importer)

    events = await world.events()
    imported = sorted(e["data"]["fileName"] for e in events if e["type"] == "document.imported")
    assert imported == ["invoice-1001-copy.pdf", "invoice-1001.pdf"]
    assert sorted(world.folder(world.archive.id)) == ["Invoice", "No attachment"]
    assert world.folder(world.inbox.id) == []
    forwards = [s for s in world.graph.sent_mail(BOX) if s.kind == "forward"]
    record_property("operations", 2)
    record_property("crashes_injected", 1)
    record_property("lost", len({"invoice-1001.pdf", "invoice-1001-copy.pdf"} - set(imported)))
    record_property("duplicated", len(imported) - len(set(imported)) + max(0, len(forwards) - 1))
    assert len(forwards) == 1


async def test_graph_faults_mid_run_fail_the_run_and_the_retry_completes_it(world: World):
    for n in range(4):
        world.mail(f"Invoice {n}", pdf(f"invoice-{n}.pdf", f"%PDF {n}".encode()))
    world.graph.inject(BOX, GraphUnavailable("503 from Graph", status=503), times=1)
    with pytest.raises(GraphUnavailable):
        await world.run()
    await world.run()
    imported = sorted(e["data"]["fileName"] for e in await world.events() if e["type"] == "document.imported")
    assert imported == [f"invoice-{n}.pdf" for n in range(4)]
    assert world.folder(world.inbox.id) == []


async def _forward_row(world: World) -> MailLedgerEntry:
    [row] = [r async for r in world.tables.repo(MailLedgerEntry).list(TENANT) if r.step == "forward"]
    return row


async def test_a_forward_goes_as_a_draft_recorded_before_it_is_sent(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The draft's id is in the ledger (pending) when Graph is asked to send it, and the row says
    done after; the sent draft is the forward in Sent Items, with the explanation as comment."""
    world.mail("Nothing attached")
    seen: list[tuple[LedgerStatus, str | None]] = []
    real_send = world.graph.send_draft

    async def send(mailbox: str, message_id: str) -> None:
        row = await _forward_row(world)
        seen.append((row.status, row.draft_id))
        assert row.draft_id == message_id
        await real_send(mailbox, message_id)

    monkeypatch.setattr(world.graph, "send_draft", send)
    await world.run()
    [(status, draft_id)] = seen
    assert status is LedgerStatus.PENDING
    row = await _forward_row(world)
    assert (row.status, row.draft_id) == (LedgerStatus.DONE, draft_id)
    assert draft_id is not None
    sent = await world.graph.get_message(BOX, draft_id)
    assert not sent.is_draft
    [forward] = world.graph.sent_mail(BOX)
    assert (forward.kind, forward.subject, forward.to) == (
        "forward",
        "FW: Nothing attached",
        ("accounts@acme.example",),
    )
    assert "without an attachment to register" in forward.comment


async def test_a_recorded_forward_draft_deleted_in_outlook_is_made_again_and_sent_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The draft was made and recorded, the worker died before sending it, and a person deleted
    it from Drafts: it never went, so the rerun makes a new one and the mail is forwarded once."""
    world.mail("Nothing attached")
    importer = world.importer()

    async def died(mailbox: str, message_id: str) -> None:
        raise Crash("before the send")

    with monkeypatch.context() as patch:
        patch.setattr(world.graph, "send_draft", died)
        with pytest.raises(Crash):
            await world.run(importer)
    first = (await _forward_row(world)).draft_id
    assert first is not None
    await world.graph.delete_message(BOX, first)
    world.clock.advance(LEASE)
    await world.run(importer)
    row = await _forward_row(world)
    assert row.status is LedgerStatus.DONE
    assert row.draft_id not in (None, first)
    assert [s.subject for s in world.graph.sent_mail(BOX)] == ["FW: Nothing attached"]
    assert [e["data"]["subject"] for e in await world.events() if e["type"] == "mail.forwarded"] == [
        "Nothing attached"
    ]


async def test_a_mail_given_up_leaves_no_unsent_forward_draft(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph refuses every send of the forward's draft: the mail is tried MAX_MAIL_ATTEMPTS
    times with the one draft (never a second), then reported, and the draft deleted."""
    world.mail("Nothing attached")

    async def refused(mailbox: str, message_id: str) -> None:
        raise BadRequest("send_draft: 400 ErrorInvalidRecipients", mailbox=mailbox, status=400)

    monkeypatch.setattr(world.graph, "send_draft", refused)
    for _ in range(MAX_MAIL_ATTEMPTS + 1):
        await world.run()
    drafts = world.graph.messages_in(BOX, (await world.graph.resolve_folder_path(BOX, "Drafts")).id)
    assert drafts == []
    assert world.graph.sent_mail(BOX) == []
    assert [c for c in world.graph.calls if c[0] == "create_forward"] == [("create_forward", BOX)]
    assert world.folder(world.inbox.id) == ["Nothing attached"]
    [failed] = [e["data"] for e in await world.events() if e["type"] == "mail.import_failed"]
    assert failed["attempts"] == MAX_MAIL_ATTEMPTS
    assert [e for e in await world.events() if e["type"] == "mail.forwarded"] == []


async def test_a_mail_that_keeps_failing_is_left_in_place_and_reported_once(world: World, monkeypatch):
    world.mail("Broken", pdf())
    world.mail("Fine", pdf("fine.pdf", b"%PDF fine"))
    real = world.graph.stream_attachment

    def broken(mailbox: str, message_id: str, attachment_id: str, **kw: Any) -> Any:
        if world.graph._message(world.graph._box(mailbox), message_id, "x", mailbox).subject == "Broken":
            raise ValueError("unreadable attachment")
        return real(mailbox, message_id, attachment_id, **kw)

    monkeypatch.setattr(world.graph, "stream_attachment", broken)
    for _ in range(MAX_MAIL_ATTEMPTS + 2):
        await world.run()
    assert world.folder(world.inbox.id) == ["Broken"]
    assert world.folder(world.archive.id) == ["Fine"]
    failed = [e["data"] for e in await world.events() if e["type"] == "mail.import_failed"]
    assert len(failed) == 1
    assert failed[0]["attempts"] == MAX_MAIL_ATTEMPTS
    assert "ValueError" in failed[0]["error"]
    rows = [r async for r in world.tables.repo(MailLedgerEntry).list(TENANT) if r.step == "failure"]
    assert [r.attempts for r in rows] == [MAX_MAIL_ATTEMPTS]


async def test_a_failing_mailbox_fails_the_run_in_plain_words_and_notifies_once(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    await world.tables.repo(MailImport).upsert(
        (await world.tables.repo(MailImport).get(*MailImport.key(TENANT, "invoices"))).model_copy(  # type: ignore[union-attr]
            update={"notify_to": "it@acme.example", "etag": None}
        )
    )
    world.mail("Invoice", pdf())

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise ConsentMissing("list_messages: admin consent missing for Mail.ReadWrite (HTTP 403)")

    monkeypatch.setattr(world.graph, "list_messages", refused)
    for _ in range(2):
        with pytest.raises(MailboxFailed, match=r"Mail\.ReadWrite"):
            await world.run()
    state = await world.tables.repo(MailImportState).get(*MailImportState.key(TENANT, "invoices"))
    assert state is not None
    assert (state.status, state.consecutive_failures) == (SyncStatus.FAILED, 2)
    notes = [s for s in world.graph.sent_mail(BOX) if s.kind == "send"]
    assert [n.to for n in notes] == [("it@acme.example",)]
    assert world.folder(world.inbox.id) == ["Invoice"]  # nothing lost


async def test_a_folder_gone_fails_the_run_naming_it(world: World):
    await world.tables.repo(MailImport).upsert(
        (await world.tables.repo(MailImport).get(*MailImport.key(TENANT, "invoices"))).model_copy(  # type: ignore[union-attr]
            update={"import_folder_id": "no-such-folder", "etag": None}
        )
    )
    with pytest.raises(MailboxFailed, match="Inbox/Invoices"):
        await world.run()


async def test_large_and_disallowed_files_are_skipped_with_reasons(world: World):
    await world.tables.repo(MailImport).upsert(
        (await world.tables.repo(MailImport).get(*MailImport.key(TENANT, "invoices"))).model_copy(  # type: ignore[union-attr]
            update={"max_size_bytes": 10, "etag": None}
        )
    )
    world.mail("Too big", pdf(), SeedAttachment("notes.txt", "text/plain", b"x"))
    await world.run()
    [forwarded] = [e["data"] for e in await world.events() if e["type"] == "mail.forwarded"]
    reasons = {s["name"]: s["reason"] for s in forwarded["skipped"]}
    assert reasons["invoice-1001.pdf"] == "larger than 0 MB" or reasons["invoice-1001.pdf"].startswith(
        "larger"
    )
    assert reasons["notes.txt"].startswith("file type not allowed")


async def test_the_timer_queues_each_enabled_import(world: World):
    await world.tables.repo(MailImport).insert(
        MailImport(
            tenant_id=TENANT,
            import_id="paused",
            mailbox=BOX,
            import_folder="x",
            import_folder_id="x",
            archive_folder="y",
            archive_folder_id="y",
            forward_to="a@acme.example",
            enabled=False,
        )
    )
    queue = InMemoryImportQueue()
    run = await fan_out(world.tables, queue, clock=world.clock)
    assert [(r.tenant_id, r.import_id) for r in queue.sent] == [(TENANT, "invoices")]
    assert run.counts == {"imports_queued": 1}


def test_requests_round_trip_and_bad_ones_are_refused():
    request = ImportRequest(TENANT, "invoices", run_id="r" * 32, reason="manual", attempt=1)
    assert ImportRequest.parse(request.to_message()) == request
    for bad in ("", "[]", '{"tenant_id": "a"}', '{"tenant_id": "a", "import_id": "b", "reason": "x"}'):
        with pytest.raises(ValueError, match="mail-import message"):
            ImportRequest.parse(bad)


@pytest.mark.parametrize("name", ["report.", "..", " ", "a/b\\c?.pdf", "x" * 300 + ".pdf", "faktura æøå.pdf"])
def test_every_file_name_gives_a_blob_name_the_store_accepts(name: str):
    from core.mail.importer import blob_name
    from core.mail.staging import validate_name

    assert validate_name(blob_name(TENANT, BOX, "AAMk/+msg=", "AAMk/+att=", name))


async def test_a_request_that_finds_a_dead_workers_lease_comes_back_when_it_runs_out(world: World):
    world.mail("Invoice", pdf())
    queue = InMemoryImportQueue()
    importer = world.importer(queue=queue)
    state = MailImportState(
        tenant_id=TENANT,
        import_id="invoices",
        lease_owner="dead",
        lease_until=world.clock() + timedelta(minutes=5),
    )
    await world.tables.repo(MailImportState).insert(state)
    run = await world.run(importer)
    assert run.counts == {"coalesced": 1}
    [follow_up] = queue.sent
    assert (follow_up.attempt, follow_up.run_id) == (1, None)
    world.clock.advance(timedelta(minutes=5))
    await importer.run(follow_up)
    assert world.folder(world.archive.id) == ["Invoice"]


async def test_an_attachment_streaming_past_the_limit_is_not_staged(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    world.mail("Liar", pdf())
    real = world.graph.stream_attachment

    async def longer(*args: Any, **kwargs: Any) -> Any:
        async for chunk in real(*args, **kwargs):
            yield chunk
        for _ in range(11):
            yield b"x" * (1024 * 1024)  # 11 MiB more than Graph listed: past the 10 MiB limit

    monkeypatch.setattr(world.graph, "stream_attachment", longer)
    run = await world.run()
    assert run.counts["mails_failed"] == 1
    assert [e for e in await world.events() if e["type"] == "document.imported"] == []
    [failure] = [r async for r in world.tables.repo(MailLedgerEntry).list(TENANT) if r.step == "failure"]
    assert "TooLarge" in (failure.error or "")


async def test_a_long_retry_after_re_queues_the_request_instead_of_failing_it(world: World):
    world.mail("Invoice", pdf())
    queue = InMemoryImportQueue()
    importer = world.importer(queue=queue)
    world.graph.inject(BOX, Throttled("429 MailboxConcurrency", retry_after=120.0), times=1)
    await importer.run_queued(ImportRequest(TENANT, "invoices"))
    [again] = queue.sent
    assert again.attempt == 1
    world.clock.advance(timedelta(minutes=2))
    await importer.run_queued(again)
    assert world.folder(world.archive.id) == ["Invoice"]
    world.graph.inject(BOX, Throttled("429", retry_after=2.0), times=1)
    world.mail("Another", pdf("b.pdf", b"%PDF b"))
    with pytest.raises(Throttled):  # short waits are the queue's own retry
        await importer.run_queued(ImportRequest(TENANT, "invoices"))


# --- R2: killed at every step boundary ----------------------------------------------------------

# The boundary Graph's one-shot `forward` left open: Graph accepted the forward (now: the send of
# the forward's draft) and the process died before the ledger recorded it. The draft's id, recorded
# before the send, lets the rerun see that it went (tested on its own below).
FORWARD_ACCEPTED = "graph.send_draft"
LOGO = SeedAttachment("logo.png", "image/png", b"\x89PNG logo", is_inline=True, content_id="logo")
DOCUMENTS = {"invoice-1.pdf": b"%PDF invoice one", "invoice-2.pdf": b"%PDF invoice two"}
MAILS = {"Two invoices": "archived", "Nothing attached": "forwarded", "A spreadsheet": "forwarded"}


async def mail_world() -> World:
    world = World()
    await world.setup()
    world.mail("Two invoices", *(pdf(name, data) for name, data in DOCUMENTS.items()), LOGO)
    world.mail("Nothing attached")
    world.mail("A spreadsheet", SeedAttachment("costs.xlsx", "application/vnd.ms-excel", b"PK.."))
    return world


def instrument_mail(world: World, boundaries: Boundaries, patch: pytest.MonkeyPatch) -> dict[str, int]:
    """Every I/O the importer does is a boundary; returns Graph moves counted per mail id."""
    for operation in TABLE_OPERATIONS:
        boundaries.wrap(patch, MemoryTableStore, operation, lambda store: f"table {store.name}")
    moves: dict[str, int] = {}
    real_move = world.graph.move_message

    async def counted_move(mailbox: str, message_id: str, destination_folder_id: str) -> Any:
        moved = await real_move(mailbox, message_id, destination_folder_id)
        moves[message_id] = moves.get(message_id, 0) + 1
        return moved

    patch.setattr(world.graph, "move_message", counted_move)
    for name in ("_list_messages", "list_attachments", "_stream_attachment", "move_message"):
        boundaries.wrap(patch, world.graph, name, f"graph.{name.lstrip('_')}")
    for name in ("create_forward", "get_message", "delete_message"):
        boundaries.wrap(patch, world.graph, name, f"graph.{name}")
    boundaries.wrap(patch, world.graph, "send_draft", FORWARD_ACCEPTED)
    boundaries.wrap(patch, world.documents, "stage", "documents.stage")
    boundaries.wrap(patch, world.documents, "download_url", "documents.download_url")
    boundaries.wrap(patch, InMemoryDeliveryQueue, "nudge", "queue.nudge")
    return moves


async def mail_problems(world: World, moves: dict[str, int]) -> tuple[list[str], int, int]:
    """What breaks R2 after the rerun (empty: nothing) — every document delivered exactly once,
    every mail archived or forwarded once, none lost — and the figures: (problems, lost,
    duplicated), counting documents and mails."""
    problems: list[str] = []
    events = await world.events()
    imported = [e["data"] for e in events if e["type"] == "document.imported"]
    names = [d["fileName"] for d in imported]
    if sorted(names) != sorted(DOCUMENTS):
        problems.append(f"documents announced: {sorted(names)}")
    for document in imported:
        content = world.documents.read(document["downloadUrl"], world.clock())
        if (
            content != DOCUMENTS.get(document["fileName"])
            or document["sha256"] != hashlib.sha256(content).hexdigest()
        ):
            problems.append(f"{document['fileName']}: the staged bytes are not the attachment's")
    forwarded = sorted(e["data"]["subject"] for e in events if e["type"] == "mail.forwarded")
    expected_forwards = sorted(s for s, fate in MAILS.items() if fate == "forwarded")
    if forwarded != expected_forwards:
        problems.append(f"mail.forwarded events: {forwarded}")
    sent = sorted(s.subject for s in world.graph.sent_mail(BOX) if s.kind == "forward")
    if sent != [f"FW: {s}" for s in expected_forwards]:
        problems.append(f"forwarded by Graph: {sent}")
    left = world.folder(world.inbox.id)
    if left != []:
        problems.append(f"left in the import folder: {left}")
    if sorted(world.folder(world.archive.id)) != sorted(MAILS):
        problems.append(f"archived: {world.folder(world.archive.id)}")
    if sorted(moves.values()) != [1] * len(MAILS):
        problems.append(f"Graph moves per mail: {sorted(moves.values())}")
    lost = len(set(DOCUMENTS) - set(names)) + len(left)
    duplicated = (len(names) - len(set(names))) + (len(sent) - len(set(sent)))
    duplicated += sum(n - 1 for n in moves.values() if n > 1)
    return problems, lost, duplicated


async def mail_boundaries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    world = await mail_world()
    with monkeypatch.context() as patch:
        boundaries = Boundaries()
        moves = instrument_mail(world, boundaries, patch)
        await world.run(world.importer())
    assert (await mail_problems(world, moves))[0] == []  # the unkilled run does it all, once
    return boundaries.seen


async def kill_and_rerun(
    monkeypatch: pytest.MonkeyPatch, at: int
) -> tuple[str | None, tuple[list[str], int, int]]:
    """Kill the import after boundary `at`, rerun it once the dead worker's lease ran out:
    (the boundary it died after, `mail_problems`)."""
    world = await mail_world()
    moves: dict[str, int] = {}
    with monkeypatch.context() as patch:
        boundaries = Boundaries(kill_at=at)
        counted = instrument_mail(world, boundaries, patch)
        with pytest.raises(Killed):
            await world.run(world.importer())
        moves.update(counted)
        # the rerun's moves are counted too: the counter outlives the dead worker
        patch.undo()
        real_move = world.graph.move_message

        async def counted_move(mailbox: str, message_id: str, destination_folder_id: str) -> Any:
            moved = await real_move(mailbox, message_id, destination_folder_id)
            moves[message_id] = moves.get(message_id, 0) + 1
            return moved

        patch.setattr(world.graph, "move_message", counted_move)
        world.clock.advance(LEASE)  # the dead worker's lease runs out
        rerun = await world.run(world.importer())
        assert rerun is not None
    return boundaries.killed, await mail_problems(world, moves)


async def test_r2_mail_import_killed_at_every_step_boundary_then_rerun_delivers_every_document_exactly_once(
    monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, Any], None]
) -> None:
    """R2: the import of three mails (two PDFs and a signature logo; nothing attached; only a
    disallowed file) killed right after each of its step boundaries — every table read and
    write (lease, ledger, outbox, runs), every Graph call (list, attachments, each stream, the
    forward's draft made, move), each document staged and each download URL, each queue nudge —
    then rerun once the dead worker's lease ran out → every document delivered exactly once,
    every mail archived or forwarded once, none lost. The boundary right after Graph accepted a
    forward's send (the window Graph's one-shot forward left open) is tested on its own below."""
    labels = await mail_boundaries(monkeypatch)
    assert {"graph.list_messages", "graph.stream_attachment", "documents.stage", FORWARD_ACCEPTED} <= set(
        labels
    )
    problems: dict[str, list[str]] = {}
    crashes = lost = duplicated = 0
    for at, label in enumerate(labels, start=1):
        if label == FORWARD_ACCEPTED:
            continue
        killed, (found, missing, repeated) = await kill_and_rerun(monkeypatch, at)
        crashes += 1
        lost += missing
        duplicated += repeated
        assert killed == label, "the import is not deterministic"
        if found:
            problems[f"{at:03d} after {label}"] = found
    record_property("operations", len(labels))
    record_property("step_boundaries", len(labels))
    record_property("crashes_injected", crashes)
    record_property("mails", len(MAILS) * crashes)
    record_property("documents", len(DOCUMENTS) * crashes)
    record_property("lost", lost)
    record_property("duplicated", duplicated)
    assert problems == {}


async def test_r2_mail_import_killed_right_after_graph_accepted_a_forward_then_rerun_forwards_it_once(
    monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, Any], None]
) -> None:
    """R2 at the forward boundaries: killed right after Graph accepted each forward, before the
    ledger recorded it, then rerun → every mail forwarded once."""
    labels = await mail_boundaries(monkeypatch)
    windows = [at for at, label in enumerate(labels, start=1) if label == FORWARD_ACCEPTED]
    assert len(windows) == 2  # one per mail without a document
    problems: dict[str, list[str]] = {}
    lost = duplicated = 0
    for at in windows:
        killed, (found, missing, repeated) = await kill_and_rerun(monkeypatch, at)
        assert killed == FORWARD_ACCEPTED
        lost += missing
        duplicated += repeated
        if found:
            problems[f"{at:03d} after {killed}"] = found
    record_property("operations", len(labels))
    record_property("step_boundaries", len(windows))
    record_property("crashes_injected", len(windows))
    record_property("lost", lost)
    record_property("duplicated", duplicated)
    assert problems == {}
