"""Sends the mail host systems handed to `POST …/mail-senders/{id}/messages` (the `mail-send`
queue worker), at most once per message.

A mail whose files fit one request (≤ 3 MB) goes out in one `sendMail`; a larger one as a draft:
the draft is made, each file attached (an upload session for each over 3 MB), then the draft
sent. Every step is recorded on the message's row before the next is tried, so a worker that
dies or a message that is retried resumes where the last one stopped:

- `draft_id` once the draft exists; a file's `attached` once it is on the draft (a retry first
  lists the draft's files, so one whose POST was answered but not recorded is not added twice);
- `send_started_at` just before Graph is asked to send, `status: sent` just after.

The one window Graph leaves open is between its accepting a send and the bridge recording it.
On the draft path a retry closes it: the draft's id names a sent message once it went
(`is_draft` false), so the bridge looks before it sends again. `sendMail` returns nothing to
look for, so there the bridge keeps *at most once*: a retry that finds `send_started_at` set,
or a send that got no answer at all (a dropped connection, a timeout), fails the message with
`outcomeUnknown: true` instead of risking a second mail — the host is told to check the
sender's Sent Items. The window is one Graph round trip plus one table write. A throttled send
(429) was not executed, so it is tried again after Retry-After (the gateway waits out short
ones itself, the queue longer ones); so is one answered 503 (the service refused the work). A
500, 502 or 504 on `sendMail` does not say whether Exchange took the mail first, so it is an
unknown outcome too; on the draft path the retry looks at the draft and knows.

A refusal only a person can fix (no Mail.Send consent, an unknown sender mailbox, Send As not
granted) fails the message at once with the fix in plain words; the host hears `mail.sent` or
`mail.failed`, once each (the event id names the message).
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from core.diagnostics import app_identity, permission_fix, token_fix
from core.errors import NotFound, Reportable, StaleEtag, StoreError, describe
from core.graph.errors import (
    BadRequest,
    ConsentMissing,
    GraphError,
    GraphUnavailable,
    Throttled,
    TokenUnavailable,
)
from core.graph.errors import NotFound as GraphNotFound
from core.graph.model import OutgoingAttachment, OutgoingMail
from core.graph.port import GraphGateway
from core.graph_access import PUBLIC_AUTHORITY, GraphProvider
from core.host import Emission
from core.host.outbox import Outbox
from core.mail.outgoing import SendQueue, build_mail
from core.mail.staging import DocumentStore
from core.runs import Clock, track_run, utc_now
from core.store import Tables
from core.store.records import CredentialMode, OutgoingMessage, OutgoingStatus, Tenant

log = logging.getLogger(__name__)

FUNCTION = "mail-send"
SENT = "mail.sent"
FAILED = "mail.failed"
LEASE = timedelta(minutes=10)  # 35 MB through upload sessions to a slow Graph fits well inside
MAX_DELIVERIES = 5  # the queue's maxDequeueCount: the last one fails the mail instead of poisoning it
MAX_BLOB_BYTES = 150 * 1024 * 1024
# Answers that say Graph did not take a request: throttled, or the service refusing work. A 500,
# 502 or 504 (a gateway that lost its upstream) can come after Exchange accepted the mail.
_NOT_TAKEN = frozenset({429, 503})


class _Failed(Exception):
    """The mail cannot be sent: `reason` and `fix` in plain words."""

    def __init__(self, reason: str, fix: str | None = None, *, unknown: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix
        self.unknown = unknown


class _Later(Exception):
    """Graph asked to wait (`after` seconds): queue the mail again then."""

    def __init__(self, after: float) -> None:
        self.after = after


class MailSendWorker:
    def __init__(
        self,
        tables: Tables,
        graphs: GraphProvider,
        documents: DocumentStore,
        queue: SendQueue,
        outbox: Outbox,
        *,
        clock: Clock = utc_now,
        authority: str = PUBLIC_AUTHORITY,
    ) -> None:
        self._tables = tables
        self._rows = tables.repo(OutgoingMessage)
        self._graphs = graphs
        self._documents = documents
        self._queue = queue
        self._outbox = outbox
        self._clock = clock
        self._authority = authority
        self._owner = uuid.uuid4().hex

    async def run(self, tenant_id: str, message_id: str, *, delivery: int = 1) -> None:
        """Handle one queue delivery. A transient failure raises, so the queue retries; the
        last delivery fails the mail instead, so the host hears of it."""
        tenant = await self._tables.repo(Tenant).get(*Tenant.key(tenant_id))
        row = await self._rows.get(*OutgoingMessage.key(tenant_id, message_id))
        if tenant is None or row is None or row.status is not OutgoingStatus.QUEUED:
            return  # done already, or nothing to do
        taken = await self._take(row)
        if taken is None:
            held = row.lease_until or self._clock()
            wait = max(1.0, (held - self._clock()).total_seconds() + 1)
            await self._queue.send(tenant_id, message_id, delay=wait)
            return
        row = taken
        async with track_run(self._tables.runs(), FUNCTION, scope=tenant_id, clock=self._clock) as run:
            try:
                row, path = await self._send(tenant, row)
            except _Later as later:
                await self._let_go(row)
                await self._queue.send(tenant_id, message_id, delay=later.after)
                run.add("requeued_throttled")
                return
            except _Failed as failed:
                await self._fail(tenant, row, failed)
                run.add("failed")
                return
            except (GraphError, StoreError, Reportable) as exc:
                if delivery >= MAX_DELIVERIES:
                    await self._fail(tenant, row, _Failed(f"Graph kept failing: {describe(exc)}"))
                    run.add("failed")
                    return
                await self._let_go(row)
                raise
            await self._sent(row, path)
            run.add("sent")

    # --- sending ------------------------------------------------------------------------------

    async def _send(self, tenant: Tenant, row: OutgoingMessage) -> tuple[OutgoingMessage, str]:
        if not tenant.enabled:
            raise _Failed(
                "The tenant was disabled before the mail was sent.",
                f"Enable the tenant (PATCH /api/v1/operator/tenants/{tenant.tenant_id} "
                '{"enabled": true}), then send the mail again with a new idempotencyKey.',
            )
        if tenant.credential_mode is CredentialMode.DELEGATED:
            raise _Failed(DELEGATED_REASON, DELEGATED_FIX)
        mail = await self._load(row)
        try:
            gateway = await self._graphs.gateway(tenant)
            if mail.fits_one_request and row.draft_id is None:
                return await self._send_one(gateway, row, mail), "sendMail"
            return await self._send_draft(gateway, row, mail), "draft"
        except Throttled as exc:  # not executed: after Retry-After
            raise _Later(exc.retry_after or 30.0) from None
        except (ConsentMissing, TokenUnavailable, GraphNotFound, BadRequest) as exc:
            raise self._refusal(tenant, row, exc) from None

    async def _send_one(
        self, gateway: GraphGateway, row: OutgoingMessage, mail: OutgoingMail
    ) -> OutgoingMessage:
        if row.send_started_at is not None:
            raise _Failed(_UNCONFIRMED, _CHECK_SENT_ITEMS.format(mailbox=row.mailbox), unknown=True)
        row = await self._record(row, send_started_at=self._clock(), attempts=row.attempts + 1)
        try:
            await gateway.send_mail(row.mailbox, mail)
        except (Throttled, GraphUnavailable) as exc:
            if exc.status not in _NOT_TAKEN:  # no answer, or one that does not say: it may have gone
                raise _Failed(
                    _UNCONFIRMED, _CHECK_SENT_ITEMS.format(mailbox=row.mailbox), unknown=True
                ) from None
            await self._record(row, send_started_at=None)  # Graph did not take it: safe to repeat
            raise
        return row

    async def _send_draft(
        self, gateway: GraphGateway, row: OutgoingMessage, mail: OutgoingMail
    ) -> OutgoingMessage:
        fresh = row.draft_id is None
        if row.draft_id is None:
            draft_id = (await gateway.create_draft(row.mailbox, mail)).id
            row = await self._record(row, draft_id=draft_id)
        else:
            draft_id = row.draft_id
        if row.send_started_at is not None:  # an earlier attempt asked Graph to send: did it?
            try:
                sent = not (await gateway.get_message(row.mailbox, draft_id)).is_draft
            except GraphNotFound:
                raise _Failed(
                    "The draft disappeared after the bridge asked Graph to send it (deleted in Outlook?).",
                    _CHECK_SENT_ITEMS.format(mailbox=row.mailbox),
                    unknown=True,
                ) from None
            if sent:
                return row
        row = await self._attach(gateway, row, draft_id, mail, fresh=fresh)
        row = await self._record(row, send_started_at=self._clock(), attempts=row.attempts + 1)
        await gateway.send_draft(row.mailbox, draft_id)
        if not row.save_to_sent_items:
            # the draft path always leaves a copy in Sent Items (same immutable id): remove it
            with contextlib.suppress(GraphError):
                await gateway.delete_message(row.mailbox, draft_id)
        return row

    async def _attach(
        self, gateway: GraphGateway, row: OutgoingMessage, draft_id: str, mail: OutgoingMail, *, fresh: bool
    ) -> OutgoingMessage:
        """Put the files not yet recorded as attached on the draft."""
        missing = [i for i, a in enumerate(row.attachments) if not a.attached]
        if missing and not fresh:
            # An earlier attempt may have added a file without recording it: see what is there,
            # by name (Graph's `size` of a stored attachment is not the file's byte count).
            there = Counter(a.name for a in await gateway.list_attachments(row.mailbox, draft_id))
            there.subtract(row.attachments[i].name for i, a in enumerate(row.attachments) if a.attached)
            for index in list(missing):
                name = row.attachments[index].name
                if there[name] > 0:
                    there[name] -= 1
                    row = await self._mark_attached(row, index)
                    missing.remove(index)
        for index in missing:
            file = mail.attachments[index]
            await gateway.add_message_attachment(
                row.mailbox,
                draft_id,
                name=file.name,
                content_type=file.content_type,
                content=file.content,
            )
            row = await self._mark_attached(row, index)
        return row

    async def _mark_attached(self, row: OutgoingMessage, index: int) -> OutgoingMessage:
        files = list(row.attachments)
        files[index] = files[index].model_copy(update={"attached": True})
        return await self._record(row, attachments=files)

    async def _load(self, row: OutgoingMessage) -> OutgoingMail:
        doc = await self._documents.load(row.mail_blob, max_bytes=MAX_BLOB_BYTES)
        if doc is None:
            raise _Failed("The mail's content is no longer stored (deleted by a retention rule?).")
        files: list[OutgoingAttachment] = []
        for record in row.attachments:
            content = await self._documents.load(record.blob_name, max_bytes=MAX_BLOB_BYTES)
            if content is None:
                raise _Failed(f"The file '{record.name}' is no longer stored (deleted by a retention rule?).")
            files.append(OutgoingAttachment(record.name, record.content_type, content))
        return build_mail(json.loads(doc), row, tuple(files))

    def _refusal(self, tenant: Tenant, row: OutgoingMessage, exc: GraphError) -> _Failed:
        """A refusal only a person can fix, and the fix."""
        app = app_identity(tenant, {}, self._authority)
        route = f"PUT /api/v1/tenants/{tenant.tenant_id}/mail-senders/{row.sender_id}"
        if isinstance(exc, ConsentMissing) and exc.code == "ErrorSendAsDenied" and row.send_as:
            return _Failed(
                f"{row.mailbox} may not send as {row.send_as} (ErrorSendAsDenied).",
                f"Give {row.mailbox} the Send As permission on {row.send_as} in Exchange (Exchange admin "
                f"center > Recipients > {row.send_as} > Delegation > Send as), or remove sendAs from the "
                f"sender ({route}).",
            )
        if isinstance(exc, ConsentMissing):
            permission = exc.permission or "Mail.Send"
            why = (
                f"The app may not send mail as {row.mailbox}: {permission} is not granted for it."
                if permission == "Mail.Send"
                else f"A mail with more than 3 MB of files is sent as a draft, and the app may not make "
                f"drafts in {row.mailbox}: {permission} is not granted for it."
            )
            return _Failed(
                why,
                permission_fix(permission, app)
                + f" If it is granted, check that no Exchange Online RBAC scope or application access "
                f"policy leaves {row.mailbox} out.",
            )
        if isinstance(exc, TokenUnavailable):
            return _Failed(str(exc), token_fix(exc.aad_code, app))
        if isinstance(exc, GraphNotFound):
            return _Failed(
                f"The sender mailbox {row.mailbox} does not exist in the tenant.",
                f"Check the spelling of {row.mailbox} or the user's licence (a mailbox needs Exchange "
                f"Online), then correct the sender ({route}).",
            )
        return _Failed(f"Graph refused the mail: {exc}")

    # --- the row ------------------------------------------------------------------------------

    async def _take(self, row: OutgoingMessage) -> OutgoingMessage | None:
        now = self._clock()
        if row.lease_owner and row.lease_until and row.lease_until > now:
            return None
        try:
            return await self._rows.save(
                row.model_copy(
                    update={"lease_owner": self._owner, "lease_until": now + LEASE, "updated_at": now}
                )
            )
        except (StaleEtag, NotFound):
            return None

    async def _current(self, row: OutgoingMessage) -> OutgoingMessage:
        """The row as the last step left it (a step that failed half-way may have written it)."""
        current = await self._rows.get(*OutgoingMessage.key(row.tenant_id, row.message_id))
        if current is None:
            raise NotFound(f"the mail {row.message_id} is gone")
        return current

    async def _let_go(self, row: OutgoingMessage) -> None:
        with contextlib.suppress(StaleEtag, NotFound, StoreError):
            current = await self._current(row)
            if current.lease_owner == self._owner:
                await self._rows.save(current.model_copy(update={"lease_owner": None, "lease_until": None}))

    async def _record(self, row: OutgoingMessage, **changes: Any) -> OutgoingMessage:
        """Write a step (with the row's ETag: the lease is ours)."""
        return await self._rows.save(row.model_copy(update={**changes, "updated_at": self._clock()}))

    async def _sent(self, row: OutgoingMessage, path: str) -> None:
        now = self._clock()
        row = await self._record(
            row, status=OutgoingStatus.SENT, sent_at=now, lease_owner=None, lease_until=None
        )
        await self._tell(row, SENT, {"sentAt": now.isoformat(), "path": path})
        await self._forget_content(row)
        log.info("mail sent", extra={"message_id": row.message_id, "path": path})

    async def _fail(self, tenant: Tenant, row: OutgoingMessage, failed: _Failed) -> None:
        row = await self._record(
            await self._current(row),
            status=OutgoingStatus.FAILED,
            error=failed.reason[:1000],
            fix=failed.fix,
            outcome_unknown=failed.unknown,
            lease_owner=None,
            lease_until=None,
        )
        extra: dict[str, Any] = {"reason": row.error, "outcomeUnknown": row.outcome_unknown}
        if row.fix:
            extra["fix"] = row.fix
        await self._tell(row, FAILED, extra)
        if row.draft_id is not None and not failed.unknown:
            with contextlib.suppress(GraphError):  # a draft nobody will send
                gateway = await self._graphs.gateway(tenant)
                await gateway.delete_message(row.mailbox, row.draft_id)
        await self._forget_content(row)
        log.warning("mail failed", extra={"message_id": row.message_id, "outcome_unknown": failed.unknown})

    async def _tell(self, row: OutgoingMessage, kind: str, extra: dict[str, Any]) -> None:
        data = {
            "messageId": row.message_id,
            "senderId": row.sender_id,
            "recipients": row.recipients,
            "attachments": [{"name": a.name, "size": a.size} for a in row.attachments],
            **extra,
        }
        await self._outbox.emit_many(row.tenant_id, [Emission(kind, data, f"{kind}-{row.message_id}")])

    async def _forget_content(self, row: OutgoingMessage) -> None:
        """The mail is sent or given up: its content need not wait any longer."""
        for name in (row.mail_blob, *(a.blob_name for a in row.attachments)):
            with contextlib.suppress(StoreError):
                await self._documents.delete(name)


DELEGATED_REASON = (
    "The tenant now uses delegated sign-in (users connect their own calendars); sending mail for "
    "host systems needs the app's own Mail.Send application permission."
)
DELEGATED_FIX = (
    "Switch the tenant back to graph.credentialMode managed or client_secret with Mail.Send "
    "granted, then send the mail again with a new idempotencyKey."
)
_UNCONFIRMED = (
    "Graph did not confirm the send (the connection dropped or the bridge stopped after asking); "
    "the mail may have gone out, so it is not sent again."
)
_CHECK_SENT_ITEMS = (
    "Look for the mail in the Sent Items of {mailbox}; if it is not there, send it again with a new "
    "idempotencyKey."
)
