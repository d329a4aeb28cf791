"""Mail a host system sends through a sender profile (`POST …/mail-senders/{id}/messages`):
checked whole before anything is stored or queued, then kept for the `mail-send` worker.

Checks: at least one recipient and each an e-mail address (at most 500, Exchange's limit per
message), a subject of at most 255 characters, a text or HTML body, attachments whose base64
decodes, whose file type Outlook does not block (executables and scripts, also when renamed:
their first bytes give them away), each at most 150 MB (Graph's limit), and a message that
weighs at most `MAIL_SEND_MAX_MB` as Exchange counts it (default 35 MB, Exchange Online's default
send size limit; files count base64-encoded, so about 26 MB of files fit).

Exactly one mail per idempotency key: the message id is derived from the sender profile and
the key, so a retried POST finds the row the first one made (202 with the same id, whatever
its status), and a key reused for a different mail is a 409. The mail (recipients, subject,
body) and its files wait in Blob Storage; the row holds no content.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from core.errors import AlreadyExists, StoreError
from core.graph.model import BodyType, Importance, OutgoingAttachment, OutgoingMail
from core.mail.config import Address
from core.mail.staging import DocumentStore
from core.queues import TextQueue
from core.request_errors import EditConflict, FieldProblem, InvalidInput, ItemNotFound, UpstreamUnavailable
from core.runs import Clock
from core.store import Tables
from core.store.keys import short_hash
from core.store.records import (
    MailSender,
    OutgoingAttachmentRecord,
    OutgoingMessage,
    OutgoingStatus,
    Tenant,
)
from core.validators import ApiModel, parse, plain_text

log = logging.getLogger(__name__)

SEND_QUEUE = "mail-send"
MAX_RECIPIENTS = 500  # Exchange Online's recipient limit per message
MAX_ATTACHMENTS = 50
MAX_ATTACHMENT_BYTES = 150 * 1024 * 1024  # Graph's largest attachment (upload session)
MAX_BODY_CHARS = 2 * 1024 * 1024
# Outlook's blocked attachment types (Level 1): recipients could not open them anyway, and a
# bridge should not be how executables leave a tenant.
_BLOCKED = """
ade adp app application appref-ms asp aspx asx bas bat bgi cab cer chm cmd cnt com cpl crt csh der
diagcab exe fxp gadget grp hlp hpj hta htc inf ins isp its jar jnlp js jse ksh lnk mad maf mag mam
maq mar mas mat mau mav maw mcf mda mdb mde mdt mdw mdz msc msh msh1 msh2 mshxml msh1xml msh2xml msi
msp mst msu ops osd pcd pif pl plg prf prg printerexport ps1 ps1xml ps2 ps2xml psc1 psc2 psd1 psdm1
pst py pyc pyo pyw pyz pyzw reg scf scr sct shb shs theme tmp url vb vbe vbp vbs vhd vhdx vsmacros
vsw webpnp website ws wsb wsc wsf wsh xbap xll xnk
"""
BLOCKED_EXTENSIONS = frozenset(_BLOCKED.split())
_EXECUTABLE = (b"MZ", b"\x7fELF", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe")


def _token(value: str) -> str:
    if not 1 <= len(value) <= 200 or not value.isascii() or not value.isprintable():
        raise ValueError("must be 1-200 printable ASCII characters")
    return value


def _file_name(value: str) -> str:
    value = plain_text(value.strip())
    if not value or len(value) > 255 or any(c in value for c in '\\/:*?"<>|'):
        raise ValueError('must be a plain file name of 1-255 characters (no \\ / : * ? " < > |)')
    extension = value.rpartition(".")[2].lower() if "." in value else ""
    if extension in BLOCKED_EXTENSIONS:
        raise ValueError(f"is a .{extension} file, a type Outlook blocks")
    return value


def _mime(value: str) -> str:
    value = value.strip()
    if not 3 <= len(value) <= 200 or "/" not in value or not value.isascii() or not value.isprintable():
        raise ValueError("must be a MIME type such as application/pdf")
    return value


class BodyIn(ApiModel):
    content_type: Literal["text", "html"] = "text"
    content: Annotated[str, Field(max_length=MAX_BODY_CHARS)] = ""


class AttachmentIn(ApiModel):
    name: Annotated[str, AfterValidator(_file_name)]
    content_type: Annotated[str, AfterValidator(_mime)]
    content_base64: str


def _text_body(value: object) -> object:
    return {"contentType": "text", "content": value} if isinstance(value, str) else value


class OutgoingMailIn(ApiModel):
    idempotency_key: Annotated[str, AfterValidator(_token)]
    to: list[Address] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    cc: list[Address] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    bcc: list[Address] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    reply_to: list[Address] = Field(default_factory=list, max_length=10)
    subject: Annotated[str, Field(max_length=255), AfterValidator(plain_text)] = ""
    # a string is a text body; {contentType: text|html, content} says which
    body: Annotated[BodyIn, BeforeValidator(_text_body, json_schema_input_type=BodyIn | str)] = BodyIn()
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    importance: Importance = Importance.NORMAL

    @model_validator(mode="after")
    def _recipients(self) -> OutgoingMailIn:
        count = len(self.to) + len(self.cc) + len(self.bcc)
        if count == 0:
            raise ValueError("a mail needs at least one recipient in to, cc or bcc")
        if count > MAX_RECIPIENTS:
            raise ValueError(f"a mail has at most {MAX_RECIPIENTS} recipients in to, cc and bcc together")
        return self


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    spec: OutgoingMailIn
    files: tuple[OutgoingAttachment, ...]
    fingerprint: str

    @property
    def recipients(self) -> int:
        return len(self.spec.to) + len(self.spec.cc) + len(self.spec.bcc)


def parse_outgoing(body: object, max_total_bytes: int) -> OutgoingRequest:
    """The checked request with its files decoded; InvalidInput naming every bad field."""
    spec = parse(OutgoingMailIn, body)
    problems: list[FieldProblem] = []
    files: list[OutgoingAttachment] = []
    for index, attachment in enumerate(spec.attachments):
        where = f"attachments[{index}]"
        try:
            content = base64.b64decode(attachment.content_base64, validate=True)
        except (binascii.Error, ValueError):
            problems.append(FieldProblem(f"{where}.contentBase64", "is not valid base64"))
            continue
        if not content:
            problems.append(FieldProblem(f"{where}.contentBase64", "is empty"))
        elif len(content) > MAX_ATTACHMENT_BYTES:
            problems.append(FieldProblem(f"{where}.contentBase64", "is larger than 150 MB"))
        elif content.startswith(_EXECUTABLE):
            problems.append(FieldProblem(f"{where}.contentBase64", "is a program, a type Outlook blocks"))
        else:
            files.append(OutgoingAttachment(attachment.name, attachment.content_type, content))
    size = encoded_size(spec, files)
    if not problems and size > max_total_bytes:
        limit = max_total_bytes // (1024 * 1024)
        total = sum(len(f.content) for f in files)
        problems.append(
            FieldProblem(
                "attachments",
                f"are {total:,} bytes together, {size / (1024 * 1024):.1f} MB as a sent message (files "
                f"travel base64-encoded, a third larger); the limit is {limit} MB",
            )
        )
    if problems:
        raise InvalidInput(problems)
    canonical = spec.model_dump(mode="json", by_alias=True, exclude={"idempotency_key", "attachments"})
    canonical["body"] = spec.body.model_dump(mode="json", by_alias=True)
    canonical["attachments"] = [
        {"name": f.name, "contentType": f.content_type, "sha256": hashlib.sha256(f.content).hexdigest()}
        for f in files
    ]
    fingerprint = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode("utf-8")).hexdigest()
    return OutgoingRequest(spec, tuple(files), fingerprint)


def encoded_size(spec: OutgoingMailIn, files: list[OutgoingAttachment]) -> int:
    """About what the message weighs as Exchange counts it (MIME: files in base64), which is what
    a mailbox's send size limit applies to."""
    files_size = sum(4 * -(-len(f.content) // 3) for f in files)
    return files_size + len(spec.body.content.encode("utf-8")) + len(spec.subject.encode("utf-8"))


def message_id(tenant_id: str, sender_id: str, idempotency_key: str) -> str:
    return "mail-" + short_hash(f"{tenant_id}\n{sender_id}\n{idempotency_key}")


def blob_prefix(tenant_id: str, message: str) -> str:
    """Where a mail and its files wait (names never carry file names or content)."""
    return f"outgoing/{short_hash(tenant_id)}/{message}"


def mail_json(spec: OutgoingMailIn) -> bytes:
    """The mail without its files, as the worker reads it back (`load_mail`)."""
    body = spec.body
    doc = {
        "subject": spec.subject,
        "body": body.content,
        "bodyType": body.content_type,
        "to": list(spec.to),
        "cc": list(spec.cc),
        "bcc": list(spec.bcc),
        "replyTo": list(spec.reply_to),
        "importance": spec.importance.value,
    }
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def build_mail(
    doc: dict[str, Any], row: OutgoingMessage, files: tuple[OutgoingAttachment, ...]
) -> OutgoingMail:
    return OutgoingMail(
        subject=str(doc["subject"]),
        body=str(doc["body"]),
        body_type=BodyType(doc["bodyType"]),
        to=tuple(doc["to"]),
        cc=tuple(doc["cc"]),
        bcc=tuple(doc["bcc"]),
        reply_to=tuple(doc["replyTo"]),
        importance=Importance(doc["importance"]),
        attachments=files,
        save_to_sent_items=row.save_to_sent_items,
        from_address=row.send_as,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def message_view(row: OutgoingMessage) -> dict[str, Any]:
    return {
        "id": row.message_id,
        "senderId": row.sender_id,
        "status": row.status.value,
        "recipients": row.recipients,
        "attachments": [{"name": a.name, "size": a.size} for a in row.attachments],
        "error": row.error,
        "fix": row.fix,
        "outcomeUnknown": row.outcome_unknown,
        "createdAt": _iso(row.created_at),
        "sentAt": _iso(row.sent_at),
    }


class SendQueue(Protocol):
    async def send(self, tenant_id: str, message: str, *, delay: float = 0.0) -> None: ...


class AzureSendQueue:
    def __init__(self, queue: TextQueue) -> None:
        self._queue = queue

    async def send(self, tenant_id: str, message: str, *, delay: float = 0.0) -> None:
        await self._queue.send(json.dumps({"tenantId": tenant_id, "messageId": message}), delay=delay)


class InMemorySendQueue:
    """The fake: records what was sent, with its delay."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, float]] = []

    async def send(self, tenant_id: str, message: str, *, delay: float = 0.0) -> None:
        self.sent.append((tenant_id, message, delay))

    def take(self) -> list[tuple[str, str, float]]:
        taken = list(self.sent)
        self.sent.clear()
        return taken


def decode_send(text: str) -> tuple[str, str]:
    """(tenant id, message id) of a `mail-send` queue message; ValueError for anything else."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValueError("a mail-send message must be JSON") from None
    if not isinstance(raw, dict) or not all(
        isinstance(raw.get(k), str) and raw[k] for k in ("tenantId", "messageId")
    ):
        raise ValueError("a mail-send message names a tenantId and a messageId")
    return raw["tenantId"], raw["messageId"]


async def _one(content: bytes) -> Any:
    yield content


class OutgoingService:
    """A tenant's outgoing mail: accept (`submit`) and look up (`get`)."""

    def __init__(
        self,
        tables: Tables,
        documents: DocumentStore,
        queue: SendQueue,
        tenant: Tenant,
        clock: Clock,
        max_total_bytes: int,
    ) -> None:
        self._rows = tables.repo(OutgoingMessage)
        self._documents = documents
        self._queue = queue
        self._tenant = tenant
        self._clock = clock
        self._max_total_bytes = max_total_bytes

    async def submit(self, sender: MailSender, body: object) -> tuple[OutgoingMessage, bool]:
        """(the mail's row, whether this request accepted it). A repeated POST with the same
        idempotency key answers the first one's row (and queues it again while it waits, in case
        its queue message was lost); the same key with another mail is a 409."""
        request = parse_outgoing(body, self._max_total_bytes)
        tenant_id = self._tenant.tenant_id
        mid = message_id(tenant_id, sender.sender_id, request.spec.idempotency_key)
        existing = await self._rows.get(*OutgoingMessage.key(tenant_id, mid))
        if existing is not None:
            return await self._repeated(existing, request), False
        # Each attempt stages under its own name: two POSTs of one mail at once must not write
        # the same blobs; the one whose row is not kept removes its own.
        prefix = f"{blob_prefix(tenant_id, mid)}/{uuid.uuid4().hex[:12]}"
        try:
            mail_blob = f"{prefix}/mail"
            await self._documents.stage(
                mail_blob, _one(mail_json(request.spec)), content_type="application/json"
            )
            staged: list[OutgoingAttachmentRecord] = []
            for index, file in enumerate(request.files):
                name = f"{prefix}/{index}"
                stored = await self._documents.stage(name, _one(file.content), content_type=file.content_type)
                staged.append(
                    OutgoingAttachmentRecord(
                        name=file.name,
                        content_type=file.content_type,
                        size=stored.size,
                        sha256=stored.sha256,
                        blob_name=name,
                    )
                )
        except StoreError:
            raise UpstreamUnavailable("Document storage is unavailable; retry later.") from None
        now = self._clock()
        row = OutgoingMessage(
            tenant_id=tenant_id,
            message_id=mid,
            sender_id=sender.sender_id,
            mailbox=sender.mailbox,
            send_as=sender.send_as,
            save_to_sent_items=sender.save_to_sent_items,
            fingerprint=request.fingerprint,
            mail_blob=mail_blob,
            attachments=staged,
            recipients=request.recipients,
            created_at=now,
            updated_at=now,
        )
        try:
            row = await self._rows.insert(row)
        except AlreadyExists:  # the same key at the same moment: one row, the other answers it
            await self._discard(row)
            current = await self._rows.get(*OutgoingMessage.key(tenant_id, mid))
            if current is None:
                raise EditConflict("The mail changed while it was accepted; retry.") from None
            return await self._repeated(current, request), False
        await self._queue.send(tenant_id, mid)
        log.info(
            "mail accepted",
            extra={"message_id": mid, "attachments": len(staged), "bytes": row.attachment_bytes},
        )
        return row, True

    async def _discard(self, row: OutgoingMessage) -> None:
        for name in (row.mail_blob, *(a.blob_name for a in row.attachments)):
            with contextlib.suppress(StoreError):
                await self._documents.delete(name)

    async def _repeated(self, existing: OutgoingMessage, request: OutgoingRequest) -> OutgoingMessage:
        if existing.fingerprint != request.fingerprint:
            raise EditConflict(
                "This idempotencyKey was used for another mail through this sender; use a new key "
                "for a new mail (a retry must repeat the same mail)."
            )
        if existing.status is OutgoingStatus.QUEUED:
            await self._queue.send(existing.tenant_id, existing.message_id)
        return existing

    async def get(self, sender: MailSender, message: str) -> OutgoingMessage:
        row = None
        if message.startswith("mail-") and len(message) <= 64:
            row = await self._rows.get(*OutgoingMessage.key(self._tenant.tenant_id, message))
        if row is None or row.sender_id != sender.sender_id:
            raise ItemNotFound(f"Mail '{message[:64]}' does not exist for this sender.")
        return row
