"""Mail document import end to end on the local stack: the real `function_app` on the local
Functions host ("Run import" → `mail-import` queue → worker), Azurite (tables, queues and blobs:
the staged documents and their SAS download URLs), and the Graph emulator's mailboxes over HTTPS
with the real azure-identity and msgraph-sdk clients. Mail arrives and is read back through the
emulator's own store (what a person sees in Outlook); the host reads the event feed and
downloads each document from its URL with plain HTTP, as a host would.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from core.errors import StoreUnavailable
from core.graph.gateway import GraphApiGateway
from core.host import Outbox
from core.mail.importer import MailImporter
from core.mail.staging import AzureDocumentStore
from core.store.records import LedgerStatus, MailLedgerEntry
from core.store.repository import Repository
from devtools.graph_emulator.mail_ops import file, item
from tests.integration.bridge_api import api_env  # noqa: F401 - fixture
from tests.integration.test_calendar_sync_down import (  # noqa: F401 - fixtures
    Bridge,
    eventually,
    graph,
    start_bridge,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 400  # ~100 KB
LOGO = b"\x89PNG\r\n\x1a\n" + b"logo" * 100
MAIL_PERMISSIONS = ("Mail.ReadWrite", "Mail.Send")


async def setup_import(bridge: Bridge, **fields: Any) -> tuple[str, Any]:
    """The invoices mailbox with its folders, the app allowed to use mail, and the import."""
    outlook = bridge.outlook
    bridge.graph.grant(outlook.tenant_id, outlook.client_id, *MAIL_PERMISSIONS)
    box = outlook.mailbox("invoices")
    mail = bridge.graph.module("mail").mail
    mail.ensure_folder_path(box, "Inbox/Invoices")
    mail.ensure_folder_path(box, "Archive/Invoices")
    body = {
        "mailbox": box,
        "importFolder": "Inbox/Invoices",
        "archiveFolder": "Archive/Invoices",
        "forwardTo": "accounts@customer.example",
        **fields,
    }
    reply = await bridge.call("PUT", "/mail-imports/invoices", json_body=body)
    assert reply.status == 201, reply.text
    return box, mail


async def run_import(bridge: Bridge, *, expect: str = "succeeded") -> dict[str, Any]:
    reply = await bridge.call("POST", "/mail-imports/invoices/run")
    assert reply.status == 202, reply.text
    run_id = reply.body["runId"]

    async def ended() -> dict[str, Any] | None:
        runs = await bridge.call("GET", "/runs", params={"runId": run_id})
        found = [r for r in runs.body["runs"] if r["status"] in ("succeeded", "failed")]
        return found[0] if found and (found[0]["status"] == expect or expect == "any") else None

    run: dict[str, Any] = await eventually(ended, within=60, what=f"the import run to end {expect}")
    await bridge.read_feed()
    return run


def subjects(mail: Any, box: str, folder: str) -> list[str]:
    return sorted(m.subject for m in mail.messages(box, folder))


async def download(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read()


async def test_each_kind_of_mail_ends_as_specified_and_documents_download_until_their_url_expires(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN mails with a PDF (and a signature logo), with only an inline logo, with an attached
    e-mail, with a disallowed type, and with nothing attached
    WHEN the host runs the import
    THEN the PDF and the attached e-mail (as .eml) are announced, each downloadable from its URL
    with the announced sha256; the other three are forwarded with an explanation; all five are
    archived; the URL stops working when it expires; a second run changes nothing."""
    async with start_bridge(MAIL_DOCUMENT_URL_SECONDS="6") as bridge:
        box, mail = await setup_import(bridge)
        logo = file("logo.png", LOGO, "image/png", inline=True, content_id="logo")
        mail.deliver_mail(
            box,
            "Inbox/Invoices",
            subject="Invoice 1001",
            attachments=[file("invoice-1001.pdf", PDF, "application/pdf"), logo],
        )
        mail.deliver_mail(
            box, "Inbox/Invoices", subject="Only a logo", body="<img src='cid:logo'>", attachments=[logo]
        )
        mail.deliver_mail(
            box,
            "Inbox/Invoices",
            subject="Fwd: the original",
            attachments=[
                item(
                    {
                        "subject": "Original invoice mail",
                        "body": {"contentType": "text", "content": "see attached"},
                    }
                )
            ],
        )
        mail.deliver_mail(
            box,
            "Inbox/Invoices",
            subject="A spreadsheet",
            attachments=[file("costs.xlsx", b"PK\x03\x04", "application/vnd.ms-excel")],
        )
        mail.deliver_mail(box, "Inbox/Invoices", subject="Nothing attached", body="hello")

        run = await run_import(bridge)
        assert run["counts"]["documents_imported"] == 2
        assert run["counts"]["mails_archived"] == 5
        assert subjects(mail, box, "Inbox/Invoices") == []
        assert len(subjects(mail, box, "Archive/Invoices")) == 5

        imported = {e["data"]["fileName"]: e["data"] for e in bridge.feed if e["type"] == "document.imported"}
        assert set(imported) == {"invoice-1001.pdf", "Original invoice mail.eml"}
        for document in imported.values():
            status, content = await download(document["downloadUrl"])
            assert status == 200
            assert hashlib.sha256(content).hexdigest() == document["sha256"]
            assert len(content) == document["size"]
        assert (await download(imported["invoice-1001.pdf"]["downloadUrl"]))[1] == PDF
        assert (
            b"Original invoice mail"
            in (await download(imported["Original invoice mail.eml"]["downloadUrl"]))[1]
        )
        pdf = imported["invoice-1001.pdf"]
        assert (pdf["subject"], pdf["mailbox"], pdf["contentType"]) == (
            "Invoice 1001",
            box,
            "application/pdf",
        )
        assert all(pdf[name] for name in ("internetMessageId", "receivedAt", "from"))

        forwarded = {e["data"]["subject"]: e["data"] for e in bridge.feed if e["type"] == "mail.forwarded"}
        assert set(forwarded) == {"Only a logo", "A spreadsheet", "Nothing attached"}
        assert forwarded["A spreadsheet"]["skipped"][0]["name"] == "costs.xlsx"
        sent = [s for s in mail.sent_mail(box) if s.kind == "forward"]
        assert sorted(s.record.subject for s in sent) == [
            "FW: A spreadsheet",
            "FW: Nothing attached",
            "FW: Only a logo",
        ]
        assert all(s.recipients == ["accounts@customer.example"] for s in sent)
        assert any("costs.xlsx: file type not allowed" in s.comment for s in sent)

        await asyncio.sleep(7)  # past the URL's lifetime
        assert (await download(pdf["downloadUrl"]))[0] == 403

        events = len(bridge.feed)
        quiet = await run_import(bridge)
        assert "documents_imported" not in quiet["counts"]
        assert len(bridge.feed) == events


async def test_graph_faults_mid_run_complete_on_retry_and_lose_nothing(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN six invoices, and Graph failing mid-run (a 503 on an attachment's bytes, a
    connection dropped after a move, throttling on a list)
    THEN the failed run is retried by the queue and every document is announced exactly once,
    every mail archived once."""
    async with start_bridge() as bridge:
        box, mail = await setup_import(bridge)
        for n in range(6):
            data = f"%PDF invoice {n}".encode() * 50
            mail.deliver_mail(
                box,
                "Inbox/Invoices",
                subject=f"Invoice {n}",
                attachments=[file(f"invoice-{n}.pdf", data, "application/pdf")],
            )
        bridge.graph.add_fault("status", status=503, count=4, mailbox=box, path=r"/\$value$")
        bridge.graph.add_fault("drop_after", count=1, mailbox=box, path=r"/move$")
        bridge.graph.add_fault("status", status=429, retry_after=1, count=1, mailbox=box, path=r"/messages$")

        await run_import(bridge, expect="any")

        async def all_archived() -> bool | None:
            return len(subjects(mail, box, "Archive/Invoices")) == 6 or None

        await eventually(all_archived, within=90, what="every mail archived after the queue's retries")
        await asyncio.sleep(1)
        await bridge.read_feed()
        imported = sorted(e["data"]["fileName"] for e in bridge.feed if e["type"] == "document.imported")
        assert imported == [f"invoice-{n}.pdf" for n in range(6)]
        assert subjects(mail, box, "Inbox/Invoices") == []


async def test_a_failing_mailbox_fails_its_run_in_plain_words(start_bridge: Callable[..., Any]) -> None:
    """GIVEN the import's folder deleted in Outlook
    THEN the run fails naming the folder, and GET …/mail-imports/{id} shows it."""
    async with start_bridge() as bridge:
        box, mail = await setup_import(bridge, notifyTo="it@customer.example")
        folder = mail.resolve_folder(box, "Inbox/Invoices")
        mail.mailbox(box).folders.pop(folder.key)  # deleted in Outlook
        run = await run_import(bridge, expect="failed")
        assert "Inbox/Invoices" in run["error"]
        state = await bridge.call("GET", "/mail-imports/invoices")
        assert state.body["lastRun"]["status"] == "failed"
        assert "Inbox/Invoices" in state.body["lastRun"]["error"]
        notes = [s for s in mail.sent_mail(box) if s.kind == "send"]
        assert [n.recipients for n in notes] == [["it@customer.example"]]


async def test_the_import_api_validates_folders_against_the_mailbox(start_bridge: Callable[..., Any]) -> None:
    async with start_bridge() as bridge:
        box, _ = await setup_import(bridge)
        bad = await bridge.call(
            "PUT",
            "/mail-imports/other",
            json_body={
                "mailbox": box,
                "importFolder": "Inbox/Nope",
                "archiveFolder": "Archive/Invoices",
                "forwardTo": "a@b.example",
            },
        )
        assert bad.is_problem(422)
        assert bad.body["errors"][0]["field"] == "importFolder"
        listed = await bridge.call("GET", "/mail-imports")
        assert [i["id"] for i in listed.body["mailImports"]] == ["invoices"]
        gone = await bridge.call("DELETE", "/mail-imports/invoices")
        assert gone.status == 204
        assert (await bridge.call("GET", "/mail-imports/invoices")).is_problem(404)


class Crash(StoreUnavailable):
    """The worker dies right after a step: storage gone, say. The run fails, the queue retries
    the message, and the retry must resume from the ledger."""


# Each step boundary of one mail's import, in the order the worker passes them: where the
# worker fails right after it (the step's effect done, and recorded if the name says so).
STEPS = {
    "staged": "the document is in Blob Storage, the ledger does not know yet",
    "staged-recorded": "the ledger says staged, the host has not heard",
    "announced": "document.imported is in the outbox, the ledger does not know yet",
    "announced-recorded": "the ledger says announced",
    "forward-drafted": "the forward's draft is in Drafts and its id in the ledger; it is not sent",
    "forward-recorded": "Graph forwarded the mail and the ledger says so; mail.forwarded not emitted",
    "forward-announced": "mail.forwarded is in the outbox; the mail is not moved",
    "moved": "Graph moved the mail to the archive; the ledger does not know yet",
    "archived": "the ledger says archived",
}
FORWARD_ACCEPTED = "forward-accepted"  # Graph sent the forward's draft; the ledger does not know yet


def _inject_crash(monkeypatch: pytest.MonkeyPatch, step: str, armed: dict[str, bool]) -> None:
    def crash_after(cls: Any, name: str, when: Callable[..., bool] = lambda *a, **k: True) -> None:
        real = getattr(cls, name)

        async def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = await real(self, *args, **kwargs)
            if armed["on"] and when(*args, **kwargs):
                armed["on"] = False
                raise Crash(f"crashed after {step}")
            return result

        monkeypatch.setattr(cls, name, wrapped)

    def ledger(status: LedgerStatus) -> Callable[..., bool]:
        return lambda record, *a, **k: isinstance(record, MailLedgerEntry) and record.status is status

    def emitted(kind: str) -> Callable[..., bool]:
        return lambda tenant, events, **k: events[0].type == kind

    def step_named(name: str, status: LedgerStatus = LedgerStatus.DONE) -> Callable[..., bool]:
        return lambda config, message_id, step, done, *a, **k: step == name and done is status

    if step == "staged":
        crash_after(AzureDocumentStore, "stage")
    elif step == "staged-recorded":
        crash_after(Repository, "upsert", ledger(LedgerStatus.STAGED))
    elif step == "announced":
        crash_after(Outbox, "emit_many", emitted("document.imported"))
    elif step == "announced-recorded":
        crash_after(Repository, "upsert", ledger(LedgerStatus.ANNOUNCED))
    elif step == "forward-drafted":
        crash_after(MailImporter, "_step", step_named("forward", LedgerStatus.PENDING))
    elif step == FORWARD_ACCEPTED:
        crash_after(GraphApiGateway, "send_draft")
    elif step == "forward-recorded":
        crash_after(MailImporter, "_step", step_named("forward"))
    elif step == "forward-announced":
        crash_after(Outbox, "emit_many", emitted("mail.forwarded"))
    elif step == "moved":
        crash_after(GraphApiGateway, "move_message")
    else:
        crash_after(MailImporter, "_step", step_named("archive"))


async def _crash_then_retry(
    start_bridge: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, Any], None],
    step: str,
) -> None:
    armed = {"on": True}
    _inject_crash(monkeypatch, step, armed)
    async with start_bridge(queue_visibility=0.5) as bridge:
        box, mail = await setup_import(bridge)
        mail.deliver_mail(
            box,
            "Inbox/Invoices",
            subject="Two invoices",
            attachments=[
                file("invoice-1.pdf", b"%PDF one", "application/pdf"),
                file("invoice-2.pdf", b"%PDF two", "application/pdf"),
            ],
        )
        mail.deliver_mail(box, "Inbox/Invoices", subject="Nothing attached", body="hi")
        await run_import(bridge, expect="any")

        async def finished() -> bool | None:
            return len(subjects(mail, box, "Archive/Invoices")) == 2 or None

        await eventually(finished, within=60, what="the retry to finish the import")
        await asyncio.sleep(1.0)
        await bridge.read_feed()
        assert not armed["on"], "the crash was never injected"
        imported = sorted(e["data"]["fileName"] for e in bridge.feed if e["type"] == "document.imported")
        forwarded = [e["data"]["subject"] for e in bridge.feed if e["type"] == "mail.forwarded"]
        forwards = [s for s in mail.sent_mail(box) if s.kind == "forward"]
        left = subjects(mail, box, "Inbox/Invoices")
        archived = subjects(mail, box, "Archive/Invoices")
        record_property("operations", 1)
        record_property("crashes_injected", 1)
        record_property("lost", len({"invoice-1.pdf", "invoice-2.pdf"} - set(imported)) + len(left))
        repeated = len(imported) - len(set(imported)) + max(0, len(forwarded) - 1) + max(0, len(forwards) - 1)
        record_property("duplicated", repeated)
        assert imported == ["invoice-1.pdf", "invoice-2.pdf"]
        assert forwarded == ["Nothing attached"]
        assert len(forwards) == 1
        assert left == []
        assert archived == ["Nothing attached", "Two invoices"]


@pytest.mark.parametrize("step", list(STEPS))
async def test_r2_the_worker_failing_after_each_step_then_the_queue_retry_delivers_each_document_once(
    start_bridge: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, Any], None],
    step: str,
) -> None:
    """R2 on the local stack: the worker fails right after a step (STEPS says what is done and
    recorded then) and the queue's retry finishes the run: every document announced exactly
    once, every mail archived once, the mail without a document forwarded once, none left in
    the import folder. (Every boundary, with the worker killed rather than failing:
    tests/unit/test_mail_importer.py, `test_r2_mail_import_killed_at_every_step_boundary_…`.)"""
    await _crash_then_retry(start_bridge, monkeypatch, record_property, step)


async def test_r2_the_worker_failing_right_after_graph_accepted_a_forward_then_the_retry_forwards_it_once(
    start_bridge: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, Any], None],
) -> None:
    """R2 at the boundary Graph's one-shot forward left open: Graph accepted the send of the
    forward's draft, the ledger never heard. The retry reads the recorded draft, sees it sent, and
    every mail is still forwarded once."""
    await _crash_then_retry(start_bridge, monkeypatch, record_property, FORWARD_ACCEPTED)


async def test_a_folder_of_more_than_one_page_is_imported_in_one_run(
    start_bridge: Callable[..., Any],
) -> None:
    """Moving mails out of the folder while its pages are read must not make the run skip any:
    120 mails (Graph pages by 50) are all archived by one run."""
    async with start_bridge() as bridge:
        box, mail = await setup_import(bridge)
        for n in range(120):
            mail.deliver_mail(box, "Inbox/Invoices", subject=f"Note {n:03d}", body="no attachment")
        run = await run_import(bridge)
        assert run["counts"]["mails_archived"] == 120
        assert subjects(mail, box, "Inbox/Invoices") == []
