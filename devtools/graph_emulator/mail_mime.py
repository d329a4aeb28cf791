"""MIME (RFC 5322 / 2045) rendering of a stored message, and parsing back: what `GET .../messages/{id}/$value`
and `GET .../attachments/{id}/$value` of an attached e-mail return (Graph docs "Get attachment":
"for an item attachment that is a message, the raw contents returned is in MIME format").

The shape follows what Exchange writes: multipart/mixed when there are attachments, the body as
text/plain or text/html, file attachments base64 with Content-Disposition attachment or inline
(with Content-ID), attached e-mails as message/rfc822 parts rendered the same way, recursively.
`parse` turns MIME into Graph message JSON, so an .eml can be delivered as an attached e-mail.
"""

from __future__ import annotations

import base64
import email
import email.policy
from email.headerregistry import Address as MimeAddress
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parsedate_to_datetime
from typing import Any

from devtools.graph_emulator.mail_store import Address, AttachmentRecord, MessageRecord
from devtools.graph_emulator.timezones import format_instant

POLICY = email.policy.SMTP  # CRLF line ends, as on the wire


def _mime_address(value: Address) -> MimeAddress | str:
    try:
        return MimeAddress(
            display_name=value.name if value.name != value.address else "", addr_spec=value.address
        )
    except (ValueError, IndexError):  # an address the header registry cannot parse: write it as is
        return value.address


def _set_addresses(msg: EmailMessage, header: str, values: list[Address]) -> None:
    if values:
        msg[header] = [_mime_address(v) for v in values]


def build(record: MessageRecord) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    if record.from_ is not None:
        msg["From"] = _mime_address(record.from_)
    if record.sender is not None and record.sender != record.from_:
        msg["Sender"] = _mime_address(record.sender)
    _set_addresses(msg, "To", record.to)
    _set_addresses(msg, "Cc", record.cc)
    _set_addresses(msg, "Reply-To", record.reply_to)
    msg["Subject"] = record.subject
    when = record.sent or record.received or record.created
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = record.internet_message_id
    if record.importance != "normal":
        msg["Importance"] = record.importance
    msg.set_content(
        record.body, subtype="html" if record.body_type == "html" else "plain", cte="quoted-printable"
    )
    for att in record.attachments:
        _attach(msg, att)
    return msg


def _attach(msg: EmailMessage, att: AttachmentRecord) -> None:
    if att.kind == "item" and att.item is not None:
        inner = build(att.item)
        msg.add_attachment(inner, filename=f"{att.name}.eml" if att.name else None)
        return
    if att.kind == "reference":
        msg.add_attachment(
            f"[InternetShortcut]\r\nURL={att.source_url or ''}\r\n".encode(),
            maintype="application",
            subtype="octet-stream",
            filename=f"{att.name}.url",
        )
        return
    if att.blob is None:
        return
    maintype, _, subtype = (att.content_type or "application/octet-stream").partition("/")
    msg.add_attachment(
        att.blob.read(),
        maintype=maintype or "application",
        subtype=subtype or "octet-stream",
        filename=att.name,
        disposition="inline" if att.is_inline else "attachment",
        cid=f"<{att.content_id}>" if att.content_id else None,
    )


def render(record: MessageRecord) -> bytes:
    """The message as MIME bytes (RFC 822 / .eml)."""
    return build(record).as_bytes(policy=POLICY)


# -- parsing (an .eml given as an attached e-mail) ---------------------------------------------


def _recipients(values: list[Any]) -> list[dict[str, Any]]:
    out = []
    for name, address in getaddresses([str(v) for v in values]):
        if address:
            out.append({"emailAddress": {"name": name or address, "address": address}})
    return out


def parse(raw: bytes) -> dict[str, Any]:
    """Graph message JSON for MIME bytes (what `item(...)` accepts besides JSON): headers,
    the HTML body if there is one (else the text body), file parts as fileAttachments (inline
    when so disposed and with a Content-ID) and message/rfc822 parts as itemAttachments."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return _parse_message(msg)


def _parse_message(msg: EmailMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"subject": str(msg.get("Subject", ""))}
    sender = _recipients(msg.get_all("From", []))
    if sender:
        out["from"] = sender[0]
    for header, key in (("To", "toRecipients"), ("Cc", "ccRecipients"), ("Reply-To", "replyTo")):
        values = _recipients(msg.get_all(header, []))
        if values:
            out[key] = values
    if msg.get("Date"):
        try:
            when = parsedate_to_datetime(str(msg["Date"]))
            out["sentDateTime"] = out["receivedDateTime"] = format_instant(when)
        except (TypeError, ValueError):
            pass
    if msg.get("Message-ID"):
        out["internetMessageId"] = str(msg["Message-ID"]).strip()
    body = msg.get_body(preferencelist=("html", "plain"))
    if isinstance(body, EmailMessage):
        kind = "html" if body.get_content_subtype() == "html" else "text"
        out["body"] = {"contentType": kind, "content": body.get_content()}
    attachments: list[dict[str, Any]] = []
    for part in msg.iter_attachments():
        if part.get_content_type() == "message/rfc822":
            inner = part.get_content()
            if isinstance(inner, EmailMessage):
                item = _parse_message(inner)
                attachments.append(
                    {"@odata.type": "#microsoft.graph.itemAttachment", "name": item["subject"], "item": item}
                )
            continue
        data = part.get_payload(decode=True)
        content_id = str(part.get("Content-ID", "")).strip().strip("<>") or None
        attachments.append(
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": part.get_filename() or "attachment",
                "contentType": part.get_content_type(),
                "contentBytes": base64.b64encode(data if isinstance(data, bytes) else b"").decode(),
                "isInline": part.get_content_disposition() == "inline" and content_id is not None,
                "contentId": content_id,
            }
        )
    if attachments:
        out["attachments"] = attachments
    return out
