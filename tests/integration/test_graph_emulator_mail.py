"""Mail folders, messages and attachments through the real msgraph-sdk and azure-identity: the
folder tree and path-style lookup, paged message lists, hasAttachments (inline images do not
count), $expand=attachments, raw bytes from $value (a 5 MB file streamed), an attached e-mail
as MIME, and moves with and without immutable ids. Mail arrives through the emulator's Python
control API (`deliver_mail`), as it would from outside."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from msgraph.generated.models.file_attachment import FileAttachment
from msgraph.generated.models.item_attachment import ItemAttachment
from msgraph.generated.models.mail_folder import MailFolder
from msgraph.generated.models.message import Message
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.mail_folders.item.child_folders.child_folders_request_builder import (
    ChildFoldersRequestBuilder,
)
from msgraph.generated.users.item.mail_folders.item.messages.messages_request_builder import (
    MessagesRequestBuilder,
)
from msgraph.generated.users.item.messages.item.attachments.item.attachment_item_request_builder import (
    AttachmentItemRequestBuilder,
)
from msgraph.generated.users.item.messages.item.move.move_post_request_body import MovePostRequestBody

from core.graph.client import GraphClientOptions
from core.graph.gateway import open_gateway
from devtools.graph_emulator.mail_module import mail_api
from devtools.graph_emulator.mail_ops import Mail, file, item
from tests.integration.graph_clients import Seed, config, get_bytes, seeded

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(200)


@pytest.fixture
async def seed(tmp_path: Path) -> AsyncIterator[Seed]:
    async with seeded(tmp_path / "graph") as s:
        yield s


def _mail(seed: Seed) -> Mail:
    return mail_api(seed.graph)


async def test_folders_child_folders_and_lookup_by_display_name(seed: Seed) -> None:
    """GIVEN a fresh mailbox WHEN its folders are listed THEN the well-known folders are there
    by display name; a child folder made under Inbox is found by `$filter=displayName eq` (any
    case), a second one with the same name is 409, and the gateway resolves "Inbox/Invoices" to
    it the way the import does."""
    me = seed.user_client(seed.adele.id)
    top = await me.mail_folders.get()
    assert top is not None
    names = [f.display_name for f in top.value or []]
    for expected in ("Archive", "Deleted Items", "Drafts", "Inbox", "Junk Email", "Sent Items"):
        assert expected in names
    inbox = await me.mail_folders.by_mail_folder_id("inbox").get()
    assert inbox is not None
    assert inbox.display_name == "Inbox"
    assert inbox.id
    assert inbox.id in {f.id for f in top.value or []}

    created = await me.mail_folders.by_mail_folder_id("inbox").child_folders.post(
        MailFolder(display_name="Invoices")
    )
    assert created is not None
    assert created.parent_folder_id == inbox.id
    await me.mail_folders.by_mail_folder_id(inbox.id).child_folders.post(MailFolder(display_name="Receipts"))
    with pytest.raises(ODataError) as duplicate:
        await me.mail_folders.by_mail_folder_id("inbox").child_folders.post(
            MailFolder(display_name="invoices")
        )
    assert duplicate.value.response_status_code == 409

    query = ChildFoldersRequestBuilder.ChildFoldersRequestBuilderGetQueryParameters(
        filter="displayName eq 'INVOICES'"
    )
    found = await me.mail_folders.by_mail_folder_id("inbox").child_folders.get(
        request_configuration=config(query=query)
    )
    assert found is not None
    assert [(f.id, f.display_name) for f in found.value or []] == [(created.id, "Invoices")]
    refreshed = await me.mail_folders.by_mail_folder_id("inbox").get()
    assert refreshed is not None
    assert refreshed.child_folder_count == 2

    _mail(seed).deliver_mail(seed.adele.id, "Inbox/Invoices", subject="Invoice 1")
    nested = me.mail_folders.by_mail_folder_id("inbox").child_folders.by_mail_folder_id1(str(created.id))
    in_invoices = await nested.messages.get()
    assert in_invoices is not None
    assert [m.subject for m in in_invoices.value or []] == ["Invoice 1"]
    assert [m.parent_folder_id for m in in_invoices.value or []] == [created.id]

    gateway = open_gateway(
        seed.credential, GraphClientOptions(base_url=seed.graph.graph_url, ca_bundle=str(seed.graph.ca_cert))
    )
    try:
        folder = await gateway.resolve_folder_path(seed.adele.user_principal_name, "Inbox/Invoices")
    finally:
        await gateway.close()
    assert folder.id == created.id
    assert folder.path == "Inbox/Invoices"


async def test_messages_are_listed_newest_first_in_pages(seed: Seed) -> None:
    mail = _mail(seed)
    for n in range(5):
        mail.deliver_mail(seed.adele.id, subject=f"mail {n}", body=f"body {n}")
        seed.graph.advance(dt.timedelta(minutes=1))
    inbox = seed.user_client(seed.adele.id).mail_folders.by_mail_folder_id("inbox").messages
    query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
        top=2, select=["subject", "receivedDateTime", "hasAttachments"]
    )
    page = await inbox.get(request_configuration=config(query=query))
    subjects: list[str] = []
    pages = 0
    while page is not None:
        pages += 1
        subjects.extend(str(m.subject) for m in page.value or [])
        assert all(m.body is None for m in page.value or [])  # $select honoured
        if not page.odata_next_link:
            break
        page = await inbox.with_url(page.odata_next_link).get()
    assert pages == 3
    assert subjects == [f"mail {n}" for n in range(4, -1, -1)]

    oldest_first = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
        orderby=["receivedDateTime asc"], top=10
    )
    page = await inbox.get(request_configuration=config(query=oldest_first))
    assert page is not None
    assert [m.subject for m in page.value or []] == [f"mail {n}" for n in range(5)]


async def test_has_attachments_counts_files_not_inline_images_and_expand_returns_them(seed: Seed) -> None:
    """GIVEN one mail with a PDF and one with only an inline signature image WHEN they are read
    THEN hasAttachments is true for the first and false for the second; $expand=attachments
    returns the attachments (file ones with contentBytes), the inline one with its contentId."""
    mail = _mail(seed)
    pdf = os.urandom(20_000)
    with_file = mail.deliver_mail(
        seed.adele.id, subject="Invoice 7", attachments=[file("invoice.pdf", pdf, "application/pdf")]
    )
    with_logo = mail.deliver_mail(
        seed.adele.id,
        subject="Hello",
        body='<html><body>Hi<img src="cid:logo@sig"></body></html>',
        attachments=[file("logo.png", PNG, "image/png", inline=True, content_id="logo@sig")],
    )
    messages = seed.user_client(seed.adele.id).messages
    first = await messages.by_message_id(with_file).get()
    second = await messages.by_message_id(with_logo).get()
    assert first is not None
    assert second is not None
    assert first.has_attachments is True
    assert second.has_attachments is False

    query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
        expand=["attachments"], orderby=["receivedDateTime asc"]
    )
    listed = await (
        seed.user_client(seed.adele.id)
        .mail_folders.by_mail_folder_id("inbox")
        .messages.get(request_configuration=config(query=query, headers=IMMUTABLE))
    )
    assert listed is not None
    by_subject = {m.subject: m for m in listed.value or []}
    (attachment,) = by_subject["Invoice 7"].attachments or []
    assert isinstance(attachment, FileAttachment)
    assert (attachment.name, attachment.is_inline, attachment.content_bytes) == ("invoice.pdf", False, pdf)
    (inline,) = by_subject["Hello"].attachments or []
    assert isinstance(inline, FileAttachment)
    assert (inline.is_inline, inline.content_id, inline.content_bytes) == (True, "logo@sig", PNG)


async def test_file_value_streams_the_delivered_bytes(seed: Seed) -> None:
    """A 5 MB attachment (spooled to disk by the emulator) comes back byte for byte from $value;
    the gateway's chunked stream gets the same bytes."""
    data = os.urandom(5 * 1024 * 1024)
    message_id = _mail(seed).deliver_mail(
        seed.adele.id, subject="Scan", attachments=[file("scan.tiff", data, "image/tiff")]
    )
    listed = await seed.user_client(seed.adele.id).messages.by_message_id(message_id).attachments.get()
    assert listed is not None
    (attachment,) = listed.value or []
    assert (attachment.name, attachment.size) == ("scan.tiff", len(data))
    raw = await get_bytes(
        seed.client,
        f"{seed.graph.graph_url}/users/{seed.adele.id}/messages/{message_id}/attachments/{attachment.id}/$value",
    )
    assert raw == data

    gateway = open_gateway(
        seed.credential, GraphClientOptions(base_url=seed.graph.graph_url, ca_bundle=str(seed.graph.ca_cert))
    )
    try:
        chunks = [
            c
            async for c in gateway.stream_attachment(
                seed.adele.id, message_id, str(attachment.id), chunk_size=1024 * 1024
            )
        ]
    finally:
        await gateway.close()
    assert len(chunks) > 1
    assert b"".join(chunks) == data


async def test_item_attachment_value_is_mime_and_expands_to_the_message(seed: Seed) -> None:
    pdf = os.urandom(3000)
    inner: dict[str, Any] = {
        "subject": "Original order 4711",
        "body": {"contentType": "text", "content": "Please find the order attached."},
        "from": {"emailAddress": {"name": "Buyer", "address": "buyer@fabrikam.example"}},
        "toRecipients": [{"emailAddress": {"address": "adele@contoso.onmicrosoft.com"}}],
        "receivedDateTime": "2024-05-01T08:00:00Z",
        "attachments": [
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": "order.pdf",
                "contentType": "application/pdf",
                "contentBytes": base64.b64encode(pdf).decode(),
            }
        ],
    }
    message_id = _mail(seed).deliver_mail(seed.adele.id, subject="FW: order", attachments=[item(inner)])
    message = seed.user_client(seed.adele.id).messages.by_message_id(message_id)
    listed = await message.attachments.get()
    assert listed is not None
    (attachment,) = listed.value or []
    assert isinstance(attachment, ItemAttachment)
    assert attachment.name == "Original order 4711"
    assert (await message.get()).has_attachments is True  # type: ignore[union-attr]

    query = AttachmentItemRequestBuilder.AttachmentItemRequestBuilderGetQueryParameters(
        expand=["microsoft.graph.itemattachment/item"]
    )
    expanded = await message.attachments.by_attachment_id(str(attachment.id)).get(
        request_configuration=config(query=query)
    )
    assert isinstance(expanded, ItemAttachment)
    assert isinstance(expanded.item, Message)
    assert expanded.item.subject == "Original order 4711"

    raw = await get_bytes(
        seed.client,
        f"{seed.graph.graph_url}/users/{seed.adele.id}/messages/{message_id}/attachments/{attachment.id}/$value",
    )
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Original order 4711"
    assert "buyer@fabrikam.example" in str(parsed["From"])
    parts = {p.get_filename(): p for p in parsed.walk() if p.get_filename()}
    assert parts["order.pdf"].get_content() == pdf

    whole = await message.content.get()  # the outer message's own MIME ($value)
    assert whole is not None
    assert b"Subject: FW: order" in whole
    assert b"Original order 4711" in whole


async def test_move_without_immutable_ids_gives_a_new_id_and_the_old_one_is_gone(seed: Seed) -> None:
    mail = _mail(seed)
    mail.deliver_mail(seed.adele.id, subject="Move me")
    inbox = seed.user_client(seed.adele.id).mail_folders.by_mail_folder_id("inbox").messages
    listed = await inbox.get()
    assert listed is not None
    (regular,) = listed.value or []
    assert regular.id
    messages = seed.user_client(seed.adele.id).messages

    moved = await messages.by_message_id(regular.id).move.post(MovePostRequestBody(destination_id="archive"))
    assert moved is not None
    assert moved.id
    assert moved.id != regular.id
    archive = await seed.user_client(seed.adele.id).mail_folders.by_mail_folder_id("archive").get()
    assert archive is not None
    assert moved.parent_folder_id == archive.id
    with pytest.raises(ODataError) as gone:
        await messages.by_message_id(regular.id).get()
    assert gone.value.response_status_code == 404
    again = await messages.by_message_id(moved.id).get()
    assert again is not None
    assert again.subject == "Move me"


async def test_move_with_immutable_ids_keeps_the_id(seed: Seed) -> None:
    """GIVEN a message read with `Prefer: IdType="ImmutableId"` WHEN it is moved with the header
    THEN the moved message has the same id, which still reads it (with or without the header),
    and its attachment ids are kept too."""
    _mail(seed).deliver_mail(
        seed.adele.id, subject="Keep my id", attachments=[file("a.txt", b"abc", "text/plain")]
    )
    inbox = seed.user_client(seed.adele.id).mail_folders.by_mail_folder_id("inbox").messages
    listed = await inbox.get(request_configuration=config(headers=IMMUTABLE))
    assert listed is not None
    (message,) = listed.value or []
    assert message.id
    messages = seed.user_client(seed.adele.id).messages
    before = await messages.by_message_id(message.id).attachments.get(
        request_configuration=config(headers=IMMUTABLE)
    )

    moved = await messages.by_message_id(message.id).move.post(
        MovePostRequestBody(destination_id="archive"), request_configuration=config(headers=IMMUTABLE)
    )
    assert moved is not None
    assert moved.id == message.id
    assert (await messages.by_message_id(message.id).get()) is not None  # no header: still found
    after = await messages.by_message_id(message.id).attachments.get(
        request_configuration=config(headers=IMMUTABLE)
    )
    assert before is not None
    assert after is not None
    assert [a.id for a in after.value or []] == [a.id for a in before.value or []]
    in_inbox = await inbox.get()
    assert in_inbox is not None
    assert in_inbox.value == []


async def test_move_needs_mail_readwrite(tmp_path: Path) -> None:
    async with seeded(tmp_path / "graph", permissions=("Mail.Read", "User.Read.All")) as seed:
        message_id = mail_api(seed.graph).deliver_mail(seed.adele.id, subject="Read only")
        messages = seed.user_client(seed.adele.id).messages
        assert (await messages.by_message_id(message_id).get()) is not None
        with pytest.raises(ODataError) as denied:
            await messages.by_message_id(message_id).move.post(MovePostRequestBody(destination_id="archive"))
        assert denied.value.response_status_code == 403
        assert denied.value.error is not None
        assert denied.value.error.code == "ErrorAccessDenied"
