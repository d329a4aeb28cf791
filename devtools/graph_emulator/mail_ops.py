"""Changes to mail folders and messages - the one place they happen, for Graph requests and for
the control API ("a person in Outlook", "mail arriving from outside") alike, so both emit the same
change hooks and show up in delta the same way.

`Mail` is the mail module's state and its Python API:

    mail = mail_api(graph)                       # devtools.graph_emulator.mail_module
    message_id = mail.deliver_mail("adele@contoso.onmicrosoft.com", subject="Invoice 7",
                                   from_="Billing <billing@fabrikam.example>",
                                   attachments=[file("invoice.pdf", pdf, "application/pdf")])

Users may be named by id or UPN wherever a `user` argument is taken; message ids may be given in
either form (regular or immutable). Ids returned by the Python API are immutable ids: they stay
valid whatever happens to the message's folder.

Sending: a message sent (sendMail, a draft's send, forward, a createForward draft's send) is
delivered as a copy into the Inbox of every recipient who is a user of the emulator (looked up by
UPN or mail, in any emulated tenant, as mail routing goes by address), and the recipients that are
not users are recorded in the external outbox (`Mail.outbox()`); every send is in
`Mail.sent_mail()`. Bcc recipients are delivered to and hidden from the copies.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.graph_emulator import mail_ids, mail_mime
from devtools.graph_emulator.calendar_store import etag_matches
from devtools.graph_emulator.context import EmulatorContext
from devtools.graph_emulator.directory import User
from devtools.graph_emulator.errors import GraphError, bad_request, not_found
from devtools.graph_emulator.hooks import Change
from devtools.graph_emulator.mail_store import (
    DRAFT_ONLY,
    MAX_POST_ATTACHMENT_BYTES,
    READ_ONLY,
    ROOT,
    WELL_KNOWN_FOLDERS,
    Address,
    AttachmentRecord,
    BlobStore,
    MailFolder,
    MailMailbox,
    MessageRecord,
    apply_fields,
    check_properties,
    decode_content,
    item_json,
    new_change_key,
    parse_recipient,
    too_large,
)
from devtools.graph_emulator.timezones import format_instant

# -- attachment specs for the Python API -----------------------------------------------------


@dataclass(frozen=True)
class FileSpec:
    name: str
    data: bytes | Path
    content_type: str = "application/octet-stream"
    inline: bool = False
    content_id: str | None = None


@dataclass(frozen=True)
class ItemSpec:
    message: dict[str, Any] | bytes  # Graph message JSON (with its own attachments) or MIME
    name: str | None = None


def file(
    name: str,
    data: bytes | Path,
    content_type: str = "application/octet-stream",
    *,
    inline: bool = False,
    content_id: str | None = None,
) -> FileSpec:
    """A file attachment for `deliver_mail` (bytes, or a Path to copy without loading it)."""
    return FileSpec(name, data, content_type, inline, content_id)


def item(message: dict[str, Any] | bytes, name: str | None = None) -> ItemSpec:
    """An attached e-mail for `deliver_mail`, from Graph message JSON (`subject`, `body`,
    `from`, `toRecipients`, `receivedDateTime`, `attachments` with `contentBytes`...) or from
    MIME bytes (an .eml)."""
    return ItemSpec(message, name)


AttachmentSpec = FileSpec | ItemSpec | dict[str, Any]


@dataclass
class SentEntry:
    """One message that left a mailbox (sendMail, a draft's send, or a forward)."""

    kind: str  # "send" | "forward"
    sender: str  # the sending mailbox's UPN
    recipients: list[str]  # every address it went to (To, Cc, Bcc), deduplicated
    external: list[str]  # those that are not users of the emulator: the outbox
    record: MessageRecord  # a copy as sent
    sent: dt.datetime
    comment: str = ""  # a forward's comment

    def to_json(self, *, external_only: bool = False) -> dict[str, Any]:
        message = item_json(self.record)
        message["attachments"] = [_attachment_summary(a) for a in self.record.attachments]
        return {
            "kind": self.kind,
            "sender": self.sender,
            "recipients": list(self.external if external_only else self.recipients),
            "external": list(self.external),
            "subject": self.record.subject,
            "comment": self.comment,
            "attachmentNames": [a.name for a in self.record.attachments],
            "internetMessageId": self.record.internet_message_id,
            "sentDateTime": format_instant(self.sent),
            "message": message,
        }

    def mime(self) -> bytes:
        return mail_mime.render(self.record)


def _attachment_summary(att: AttachmentRecord) -> dict[str, Any]:
    return {
        "@odata.type": f"#microsoft.graph.{att.kind}Attachment",
        "name": att.name,
        "contentType": att.content_type,
        "size": att.size,
        "isInline": att.is_inline,
        "contentId": att.content_id,
    }


def _second(when: dt.datetime) -> dt.datetime:
    # Outlook keeps whole seconds for received/sent times.
    return when.astimezone(dt.UTC).replace(microsecond=0)


def invalid_id() -> GraphError:
    return GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


def stale_change_key() -> GraphError:
    return GraphError(
        412,
        "ErrorIrresolvableConflict",
        "The send or update operation could not be performed because the change key passed in the "
        "request does not match the current change key for the item.",
    )


class Mail:
    def __init__(self, ctx: EmulatorContext, blobs: BlobStore | None = None) -> None:
        self.ctx = ctx
        self.blobs = blobs or BlobStore()
        self._mailboxes: dict[str, MailMailbox] = {}
        self.sent_log: list[SentEntry] = []
        self._send_as: dict[str, set[str]] = {}  # user id -> addresses it may send as
        # createForward drafts (item key) -> their comment: sent, they are forwards
        self._forward_comments: dict[bytes, str] = {}
        self._seq = 0

    def reset(self) -> None:
        self._mailboxes.clear()
        self.sent_log.clear()
        self._send_as.clear()
        self._forward_comments.clear()
        self.blobs.reset()

    # -- mailboxes and folders ---------------------------------------------------------------

    def user(self, user: User | str) -> User:
        return user if isinstance(user, User) else self.ctx.resolve_user(user)

    def mailbox(self, user: User | str) -> MailMailbox:
        """The user's mail store, made with the well-known folders on first use: every Exchange
        mailbox has them."""
        found = self.user(user)
        mailbox = self._mailboxes.get(found.id)
        if mailbox is None:
            mailbox = self._mailboxes[found.id] = MailMailbox(found, mail_ids.mailbox_tag(found.id))
            root = MailFolder(mail_ids.new_key(), "Top of Information Store", None, ROOT)
            mailbox.folders[root.key] = root
            mailbox.well_known[ROOT] = root.key
            for name, display in WELL_KNOWN_FOLDERS.items():
                folder = MailFolder(mail_ids.new_key(), display, root.key, name)
                mailbox.folders[folder.key] = folder
                mailbox.well_known[name] = folder.key
        return mailbox

    def folder(self, user: User | str, folder: str) -> MailFolder:
        """A folder by well-known name (case-insensitive, e.g. "inbox", "SentItems") or by id."""
        mailbox = self.mailbox(user)
        key = mailbox.well_known.get(folder.lower())
        if key is None:
            parsed = mail_ids.parse_folder_id(folder)
            if parsed is None:
                raise invalid_id()
            tag, key = parsed
            if tag != mailbox.tag:
                raise not_found()
        found = mailbox.folders.get(key)
        if found is None:
            raise not_found()
        return found

    def folders(
        self, user: User | str, parent: str | None = None, *, include_hidden: bool = False
    ) -> list[MailFolder]:
        """The child folders of `parent` (the root, i.e. the top-level folders, if None), by name."""
        mailbox = self.mailbox(user)
        parent_key = self.folder(user, parent or ROOT).key
        children = [
            f
            for f in mailbox.folders.values()
            if f.parent_key == parent_key and (include_hidden or not f.is_hidden)
        ]
        return sorted(children, key=lambda f: f.display_name.casefold())

    def folder_path(self, user: User | str, folder: MailFolder) -> str:
        """ "Inbox/Invoices" for a folder (display names from the top level down)."""
        mailbox = self.mailbox(user)
        names: list[str] = []
        current: MailFolder | None = folder
        while current is not None and current.parent_key is not None:
            names.append(current.display_name)
            current = mailbox.folders.get(current.parent_key)
        return "/".join(reversed(names))

    def create_folder(
        self, user: User | str, display_name: str, parent: str | None = None, *, is_hidden: bool = False
    ) -> MailFolder:
        mailbox = self.mailbox(user)
        if not isinstance(display_name, str) or not display_name.strip():
            raise bad_request("The folder's displayName is required.", "ErrorInvalidRequest")
        parent_folder = self.folder(user, parent or ROOT)
        siblings = [f for f in mailbox.folders.values() if f.parent_key == parent_folder.key]
        if any(f.display_name.casefold() == display_name.casefold() for f in siblings):
            raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")
        folder = MailFolder(mail_ids.new_key(), display_name, parent_folder.key, None, is_hidden)
        mailbox.folders[folder.key] = folder
        return folder

    def ensure_folder_path(self, user: User | str, path: str, *, create: bool = True) -> MailFolder:
        """The folder at "Inbox/Invoices/2024" (display names; the first may be a well-known
        name), creating what is missing (or 404 with `create=False`)."""
        segments = [s.strip() for s in path.strip("/").split("/") if s.strip()]
        if not segments:
            raise bad_request("A folder path is display names separated by '/'.")
        mailbox = self.mailbox(user)
        parent = self.folder(user, ROOT)
        for index, name in enumerate(segments):
            wanted = name.casefold()
            key = mailbox.well_known.get(wanted.replace(" ", "")) if index == 0 else None
            found = mailbox.folders.get(key) if key is not None else None
            if found is None:
                found = next(
                    (
                        f
                        for f in mailbox.folders.values()
                        if f.parent_key == parent.key and f.display_name.casefold() == wanted
                    ),
                    None,
                )
            if found is None and not create:
                raise not_found(f"No mail folder '{name}' in '{path}'.")
            if found is None:
                found = self.create_folder(user, name, mailbox.folder_id(parent))
            parent = found
        return parent

    # -- messages: reads ---------------------------------------------------------------------

    def find(self, user: User | str, message_id: str, folder: MailFolder | None = None) -> MessageRecord:
        """A message by regular or immutable id (400 if malformed, 404 if not here). A regular
        id names the message where it was: after a move it no longer resolves."""
        mailbox = self.mailbox(user)
        ref = mail_ids.parse_message_id(message_id)
        if ref is None:
            raise invalid_id()
        record: MessageRecord | None = None
        if ref.mailbox == mailbox.tag:
            if ref.immutable:
                assert ref.item_key is not None
                record = mailbox.messages.get(ref.item_key)
            else:
                assert ref.entry_key is not None
                key = mailbox.entries.get(ref.entry_key)
                record = mailbox.messages.get(key) if key is not None else None
                if record is not None and record.folder_key != ref.folder_key:
                    record = None
        if record is None or (folder is not None and record.folder_key != folder.key):
            raise not_found()
        return record

    def messages(self, user: User | str, folder: str = "inbox") -> list[MessageRecord]:
        """A folder's messages (id, well-known name or path), newest first (Graph's default
        order for message lists)."""
        mailbox = self.mailbox(user)
        key = self.resolve_folder(user, folder, create=False).key
        return sorted(mailbox.in_folder(key), key=lambda m: (m.received or m.created, m.seq), reverse=True)

    def all_messages(self, user: User | str) -> list[MessageRecord]:
        mailbox = self.mailbox(user)
        return sorted(mailbox.messages.values(), key=lambda m: (m.received or m.created, m.seq), reverse=True)

    def message_id(self, user: User | str, message: MessageRecord, *, immutable: bool) -> str:
        return self.mailbox(user).message_id(message, immutable)

    def translate_id(self, user: User | str, message_id: str, *, immutable: bool) -> str:
        """The other form of a message id - also for a message since moved (a retired regular
        id) or deleted (its last location), so change notifications and @removed entries can be
        written in either form."""
        mailbox = self.mailbox(user)
        ref = mail_ids.parse_message_id(message_id)
        if ref is None:
            raise invalid_id()
        if ref.mailbox != mailbox.tag:
            raise not_found()
        if ref.immutable:
            assert ref.item_key is not None
            if immutable:
                return message_id
            record = mailbox.messages.get(ref.item_key)
            if record is not None:
                return mailbox.message_id(record, False)
            last = mailbox.last_location.get(ref.item_key)
            if last is None:
                raise not_found()
            return mail_ids.regular_id(mailbox.tag, *last)
        assert ref.entry_key is not None
        if not immutable:
            return message_id
        key = mailbox.entries.get(ref.entry_key)
        if key is None:
            retired = mailbox.retired.get(ref.entry_key)
            if retired is None:
                raise not_found()
            key = retired[0]
        return mail_ids.immutable_id(mailbox.tag, key)

    def attachment(self, user: User | str, message_id: str, attachment_id: str) -> AttachmentRecord:
        record = self.find(user, message_id)
        parsed = mail_ids.parse_attachment_id(attachment_id)
        if parsed is None:
            raise invalid_id()
        found = next((a for a in record.attachments if a.key == parsed[1]), None)
        if found is None:
            raise not_found("The attachment was not found.")
        return found

    # -- messages: writes --------------------------------------------------------------------

    def _name_of(self, address: str) -> str | None:
        found = self.ctx.directory.any_user(address) if "@" in address else None
        return found.display_name if found is not None else None

    def _new_record(self, mailbox: MailMailbox, folder_key: bytes | None) -> MessageRecord:
        now = self.ctx.clock.now()
        domain = mailbox.user.user_principal_name.rpartition("@")[2]
        return MessageRecord(
            key=mail_ids.new_key(),
            folder_key=folder_key,
            entry_key=mail_ids.new_key(),
            subject="",
            body_type="text",
            body="",
            created=now,
            modified=now,
            change_key=new_change_key(),
            internet_message_id=mail_ids.internet_message_id(domain),
            conversation_id=mail_ids.conversation_id(),
        )

    def _store(self, mailbox: MailMailbox, record: MessageRecord, folder_key: bytes) -> MessageRecord:
        self._seq += 1
        record.seq = self._seq
        record.folder_key = folder_key
        mailbox.messages[record.key] = record
        mailbox.entries[record.entry_key] = record.key
        self._emit("created", mailbox, record)
        return record

    def _relocate(self, mailbox: MailMailbox, record: MessageRecord, folder_key: bytes) -> None:
        """Move: the item keeps its lifetime key (immutable id) and gets a new entry key (regular
        id) and change key in its new folder, as an Exchange move does."""
        old_folder, old_entry = record.folder_key, record.entry_key
        assert old_folder is not None
        self._emit("deleted", mailbox, record)
        del mailbox.entries[old_entry]
        mailbox.retired[old_entry] = (record.key, old_folder)
        record.folder_key = folder_key
        record.entry_key = mail_ids.new_key()
        record.change_key = new_change_key()
        record.modified = self.ctx.clock.now()
        mailbox.entries[record.entry_key] = record.key
        self._emit("created", mailbox, record)

    def _attachment(self, spec: AttachmentSpec, *, limit: bool) -> AttachmentRecord:
        now = self.ctx.clock.now()
        if isinstance(spec, FileSpec):
            blob = (
                self.blobs.put_file(spec.data) if isinstance(spec.data, Path) else self.blobs.put(spec.data)
            )
            return AttachmentRecord(
                mail_ids.new_key(),
                "file",
                spec.name,
                spec.content_type,
                spec.inline,
                spec.content_id,
                now,
                blob.size,
                blob=blob,
            )
        if isinstance(spec, ItemSpec):
            message = mail_mime.parse(spec.message) if isinstance(spec.message, bytes) else spec.message
            return self._attachment(
                {
                    "@odata.type": "#microsoft.graph.itemAttachment",
                    "name": spec.name or message.get("subject") or "",
                    "item": message,
                },
                limit=limit,
            )
        return self.attachment_from_json(spec, limit=limit)

    def attachment_from_json(self, body: dict[str, Any], *, limit: bool = True) -> AttachmentRecord:
        """An attachment from Graph JSON (file, item or reference). `limit`: a file over 3 MB is
        refused (413), as Graph refuses it outside an upload session."""
        now = self.ctx.clock.now()
        kind = str(body.get("@odata.type") or "#microsoft.graph.fileAttachment").lower().lstrip("#")
        name = body.get("name")
        if kind == "microsoft.graph.fileattachment":
            if not isinstance(name, str) or not name:
                raise bad_request("The attachment name is required.")
            data = decode_content(body.get("contentBytes"))
            if limit and len(data) > MAX_POST_ATTACHMENT_BYTES:
                raise too_large()
            blob = self.blobs.put(data)
            content_id = body.get("contentId")
            return AttachmentRecord(
                mail_ids.new_key(),
                "file",
                name,
                str(body.get("contentType") or "application/octet-stream"),
                bool(body.get("isInline", False)),
                content_id if isinstance(content_id, str) and content_id else None,
                now,
                blob.size,
                blob=blob,
            )
        if kind == "microsoft.graph.itemattachment":
            inner = body.get("item")
            if not isinstance(inner, dict):
                raise bad_request("An itemAttachment needs an item (the attached message).")
            inner_type = str(inner.get("@odata.type") or "#microsoft.graph.message").lower()
            if inner_type != "#microsoft.graph.message":
                raise bad_request("The emulator attaches messages only, not events or contacts.")
            record = self._item_record(inner, limit=limit)
            return AttachmentRecord(
                mail_ids.new_key(),
                "item",
                name if isinstance(name, str) and name else record.subject,
                None,  # Graph: "Returned as null by default, when not set explicitly"
                bool(body.get("isInline", False)),
                None,
                now,
                len(mail_mime.render(record)),
                item=record,
            )
        if kind == "microsoft.graph.referenceattachment":
            url = body.get("sourceUrl")
            if not isinstance(name, str) or not name or not isinstance(url, str) or not url:
                raise bad_request("A referenceAttachment needs a name and a sourceUrl.")
            return AttachmentRecord(
                mail_ids.new_key(),
                "reference",
                name,
                body.get("contentType"),
                bool(body.get("isInline", False)),
                None,
                now,
                0,
                source_url=url,
            )
        raise bad_request(f"Unknown attachment type '{body.get('@odata.type')}'.", "RequestBodyRead")

    def _item_record(self, body: dict[str, Any], *, limit: bool) -> MessageRecord:
        now = _second(self.ctx.clock.now())
        record = MessageRecord(
            key=mail_ids.new_key(),
            folder_key=None,
            entry_key=mail_ids.new_key(),
            subject="",
            body_type="text",
            body="",
            created=now,
            modified=now,
            change_key=new_change_key(),
            internet_message_id="",
            conversation_id=mail_ids.conversation_id(),
            received=now,
            sent=now,
        )
        apply_fields(
            record,
            {k: v for k, v in body.items() if k != "attachments"},
            allow_dates=True,
            name_of=self._name_of,
        )
        record.sender = record.sender or record.from_
        # One date given: the other follows it (mail is received when it is sent, here).
        if "sentDateTime" not in body:
            record.sent = record.received
        elif "receivedDateTime" not in body:
            record.received = record.sent
        if not record.internet_message_id:
            domain = record.from_.address.rpartition("@")[2] if record.from_ else "emulator.example"
            record.internet_message_id = mail_ids.internet_message_id(domain)
        record.attachments = [self._attachment(a, limit=limit) for a in _attachment_list(body)]
        return record

    def deliver_mail(
        self,
        user: User | str,
        folder: str = "inbox",
        *,
        subject: str = "",
        body: str = "",
        body_type: str | None = None,
        from_: str = "sender@fabrikam.example",
        to: Sequence[str] | None = None,
        cc: Sequence[str] = (),
        attachments: Iterable[AttachmentSpec] = (),
        received: dt.datetime | None = None,
        is_read: bool = False,
        internet_message_id: str | None = None,
    ) -> str:
        """Mail arriving in `user`'s `folder` (well-known name, id or "Inbox/Sub" path) as if sent
        from outside; returns its immutable id. `body_type` defaults to html when the body looks
        like HTML. Attachments: `file(...)`, `item({...})` or Graph attachment JSON."""
        mailbox = self.mailbox(user)
        target = self.resolve_folder(user, folder)
        record = self._new_record(mailbox, target.key)
        when = _second(received or self.ctx.clock.now())
        sender = Address.parse(from_)
        record.subject, record.body = subject, body
        record.body_type = body_type or ("html" if body.lstrip().startswith("<") else "text")
        record.from_ = record.sender = Address(self._name_of(sender.address) or sender.name, sender.address)
        owner = mailbox.user
        record.to = (
            [self._address(a) for a in to] if to is not None else [Address(owner.display_name, owner.mail)]
        )
        record.cc = [self._address(a) for a in cc]
        record.received, record.sent = when, when
        record.is_read = is_read
        record.internet_message_id = internet_message_id or mail_ids.internet_message_id(
            sender.address.rpartition("@")[2]
        )
        record.attachments = [self._attachment(a, limit=False) for a in attachments]
        return mailbox.message_id(self._store(mailbox, record, target.key), True)

    def deliver_json(self, user: User | str, folder: str, body: dict[str, Any]) -> MessageRecord:
        """Mail arriving, from Graph message JSON (the control API's form): `receivedDateTime`
        and `isRead` may be set; attachments carry `contentBytes` (any size) or an `item`."""
        mailbox = self.mailbox(user)
        target = self.resolve_folder(user, folder)
        record = self._item_record(body, limit=False)
        if not record.to:
            owner = mailbox.user
            record.to = [Address(owner.display_name, owner.mail)]
        return self._store(mailbox, record, target.key)

    def resolve_folder(self, user: User | str, folder: str, *, create: bool = True) -> MailFolder:
        """A folder by id, well-known name or "Inbox/Sub" path (made if missing, unless not
        `create`) - the Python and control API's way to name folders."""
        if "/" in folder:
            return self.ensure_folder_path(user, folder, create=create)
        return self.folder(user, folder)

    def _address(self, value: str) -> Address:
        parsed = Address.parse(value)
        return Address(self._name_of(parsed.address) or parsed.name, parsed.address)

    def create_message(
        self, user: User | str, body: dict[str, Any], folder: str | None = None
    ) -> MessageRecord:
        """POST /messages (a draft in Drafts) or POST /mailFolders/{id}/messages (in that folder)."""
        mailbox = self.mailbox(user)
        target = self.folder(user, folder or "drafts")
        check_properties(body)
        record = self._new_record(mailbox, target.key)
        now = _second(self.ctx.clock.now())
        record.is_draft, record.is_read = True, True
        record.received = record.sent = now
        apply_fields(record, {k: v for k, v in body.items() if k != "attachments"}, name_of=self._name_of)
        record.attachments = [self._attachment(a, limit=True) for a in _attachment_list(body)]
        return self._store(mailbox, record, target.key)

    def update_message(
        self, user: User | str, message_id: str, patch: dict[str, Any], *, if_match: str | None = None
    ) -> MessageRecord:
        mailbox = self.mailbox(user)
        record = self.find(user, message_id)
        if not etag_matches(if_match, record.change_key):
            raise stale_change_key()
        check_properties(patch)
        if not record.is_draft:
            locked = sorted(k for k in patch if k in DRAFT_ONLY)
            if locked:
                raise GraphError(
                    400,
                    "ErrorInvalidPropertyUpdateSentMessage",
                    f"Update operation is not supported for this property on a sent message: {locked[0]}.",
                )
        apply_fields(record, {k: v for k, v in patch.items() if k not in READ_ONLY}, name_of=self._name_of)
        record.change_key = new_change_key()
        record.modified = self.ctx.clock.now()
        self._emit("updated", mailbox, record)
        return record

    def mark_read(self, user: User | str, message_id: str, is_read: bool = True) -> MessageRecord:
        return self.update_message(user, message_id, {"isRead": is_read})

    def delete_message(self, user: User | str, message_id: str, *, if_match: str | None = None) -> None:
        """Graph's DELETE: the message leaves the mailbox's folders (Exchange keeps it in the
        Recoverable Items, which Graph does not show)."""
        mailbox = self.mailbox(user)
        record = self.find(user, message_id)
        if not etag_matches(if_match, record.change_key):
            raise stale_change_key()
        assert record.folder_key is not None
        self._emit("deleted", mailbox, record)
        del mailbox.messages[record.key]
        del mailbox.entries[record.entry_key]
        mailbox.retired[record.entry_key] = (record.key, record.folder_key)
        mailbox.last_location[record.key] = (record.folder_key, record.entry_key)
        self._forward_comments.pop(record.key, None)

    def move_message(self, user: User | str, message_id: str, destination: str) -> MessageRecord:
        mailbox = self.mailbox(user)
        record = self.find(user, message_id)
        target = self.resolve_folder(user, destination)
        if record.folder_key != target.key:
            self._relocate(mailbox, record, target.key)
        return record

    def copy_message(self, user: User | str, message_id: str, destination: str) -> MessageRecord:
        mailbox = self.mailbox(user)
        record = self.find(user, message_id)
        target = self.resolve_folder(user, destination)
        copy = record.copy(target.key)
        copy.created = copy.modified = self.ctx.clock.now()
        return self._store(mailbox, copy, target.key)

    def add_attachment(
        self, user: User | str, message_id: str, spec: AttachmentSpec, *, limit: bool = True
    ) -> AttachmentRecord:
        mailbox = self.mailbox(user)
        record = self.find(user, message_id)
        attachment = self._attachment(spec, limit=limit)
        record.attachments.append(attachment)
        record.change_key = new_change_key()
        record.modified = self.ctx.clock.now()
        self._emit("updated", mailbox, record)
        return attachment

    def delete_attachment(self, user: User | str, message_id: str, attachment_id: str) -> None:
        mailbox = self.mailbox(user)
        record = self.find(user, message_id)
        found = self.attachment(user, message_id, attachment_id)
        record.attachments.remove(found)
        record.change_key = new_change_key()
        record.modified = self.ctx.clock.now()
        self._emit("updated", mailbox, record)

    # -- sending -----------------------------------------------------------------------------

    def send_draft(self, user: User | str, message_id: str) -> MessageRecord:
        """POST /messages/{id}/send: the draft goes to Sent Items *as the same item* - with
        immutable ids the id from the draft's creation finds the sent copy (Graph docs)."""
        mailbox = self.mailbox(user)
        record = self.find(user, message_id)
        if not record.is_draft:
            raise GraphError(400, "ErrorInvalidOperation", "Only a draft message can be sent.")
        self._check_recipients(record)
        self._stamp_sent(mailbox, record)
        sent_items = mailbox.well_known["sentitems"]
        self._relocate(mailbox, record, sent_items)
        comment = self._forward_comments.pop(record.key, None)  # a createForward draft: a forward
        if comment is None:
            self._deliver(mailbox, record, "send")
        else:
            self._deliver(mailbox, record, "forward", comment)
        return record

    def send_mail(
        self, user: User | str, message: dict[str, Any], *, save_to_sent_items: bool = True
    ) -> MessageRecord:
        """POST /sendMail: send a message given whole; a copy is kept in Sent Items unless
        `saveToSentItems` is false."""
        mailbox = self.mailbox(user)
        check_properties(message)
        record = self._new_record(mailbox, None)
        apply_fields(record, {k: v for k, v in message.items() if k != "attachments"}, name_of=self._name_of)
        record.attachments = [self._attachment(a, limit=True) for a in _attachment_list(message)]
        self._check_recipients(record)
        self._stamp_sent(mailbox, record)
        if save_to_sent_items:
            self._store(mailbox, record, mailbox.well_known["sentitems"])
        self._deliver(mailbox, record, "send")
        return record

    def forward(
        self,
        user: User | str,
        message_id: str,
        *,
        comment: str | None = None,
        to: Sequence[dict[str, Any]] | None = None,
        message: dict[str, Any] | None = None,
    ) -> MessageRecord:
        """POST /messages/{id}/forward. Graph: `comment` or `message.body`, not both (400);
        `toRecipients` or `message.toRecipients`, exactly one of them (400). The forward carries
        the original's attachments and is saved in Sent Items."""
        mailbox = self.mailbox(user)
        record = self._forward_record(mailbox, user, message_id, comment, to, message)
        self._check_recipients(record)
        self._stamp_sent(mailbox, record)
        self._store(mailbox, record, mailbox.well_known["sentitems"])
        self._deliver(mailbox, record, "forward", comment or "")
        return record

    def create_forward(
        self,
        user: User | str,
        message_id: str,
        *,
        comment: str | None = None,
        to: Sequence[dict[str, Any]] | None = None,
        message: dict[str, Any] | None = None,
    ) -> MessageRecord:
        """POST /messages/{id}/createForward: the forward as a draft in Drafts (the same rules
        for comment, body and recipients as `forward`; the body quotes the original and the
        original's attachments are copied onto it). Recipients are checked when it is sent;
        `send_draft` sends it as a forward (`SentEntry.kind`) with its comment."""
        mailbox = self.mailbox(user)
        record = self._forward_record(mailbox, user, message_id, comment, to, message)
        now = _second(self.ctx.clock.now())
        record.is_draft, record.is_read = True, True
        record.received = record.sent = now
        self._forward_comments[record.key] = comment or ""
        return self._store(mailbox, record, mailbox.well_known["drafts"])

    def _forward_record(
        self,
        mailbox: MailMailbox,
        user: User | str,
        message_id: str,
        comment: str | None,
        to: Sequence[dict[str, Any]] | None,
        message: dict[str, Any] | None,
    ) -> MessageRecord:
        """The forward of a message, not yet stored: `FW: subject`, the recipients, the comment
        above the quoted original, the original's attachments (copies)."""
        original = self.find(user, message_id)
        message = dict(message or {})
        if comment is not None and message.get("body") is not None:
            raise bad_request(
                "The comment and the body of the message parameter can't both be specified.",
                "ErrorInvalidRequest",
            )
        if (to is not None) == ("toRecipients" in message):
            raise bad_request(
                "Specify the recipients in either toRecipients or message.toRecipients, not both or neither.",
                "ErrorInvalidRequest",
            )
        check_properties(message)
        record = self._new_record(mailbox, None)
        record.subject = f"FW: {original.subject}"
        record.conversation_id = original.conversation_id
        apply_fields(record, {k: v for k, v in message.items() if k != "attachments"}, name_of=self._name_of)
        if to is not None:
            record.to = [self._recipient(r) for r in to]
        intro = comment if comment is not None else (record.body if message.get("body") is not None else "")
        intro_type = record.body_type if message.get("body") is not None else "text"
        record.body_type, record.body = _forward_body(original, intro, intro_type)
        record.attachments = [a.copy() for a in original.attachments] + [
            self._attachment(a, limit=True) for a in _attachment_list(message)
        ]
        return record

    def _recipient(self, value: Any) -> Address:
        return parse_recipient(value, self._name_of)

    def _check_recipients(self, record: MessageRecord) -> None:
        if not (record.to or record.cc or record.bcc):
            raise GraphError(
                400,
                "ErrorInvalidRecipients",
                "At least one recipient isn't valid., A message can't be "
                "sent because it contains no recipients.",
            )

    def grant_send_as(self, user: User | str, address: str) -> None:
        """Exchange's Send As permission: `user` may send mail whose `from` is `address`."""
        self._send_as.setdefault(self.user(user).id, set()).add(address.lower())

    def _check_send_as(self, owner: User, record: MessageRecord) -> None:
        """Exchange refuses a `from` that is neither the mailbox nor an address it has Send As on
        (403 ErrorSendAsDenied), and nothing is sent."""
        if record.from_ is None:
            return
        wanted = record.from_.address.lower()
        own = {owner.mail.lower(), owner.user_principal_name.lower()}
        if wanted not in own and wanted not in self._send_as.get(owner.id, set()):
            raise GraphError(
                403,
                "ErrorSendAsDenied",
                "The user account which was used to submit this request does not have the right to "
                "send mail on behalf of the specified sending account., Cannot submit message.",
            )

    def _stamp_sent(self, mailbox: MailMailbox, record: MessageRecord) -> None:
        owner = mailbox.user
        self._check_send_as(owner, record)
        now = _second(self.ctx.clock.now())
        me = Address(owner.display_name, owner.mail)
        record.from_ = record.from_ or me
        record.sender = me
        record.is_draft, record.is_read = False, True
        record.sent = record.received = now
        record.modified = self.ctx.clock.now()

    def _deliver(self, mailbox: MailMailbox, record: MessageRecord, kind: str, comment: str = "") -> None:
        seen: set[str] = set()
        recipients: list[str] = []
        external: list[str] = []
        now = _second(self.ctx.clock.now())
        for address in [*record.to, *record.cc, *record.bcc]:
            lowered = address.address.lower()
            if lowered in seen:
                continue
            seen.add(lowered)
            recipients.append(address.address)
            recipient = self.ctx.directory.any_user(address.address)
            if recipient is None:
                external.append(address.address)
                continue
            target = self.mailbox(recipient)
            copy = record.copy(None)
            copy.bcc = []  # recipients do not see the Bcc line
            copy.received, copy.is_read, copy.is_draft = now, False, False
            copy.created = copy.modified = self.ctx.clock.now()
            copy.categories, copy.flag = [], {"flagStatus": "notFlagged"}
            self._store(target, copy, target.well_known["inbox"])
        self.sent_log.append(
            SentEntry(
                kind, mailbox.user.user_principal_name, recipients, external, record.copy(None), now, comment
            )
        )

    def sent_mail(self, sender: str | None = None) -> list[SentEntry]:
        """Everything sent or forwarded (all mailboxes, or one), oldest first."""
        if sender is None:
            return list(self.sent_log)
        user = self.user(sender)
        return [e for e in self.sent_log if e.sender == user.user_principal_name]

    def outbox(self, sender: str | None = None) -> list[SentEntry]:
        """What was sent to addresses outside the emulator (entries with external recipients)."""
        return [e for e in self.sent_mail(sender) if e.external]

    # -- hooks -------------------------------------------------------------------------------

    def _emit(self, change_type: str, mailbox: MailMailbox, record: MessageRecord) -> None:
        user = mailbox.user
        resource_id = mailbox.message_id(record, False)
        assert record.folder_key is not None
        self.ctx.hooks.emit(
            Change(
                kind="message",
                change_type=change_type,
                tenant_id=user.tenant_id,
                user_id=user.id,
                resource_id=resource_id,
                resource=f"Users/{user.id}/Messages/{resource_id}",
                container_id=mail_ids.folder_id(mailbox.tag, record.folder_key),
                change_key=record.change_key if change_type != "deleted" else None,
                at=self.ctx.clock.now(),
            )
        )


def _attachment_list(body: dict[str, Any]) -> list[dict[str, Any]]:
    value = body.get("attachments")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
        raise bad_request("attachments must be a collection of attachments.", "RequestBodyRead")
    return value


def _forward_body(original: MessageRecord, intro: str, intro_type: str) -> tuple[str, str]:
    """Outlook's forward layout: the comment, a rule, the original's header block, its body."""
    sent = original.sent or original.received or original.created
    header = [
        ("From", _display(original.from_)),
        ("Sent", sent.strftime("%A, %B %d, %Y %I:%M %p")),
        ("To", "; ".join(_display(a) for a in original.to)),
        ("Subject", original.subject),
    ]
    if original.cc:
        header.insert(3, ("Cc", "; ".join(_display(a) for a in original.cc)))
    if original.body_type == "html" or intro_type == "html":
        intro_html = intro if intro_type == "html" else f"<div>{html.escape(intro)}</div>"
        original_html = (
            original.body if original.body_type == "html" else f"<pre>{html.escape(original.body)}</pre>"
        )
        block = "<br>".join(f"<b>{k}:</b> {html.escape(v)}" for k, v in header)
        return "html", f"{intro_html}<hr><div>{block}</div><br>{original_html}"
    block = "\r\n".join(f"{k}: {v}" for k, v in header)
    return "text", f"{intro}\r\n\r\n________________________________\r\n{block}\r\n\r\n{original.body}"


def _display(address: Address | None) -> str:
    if address is None:
        return ""
    return address.address if address.name == address.address else f"{address.name} <{address.address}>"
