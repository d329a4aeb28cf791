"""Mail folders, messages and their attachments in the emulated mailboxes: the model, the
parsing of Graph's JSON into it, and the rendering back to Graph's JSON.

A message is stored once, by its lifetime key (what its immutable id encodes), with the folder
it is in and its per-location entry key (what its regular id encodes); see mail_ids.py. An
attached e-mail (itemAttachment) is a `MessageRecord` that lives in no folder.

Attachment bytes are `Blob`s: small ones in memory, larger ones spooled to a file (an emulated
mailbox can hold many 150 MB attachments; memory should not have to). Blobs are immutable, so a
forwarded or delivered copy shares its original's blob.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import html
import re
import secrets
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from devtools.graph_emulator import mail_ids
from devtools.graph_emulator.directory import User
from devtools.graph_emulator.errors import GraphError, bad_request
from devtools.graph_emulator.timezones import format_instant, parse_instant

MAX_POST_ATTACHMENT_BYTES = 3 * 1024 * 1024
MIN_UPLOAD_SESSION_BYTES = 3 * 1024 * 1024
# "The maximum request length supported is 4MB." (Outlook's limit on a JSON request body).
MAX_REQUEST_BYTES = 4 * 1024 * 1024
SPOOL_THRESHOLD = 1024 * 1024
IMPORTANCE = ("low", "normal", "high")

# Well-known folder name -> display name (an English-language mailbox), in Graph's list order.
WELL_KNOWN_FOLDERS = {
    "archive": "Archive",
    "deleteditems": "Deleted Items",
    "drafts": "Drafts",
    "inbox": "Inbox",
    "junkemail": "Junk Email",
    "outbox": "Outbox",
    "sentitems": "Sent Items",
}
ROOT = "msgfolderroot"

WRITABLE = {
    "subject",
    "body",
    "from",
    "sender",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "importance",
    "categories",
    "isRead",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "flag",
    "internetMessageId",
    "inferenceClassification",
}
# Only a draft's content can change; a received or sent message keeps what was sent.
DRAFT_ONLY = {
    "subject",
    "body",
    "from",
    "sender",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "internetMessageId",
}
# Accepted and ignored, as Graph's reader does for computed properties.
READ_ONLY = {
    "id",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "hasAttachments",
    "bodyPreview",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDraft",
    "webLink",
    "uniqueBody",
    "receivedDateTime",
    "sentDateTime",
    "attachments",
    "extensions",
}
# Set only through the control API or inside an attached item: when the mail arrived / was sent.
DATES = ("receivedDateTime", "sentDateTime")


# -- blobs ---------------------------------------------------------------------------------


class Blob:
    """Immutable attachment bytes, in memory or in a spool file."""

    def __init__(self, size: int, data: bytes | None = None, path: Path | None = None) -> None:
        self.size = size
        self._data = data
        self.path = path

    def read(self) -> bytes:
        if self._data is not None:
            return self._data
        assert self.path is not None
        return self.path.read_bytes()

    def chunks(self, chunk_size: int) -> Iterator[bytes]:
        if self._data is not None:
            for start in range(0, self.size, chunk_size):
                yield self._data[start : start + chunk_size]
            return
        assert self.path is not None
        with self.path.open("rb") as handle:
            while chunk := handle.read(chunk_size):
                yield chunk


class BlobStore:
    """Where attachment bytes live. Over `threshold` bytes they go to a file in `directory`
    (by default a temporary directory made on first need and removed with the store)."""

    def __init__(self, directory: Path | None = None, threshold: int = SPOOL_THRESHOLD) -> None:
        self.threshold = threshold
        self._directory = directory
        self._owned: Path | None = None
        self._cleanup: weakref.finalize[Any, Any] | None = None

    def _spool(self) -> Path:
        if self._directory is not None:
            self._directory.mkdir(parents=True, exist_ok=True)
            return self._directory
        if self._owned is None:
            self._owned = Path(tempfile.mkdtemp(prefix="graph-emulator-mail-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._owned, True)
        return self._owned

    def put(self, data: bytes) -> Blob:
        if len(data) <= self.threshold:
            return Blob(len(data), data=bytes(data))
        path = self._spool() / f"blob-{secrets.token_hex(12)}"
        path.write_bytes(data)
        return Blob(len(data), path=path)

    def put_file(self, source: Path) -> Blob:
        size = source.stat().st_size
        if size <= self.threshold:
            return Blob(size, data=source.read_bytes())
        path = self._spool() / f"blob-{secrets.token_hex(12)}"
        shutil.copyfile(source, path)
        return Blob(size, path=path)

    def reset(self) -> None:
        """Forget every spooled file (the records that named them are gone too)."""
        spool = self._owned or self._directory
        if spool is not None and spool.exists():
            for path in spool.glob("blob-*"):
                path.unlink(missing_ok=True)


# -- model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    name: str
    address: str

    def to_graph(self) -> dict[str, Any]:
        return {"emailAddress": {"name": self.name, "address": self.address}}

    @classmethod
    def parse(cls, value: str) -> Address:
        """From "Name <a@b>" or "a@b"."""
        name, address = parseaddr(value)
        if not address or "@" not in address:
            raise ValueError(f"not an e-mail address: {value!r}")
        return cls(name or address, address)


@dataclass
class AttachmentRecord:
    key: bytes
    kind: Literal["file", "item", "reference"]
    name: str
    content_type: str | None
    is_inline: bool
    content_id: str | None
    modified: dt.datetime
    size: int
    blob: Blob | None = None  # file attachments
    item: MessageRecord | None = None  # item attachments
    source_url: str | None = None  # reference attachments

    def copy(self) -> AttachmentRecord:
        """The same content under a new key (forwarded or delivered copies share blobs)."""
        return AttachmentRecord(
            mail_ids.new_key(),
            self.kind,
            self.name,
            self.content_type,
            self.is_inline,
            self.content_id,
            self.modified,
            self.size,
            self.blob,
            self.item.copy(None) if self.item is not None else None,
            self.source_url,
        )


@dataclass
class MessageRecord:
    key: bytes  # lifetime key: the immutable id
    folder_key: bytes | None  # None for an attached item
    entry_key: bytes  # per location: the regular id; new on every move
    subject: str
    body_type: str  # "text" | "html"
    body: str
    created: dt.datetime
    modified: dt.datetime
    change_key: str
    internet_message_id: str
    conversation_id: str
    from_: Address | None = None
    sender: Address | None = None
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    received: dt.datetime | None = None
    sent: dt.datetime | None = None
    importance: str = "normal"
    categories: list[str] = field(default_factory=list)
    is_read: bool = False
    is_draft: bool = False
    delivery_receipt: bool = False
    read_receipt: bool = False
    flag: dict[str, Any] = field(default_factory=lambda: {"flagStatus": "notFlagged"})
    inference: str = "focused"
    attachments: list[AttachmentRecord] = field(default_factory=list)
    seq: int = 0  # storage order: breaks ties between equal receivedDateTimes (whole seconds)

    @property
    def has_attachments(self) -> bool:
        # Graph: "hasAttachments ... does not include inline attachments".
        return any(not a.is_inline for a in self.attachments)

    def copy(self, folder_key: bytes | None) -> MessageRecord:
        """A new item with the same content (new keys; attachments copied)."""
        return MessageRecord(
            key=mail_ids.new_key(),
            folder_key=folder_key,
            entry_key=mail_ids.new_key(),
            subject=self.subject,
            body_type=self.body_type,
            body=self.body,
            created=self.created,
            modified=self.modified,
            change_key=new_change_key(),
            internet_message_id=self.internet_message_id,
            conversation_id=self.conversation_id,
            from_=self.from_,
            sender=self.sender,
            to=list(self.to),
            cc=list(self.cc),
            bcc=list(self.bcc),
            reply_to=list(self.reply_to),
            received=self.received,
            sent=self.sent,
            importance=self.importance,
            categories=list(self.categories),
            is_read=self.is_read,
            is_draft=self.is_draft,
            delivery_receipt=self.delivery_receipt,
            read_receipt=self.read_receipt,
            flag=dict(self.flag),
            inference=self.inference,
            attachments=[a.copy() for a in self.attachments],
        )


@dataclass
class MailFolder:
    key: bytes
    display_name: str
    parent_key: bytes | None  # None for the root (msgfolderroot)
    well_known: str | None = None
    is_hidden: bool = False


@dataclass
class MailMailbox:
    user: User
    tag: bytes
    folders: dict[bytes, MailFolder] = field(default_factory=dict)
    messages: dict[bytes, MessageRecord] = field(default_factory=dict)  # by lifetime key
    entries: dict[bytes, bytes] = field(default_factory=dict)  # current entry key -> lifetime key
    # Where an item was last seen, for ids of moved or deleted messages (translate_id, @removed):
    # retired entry key -> (lifetime key, folder key), and lifetime key -> last (folder, entry).
    retired: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)
    last_location: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)
    well_known: dict[str, bytes] = field(default_factory=dict)

    def folder_id(self, folder: MailFolder) -> str:
        return mail_ids.folder_id(self.tag, folder.key)

    def message_id(self, record: MessageRecord, immutable: bool) -> str:
        if immutable:
            return mail_ids.immutable_id(self.tag, record.key)
        assert record.folder_key is not None
        return mail_ids.regular_id(self.tag, record.folder_key, record.entry_key)

    def in_folder(self, folder_key: bytes) -> list[MessageRecord]:
        return [m for m in self.messages.values() if m.folder_key == folder_key]


def new_change_key() -> str:
    return base64.b64encode(b"\x10\x00\x00\x00" + secrets.token_bytes(12)).decode()


# -- parsing Graph JSON ----------------------------------------------------------------------


def check_properties(body: dict[str, Any]) -> None:
    for key in body:
        if key in WRITABLE or key in READ_ONLY or key.startswith("@") or key.endswith("@odata.type"):
            continue
        raise GraphError(
            400,
            "RequestBodyRead",
            f"The property '{key}' does not exist on type 'microsoft.graph.message'. Make sure to only use "
            "property names that are defined by the type or mark the type as open type.",
        )


def parse_recipient(value: Any, name_of: Any = None) -> Address:
    """A `recipient` JSON object; the display name defaults to the directory's, then the address."""
    email = value.get("emailAddress") if isinstance(value, dict) else None
    address = email.get("address") if isinstance(email, dict) else None
    if not isinstance(address, str) or "@" not in address:
        raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
    name = email.get("name") if isinstance(email, dict) else None
    if not isinstance(name, str) or not name:
        name = (name_of(address) if name_of is not None else None) or address
    return Address(name, address)


def parse_recipients(value: Any, key: str, name_of: Any = None) -> list[Address]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request(f"{key} must be a collection of recipients.", "RequestBodyRead")
    return [parse_recipient(v, name_of) for v in value]


def apply_fields(
    record: MessageRecord, body: dict[str, Any], *, allow_dates: bool = False, name_of: Any = None
) -> None:
    """Write the writable properties of a Graph message JSON onto `record`."""
    check_properties(body)
    if "subject" in body:
        record.subject = str(body["subject"] or "")
    if "body" in body and body["body"] is not None:
        value = body["body"]
        if not isinstance(value, dict):
            raise bad_request("body must be an itemBody object.", "RequestBodyRead")
        kind = str(value.get("contentType") or "text").lower()
        if kind not in ("text", "html"):
            raise GraphError(
                400,
                "RequestBodyRead",
                f"Cannot convert the literal '{kind}' to the expected type 'bodyType'.",
            )
        record.body_type, record.body = kind, str(value.get("content") or "")
    for key, attr in (("from", "from_"), ("sender", "sender")):
        if key in body:
            setattr(record, attr, None if body[key] is None else parse_recipient(body[key], name_of))
    for key, attr in (
        ("toRecipients", "to"),
        ("ccRecipients", "cc"),
        ("bccRecipients", "bcc"),
        ("replyTo", "reply_to"),
    ):
        if key in body:
            setattr(record, attr, parse_recipients(body[key], key, name_of))
    if "importance" in body:
        if body["importance"] not in IMPORTANCE:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"Cannot convert the literal '{body['importance']}' to the expected type 'importance'.",
            )
        record.importance = body["importance"]
    if "categories" in body:
        if not isinstance(body["categories"], list) or not all(
            isinstance(c, str) for c in body["categories"]
        ):
            raise bad_request("categories must be a collection of strings.", "RequestBodyRead")
        record.categories = list(body["categories"])
    for key, attr in (
        ("isRead", "is_read"),
        ("isDeliveryReceiptRequested", "delivery_receipt"),
        ("isReadReceiptRequested", "read_receipt"),
    ):
        if key in body:
            if not isinstance(body[key], bool):
                raise bad_request(f"{key} must be a boolean.", "RequestBodyRead")
            setattr(record, attr, body[key])
    if isinstance(body.get("flag"), dict):
        record.flag = {"flagStatus": "notFlagged", **body["flag"]}
    if body.get("inferenceClassification") in ("focused", "other"):
        record.inference = body["inferenceClassification"]
    if isinstance(body.get("internetMessageId"), str) and body["internetMessageId"]:
        record.internet_message_id = body["internetMessageId"]
    if allow_dates:
        for key, attr in (("receivedDateTime", "received"), ("sentDateTime", "sent")):
            if body.get(key):
                try:
                    setattr(record, attr, parse_instant(str(body[key])))
                except ValueError:
                    raise bad_request(f"{key} is not an ISO 8601 date-time.", "RequestBodyRead") from None


def decode_content(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value or ""), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("contentBytes is not valid base64.", "RequestBodyRead") from None


def too_large() -> GraphError:
    return GraphError(
        413,
        "ErrorRequestEntityTooLarge",
        "The attachment is larger than 3 MB; use an upload session (createUploadSession).",
    )


# -- rendering -------------------------------------------------------------------------------


def html_to_text(content: str) -> str:
    text = re.sub(r"(?is)<(script|style|head)\b.*?</\1>", " ", content)
    text = re.sub(r"(?i)<br\s*/?>|</(p|div|tr|li|h\d)>", "\n", text)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


def text_to_html(content: str) -> str:
    escaped = html.escape(content).replace("\n", "<br>\r\n")
    return (
        '<html><head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n</head>'
        f"<body>\r\n<div>{escaped}</div>\r\n</body>\r\n</html>\r\n"
    )


def preview(record: MessageRecord) -> str:
    text = html_to_text(record.body) if record.body_type == "html" else record.body
    return " ".join(text.split())[:255]


def body_json(record: MessageRecord, as_type: str | None) -> dict[str, str]:
    """The body, converted when `Prefer: outlook.body-content-type` asks for the other type."""
    if as_type == "text" and record.body_type == "html":
        return {"contentType": "text", "content": html_to_text(record.body)}
    if as_type == "html" and record.body_type == "text":
        return {"contentType": "html", "content": text_to_html(record.body)}
    return {"contentType": record.body_type, "content": record.body}


def folder_json(mailbox: MailMailbox, folder: MailFolder) -> dict[str, Any]:
    children = [f for f in mailbox.folders.values() if f.parent_key == folder.key]
    messages = mailbox.in_folder(folder.key)
    parent = mailbox.folders.get(folder.parent_key) if folder.parent_key is not None else None
    return {
        "id": mailbox.folder_id(folder),
        "displayName": folder.display_name,
        "parentFolderId": mailbox.folder_id(parent) if parent is not None else None,
        "childFolderCount": len(children),
        "unreadItemCount": sum(1 for m in messages if not m.is_read),
        "totalItemCount": len(messages),
        "sizeInBytes": sum(len(m.body) + sum(a.size for a in m.attachments) for m in messages),
        "isHidden": folder.is_hidden,
    }


def attachment_json(
    owner_id: str,
    att: AttachmentRecord,
    *,
    with_content: bool = True,
    expand_item: bool = False,
) -> dict[str, Any]:
    """An attachment as Graph shows it; `owner_id` is the message id in the response's form
    (the attachment id embeds it). `contentBytes` only for file attachments; the attached item
    only with `$expand=microsoft.graph.itemattachment/item`."""
    att_id = mail_ids.attachment_id(owner_id, att.key) if owner_id else ""
    out: dict[str, Any] = {"@odata.type": f"#microsoft.graph.{att.kind}Attachment"}
    if att.kind == "file":
        out["@odata.mediaContentType"] = att.content_type
    out.update(
        {
            "id": att_id,
            "lastModifiedDateTime": format_instant(att.modified),
            "name": att.name,
            "contentType": att.content_type,
            "size": att.size,
            "isInline": att.is_inline,
        }
    )
    if att.kind == "file":
        out["contentId"] = att.content_id
        out["contentLocation"] = None
        if with_content and att.blob is not None:
            out["contentBytes"] = base64.b64encode(att.blob.read()).decode()
    elif att.kind == "reference":
        out.update({"sourceUrl": att.source_url, "providerType": "other", "permission": "other"})
    elif att.kind == "item" and expand_item and att.item is not None:
        out["item"] = item_json(att.item)
    return out


def _address(value: Address | None) -> dict[str, Any] | None:
    return None if value is None else value.to_graph()


def message_json(
    mailbox: MailMailbox | None,
    record: MessageRecord,
    *,
    immutable: bool,
    body_type: str | None = None,
    expand: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """A message as Graph shows it. `mailbox` None renders an attached item (id ""). `expand`
    is the attachments' `$select` when `$expand=attachments` was asked (() = all properties)."""
    item_id = mailbox.message_id(record, immutable) if mailbox is not None else ""
    parent = None
    if mailbox is not None and record.folder_key is not None:
        parent = mail_ids.folder_id(mailbox.tag, record.folder_key)
    out: dict[str, Any] = {
        "@odata.etag": f'W/"{record.change_key}"',
        "id": item_id,
        "createdDateTime": format_instant(record.created),
        "lastModifiedDateTime": format_instant(record.modified),
        "changeKey": record.change_key,
        "categories": list(record.categories),
        "receivedDateTime": format_instant(record.received) if record.received else None,
        "sentDateTime": format_instant(record.sent) if record.sent else None,
        "hasAttachments": record.has_attachments,
        "internetMessageId": record.internet_message_id,
        "subject": record.subject,
        "bodyPreview": preview(record),
        "importance": record.importance,
        "parentFolderId": parent,
        "conversationId": record.conversation_id,
        "isDeliveryReceiptRequested": record.delivery_receipt,
        "isReadReceiptRequested": record.read_receipt,
        "isRead": record.is_read,
        "isDraft": record.is_draft,
        "webLink": (
            f"https://outlook.office365.com/owa/?ItemID={quote(item_id, safe='')}"
            "&exvsurl=1&viewmodel=ReadMessageItem"
        ),
        "inferenceClassification": record.inference,
        "body": body_json(record, body_type),
        "sender": _address(record.sender),
        "from": _address(record.from_),
        "toRecipients": [a.to_graph() for a in record.to],
        "ccRecipients": [a.to_graph() for a in record.cc],
        "bccRecipients": [a.to_graph() for a in record.bcc],
        "replyTo": [a.to_graph() for a in record.reply_to],
        "flag": dict(record.flag),
    }
    if expand is not None:
        items = [attachment_json(item_id, a) for a in record.attachments]
        if expand:
            keep = {k.lower() for k in expand} | {"id", "@odata.type"}
            items = [{k: v for k, v in a.items() if k.lower() in keep} for a in items]
        out["attachments"] = items
    return out


def item_json(record: MessageRecord) -> dict[str, Any]:
    """The attached e-mail of an itemAttachment (Graph gives it an empty id)."""
    out = {"@odata.type": "#microsoft.graph.message", **message_json(None, record, immutable=False)}
    for key in ("@odata.etag", "changeKey", "parentFolderId", "webLink"):
        out.pop(key, None)
    return out
