"""Host resources and their linked Microsoft 365 accounts.

A resource (a person or room in the host) has an ordered list of accounts, each with a
direction, the calendars to read and a scope. The order matters: the *main* account, which
receives uploads, is the first whose direction includes up. A PUT replaces the whole list; the
body is validated completely before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from core.errors import NotFound, StaleEtag
from core.request_errors import EditConflict, FieldProblem, InvalidInput, ItemNotFound
from core.runs import Clock
from core.store import codec
from core.store.keys import escape_key
from core.store.records import DEFAULT_CALENDAR, CalendarScope, Direction, LinkedAccount, ResourceLink
from core.store.repository import Repository
from core.validators import (
    Account,
    ApiModel,
    parse,
    plain_text,
    valid_account,
    valid_display_name,
    valid_resource_id,
)
from core.versions import check_preconditions, create_or_replace

log = logging.getLogger(__name__)

MAX_ACCOUNTS = 20  # per resource; the guides' users link a handful
MAX_CALENDARS = 20  # per account
MAX_LIST = 1000


def _valid_calendar(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 255:
        raise ValueError("must be 1-255 characters")
    return plain_text(value)


CalendarName = Annotated[str, AfterValidator(_valid_calendar)]


def default_scope(direction: Direction) -> CalendarScope:
    """Read for down and paused links, read-write where the bridge writes (up, both)."""
    return CalendarScope.READ_WRITE if direction.uploads else CalendarScope.READ


class AccountIn(ApiModel):
    account: Account
    direction: Direction
    calendars: list[CalendarName] = Field(
        default_factory=lambda: [DEFAULT_CALENDAR], min_length=1, max_length=MAX_CALENDARS
    )
    scope: CalendarScope | None = None
    # What GET shows for a delegated tenant's account; accepted so a read-modify-write of the
    # accounts works, and ignored: only the user's sign-in changes it.
    connection: str | None = Field(None, max_length=32, description="read-only: ignored")


def _optional_name(value: str) -> str:
    return valid_display_name(value) if value.strip() else ""


class ResourceIn(ApiModel):
    display_name: Annotated[str, AfterValidator(_optional_name)] = ""
    accounts: list[AccountIn] = Field(default_factory=list, max_length=MAX_ACCOUNTS)


def _problems(accounts: list[AccountIn]) -> list[FieldProblem]:
    """What the field types alone cannot say: duplicates, and a scope too weak for the direction."""
    first: dict[str, int] = {}
    problems: list[FieldProblem] = []
    for index, item in enumerate(accounts):
        at = f"accounts[{index}]"
        if item.account in first:
            problems.append(
                FieldProblem(f"{at}.account", f"is already linked as accounts[{first[item.account]}]")
            )
        else:
            first[item.account] = index
        folded = [c.casefold() for c in item.calendars]
        for position, name in enumerate(folded):
            if name in folded[:position]:
                problems.append(FieldProblem(f"{at}.calendars[{position}]", "is listed twice"))
        if item.direction.uploads and item.scope is CalendarScope.READ:
            problems.append(
                FieldProblem(
                    f"{at}.scope",
                    f"must be Calendars.ReadWrite: direction {item.direction.value} writes to Outlook",
                )
            )
    return problems


def plan_link(tenant_id: str, resource_id: str, body: object, now: datetime) -> ResourceLink:
    """The link a PUT body describes (InvalidInput naming every bad field)."""
    try:
        resource_id = valid_resource_id(resource_id)
    except ValueError as exc:
        raise InvalidInput.one("resourceId", str(exc)) from None
    spec = parse(ResourceIn, body)
    problems = _problems(spec.accounts)
    if problems:
        raise InvalidInput(problems)
    accounts = [
        LinkedAccount(
            account=item.account,
            direction=item.direction,
            calendars=item.calendars,
            scope=item.scope or default_scope(item.direction),
        )
        for item in spec.accounts
    ]
    link = ResourceLink(
        tenant_id=tenant_id,
        resource_id=resource_id,
        display_name=spec.display_name,
        accounts=accounts,
        updated_at=now,
    )
    try:
        codec.encode(link)  # the accounts are one JSON column: it must fit Table Storage's limit
    except ValueError:
        raise InvalidInput.one(
            "accounts", "are too large to store: use fewer or shorter calendar names"
        ) from None
    return link


NOT_CONNECTED = "not_connected"  # a delegated tenant's account whose user never signed in


def link_view(link: ResourceLink, connections: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resource as the API shows it; with `connections` (a delegated tenant's grants by
    lower-cased account), each account says whether its user's grant works."""

    def account_view(a: LinkedAccount) -> dict[str, Any]:
        out: dict[str, Any] = {
            "account": a.account,
            "direction": a.direction.value,
            "calendars": list(a.calendars),
            "scope": a.scope.value,
        }
        if connections is not None:
            out["connection"] = connections.get(a.account.lower(), NOT_CONNECTED)
        return out

    main = link.main_account
    return {
        "id": link.resource_id,
        "displayName": link.display_name,
        "accounts": [account_view(a) for a in link.accounts],
        "mainAccount": main.account if main else None,
        "updatedAt": link.updated_at.isoformat() if link.updated_at else None,
    }


class LinkService:
    """A tenant's resource links. Every method is scoped to the tenant it was made for: the
    partition key is that tenant's id, so no call can reach another tenant's rows."""

    def __init__(self, links: Repository[ResourceLink], tenant_id: str, clock: Clock) -> None:
        self.links = links
        self.tenant_id = tenant_id
        self.clock = clock

    async def put(
        self, resource_id: str, body: object, if_match: str | None = None, if_none_match: str | None = None
    ) -> tuple[ResourceLink, bool]:
        """Create or replace; returns (the stored link, whether it was created)."""
        wanted = plan_link(self.tenant_id, resource_id, body, self.clock())
        current = await self.links.get(wanted.partition_key, wanted.row_key)
        check_preconditions(current, if_match, if_none_match)
        saved = await create_or_replace(
            self.links, current, wanted, conditional=bool(if_match or if_none_match), what="The resource"
        )
        log.info(
            "resource linked",
            extra={
                "resource_id": resource_id,
                "accounts": len(saved.accounts),
                "new_resource": current is None,
            },
        )
        return saved, current is None

    async def get(self, resource_id: str) -> ResourceLink:
        link = await self.links.get(*self._key(resource_id)) if plausible_resource_id(resource_id) else None
        if link is None:
            raise ItemNotFound(f"Resource '{resource_id}' does not exist.")
        return link

    def _key(self, resource_id: str) -> tuple[str, str]:
        return ResourceLink.key(self.tenant_id, resource_id)

    async def delete(self, resource_id: str, if_match: str | None = None) -> ResourceLink:
        """Delete the resource; returns what it was."""
        current = await self.get(resource_id)
        check_preconditions(current, if_match)
        try:
            await self.links.delete(current)
        except (StaleEtag, NotFound):
            raise EditConflict(
                "The resource changed while it was being deleted; re-read it and retry."
            ) from None
        log.info("resource unlinked", extra={"resource_id": resource_id})
        return current

    async def remove_account(
        self, resource_id: str, account: str, if_match: str | None = None
    ) -> tuple[ResourceLink, str]:
        """Unlink one account from the resource; returns the link without it and the account as
        it was stored. 404 when the resource does not link that account."""
        try:
            account = valid_account(account)
        except ValueError:
            raise ItemNotFound(f"Resource '{resource_id}' does not link that account.") from None
        current = await self.get(resource_id)
        check_preconditions(current, if_match)
        remaining = [a for a in current.accounts if a.account != account]
        if len(remaining) == len(current.accounts):
            raise ItemNotFound(f"Resource '{resource_id}' does not link that account.")
        try:
            saved = await self.links.save(
                current.model_copy(update={"accounts": remaining, "updated_at": self.clock()})
            )
        except (StaleEtag, NotFound):
            raise EditConflict("The resource changed while the account was unlinked; retry.") from None
        log.info("account unlinked", extra={"resource_id": resource_id, "accounts": len(remaining)})
        return saved, account

    async def list(
        self, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[ResourceLink], str | None]:
        """One page in resource-id order, and the cursor of the next page (None at the end)."""
        if after is not None and not plausible_resource_id(after):
            raise InvalidInput.one(
                "after", "is not a resource id (use the `next` value of the previous page)"
            )
        start = escape_key(after) if after else None
        page: list[ResourceLink] = []
        # `after` itself is in the range (the bound is inclusive) and is skipped; one row more
        # than the page tells whether there is a next page
        fetch = limit + 1 + (1 if start else 0)
        async for link in self.links.list(escape_key(self.tenant_id), row_key_from=start, limit=fetch):
            if after is not None and link.resource_id == after:
                continue
            page.append(link)
        more = len(page) > limit
        page = page[:limit]
        return page, page[-1].resource_id if more and page else None


def plausible_resource_id(resource_id: str) -> bool:
    """Whether `resource_id` could name a resource at all. One that cannot (too long for a row
    key, control characters) is not looked up: it is simply not there, a 404."""
    try:
        valid_resource_id(resource_id)
    except ValueError:
        return False
    return True
