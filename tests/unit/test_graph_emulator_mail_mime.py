"""MIME rendering of stored messages (mail_mime.py), what `$value` of a message or of an attached
e-mail returns: headers, body, file and inline parts, nested message/rfc822 parts; and parsing
MIME back into Graph JSON (an .eml delivered as an attached e-mail)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage

from devtools.graph_emulator import mail_ids, mail_mime
from devtools.graph_emulator.mail_store import Address, AttachmentRecord, BlobStore, MessageRecord

WHEN = dt.datetime(2024, 6, 3, 10, 0, tzinfo=dt.UTC)
BLOBS = BlobStore(threshold=16)  # small threshold: the PDF below is read back from a spool file


def _message(
    subject: str, attachments: list[AttachmentRecord], body: str = "<p>Hej på deg</p>"
) -> MessageRecord:
    return MessageRecord(
        key=mail_ids.new_key(),
        folder_key=None,
        entry_key=mail_ids.new_key(),
        subject=subject,
        body_type="html",
        body=body,
        created=WHEN,
        modified=WHEN,
        change_key="ck",
        internet_message_id=f"<{''.join(c for c in subject if c.isalnum())}@fabrikam.example>",
        conversation_id="conv",
        from_=Address("Søren Buyer", "buyer@fabrikam.example"),
        to=[Address("Adele Vance", "adele@contoso.onmicrosoft.com")],
        cc=[Address("a@b.example", "a@b.example")],
        sent=WHEN,
        received=WHEN,
        attachments=attachments,
    )


def _file(
    name: str, data: bytes, content_type: str, *, inline: bool = False, cid: str | None = None
) -> AttachmentRecord:
    blob = BLOBS.put(data)
    return AttachmentRecord(
        mail_ids.new_key(), "file", name, content_type, inline, cid, WHEN, blob.size, blob=blob
    )


def _parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_a_message_with_file_inline_and_item_attachments() -> None:
    pdf = bytes(range(256)) * 40
    inner = _message("Original order", [_file("order.pdf", pdf, "application/pdf")], body="plain")
    inner.body_type = "text"
    outer = _message(
        "FW: Original order",
        [
            AttachmentRecord(
                mail_ids.new_key(), "item", "Original order", None, False, None, WHEN, 0, item=inner
            ),
            _file("logo.png", b"\x89PNG-bytes", "image/png", inline=True, cid="logo@sig"),
        ],
    )
    raw = mail_mime.render(outer)
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only, as on the wire
    parsed = _parse(raw)
    assert parsed["Subject"] == "FW: Original order"
    assert parsed["From"].addresses[0].display_name == "Søren Buyer"
    assert parsed["To"].addresses[0].addr_spec == "adele@contoso.onmicrosoft.com"
    assert parsed["Message-ID"] == "<FWOriginalorder@fabrikam.example>"
    assert parsed["Date"].datetime == WHEN
    assert parsed.get_content_type() == "multipart/mixed"
    body = parsed.get_body(preferencelist=("html",))
    assert body is not None
    assert "Hej på deg" in body.get_content()

    parts = list(parsed.iter_attachments())
    assert [p.get_content_type() for p in parts] == ["message/rfc822", "image/png"]
    logo = parts[1]
    assert (logo.get_content_disposition(), logo["Content-ID"], logo.get_content()) == (
        "inline",
        "<logo@sig>",
        b"\x89PNG-bytes",
    )
    attached = parts[0].get_content()
    assert isinstance(attached, EmailMessage)
    assert attached["Subject"] == "Original order"
    (order,) = list(attached.iter_attachments())
    assert (order.get_filename(), order.get_content()) == ("order.pdf", pdf)


def test_a_plain_message_without_attachments_is_a_single_part() -> None:
    message = _message("Hello", [], body="just text")
    message.body_type = "text"
    parsed = _parse(mail_mime.render(message))
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content().strip() == "just text"
    assert "Cc" in parsed


def test_parse_turns_mime_back_into_graph_json() -> None:
    inner = _message("Inner", [_file("a.csv", b"x,y\r\n1,2", "text/csv")])
    outer = _message(
        "Outer",
        [
            AttachmentRecord(mail_ids.new_key(), "item", "Inner", None, False, None, WHEN, 0, item=inner),
            _file("logo.png", b"PNG", "image/png", inline=True, cid="logo@sig"),
        ],
    )
    parsed = mail_mime.parse(mail_mime.render(outer))
    assert parsed["subject"] == "Outer"
    assert parsed["from"] == {"emailAddress": {"name": "Søren Buyer", "address": "buyer@fabrikam.example"}}
    assert parsed["receivedDateTime"] == "2024-06-03T10:00:00Z"
    assert parsed["body"]["contentType"] == "html"
    item, logo = parsed["attachments"]
    assert item["@odata.type"] == "#microsoft.graph.itemAttachment"
    assert item["item"]["subject"] == "Inner"
    assert item["item"]["attachments"][0]["name"] == "a.csv"
    assert (logo["isInline"], logo["contentId"]) == (True, "logo@sig")
