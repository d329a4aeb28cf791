"""Mail document import: the attachments of each mail in an import folder, into the host.

For one mailbox import, a worker (one at a time: a lease on the import's state row, bursts of
requests coalescing into one more round) reads every mail in the import folder and, per mail:

1. lists its attachments and sorts them: real files of an allowed type within the size limit
   are documents; attached e-mails are documents too, as `.eml`; inline images (signature
   logos), cloud links, disallowed types and files over the limit are skipped, with a reason;
2. per document: streams it from Graph into Blob Storage (`staged`), then tells the host with
   `document.imported` carrying a time-limited download URL (`announced`);
3. a mail with no document is forwarded to the import's forward address with a short
   explanation (`forwarded`), and the host hears `mail.forwarded`;
4. moves the mail to the archive folder (`archived`).

Each step is recorded in the ledger (keyed by the mail's immutable id and the attachment's id)
as soon as it is done, and read back before it is tried, so a crash anywhere resumes where it
stopped: a staged document is announced without downloading it again, an announced one is not
announced again (its host event id derives from the mail and the attachment, and the outbox
keeps one event per id), a forwarded mail is not forwarded again, and a mail moved to the
archive is no longer in the import folder.

A forward goes through a draft (`createForward`, then send) rather than Graph's one-shot
`forward`, because a draft leaves something to look up: its id is recorded (`pending`) before it
is sent and `done` after. A rerun that finds the draft id reads the message: no longer a draft
(with immutable ids a sent draft keeps its id, in Sent Items) means the send went and only the
ledger missed it; still a draft means it is sent now; gone means it never went (deleted in
Outlook), and a new draft is made. A crash between making the draft and recording its id leaves
an unsent draft in Drafts, never a second forward.

A mail that fails (an attachment Graph cannot stream, a move Graph refuses) is recorded with
its error and tried again on the next runs, at most `MAX_MAIL_ATTEMPTS` times; then it is left
in the import folder and reported (`mail.import_failed`), an unsent forward draft of it is
deleted, and later runs skip it. A failure of the whole mailbox (the folder is gone, consent is
missing) fails the run with the reason in plain words, and the import's notification address is
told by e-mail.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

from azure.storage.queue.aio import QueueServiceClient

from core.calendar.sync import Emitter
from core.errors import NotFound as RowNotFound
from core.errors import Reportable, StaleEtag, StoreUnavailable, describe
from core.graph.errors import (
    ConsentMissing,
    GraphError,
    GraphUnavailable,
    MalformedResponse,
    NotFound,
    Throttled,
    TokenUnavailable,
)
from core.graph.model import Attachment, AttachmentKind, BodyType, Message, OutgoingMail
from core.graph.port import GraphGateway
from core.graph_access import GraphProvider
from core.host import Emission
from core.leases import claim
from core.mail.staging import DocumentStore
from core.queues import TextQueue
from core.runs import Clock, RunHandle, track_run, utc_now
from core.store import Tables
from core.store.records import LedgerStatus, MailImport, MailImportState, MailLedgerEntry, SyncStatus, Tenant

log = logging.getLogger(__name__)

MAIL_QUEUE = "mail-import"
MAIL_POISON_QUEUE = MAIL_QUEUE + "-poison"
REASONS = frozenset({"timer", "manual", "notification"})
FUNCTION = "mail-import"
IMPORTED = "document.imported"
FORWARDED = "mail.forwarded"
MAIL_FAILED = "mail.import_failed"
LEASE = timedelta(minutes=30)
URL_LIFETIME = timedelta(days=7)
MAX_MAIL_ATTEMPTS = 5
QUEUE_RETRY_SECONDS = 10.0  # host.json visibilityTimeout: the queue's own retry
MAX_FOLLOW_UPS = 4  # times a request that found the import running comes back for a dead holder
EXTRA_ROUNDS = 2

FORWARD_STEP = "forward"
ARCHIVE_STEP = "archive"
FAILURE_STEP = "failure"

# What a later run may fix without a person: the run fails (the queue retries it) and the
# ledger makes the retry safe.
TRANSIENT = (Throttled, GraphUnavailable, MalformedResponse, StoreUnavailable, StaleEtag)
# What is wrong with the whole mailbox, not one mail.
MAILBOX_FAILURES = (ConsentMissing, TokenUnavailable)


class MailboxFailed(Reportable):
    """The import cannot read or change its mailbox or folders; the message says what to fix."""


# --- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportRequest:
    tenant_id: str
    import_id: str
    run_id: str | None = None
    reason: str = "timer"
    attempt: int = 0

    def to_message(self) -> str:
        return json.dumps(
            {k: v for k, v in asdict(self).items() if v not in (None, 0)}, separators=(",", ":")
        )

    @classmethod
    def parse(cls, text: str) -> ImportRequest:
        try:
            raw = json.loads(text)
        except ValueError:
            raise ValueError("a mail-import message must be JSON") from None
        if not isinstance(raw, dict):
            raise ValueError("a mail-import message must be a JSON object")
        tenant_id, import_id = raw.get("tenant_id"), raw.get("import_id")
        if not isinstance(tenant_id, str) or not tenant_id or not isinstance(import_id, str) or not import_id:
            raise ValueError("a mail-import message names a tenant and an import")
        run_id, reason, attempt = raw.get("run_id"), raw.get("reason", "timer"), raw.get("attempt", 0)
        if run_id is not None and not isinstance(run_id, str):
            raise ValueError("a mail-import message's run_id is a string")
        if reason not in REASONS or type(attempt) is not int or attempt < 0:
            raise ValueError(
                "a mail-import message's reason is timer, manual or notification, attempt a count"
            )
        return cls(tenant_id, import_id, run_id, reason, attempt)


class ImportQueue(Protocol):
    async def send(self, request: ImportRequest, *, delay: float = 0.0) -> None: ...


class AzureImportQueue:
    def __init__(self, service: QueueServiceClient, name: str = MAIL_QUEUE) -> None:
        self._queue = TextQueue(service, name)

    async def send(self, request: ImportRequest, *, delay: float = 0.0) -> None:
        await self._queue.send(request.to_message(), delay=delay)


@dataclass
class InMemoryImportQueue:
    sent: list[ImportRequest] = field(default_factory=list)

    async def send(self, request: ImportRequest, *, delay: float = 0.0) -> None:
        self.sent.append(ImportRequest.parse(request.to_message()))


# --- sorting attachments -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Document:
    attachment: Attachment
    file_name: str
    content_type: str


@dataclass(frozen=True, slots=True)
class Skipped:
    name: str
    content_type: str
    size: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "contentType": self.content_type, "size": self.size, "reason": self.reason}


def _extension(name: str) -> str:
    return name.rpartition(".")[2].lower() if "." in name else ""


def sort_attachments(
    attachments: Sequence[Attachment], config: MailImport
) -> tuple[list[Document], list[Skipped]]:
    """The documents to deliver, and what is skipped with why."""
    documents: list[Document] = []
    skipped: list[Skipped] = []
    for att in attachments:
        name = att.name or "attachment"
        if att.kind is AttachmentKind.ITEM:
            eml = name if name.lower().endswith(".eml") else f"{name}.eml"
            documents.append(Document(att, eml, "message/rfc822"))
            continue
        reason = None
        if att.kind is AttachmentKind.REFERENCE:
            reason = "a link to a cloud file, not a file"
        elif att.is_inline:
            reason = "an inline image in the mail's body (e.g. a signature logo)"
        elif _extension(name) not in config.allowed_types:
            reason = f"file type not allowed (allowed: {', '.join(config.allowed_types)})"
        elif att.size > config.max_size_bytes:
            reason = f"larger than {config.max_size_bytes // (1024 * 1024)} MB"
        if reason is None:
            documents.append(Document(att, name, att.content_type or "application/octet-stream"))
        elif not att.is_inline:
            skipped.append(Skipped(name, att.content_type, att.size, reason))
    return documents, skipped


def blob_name(tenant_id: str, mailbox: str, message_id: str, attachment_id: str, file_name: str) -> str:
    """Where a document is staged: per tenant, then hashes (Graph ids are long and full of '/'),
    then the file's own name so a download is saved under it."""
    mail = hashlib.sha256(f"{mailbox.lower()}\x1f{message_id}".encode()).hexdigest()[:32]
    att = hashlib.sha256(attachment_id.encode()).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() or ch in "._- " else "_" for ch in file_name)[:200].strip(" .")
    return f"{tenant_id}/{mail}/{att}/{safe or 'document'}"


def _event_id(kind: str, tenant_id: str, mailbox: str, *parts: str) -> str:
    material = "\x1f".join((kind, tenant_id, mailbox.lower(), *parts))
    return f"mail-{kind}-" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:40]


# --- the importer -----------------------------------------------------------------------------


class MailImporter:
    def __init__(
        self,
        tables: Tables,
        outbox: Emitter,
        graphs: GraphProvider,
        documents: DocumentStore,
        *,
        clock: Clock = utc_now,
        url_lifetime: timedelta = URL_LIFETIME,
        lease: timedelta = LEASE,
        queue: ImportQueue | None = None,
    ) -> None:
        self._tables = tables
        self._outbox = outbox
        self._graphs = graphs
        self._documents = documents
        self._clock = clock
        self._url_lifetime = url_lifetime
        self._lease = lease
        self._queue = queue
        self._ledger = tables.repo(MailLedgerEntry)
        self._states = tables.repo(MailImportState)

    async def run(self, request: ImportRequest) -> RunHandle | None:
        """Import what is in the folder now. None (nothing recorded) for a tenant or import
        that no longer exists, or is disabled. Raises when the run failed."""
        tenant = await self._tables.repo(Tenant).get(*Tenant.key(request.tenant_id))
        config = await self._tables.repo(MailImport).get(
            *MailImport.key(request.tenant_id, request.import_id)
        )
        if tenant is None or not tenant.enabled or config is None or not config.enabled:
            log.info("mail import request dropped: tenant or import missing or disabled")
            return None
        async with track_run(
            self._tables.runs(), FUNCTION, scope=tenant.tenant_id, run_id=request.run_id, clock=self._clock
        ) as run:
            owner = uuid.uuid4().hex
            state, leased = await self._acquire(config, owner)
            if not leased:
                run.add("coalesced")
                await self._follow_up(request, state)
                return run
            rounds = 0
            while True:
                rounds += 1
                try:
                    await self._round(tenant, config, run)
                except Exception as exc:
                    failures = await self._release(config, owner, exc)
                    if failures == 1 and isinstance(exc, MailboxFailed):
                        await self._notify(tenant, config, exc)
                    raise
                if not await self._release(config, owner, None, again=rounds <= EXTRA_ROUNDS):
                    return run

    async def _round(self, tenant: Tenant, config: MailImport, run: RunHandle) -> None:
        gateway = await self._graphs.gateway(tenant)
        try:
            # The whole listing first: Graph pages a folder by offset, so moving mails out while
            # its pages are read would make the next page skip as many mails as were moved.
            messages = [m async for m in gateway.list_messages(config.mailbox, config.import_folder_id)]
        except NotFound as exc:
            raise MailboxFailed(
                f"the import folder {config.import_folder!r} (or the mailbox {config.mailbox!r}) no longer "
                f"exists: fix the import's folder ({exc.operation})"
            ) from None
        except MAILBOX_FAILURES as exc:
            raise MailboxFailed(f"the bridge cannot read mailbox {config.mailbox!r}: {exc}") from None
        for message in messages:
            run.add("mails")
            try:
                await self._mail(gateway, config, message, run)
            except MAILBOX_FAILURES as exc:
                raise MailboxFailed(f"the bridge cannot change mailbox {config.mailbox!r}: {exc}") from None

    async def _mail(
        self, gateway: GraphGateway, config: MailImport, message: Message, run: RunHandle
    ) -> None:
        rows = await self._rows(config, message.id)
        failure = rows.get(FAILURE_STEP)
        if failure is not None and failure.attempts >= MAX_MAIL_ATTEMPTS:
            run.add("mails_left_in_place")
            return
        try:
            await self._import_mail(gateway, config, message, rows, run)
        except (*TRANSIENT, *MAILBOX_FAILURES, MailboxFailed):
            raise  # the run fails; its retry resumes from the ledger
        except Exception as exc:
            await self._mail_failed(gateway, config, message, failure, exc, run)

    async def _import_mail(
        self,
        gateway: GraphGateway,
        config: MailImport,
        message: Message,
        rows: dict[str, MailLedgerEntry],
        run: RunHandle,
    ) -> None:
        # hasAttachments ignores inline images: without it there is nothing to deliver
        attachments = (
            await gateway.list_attachments(config.mailbox, message.id) if message.has_attachments else []
        )
        documents, skipped = sort_attachments(attachments, config)
        for document in documents:
            await self._document(gateway, config, message, document, skipped, rows, run)
        if not documents:
            await self._forward(gateway, config, message, skipped, rows, run)
        try:
            await gateway.move_message(config.mailbox, message.id, config.archive_folder_id)
        except NotFound:
            raise MailboxFailed(
                f"the archive folder {config.archive_folder!r} of mailbox {config.mailbox!r} no longer "
                "exists (or the mail vanished): fix the import's archive folder"
            ) from None
        await self._step(config, message.id, ARCHIVE_STEP, LedgerStatus.DONE)
        run.add("mails_archived")

    async def _document(
        self,
        gateway: GraphGateway,
        config: MailImport,
        message: Message,
        document: Document,
        skipped: list[Skipped],
        rows: dict[str, MailLedgerEntry],
        run: RunHandle,
    ) -> None:
        att = document.attachment
        row = rows.get(att.id)
        if row is not None and row.status is LedgerStatus.ANNOUNCED:
            return
        if row is None or row.status is not LedgerStatus.STAGED:
            name = blob_name(config.tenant_id, config.mailbox, message.id, att.id, document.file_name)
            staged = await self._documents.stage(
                name,
                _at_most(
                    gateway.stream_attachment(config.mailbox, message.id, att.id), config.max_size_bytes
                ),
                content_type=document.content_type,
                metadata={"tenant": config.tenant_id},
            )
            row = await self._ledger.upsert(
                MailLedgerEntry(
                    tenant_id=config.tenant_id,
                    mailbox=config.mailbox,
                    message_id=message.id,
                    attachment_id=att.id,
                    status=LedgerStatus.STAGED,
                    file_name=document.file_name,
                    content_type=document.content_type,
                    size=staged.size,
                    sha256=staged.sha256,
                    blob_name=name,
                    updated_at=self._clock(),
                )
            )
            run.add("documents_staged")
        assert row.blob_name is not None
        url, expires = await self._documents.download_url(row.blob_name, expires_in=self._url_lifetime)
        data = {
            "importId": config.import_id,
            "mailbox": config.mailbox,
            **_mail_fields(message),
            "attachmentId": att.id,
            "fileName": row.file_name,
            "contentType": row.content_type,
            "size": row.size,
            "sha256": row.sha256,
            "downloadUrl": url,
            "downloadUrlExpiresAt": expires.isoformat(),
            "skipped": [s.to_dict() for s in skipped],
        }
        event_id = _event_id("doc", config.tenant_id, config.mailbox, message.id, att.id)
        await self._outbox.emit_many(config.tenant_id, [Emission(IMPORTED, data, event_id)])
        await self._ledger.upsert(
            row.model_copy(update={"status": LedgerStatus.ANNOUNCED, "updated_at": self._clock()})
        )
        run.add("documents_imported")

    async def _forward(
        self,
        gateway: GraphGateway,
        config: MailImport,
        message: Message,
        skipped: list[Skipped],
        rows: dict[str, MailLedgerEntry],
        run: RunHandle,
    ) -> None:
        row = rows.get(FORWARD_STEP)
        if row is None or row.status is not LedgerStatus.DONE:
            await self._send_forward(gateway, config, message, skipped, row)
            run.add("mails_forwarded")
        data = {
            "importId": config.import_id,
            "mailbox": config.mailbox,
            **_mail_fields(message),
            "forwardedTo": config.forward_to,
            "skipped": [s.to_dict() for s in skipped],
        }
        event_id = _event_id("fwd", config.tenant_id, config.mailbox, message.id)
        await self._outbox.emit_many(config.tenant_id, [Emission(FORWARDED, data, event_id)])

    async def _send_forward(
        self,
        gateway: GraphGateway,
        config: MailImport,
        message: Message,
        skipped: list[Skipped],
        row: MailLedgerEntry | None,
    ) -> None:
        """Forward the mail exactly once: through a draft whose id the ledger holds before it is
        sent, so an attempt after a crash can tell a forward that went from one that did not."""
        draft_id = row.draft_id if row is not None else None
        if draft_id is not None:
            sent = await self._draft_sent(gateway, config, draft_id)
            if sent:  # Graph took the send; the ledger never heard
                await self._step(config, message.id, FORWARD_STEP, LedgerStatus.DONE, draft_id=draft_id)
                return
            if sent is None:  # deleted before it was sent: it never went
                draft_id = None
        if draft_id is None:
            draft = await gateway.create_forward(
                config.mailbox, message.id, [config.forward_to], _explanation(skipped)
            )
            draft_id = draft.id
            await self._step(config, message.id, FORWARD_STEP, LedgerStatus.PENDING, draft_id=draft_id)
        await gateway.send_draft(config.mailbox, draft_id)
        await self._step(config, message.id, FORWARD_STEP, LedgerStatus.DONE, draft_id=draft_id)

    @staticmethod
    async def _draft_sent(gateway: GraphGateway, config: MailImport, draft_id: str) -> bool | None:
        """Whether a recorded forward draft was sent (True), is still an unsent draft (False), or
        is gone (None). A sent draft keeps its immutable id in Sent Items, no longer a draft."""
        try:
            return not (await gateway.get_message(config.mailbox, draft_id)).is_draft
        except NotFound:
            return None

    async def _mail_failed(
        self,
        gateway: GraphGateway,
        config: MailImport,
        message: Message,
        failure: MailLedgerEntry | None,
        exc: Exception,
        run: RunHandle,
    ) -> None:
        attempts = (failure.attempts if failure else 0) + 1
        await self._step(
            config, message.id, FAILURE_STEP, LedgerStatus.FAILED, error=describe(exc), attempts=attempts
        )
        run.add("mails_failed")
        log.warning("mail import failed", extra={"attempts": attempts, "error": describe(exc)})
        if attempts >= MAX_MAIL_ATTEMPTS:
            data = {
                "importId": config.import_id,
                "mailbox": config.mailbox,
                **_mail_fields(message),
                "attempts": attempts,
                "error": describe(exc),
                "action": "left in the import folder; move or fix it by hand",
            }
            event_id = _event_id("failed", config.tenant_id, config.mailbox, message.id)
            await self._outbox.emit_many(config.tenant_id, [Emission(MAIL_FAILED, data, event_id)])
            await self._abandon_forward(gateway, config, message.id)

    async def _abandon_forward(self, gateway: GraphGateway, config: MailImport, message_id: str) -> None:
        """A mail given up leaves no unsent forward draft behind in the mailbox's Drafts (later
        runs skip the mail, so nothing would ever send it). One already sent stays in Sent Items.
        The row is read again: this very attempt may have made the draft."""
        key = MailLedgerEntry.step_key(config.tenant_id, config.mailbox, message_id, FORWARD_STEP)
        row = await self._ledger.get(*key)
        if row is None or row.status is LedgerStatus.DONE or row.draft_id is None:
            return
        try:
            if await self._draft_sent(gateway, config, row.draft_id) is False:
                await gateway.delete_message(config.mailbox, row.draft_id)
        except GraphError as exc:  # tidying up: the failure is already recorded and reported
            log.warning("could not delete an abandoned forward draft", extra={"error": describe(exc)})

    async def _rows(self, config: MailImport, message_id: str) -> dict[str, MailLedgerEntry]:
        """The mail's ledger rows by attachment id or step name."""
        low, high = MailLedgerEntry.message_range(config.mailbox, message_id)
        rows = self._ledger.list(
            MailLedgerEntry.step_key(config.tenant_id, config.mailbox, message_id, "-")[0],
            row_key_from=low,
            row_key_to=high,
        )
        return {(row.attachment_id or row.step or ""): row async for row in rows}

    async def _step(
        self, config: MailImport, message_id: str, step: str, status: LedgerStatus, **fields: Any
    ) -> MailLedgerEntry:
        return await self._ledger.upsert(
            MailLedgerEntry(
                tenant_id=config.tenant_id,
                mailbox=config.mailbox,
                message_id=message_id,
                step=step,
                status=status,
                updated_at=self._clock(),
                **fields,
            )
        )

    async def _notify(self, tenant: Tenant, config: MailImport, exc: Exception) -> None:
        """Tell the import's notification address, once per streak of failures."""
        if not config.notify_to:
            return
        mail = OutgoingMail(
            subject=f"m365-bridge: the mail import '{config.import_id}' is failing",
            body=(
                f"The document import from the mailbox {config.mailbox} (folder {config.import_folder}) "
                f"failed and will keep failing until this is fixed:\n\n{exc}\n\n"
                "Mails stay in the import folder meanwhile; nothing is lost."
            ),
            to=(config.notify_to,),
            body_type=BodyType.TEXT,
            save_to_sent_items=False,
        )
        try:
            gateway = await self._graphs.gateway(tenant)
            await gateway.send_mail(config.mailbox, mail)
        except Exception as failed:
            log.warning("could not send the failure notification", extra={"error": describe(failed)})

    # --- the lease ----------------------------------------------------------------------------

    async def run_queued(self, request: ImportRequest) -> None:
        """Run a `mail-import` message. Raises when the queue should retry it; when Graph
        throttled the mailbox for longer than the queue's own retry waits, the request is
        re-queued to come back after Graph's Retry-After instead (the ledger makes any rerun
        safe)."""
        try:
            await self.run(request)
        except Throttled as exc:
            wait = exc.retry_after or 0.0
            if self._queue is None or wait <= QUEUE_RETRY_SECONDS or request.attempt + 1 >= MAX_FOLLOW_UPS:
                raise
            await self._queue.send(replace(request, run_id=None, attempt=request.attempt + 1), delay=wait)
            log.info("throttled; mail import re-queued", extra={"delay_seconds": wait})

    async def _follow_up(self, request: ImportRequest, state: MailImportState) -> None:
        """A request that found the import running asked the holder for one more round. If
        the holder died instead, its lease runs out: this request comes back then (a few times
        at most), so a crashed worker delays an import by one lease, not until the next timer."""
        if self._queue is None or state.lease_until is None or request.attempt + 1 >= MAX_FOLLOW_UPS:
            return
        wait = (state.lease_until - self._clock()).total_seconds() + 1
        await self._queue.send(
            replace(request, run_id=None, attempt=request.attempt + 1), delay=max(wait, 1.0)
        )

    async def _acquire(self, config: MailImport, owner: str) -> tuple[MailImportState, bool]:
        leased = False

        def take(current: MailImportState | None) -> MailImportState:
            nonlocal leased
            state, leased = claim(
                current,
                lambda: MailImportState(tenant_id=config.tenant_id, import_id=config.import_id),
                owner,
                self._clock(),
                self._lease,
            )
            return state

        state = await self._states.mutate(*MailImportState.key(config.tenant_id, config.import_id), take)
        return state, leased

    async def _release(
        self, config: MailImport, owner: str, exc: BaseException | None, *, again: bool = False
    ) -> int:
        """Record the round and let go. Without `exc`: returns 1 if the lease is kept for
        another round (someone asked meanwhile), else 0. With `exc`: the failure streak's
        length after this failure."""
        key = MailImportState.key(config.tenant_id, config.import_id)
        outcome = {"value": 0}

        def settle(current: MailImportState | None) -> MailImportState:
            base = current or MailImportState(tenant_id=config.tenant_id, import_id=config.import_id)
            if current is not None and current.lease_owner not in (owner, None):
                outcome["value"] = 0
                return current  # the lease ran out and someone else holds it: theirs wins
            now = self._clock()
            if exc is not None:
                failures = base.consecutive_failures + 1
                outcome["value"] = failures
                return base.model_copy(
                    update={
                        "status": SyncStatus.FAILED,
                        "error": describe(exc),
                        "consecutive_failures": failures,
                        "lease_owner": None,
                        "lease_until": None,
                    }
                )
            rerun = again and base.rerun_requested
            outcome["value"] = 1 if rerun else 0
            return base.model_copy(
                update={
                    "status": SyncStatus.RUNNING if rerun else SyncStatus.OK,
                    "error": None,
                    "consecutive_failures": 0,
                    "last_success_at": now,
                    "rerun_requested": False,
                    "lease_owner": owner if rerun else None,
                    "lease_until": now + self._lease if rerun else None,
                }
            )

        try:
            await self._states.mutate(*key, settle)
        except (StaleEtag, StoreUnavailable, RowNotFound):
            log.exception("could not record the import's round; the lease runs out by itself")
            return 0
        return outcome["value"]


class TooLarge(Reportable):
    """An attachment streamed more bytes than the import allows (its listed size was wrong)."""


async def _at_most(chunks: AsyncGenerator[bytes, None], limit: int) -> AsyncIterator[bytes]:
    """`chunks`, but failing once they pass `limit` bytes: the size Graph lists is what the
    limit was checked against, and the stream must not be trusted to agree with it."""
    total = 0
    try:
        async for chunk in chunks:
            total += len(chunk)
            if total > limit:
                raise TooLarge(f"the attachment streamed more than the import's limit of {limit} bytes")
            yield chunk
    finally:
        await chunks.aclose()


def _mail_fields(message: Message) -> dict[str, Any]:
    return {
        "messageId": message.id,
        "internetMessageId": message.internet_message_id,
        "from": message.sender,
        "subject": message.subject,
        "receivedAt": message.received.isoformat() if message.received else None,
    }


def _explanation(skipped: list[Skipped]) -> str:
    """The comment above the forwarded mail: why it came to the forward address."""
    if not skipped:
        why = "without an attachment to register"
    else:
        why = (
            "without a document that could be registered ("
            + "; ".join(f"{s.name}: {s.reason}" for s in skipped)
            + ")"
        )
    return f"This mail arrived in the document import folder {why}; it is forwarded to you."


# --- fan-out ------------------------------------------------------------------------------------


FANOUT_FUNCTION = "mail-import-fanout"


async def fan_out(tables: Tables, queue: ImportQueue, *, clock: Clock = utc_now) -> RunHandle:
    """One request per enabled import of every enabled tenant."""
    async with track_run(tables.runs(), FANOUT_FUNCTION, clock=clock) as run:
        async for tenant in tables.repo(Tenant).list(Tenant.PARTITION):
            if not tenant.enabled:
                continue
            async for config in tables.repo(MailImport).list(MailImport.key(tenant.tenant_id, "-")[0]):
                if config.enabled:
                    await queue.send(ImportRequest(tenant.tenant_id, config.import_id))
                    run.add("imports_queued")
    return run


async def request_run(queue: ImportQueue, config: MailImport) -> str:
    """Queue a run of one import now; the run id its worker records."""
    run_id = uuid.uuid4().hex
    await queue.send(ImportRequest(config.tenant_id, config.import_id, run_id=run_id, reason="manual"))
    return run_id
