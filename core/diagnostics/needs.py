"""What a tenant configured and which Graph permissions that needs; what a token grants (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.store.records import (
    BookingCalendar,
    DelegatedGrant,
    Direction,
    MailImport,
    MailSender,
    Presence,
    PresenceSettings,
    ResourceLink,
)

CALENDARS_READ = "Calendars.Read"
CALENDARS_READ_WRITE = "Calendars.ReadWrite"
MAIL_READ_WRITE = "Mail.ReadWrite"
MAIL_SEND = "Mail.Send"
# Which granted permission satisfies a need (a broader one does).
_ACCEPTED = {
    CALENDARS_READ: frozenset({CALENDARS_READ, CALENDARS_READ_WRITE}),
    CALENDARS_READ_WRITE: frozenset({CALENDARS_READ_WRITE}),
    MAIL_READ_WRITE: frozenset({MAIL_READ_WRITE}),
    MAIL_SEND: frozenset({MAIL_SEND}),
}

# --- what the tenant configured, and what that needs (pure) -------------------------------------


@dataclass(frozen=True)
class Setup:
    """A tenant's configured features, as stored."""

    links: Sequence[ResourceLink] = ()
    imports: Sequence[MailImport] = ()
    bookings: Sequence[BookingCalendar] = ()
    monitors: Sequence[Presence] = ()
    presence: PresenceSettings | None = None
    grants: Sequence[DelegatedGrant] = ()  # delegated mode: the accounts users connected
    senders: Sequence[MailSender] = ()

    @property
    def presence_asker(self) -> str | None:
        """The mailbox getSchedule is asked as: the monitor account, or the first monitored user."""
        if not self.monitors:
            return None
        return (self.presence.monitor_account if self.presence else None) or self.monitors[0].email


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def accounts_of(setup: Setup) -> list[str]:
    """Every mailbox the configured features act in (and every connected account), in order,
    once: what delegated mode needs a user's token for."""
    found: dict[str, str] = {}
    for link in setup.links:
        for account in link.accounts:
            if account.direction is not Direction.NONE:
                found.setdefault(account.account.casefold(), account.account)
    for config in setup.imports:
        if config.enabled:
            found.setdefault(config.mailbox.casefold(), config.mailbox)
    for booking in setup.bookings:
        found.setdefault(booking.owner.casefold(), booking.owner)
    if setup.presence_asker:
        found.setdefault(setup.presence_asker.casefold(), setup.presence_asker)
    for sender in setup.senders:
        found.setdefault(sender.mailbox.casefold(), sender.mailbox)
    for grant in setup.grants:
        found.setdefault(grant.account.casefold(), grant.account)
    return list(found.values())


@dataclass(frozen=True, slots=True)
class Need:
    """A Graph permission the configuration needs, and which features need it."""

    permission: str
    reasons: tuple[str, ...]
    optional: bool = False  # every feature needing it works in part without it: a warning

    @property
    def accepted(self) -> frozenset[str]:
        return _ACCEPTED.get(self.permission, frozenset({self.permission}))


def needs_of(setup: Setup, account: str | None = None) -> list[Need]:
    """The permissions the configured features use, in a fixed order — with `account` (delegated
    mode), only those of the features acting in that mailbox. User.Read.All is not among them:
    no feature reads the directory (mailboxes are addressed by UPN)."""

    def mine(mailbox: str | None) -> bool:
        return mailbox is not None and (account is None or _same(mailbox, account))

    reasons: dict[str, list[str]] = {p: [] for p in _ACCEPTED}
    optional: dict[str, list[str]] = {p: [] for p in _ACCEPTED}
    for link in setup.links:
        for linked in link.accounts:
            if linked.direction is Direction.NONE or not mine(linked.account):
                continue
            permission = CALENDARS_READ_WRITE if linked.direction.uploads else CALENDARS_READ
            reasons[permission].append(
                f"resource {link.resource_id} links {linked.account} ({linked.direction.value})"
            )
    for config in setup.imports:
        if not config.enabled or not mine(config.mailbox):
            continue
        reasons[MAIL_READ_WRITE].append(
            f"mail import {config.import_id} reads and archives mail, and drafts its forwards"
        )
        # the importer forwards every mail without a document, so forwarding is always in use
        why = "forwards mails without documents" + (" and notifies notifyTo" if config.notify_to else "")
        reasons[MAIL_SEND].append(f"mail import {config.import_id} {why}")
    for booking in setup.bookings:
        if not mine(booking.owner):
            continue
        reasons[CALENDARS_READ_WRITE].append(f"booking calendar {booking.booking_id} books slots")
        if booking.notify_attendees:
            reasons[MAIL_SEND].append(f"booking calendar {booking.booking_id} notifies attendees")
    if mine(setup.presence_asker):
        reasons[CALENDARS_READ].append(f"presence reads {len(setup.monitors)} monitored users' free/busy")
    for sender in setup.senders:
        if mine(sender.mailbox):
            reasons[MAIL_SEND].append(f"mail sender {sender.sender_id} sends host mail as {sender.mailbox}")
            optional[MAIL_READ_WRITE].append(
                f"mail sender {sender.sender_id} sends mail with more than 3 MB of files as a draft "
                "(without it only smaller mail can be sent)"
            )
    return [
        Need(permission, tuple(why + optional[permission]), optional=not why)
        for permission, why in reasons.items()
        if why or optional[permission]
    ]


@dataclass(frozen=True, slots=True)
class Granted:
    """The permissions a token carries: `roles` (application) or `scp` (delegated)."""

    names: frozenset[str]
    delegated: bool = False

    @property
    def kind(self) -> str:
        return "delegated" if self.delegated else "application"


def granted_by(claims: Mapping[str, Any]) -> Granted:
    roles = claims.get("roles")
    if isinstance(roles, list) and roles:
        return Granted(frozenset(r for r in roles if isinstance(r, str)))
    scopes = claims.get("scp")
    if isinstance(scopes, str) and scopes.strip():
        return Granted(frozenset(scopes.split()), delegated=True)
    return Granted(frozenset())
