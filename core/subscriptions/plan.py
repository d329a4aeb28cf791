"""What subscriptions a tenant should have, and what to do about the ones it has (pure).

Wanted: one per synced calendar (each calendar of each account a resource links with a
direction that includes down) and one per enabled mail import's folder. Planned against the
stored rows: make what is wanted and missing (or was removed, expired, failed, or watches
another folder now), renew what will expire within `renew_before`, drop what is no longer
wanted. The shell (`manager.py`) carries the actions out against Graph and the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.calendar.requests import linked_calendars
from core.store.records import (
    MailImport,
    ResourceLink,
    Subscription,
    SubscriptionKind,
    SubscriptionStatus,
    subscription_target,
)

CALENDAR_CHANGES = ("created", "updated", "deleted")
# A row still `creating` this long after it was written belongs to a reconcile that is still
# asking Graph (or died doing so): younger, it is left alone; older, it is made again.
CREATING_GRACE = timedelta(minutes=2)
MAIL_CHANGES = ("created",)  # a mail arriving in the import folder is all an import needs


@dataclass(frozen=True, slots=True)
class Want:
    """A target the configuration wants watched. `resource` is known up front for a mail
    folder (its id was resolved when the import was saved); a calendar's is resolved when the
    subscription is made (its id comes from its name)."""

    target: str
    kind: SubscriptionKind
    mailbox: str
    resource_id: str | None = None
    calendar: str | None = None
    import_id: str | None = None
    resource: str | None = None

    @property
    def change_types(self) -> tuple[str, ...]:
        return CALENDAR_CHANGES if self.kind is SubscriptionKind.CALENDAR else MAIL_CHANGES


def folder_resource(mailbox: str, folder_id: str) -> str:
    return f"/users/{mailbox}/mailFolders('{folder_id}')/messages"


def calendar_resource(account: str, calendar_id: str | None) -> str:
    """The default calendar's events, or one calendar's by its id."""
    if calendar_id is None:
        return f"/users/{account}/calendar/events"
    return f"/users/{account}/calendars/{calendar_id}/events"


def wanted(links: Iterable[ResourceLink], imports: Iterable[MailImport]) -> dict[str, Want]:
    out: dict[str, Want] = {}
    for link in links:
        down, _ = linked_calendars(link)
        for target in down:
            key = subscription_target(
                SubscriptionKind.CALENDAR, link.resource_id, target.account.account, target.calendar
            )
            out[key] = Want(
                key,
                SubscriptionKind.CALENDAR,
                target.account.account,
                resource_id=link.resource_id,
                calendar=target.calendar,
            )
    for config in imports:
        if not config.enabled:
            continue
        key = subscription_target(SubscriptionKind.MAIL, config.import_id)
        out[key] = Want(
            key,
            SubscriptionKind.MAIL,
            config.mailbox,
            import_id=config.import_id,
            resource=folder_resource(config.mailbox, config.import_folder_id),
        )
    return out


@dataclass(frozen=True, slots=True)
class Create:
    want: Want
    replaces: Subscription | None = None  # the row (and any Graph subscription) it takes over


@dataclass(frozen=True, slots=True)
class Renew:
    row: Subscription


@dataclass(frozen=True, slots=True)
class Drop:
    row: Subscription


Action = Create | Renew | Drop


def plan(
    wants: Mapping[str, Want], rows: Sequence[Subscription], now: datetime, renew_before: timedelta
) -> list[Action]:
    """Creates, renewals and drops, in a fixed order (drops first: they free Graph's quota)."""
    have = {row.target: row for row in rows}
    drops: list[Action] = [Drop(row) for target, row in sorted(have.items()) if target not in wants]
    rest: list[Action] = []
    for target, want in sorted(wants.items()):
        row = have.get(target)
        if row is None:
            rest.append(Create(want))
        elif _being_made(row, now):
            continue
        elif _stale(row, want, now):
            rest.append(Create(want, replaces=row))
        elif row.expiration is not None and row.expiration - now < renew_before:
            rest.append(Renew(row))
    return drops + rest


def _being_made(row: Subscription, now: datetime) -> bool:
    return (
        row.status is SubscriptionStatus.CREATING
        and row.created_at is not None
        and now - row.created_at < CREATING_GRACE
    )


def _stale(row: Subscription, want: Want, now: datetime) -> bool:
    """The row cannot be renewed: it is not active at Graph, it has run out, or it watches
    another resource than the configuration now names (a mail import's folder changed)."""
    if row.status is not SubscriptionStatus.ACTIVE or row.subscription_id is None:
        return True
    if row.expiration is None or row.expiration <= now:
        return True
    return want.resource is not None and row.resource != want.resource
