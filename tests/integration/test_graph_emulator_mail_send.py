"""Sending and tracking mail through the real msgraph-sdk and azure-identity: forward (delivered
to a tenant user's Inbox, recorded in Sent Items, external recipients in the outbox; comment and
message.body together refused), createForward (a draft in Drafts quoting the original, with its
attachments; sent, it is the forward, in Sent Items under the same id), sendMail (202,
delivered), a draft with a 4 MB attachment uploaded in chunks to the pre-authenticated URL and
then sent, and message delta per folder (paged first round, then only the changes; moved-out mail
as @removed; expired state 410)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from msgraph.generated.models.attachment_item import AttachmentItem
from msgraph.generated.models.attachment_type import AttachmentType
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.file_attachment import FileAttachment
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_get_response import DeltaGetResponse
from msgraph.generated.users.item.messages.item.attachments.create_upload_session.create_upload_session_post_request_body import (  # noqa: E501
    CreateUploadSessionPostRequestBody,
)
from msgraph.generated.users.item.messages.item.create_forward.create_forward_post_request_body import (
    CreateForwardPostRequestBody,
)
from msgraph.generated.users.item.messages.item.forward.forward_post_request_body import (
    ForwardPostRequestBody,
)
from msgraph.generated.users.item.messages.item.move.move_post_request_body import MovePostRequestBody
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody

from devtools.graph_emulator.mail_module import mail_api
from devtools.graph_emulator.mail_ops import Mail, file
from tests.integration.graph_clients import Seed, config, get_bytes, native, seeded

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


@pytest.fixture
async def seed(tmp_path: Path) -> AsyncIterator[Seed]:
    async with seeded(tmp_path / "graph") as s:
        yield s


def _mail(seed: Seed) -> Mail:
    return mail_api(seed.graph)


def _to(*addresses: str) -> list[Recipient]:
    return [Recipient(email_address=EmailAddress(address=a)) for a in addresses]


async def _inbox_subjects(seed: Seed, user: str) -> list[str]:
    listed = await seed.user_client(user).mail_folders.by_mail_folder_id("inbox").messages.get()
    assert listed is not None
    return [str(m.subject) for m in listed.value or []]


async def test_forward_delivers_to_a_tenant_user_and_keeps_a_copy_in_sent_items(seed: Seed) -> None:
    """GIVEN a mail with a PDF in Adele's Inbox WHEN she forwards it with a comment to Megan and
    to an outside address THEN 202; Megan's Inbox has "FW: ..." with the comment and the PDF;
    Adele's Sent Items has the forward; the outside address is in the outbox."""
    pdf = os.urandom(10_000)
    message_id = _mail(seed).deliver_mail(
        seed.adele.id, subject="Invoice 9", attachments=[file("invoice.pdf", pdf, "application/pdf")]
    )
    response = await native(
        seed.user_client(seed.adele.id)
        .messages.by_message_id(message_id)
        .forward.post(
            ForwardPostRequestBody(
                comment="For the books", to_recipients=_to(seed.megan.mail, "accounting@fabrikam.example")
            ),
            request_configuration=config(native=True),
        )
    )
    assert response.status_code == 202
    assert response.content == b""

    megan = seed.user_client(seed.megan.id)
    inbox = await megan.mail_folders.by_mail_folder_id("inbox").messages.get()
    assert inbox is not None
    (forwarded,) = inbox.value or []
    assert forwarded.subject == "FW: Invoice 9"
    assert forwarded.body is not None
    assert "For the books" in str(forwarded.body.content)
    assert forwarded.from_ is not None
    assert forwarded.from_.email_address is not None
    assert forwarded.from_.email_address.address == seed.adele.mail
    assert forwarded.has_attachments is True
    attachments = await megan.messages.by_message_id(str(forwarded.id)).attachments.get()
    assert attachments is not None
    (attachment,) = attachments.value or []
    assert isinstance(attachment, FileAttachment)
    assert (attachment.name, attachment.content_bytes) == ("invoice.pdf", pdf)

    sent = await seed.user_client(seed.adele.id).mail_folders.by_mail_folder_id("sentitems").messages.get()
    assert sent is not None
    assert [m.subject for m in sent.value or []] == ["FW: Invoice 9"]
    outbox = _mail(seed).outbox(seed.adele.id)
    assert [(e.kind, e.external, e.comment) for e in outbox] == [
        ("forward", ["accounting@fabrikam.example"], "For the books")
    ]
    assert [a.name for a in outbox[0].record.attachments] == ["invoice.pdf"]


async def test_forward_with_both_comment_and_message_body_is_refused(seed: Seed) -> None:
    message_id = _mail(seed).deliver_mail(seed.adele.id, subject="Both")
    with pytest.raises(ODataError) as refused:
        await (
            seed.user_client(seed.adele.id)
            .messages.by_message_id(message_id)
            .forward.post(
                ForwardPostRequestBody(
                    comment="a comment",
                    to_recipients=_to(seed.megan.mail),
                    message=Message(body=ItemBody(content_type=BodyType.Text, content="and a body")),
                )
            )
        )
    assert refused.value.response_status_code == 400
    assert await _inbox_subjects(seed, seed.megan.id) == []
    assert _mail(seed).sent_mail() == []


async def test_create_forward_makes_a_draft_whose_send_is_the_forward(seed: Seed) -> None:
    """GIVEN a mail with a PDF in Adele's Inbox WHEN she creates its forward (createForward, with
    immutable ids) with a comment to Megan and an outside address THEN 201 with a draft in Drafts:
    "FW: ...", the comment above the quoted original, the PDF copied onto it; nothing has left.
    WHEN the draft is sent THEN 202; Megan gets the forward with the PDF; the draft's id now names
    it in Sent Items, no longer a draft; one forward with the comment is logged; a second send is
    refused (400) and delivers nothing."""
    pdf = os.urandom(10_000)
    message_id = _mail(seed).deliver_mail(
        seed.adele.id,
        subject="Invoice 10",
        body="the original text",
        attachments=[file("invoice.pdf", pdf, "application/pdf")],
    )
    me = seed.user_client(seed.adele.id)
    created = await native(
        me.messages.by_message_id(message_id).create_forward.post(
            CreateForwardPostRequestBody(
                comment="For the books", to_recipients=_to(seed.megan.mail, "accounting@fabrikam.example")
            ),
            request_configuration=config(headers=IMMUTABLE, native=True),
        )
    )
    assert created.status_code == 201
    draft_id = created.json()["id"]
    draft = await me.messages.by_message_id(draft_id).get(request_configuration=config(headers=IMMUTABLE))
    assert draft is not None
    assert (draft.is_draft, draft.subject) == (True, "FW: Invoice 10")
    drafts = await me.mail_folders.by_mail_folder_id("drafts").get()
    assert drafts is not None
    assert draft.parent_folder_id == drafts.id
    assert draft.body is not None
    content = str(draft.body.content)
    assert content.index("For the books") < content.index("the original text")
    assert [r.email_address.address for r in draft.to_recipients or [] if r.email_address] == [
        seed.megan.mail,
        "accounting@fabrikam.example",
    ]
    copied = await me.messages.by_message_id(draft_id).attachments.get()
    assert copied is not None
    (attachment,) = copied.value or []
    assert isinstance(attachment, FileAttachment)
    assert (attachment.name, attachment.content_bytes) == ("invoice.pdf", pdf)
    assert _mail(seed).sent_mail() == []
    assert await _inbox_subjects(seed, seed.megan.id) == []

    sent = await native(
        me.messages.by_message_id(draft_id).send.post(request_configuration=config(native=True))
    )
    assert sent.status_code == 202
    assert await _inbox_subjects(seed, seed.megan.id) == ["FW: Invoice 10"]
    in_sent_items = await me.messages.by_message_id(draft_id).get(
        request_configuration=config(headers=IMMUTABLE)
    )
    assert in_sent_items is not None
    assert in_sent_items.is_draft is False
    sent_items = await me.mail_folders.by_mail_folder_id("sentitems").get()
    assert sent_items is not None
    assert in_sent_items.parent_folder_id == sent_items.id
    log = _mail(seed).sent_mail(seed.adele.id)
    assert [(e.kind, e.external, e.comment) for e in log] == [
        ("forward", ["accounting@fabrikam.example"], "For the books")
    ]
    assert [a.name for a in log[0].record.attachments] == ["invoice.pdf"]

    with pytest.raises(ODataError) as again:
        await me.messages.by_message_id(draft_id).send.post()
    assert again.value.response_status_code == 400
    assert len(_mail(seed).sent_mail()) == 1
    assert await _inbox_subjects(seed, seed.megan.id) == ["FW: Invoice 10"]


async def test_create_forward_follows_forwards_rules_and_a_deleted_draft_never_goes(seed: Seed) -> None:
    """createForward refuses a comment with message.body, and recipients given twice or not at
    all (400, no draft made); a draft deleted before its send is gone (404) and nothing leaves."""
    message_id = _mail(seed).deliver_mail(seed.adele.id, subject="Rules")
    me = seed.user_client(seed.adele.id)
    forward = me.messages.by_message_id(message_id).create_forward
    for body in (
        CreateForwardPostRequestBody(
            comment="a comment",
            to_recipients=_to(seed.megan.mail),
            message=Message(body=ItemBody(content_type=BodyType.Text, content="and a body")),
        ),
        CreateForwardPostRequestBody(comment="no recipients"),
        CreateForwardPostRequestBody(
            to_recipients=_to(seed.megan.mail), message=Message(to_recipients=_to(seed.megan.mail))
        ),
    ):
        with pytest.raises(ODataError) as refused:
            await forward.post(body)
        assert refused.value.response_status_code == 400
    assert _mail(seed).messages(seed.adele.id, "drafts") == []

    draft = await forward.post(
        CreateForwardPostRequestBody(comment="x", to_recipients=_to(seed.megan.mail)),
        request_configuration=config(headers=IMMUTABLE),
    )
    assert draft is not None
    assert draft.id
    await me.messages.by_message_id(draft.id).delete()
    with pytest.raises(ODataError) as gone:
        await me.messages.by_message_id(draft.id).send.post()
    assert gone.value.response_status_code == 404
    assert _mail(seed).sent_mail() == []
    assert await _inbox_subjects(seed, seed.megan.id) == []


async def test_send_mail_answers_202_and_delivers(seed: Seed) -> None:
    body = SendMailPostRequestBody(
        message=Message(
            subject="Booking confirmed",
            body=ItemBody(content_type=BodyType.Html, content="<p>See you <b>Monday</b></p>"),
            to_recipients=_to(seed.megan.user_principal_name),
            attachments=[
                FileAttachment(name="ticket.txt", content_type="text/plain", content_bytes=b"ticket 42")
            ],
        ),
        save_to_sent_items=True,
    )
    response = await native(
        seed.user_client(seed.adele.id).send_mail.post(body, request_configuration=config(native=True))
    )
    assert response.status_code == 202
    assert response.content == b""

    listed = await seed.user_client(seed.megan.id).mail_folders.by_mail_folder_id("inbox").messages.get()
    assert listed is not None
    (received,) = listed.value or []
    assert received.subject == "Booking confirmed"
    assert received.is_read is False
    assert received.has_attachments is True
    assert received.sender is not None
    assert received.sender.email_address is not None
    assert received.sender.email_address.name == "Adele Vance"
    sent = await seed.user_client(seed.adele.id).mail_folders.by_mail_folder_id("sentitems").messages.get()
    assert sent is not None
    assert [m.internet_message_id for m in sent.value or []] == [received.internet_message_id]
    assert _mail(seed).outbox() == []  # every recipient was inside the tenant


async def test_send_as_another_address_needs_exchanges_send_as_permission(seed: Seed) -> None:
    """A `from` that is not the mailbox is refused (403 ErrorSendAsDenied, nothing sent) until
    the mailbox has Send As on that address; then the recipient sees it from that address."""
    shared = "post@" + seed.adele.mail.rpartition("@")[2]

    def body(subject: str) -> SendMailPostRequestBody:
        return SendMailPostRequestBody(
            message=Message(
                subject=subject,
                from_=Recipient(email_address=EmailAddress(address=shared)),
                to_recipients=_to(seed.megan.mail),
            )
        )

    with pytest.raises(ODataError) as refused:
        await seed.user_client(seed.adele.id).send_mail.post(body("Refused"))
    assert refused.value.response_status_code == 403
    assert refused.value.error is not None
    assert refused.value.error.code == "ErrorSendAsDenied"
    assert await _inbox_subjects(seed, seed.megan.id) == []

    _mail(seed).grant_send_as(seed.adele.id, shared)
    await seed.user_client(seed.adele.id).send_mail.post(body("Allowed"))
    listed = await seed.user_client(seed.megan.id).mail_folders.by_mail_folder_id("inbox").messages.get()
    assert listed is not None
    (received,) = listed.value or []
    assert received.subject == "Allowed"
    assert received.from_ is not None
    assert received.from_.email_address is not None
    assert received.from_.email_address.address == shared


async def test_send_mail_over_the_4_mb_request_limit_is_refused(seed: Seed) -> None:
    """3 MB of attachment is 4 MB of base64: over Outlook's request limit, so nothing is sent
    (a sender has to use a draft and an upload session)."""
    body = SendMailPostRequestBody(
        message=Message(
            subject="Too big",
            to_recipients=_to(seed.megan.mail),
            attachments=[FileAttachment(name="big.bin", content_bytes=os.urandom(3 * 1024 * 1024))],
        )
    )
    with pytest.raises(ODataError) as refused:
        await seed.user_client(seed.adele.id).send_mail.post(body)
    assert refused.value.response_status_code == 413
    assert await _inbox_subjects(seed, seed.megan.id) == []


async def test_draft_with_an_upload_session_then_send_delivers_the_attachment_intact(seed: Seed) -> None:
    """GIVEN a draft (created with immutable ids) WHEN a 4 MB file is uploaded to it through an
    upload session in 1.5 MB chunks PUT without Authorization, and the draft is sent THEN 202;
    Megan gets the mail with the 4 MB attachment byte for byte; the draft's immutable id now
    reads the copy in Sent Items (Graph docs, "Immutable ID with sending mail")."""
    me = seed.user_client(seed.adele.id)
    draft = await me.messages.post(
        Message(subject="Big report", to_recipients=_to(seed.megan.mail)),
        request_configuration=config(headers=IMMUTABLE),
    )
    assert draft is not None
    assert draft.id
    assert draft.is_draft is True
    data = os.urandom(4 * 1024 * 1024)
    session = await me.messages.by_message_id(draft.id).attachments.create_upload_session.post(
        CreateUploadSessionPostRequestBody(
            attachment_item=AttachmentItem(
                attachment_type=AttachmentType.File,
                name="report.pdf",
                size=len(data),
                content_type="application/pdf",
            )
        )
    )
    assert session is not None
    assert session.upload_url
    chunk = 1536 * 1024
    async with httpx.AsyncClient(verify=seed.graph.tls.client_context()) as upload:
        for start in range(0, len(data), chunk):
            end = min(start + chunk, len(data)) - 1
            response = await upload.put(
                session.upload_url,
                content=data[start : end + 1],
                headers={"Content-Range": f"bytes {start}-{end}/{len(data)}"},
            )
            assert response.status_code == (201 if end + 1 == len(data) else 200)

    sent = await native(
        me.messages.by_message_id(draft.id).send.post(request_configuration=config(native=True))
    )
    assert sent.status_code == 202

    listed = await seed.user_client(seed.megan.id).mail_folders.by_mail_folder_id("inbox").messages.get()
    assert listed is not None
    (received,) = listed.value or []
    assert received.subject == "Big report"
    attachments = (
        await seed.user_client(seed.megan.id).messages.by_message_id(str(received.id)).attachments.get()
    )
    assert attachments is not None
    (attachment,) = attachments.value or []
    assert (attachment.name, attachment.size) == ("report.pdf", len(data))
    raw = await get_bytes(
        seed.client,
        f"{seed.graph.graph_url}/users/{seed.megan.id}/messages/{received.id}/attachments/{attachment.id}/$value",
    )
    assert raw == data

    in_sent_items = await me.messages.by_message_id(draft.id).get(
        request_configuration=config(headers=IMMUTABLE)
    )
    assert in_sent_items is not None
    assert in_sent_items.is_draft is False
    sent_items = await me.mail_folders.by_mail_folder_id("sentitems").get()
    assert sent_items is not None
    assert in_sent_items.parent_folder_id == sent_items.id


async def test_small_files_need_a_post_not_an_upload_session(seed: Seed) -> None:
    me = seed.user_client(seed.adele.id)
    draft = await me.messages.post(Message(subject="Small"))
    assert draft is not None
    assert draft.id
    with pytest.raises(ODataError) as small:
        await me.messages.by_message_id(draft.id).attachments.create_upload_session.post(
            CreateUploadSessionPostRequestBody(
                attachment_item=AttachmentItem(attachment_type=AttachmentType.File, name="a.txt", size=1000)
            )
        )
    assert small.value.response_status_code == 400
    assert small.value.error is not None
    assert small.value.error.code == "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"
    posted = await me.messages.by_message_id(draft.id).attachments.post(
        FileAttachment(name="a.txt", content_type="text/plain", content_bytes=b"small")
    )
    assert isinstance(posted, FileAttachment)
    assert posted.size == 5


# -- delta ------------------------------------------------------------------------------------


async def _round(seed: Seed, link: str | None, headers: dict[str, str]) -> tuple[list[list[Any]], str]:
    delta = seed.user_client(seed.adele.id).mail_folders.by_mail_folder_id("inbox").messages.delta
    page: DeltaGetResponse | None = await (
        delta.get(request_configuration=config(headers=headers))
        if link is None
        else delta.with_url(link).get(request_configuration=config(headers=headers))
    )
    pages: list[list[Any]] = []
    while True:
        assert page is not None
        pages.append(list(page.value or []))
        if page.odata_delta_link:
            assert not page.odata_next_link
            return pages, page.odata_delta_link
        assert page.odata_next_link
        assert "$skiptoken=" in page.odata_next_link
        page = await delta.with_url(page.odata_next_link).get(request_configuration=config(headers=headers))


def _removed(item: Any) -> bool:
    return "@removed" in (item.additional_data or {})


async def test_message_delta_pages_then_reports_only_changes(seed: Seed) -> None:
    """GIVEN 5 mails in the Inbox WHEN a client runs delta with maxpagesize 2 THEN pages of 2, 2,
    1 and a deltaLink; GIVEN then a new mail arrives, one is marked read and one is moved to
    the Archive WHEN the deltaLink is followed THEN the new and the read one come back in full
    and the moved one as @removed; a third round is empty."""
    mail = _mail(seed)
    ids = [mail.deliver_mail(seed.adele.id, subject=f"mail {n}") for n in range(5)]
    headers = {"Prefer": 'odata.maxpagesize=2, IdType="ImmutableId"'}
    pages, delta_link = await _round(seed, None, headers)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert "$deltatoken=" in delta_link
    assert sorted(str(m.id) for p in pages for m in p) == sorted(ids)

    new = mail.deliver_mail(seed.adele.id, subject="new mail")
    mail.mark_read(seed.adele.id, ids[1])
    moved = await (
        seed.user_client(seed.adele.id)
        .messages.by_message_id(ids[2])
        .move.post(
            MovePostRequestBody(destination_id="archive"), request_configuration=config(headers=IMMUTABLE)
        )
    )
    assert moved is not None
    assert moved.id == ids[2]

    pages, delta_link = await _round(seed, delta_link, headers)
    items = [i for p in pages for i in p]
    changed = {i.id: i for i in items if not _removed(i)}
    removed = [i for i in items if _removed(i)]
    assert set(changed) == {new, ids[1]}
    assert changed[ids[1]].is_read is True
    assert changed[new].subject == "new mail"
    assert [r.id for r in removed] == [ids[2]]
    assert removed[0].additional_data["@removed"] == {"reason": "deleted"}

    pages, _ = await _round(seed, delta_link, headers)
    assert pages == [[]]


async def test_message_delta_without_immutable_ids_names_the_regular_ids(seed: Seed) -> None:
    """Without the header the ids are regular ids, and a moved-out message is @removed under the
    id it had in the Inbox (the one the client stored)."""
    _mail(seed).deliver_mail(seed.adele.id, subject="leaving")
    pages, delta_link = await _round(seed, None, {})
    ((first,),) = pages
    moved = await (
        seed.user_client(seed.adele.id)
        .messages.by_message_id(str(first.id))
        .move.post(MovePostRequestBody(destination_id="deleteditems"))
    )
    assert moved is not None
    assert moved.id != first.id
    pages, _ = await _round(seed, delta_link, {})
    ((removed,),) = pages
    assert _removed(removed)
    assert removed.id == first.id


async def test_expired_message_delta_link_is_410(seed: Seed) -> None:
    _mail(seed).deliver_mail(seed.adele.id, subject="one")
    _, delta_link = await _round(seed, None, {})
    assert seed.graph.expire_delta_tokens(seed.adele.id) >= 1
    delta = seed.user_client(seed.adele.id).mail_folders.by_mail_folder_id("inbox").messages.delta
    with pytest.raises(ODataError) as expired:
        await delta.with_url(delta_link).get()
    assert expired.value.response_status_code == 410
    assert expired.value.error is not None
    assert expired.value.error.code == "SyncStateNotFound"
