"""A tenant's sender profiles (`…/mail-senders/{id}`): the mailbox host systems send mail as,
optionally as another address, and whether a copy is kept in Sent Items.

Nothing is checked against Graph when a profile is saved (a mailbox that may only send cannot
be read to see that it exists): Test settings checks the permission, and the first mail sent
through a wrong profile fails at once with the fix in plain words.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from core.errors import NotFound, StaleEtag
from core.mail.config import Address
from core.request_errors import EditConflict, InvalidInput, ItemNotFound
from core.runs import Clock
from core.store import Tables
from core.store.keys import escape_key
from core.store.records import CredentialMode, MailSender, Tenant
from core.validators import Account, ApiModel, parse, valid_host_id
from core.versions import check_preconditions, create_or_replace

log = logging.getLogger(__name__)


class MailSenderIn(ApiModel):
    mailbox: Account
    send_as: Address | None = None
    save_to_sent_items: bool = True


def valid_sender_id(value: str) -> str:
    try:
        return valid_host_id(value)
    except ValueError as exc:
        raise InvalidInput.one("senderId", str(exc)) from None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def sender_view(sender: MailSender) -> dict[str, Any]:
    return {
        "id": sender.sender_id,
        "mailbox": sender.mailbox,
        "sendAs": sender.send_as,
        "saveToSentItems": sender.save_to_sent_items,
        "createdAt": _iso(sender.created_at),
        "updatedAt": _iso(sender.updated_at),
    }


class SenderService:
    """A tenant's sender profiles. Every method is scoped to the tenant it was made for."""

    def __init__(self, tables: Tables, tenant: Tenant, clock: Clock) -> None:
        self._senders = tables.repo(MailSender)
        self._tenant = tenant
        self._clock = clock

    async def put(
        self, sender_id: str, body: object, if_match: str | None = None, if_none_match: str | None = None
    ) -> tuple[MailSender, bool]:
        """Create or replace; (the stored profile, whether it was created)."""
        sender_id = valid_sender_id(sender_id)
        spec = parse(MailSenderIn, body)
        if self._tenant.credential_mode is CredentialMode.DELEGATED:
            raise EditConflict(
                "Sending mail for host systems needs the app's Mail.Send application permission, and "
                "this tenant uses delegated sign-in (graph.credentialMode delegated); use managed or "
                "client_secret for it."
            )
        current = await self._senders.get(*MailSender.key(self._tenant.tenant_id, sender_id))
        check_preconditions(current, if_match, if_none_match)
        now = self._clock()
        wanted = MailSender(
            tenant_id=self._tenant.tenant_id,
            sender_id=sender_id,
            mailbox=spec.mailbox,
            send_as=spec.send_as,
            save_to_sent_items=spec.save_to_sent_items,
            created_at=current.created_at if current else now,
            updated_at=now,
        )
        saved = await create_or_replace(
            self._senders, current, wanted, conditional=bool(if_match or if_none_match), what="The sender"
        )
        log.info("mail sender saved", extra={"sender_id": sender_id, "new_sender": current is None})
        return saved, current is None

    async def get(self, sender_id: str) -> MailSender:
        try:
            key = MailSender.key(self._tenant.tenant_id, valid_host_id(sender_id))
        except ValueError:
            key = None
        sender = await self._senders.get(*key) if key else None
        if sender is None:
            raise ItemNotFound(f"Mail sender '{sender_id}' does not exist.")
        return sender

    async def delete(self, sender_id: str, if_match: str | None = None) -> None:
        """Delete the profile. Mails already accepted through it are still sent (their worker
        reads the profile as it was when they were accepted)."""
        sender = await self.get(sender_id)
        check_preconditions(sender, if_match)
        try:
            await self._senders.delete(sender)
        except (StaleEtag, NotFound):
            raise EditConflict(
                "The sender changed while it was being deleted; re-read it and retry."
            ) from None
        log.info("mail sender deleted", extra={"sender_id": sender.sender_id})

    async def list(self) -> list[MailSender]:
        return [s async for s in self._senders.list(escape_key(self._tenant.tenant_id))]
