"""Test settings (`POST …/tenants/{id}/test`): the guides' button that checks a tenant's set-up
and says, for each thing that is wrong, how to fix it in plain words.

Checks, in order: `token` (Entra ID issues the tenant's credential a Graph token), `permissions`
(the token carries what the configured features need), then, each against Graph, every linked
`calendar`, every mail import's `mail-folder`s, every `booking-calendar` and one `presence`
read. One line per check and target, with `ok`, `failed`, `warning` (Graph busy or slow: try
again) or `skipped` (nothing to check, or no token to check with).

Plan, then act: what the configuration needs (`needs_of`), what the token grants
(`granted_by`) and every fix text are pure functions of plain data; `TenantDiagnostics` reads
the configuration, makes the Graph calls (a few at a time, the gateway's per-mailbox limit
still holds) and turns each answer or named error into a line. Bounded: at most `MAX_TARGETS`
targets and `DEFAULT_DEADLINE` seconds, the report says what it left out.

Never in a report or a log: a secret, a token (only the permission names it carries), mail or
event content. Calendar names of a mailbox appear only as a hint when a linked name is wrong.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from azure.core.exceptions import AzureError

from core.calendar.sync import calendar_named
from core.graph.errors import (
    ConsentMissing,
    FolderNotFound,
    GrantRevoked,
    GraphError,
    GraphUnavailable,
    NotFound,
    Throttled,
    TokenUnavailable,
    safe_code,
)
from core.graph.model import Calendar
from core.graph.port import GraphGateway
from core.graph_access import PUBLIC_AUTHORITY, GraphProvider
from core.runs import Clock, utc_now
from core.store import Tables
from core.store.keys import escape_key
from core.store.records import (
    DEFAULT_CALENDAR,
    BookingCalendar,
    CredentialMode,
    DelegatedGrant,
    Direction,
    MailImport,
    Presence,
    PresenceSettings,
    ResourceLink,
    Tenant,
)

log = logging.getLogger(__name__)


MAX_TARGETS = 200  # Graph targets one test checks; the rest are reported as not checked
DEFAULT_DEADLINE = 100.0  # seconds for every Graph check together (an HTTP trigger has 230)
DEFAULT_CONCURRENCY = 8  # jobs in flight; the gateway still allows 4 requests per mailbox
PRESENCE_USERS = 20  # one getSchedule call
MAX_CALENDAR_HINTS = 20

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
_MAX_REASONS = 3
_BUSY = "Graph is busy, try again"


class Check(StrEnum):
    TOKEN = "token"  # noqa: S105 - the name of a check, not a token
    PERMISSIONS = "permissions"
    CALENDAR = "calendar"
    MAIL_FOLDER = "mail-folder"
    BOOKING_CALENDAR = "booking-calendar"
    PRESENCE = "presence"


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    WARNING = "warning"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class CheckLine:
    check: Check
    target: str
    status: Status
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {
            "check": self.check.value,
            "target": self.target,
            "status": self.status.value,
            "detail": self.detail,
        }
        if self.fix:
            out["fix"] = self.fix
        return out


@dataclass(frozen=True, slots=True)
class Report:
    tenant_id: str
    checked_at: datetime
    checks: tuple[CheckLine, ...]
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not any(line.status is Status.FAILED for line in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "ok": self.ok,
            "checkedAt": self.checked_at.isoformat(),
            "truncated": self.truncated,
            "checks": [line.to_dict() for line in self.checks],
        }


class TokenGraphs(GraphProvider, Protocol):
    async def token_claims(self, tenant: Tenant, account: str | None = None) -> dict[str, Any]:
        """The unverified claims of a Graph token for the tenant (in delegated mode, for
        `account`); TokenUnavailable if none."""
        ...


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
    for grant in setup.grants:
        found.setdefault(grant.account.casefold(), grant.account)
    return list(found.values())


@dataclass(frozen=True, slots=True)
class Need:
    """A Graph permission the configuration needs, and which features need it."""

    permission: str
    reasons: tuple[str, ...]

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
        reasons[MAIL_READ_WRITE].append(f"mail import {config.import_id} reads and archives mail")
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
    return [Need(permission, tuple(why)) for permission, why in reasons.items() if why]


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


@dataclass(frozen=True, slots=True)
class AppIdentity:
    """Who the fixes talk about: the bridge tenant, its app registration and Entra tenant."""

    tenant_id: str
    client_id: str
    directory: str
    app_name: str
    organisation: str
    authority: str = PUBLIC_AUTHORITY

    @property
    def consent_url(self) -> str:
        return f"{self.authority.rstrip('/')}/{self.directory}/adminconsent?client_id={self.client_id}"

    @property
    def operator_route(self) -> str:
        return f"PATCH /api/v1/operator/tenants/{self.tenant_id}"

    def route(self, path: str) -> str:
        return f"/api/v1/tenants/{self.tenant_id}/{path}"


def app_identity(tenant: Tenant, claims: Mapping[str, Any], authority: str) -> AppIdentity:
    def claim(name: str) -> str | None:
        value = claims.get(name)
        return value if isinstance(value, str) and value and len(value) <= 200 else None

    client_id = claim("appid") or claim("azp") or tenant.graph_client_id or "<client id>"
    return AppIdentity(
        tenant_id=tenant.tenant_id,
        client_id=client_id,
        directory=tenant.graph_tenant_id or claim("tid") or "organizations",
        app_name=claim("app_displayname") or client_id,
        organisation=tenant.display_name or tenant.tenant_id,
        authority=authority,
    )


# --- fixes (pure) -------------------------------------------------------------------------------


def permission_fix(permission: str, app: AppIdentity, *, delegated: bool = False) -> str:
    kind = "delegated" if delegated else "application"
    also = (
        " Or have the user connect again, consenting to it at sign-in."
        if delegated
        else " A token issued before the consent does not carry it; the bridge's next token does, "
        "within about an hour."
    )
    return (
        f"Grant the {kind} permission {permission} to the app {app.client_id} and grant admin consent: "
        f"Entra admin center > App registrations > {app.app_name} > API permissions > Add a permission "
        f"> Microsoft Graph > {kind.capitalize()} permissions > {permission}, then 'Grant admin consent "
        f"for {app.organisation}' (or have an admin open {app.consent_url})." + also
    )


def permission_lines(
    needs: Sequence[Need], granted: Granted, app: AppIdentity, account: str | None = None
) -> list[CheckLine]:
    """One line per needed permission: granted or not (with `account`: a user's own token's)."""
    where = f"{account} > " if account else ""
    if not needs:
        return [
            CheckLine(
                Check.PERMISSIONS,
                f"{where}configured features",
                Status.OK,
                "Nothing configured yet needs a Graph permission" + (f" in {account}." if account else "."),
            )
        ]
    lines = []
    for need in needs:
        shown = "; ".join(need.reasons[:_MAX_REASONS])
        if len(need.reasons) > _MAX_REASONS:
            shown += f"; and {len(need.reasons) - _MAX_REASONS} more"
        alternatives = sorted(need.accepted - {need.permission})
        name = need.permission + (f" (or {', '.join(alternatives)})" if alternatives else "")
        if granted.names & need.accepted:
            lines.append(
                CheckLine(
                    Check.PERMISSIONS, where + need.permission, Status.OK, f"{name} is granted: {shown}."
                )
            )
        else:
            lines.append(
                CheckLine(
                    Check.PERMISSIONS,
                    where + need.permission,
                    Status.FAILED,
                    f"The token does not carry the {granted.kind} permission {name}, which is needed: "
                    f"{shown}.",
                    permission_fix(need.permission, app, delegated=granted.delegated),
                )
            )
    return lines


def token_line(claims: Mapping[str, Any], app: AppIdentity, account: str | None = None) -> CheckLine:
    granted = granted_by(claims)
    names = ", ".join(sorted(granted.names)) or "none"
    who = f"{account} through the app" if account else "the app"
    return CheckLine(
        Check.TOKEN,
        account or app.client_id,
        Status.OK,
        f"Entra ID issued a Graph token for {who} {app.client_id} in tenant {app.directory}; "
        f"its {granted.kind} permissions: {names}.",
    )


def reconnect_fix(account: str, app: AppIdentity, resources: Sequence[str] = ()) -> str:
    """What to do when a user's own grant is gone or was never made (delegated mode)."""
    resource = resources[0] if resources else "<the resource>"
    return (
        f"Only {account} can fix this: send them to "
        f"GET {app.route('connect/start')}?account={account}&resourceId={resource} to sign in and "
        "consent again (a revoked consent, a password reset or a long unused grant ends it)."
    )


_ROTATE = (
    "create a new secret under Entra admin center > App registrations > {app} > Certificates & "
    "secrets > New client secret, copy its Value (not its Secret ID) and rotate it with {route} "
    '{{"graph": {{"clientSecret": "<the new value>"}}}}'
)
_FEDERATED = frozenset(
    {"AADSTS70021", "AADSTS700024", "AADSTS700027", "AADSTS700211", "AADSTS700212", "AADSTS700213"}
)
_SESSION = frozenset({"AADSTS70008", "AADSTS700082", "AADSTS50173", "AADSTS70043"})


def token_fix(code: str | None, app: AppIdentity) -> str:
    """What to do about an Entra ID refusal, by its AADSTS code."""
    secret = _ROTATE.format(app=app.app_name, route=app.operator_route)
    if code == "AADSTS7000215":
        return f"The client secret is wrong or expired: {secret}."
    if code == "AADSTS7000222":
        return f"The client secret has expired: {secret}."
    if code == "AADSTS700016":
        return (
            f"Entra ID has no app {app.client_id} in the directory {app.directory}: check graph.clientId "
            "(the Application (client) ID on the app registration's Overview page) and graph.tenantId, "
            f"and correct them with {app.operator_route}. An app registered in another tenant needs an "
            f"admin of this one to consent to it first: {app.consent_url}"
        )
    if code in ("AADSTS90002", "AADSTS900023"):
        return (
            f"Entra ID knows no tenant {app.directory}: check graph.tenantId (the Directory (tenant) ID "
            f"on Entra admin center > Overview) and correct it with {app.operator_route}."
        )
    if code == "AADSTS7000112":
        return (
            f"The app {app.client_id} is disabled: Entra admin center > Enterprise applications > "
            f"{app.app_name} > Properties > 'Enabled for users to sign-in' = Yes."
        )
    if code == "AADSTS65001":
        return f"No one has consented to the app yet: have an admin open {app.consent_url}."
    if code == "AADSTS53003":
        return (
            "A Conditional Access policy blocks the app: exclude its service principal (workload "
            "identities) in Entra admin center > Protection > Conditional Access."
        )
    if code in _FEDERATED:
        return (
            f"The app's federated credential does not match the bridge's managed identity: App "
            f"registrations > {app.app_name} > Certificates & secrets > Federated credentials must name "
            "the identity's issuer and object id as subject, with audience api://AzureADTokenExchange."
        )
    if code in _SESSION:
        return "The signed-in account's session has ended: connect the account again."
    if code:
        return (
            f"Entra ID refused the credential ({code}); what the code means: "
            f"https://login.microsoftonline.com/error?code={code.removeprefix('AADSTS')}"
        )
    return (
        "Set the tenant's Graph credential (graph.tenantId, graph.clientId, credentialMode and, for "
        f"client_secret, clientSecret) with {app.operator_route}."
    )


def credential_fix(exc: TokenUnavailable, app: AppIdentity, resources: Sequence[str] = ()) -> str:
    """The fix for a credential failure: the user's for a refused grant, else by AADSTS code."""
    if isinstance(exc, GrantRevoked) and exc.mailbox:
        return reconnect_fix(exc.mailbox, app, resources)
    return token_fix(exc.aad_code, app)


def token_failure(
    exc: TokenUnavailable, app: AppIdentity, account: str | None = None, resources: Sequence[str] = ()
) -> CheckLine:
    return CheckLine(
        Check.TOKEN, account or app.client_id, Status.FAILED, str(exc), credential_fix(exc, app, resources)
    )


def token_unreachable(exc: Exception, app: AppIdentity, account: str | None = None) -> CheckLine:
    return CheckLine(
        Check.TOKEN,
        account or app.client_id,
        Status.WARNING,
        f"Entra ID ({app.authority}) did not answer the token request ({type(exc).__name__}); try again.",
    )


def graph_failure(
    check: Check, target: str, exc: GraphError, mailbox: str, app: AppIdentity, where: str
) -> CheckLine:
    """The line for a Graph error met while checking `target` in `mailbox`; `where` says what
    configuration to correct."""
    if isinstance(exc, Throttled | GraphUnavailable):
        after = getattr(exc, "retry_after", None)
        wait = f" in {round(after)} seconds" if after else ""
        return CheckLine(check, target, Status.WARNING, f"{_BUSY}{wait} ({type(exc).__name__}).")
    if isinstance(exc, ConsentMissing):
        permission = exc.permission or "the permission the feature needs"
        return CheckLine(
            check,
            target,
            Status.FAILED,
            f"The app may not read {mailbox}: {permission} is not granted for it"
            + (f" (HTTP {exc.status})" if exc.status else "")
            + ".",
            permission_fix(permission, app)
            + f" If it is granted, check that no Exchange Online RBAC scope or application access "
            f"policy leaves {mailbox} out.",
        )
    if isinstance(exc, TokenUnavailable):
        return CheckLine(check, target, Status.FAILED, str(exc), credential_fix(exc, app))
    if isinstance(exc, NotFound):
        return CheckLine(
            check,
            target,
            Status.FAILED,
            f"The mailbox {mailbox} does not exist in the tenant.",
            f"Check the spelling of {mailbox} or the user's licence (a mailbox needs Exchange Online), "
            f"then correct {where}.",
        )
    return CheckLine(check, target, Status.FAILED, str(exc))


def calendar_line(
    check: Check,
    target: str,
    mailbox: str,
    name: str,
    calendars: Sequence[Calendar],
    where: str,
    *,
    saved_id: str | None = None,
) -> CheckLine:
    """Whether the mailbox's calendars hold the one a configuration names; `saved_id` is the id
    the configuration resolved when it was saved (compared when given)."""
    if name.casefold() == DEFAULT_CALENDAR:
        return CheckLine(check, target, Status.OK, f"{mailbox}'s default calendar can be read.")
    found = calendar_named(calendars, name)
    if found is None:
        names = [c.name for c in calendars][:MAX_CALENDAR_HINTS]
        hint = ", ".join(f"'{n}'" for n in names) or "none"
        return CheckLine(
            check,
            target,
            Status.FAILED,
            f"The mailbox {mailbox} has no calendar named '{name}'; its calendars: {hint}.",
            f"Calendar names are matched case-insensitively: correct the name in {where}, "
            "or rename the calendar in Outlook.",
        )
    if saved_id is not None and found.id != saved_id:
        return CheckLine(
            check,
            target,
            Status.WARNING,
            f"The calendar '{found.name}' in {mailbox} is not the one saved, which the bridge keeps "
            "using (was a calendar made again or renamed in Outlook?).",
            f"Save {where} again so that it uses this calendar.",
        )
    return CheckLine(check, target, Status.OK, f"The calendar '{found.name}' in {mailbox} can be read.")


def folder_missing(target: str, mailbox: str, path: str, exc: FolderNotFound, where: str) -> CheckLine:
    above = f"under '{exc.parent}'" if exc.parent else "at the top of the mailbox"
    return CheckLine(
        Check.MAIL_FOLDER,
        target,
        Status.FAILED,
        f"The folder '{path}' was not found in {mailbox}: the first missing part is '{exc.segment}' "
        f"({above}).",
        f"Folder names are matched case-insensitively: check the spelling of '{exc.segment}' in "
        f"Outlook, or save {where} with the folder's path as Outlook shows it"
        + ("" if exc.parent else " (the first part may be a well-known name such as Inbox or Archive)")
        + ".",
    )


# --- the shell ----------------------------------------------------------------------------------


@dataclass
class _Job:
    """Graph checks of some targets that run together, in one mailbox (whose token they use in
    delegated mode)."""

    check: Check
    targets: list[str]
    mailbox: str
    run: Callable[[_Graph], Awaitable[list[CheckLine]]]


@dataclass
class _Graph:
    """The gateway, and one list_calendars per mailbox per test however many links and
    bookings name it."""

    gateway: GraphGateway
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    results: dict[str, list[Calendar] | GraphError] = field(default_factory=dict)

    async def calendars(self, mailbox: str) -> list[Calendar]:
        key = mailbox.casefold()
        async with self.locks.setdefault(key, asyncio.Lock()):
            if key not in self.results:
                try:
                    self.results[key] = await self.gateway.list_calendars(mailbox)
                except GraphError as exc:
                    self.results[key] = exc
        found = self.results[key]
        if isinstance(found, GraphError):
            raise found
        return found


class TenantDiagnostics:
    def __init__(
        self,
        tables: Tables,
        graphs: TokenGraphs,
        *,
        authority: str = PUBLIC_AUTHORITY,
        clock: Clock = utc_now,
        max_targets: int = MAX_TARGETS,
        deadline: float = DEFAULT_DEADLINE,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self._tables = tables
        self._graphs = graphs
        self._authority = authority
        self._clock = clock
        self._max_targets = max_targets
        self._deadline = deadline
        self._concurrency = concurrency

    async def run(self, tenant: Tenant) -> Report:
        checked_at = self._clock()
        deadline = time.monotonic() + self._deadline
        setup = await self._setup(tenant.tenant_id)
        graph = _Graph(await self._graphs.gateway(tenant))
        if tenant.credential_mode is CredentialMode.DELEGATED:
            app, lines, no_token = await self._user_credentials(tenant, setup, graph, deadline)
        else:
            app, lines, no_token = await self._app_credential(tenant, setup)
        kept, cut = _bounded(_jobs(setup, app, checked_at), self._max_targets)
        lines += await self._run_jobs([_unless_token(job, no_token) for job in kept], graph, deadline)
        lines += cut
        report = Report(tenant.tenant_id, checked_at, tuple(lines), truncated=bool(cut))
        log.info(
            "settings tested",
            extra={
                "checks": len(lines),
                "failed": sum(line.status is Status.FAILED for line in lines),
                "warnings": sum(line.status is Status.WARNING for line in lines),
                "truncated": report.truncated,
            },
        )
        return report

    async def _app_credential(
        self, tenant: Tenant, setup: Setup
    ) -> tuple[AppIdentity, list[CheckLine], Callable[[str], bool]]:
        """The token and permission lines of an app credential (client secret or managed), and
        which mailboxes have no token (all of them, without one)."""
        try:
            claims = await self._graphs.token_claims(tenant)
        except (TokenUnavailable, AzureError) as exc:  # AzureError: Entra ID unreachable or failing
            app = app_identity(tenant, {}, self._authority)
            first = (
                token_failure(exc, app) if isinstance(exc, TokenUnavailable) else token_unreachable(exc, app)
            )
            skipped = CheckLine(
                Check.PERMISSIONS,
                "Microsoft Graph",
                Status.SKIPPED,
                "Not checked: there is no Graph token (see the token check).",
            )
            return app, [first, skipped], lambda mailbox: True
        app = app_identity(tenant, claims, self._authority)
        lines = [token_line(claims, app), *permission_lines(needs_of(setup), granted_by(claims), app)]
        return app, lines, lambda mailbox: False

    async def _user_credentials(
        self, tenant: Tenant, setup: Setup, graph: _Graph, deadline: float
    ) -> tuple[AppIdentity, list[CheckLine], Callable[[str], bool]]:
        """Delegated mode: for each account a feature acts in (and each connected one), the
        user's own token and what it lets the features do; and which mailboxes have no token."""
        app = app_identity(tenant, {}, self._authority)
        accounts = accounts_of(setup)
        if not accounts:
            detail = (
                "No user has connected a calendar yet: send each to "
                f"GET {app.route('connect/start')}?account=<their address>&resourceId=<the resource>."
            )
            return (
                app,
                [CheckLine(Check.TOKEN, "connected accounts", Status.SKIPPED, detail)],
                lambda mailbox: False,
            )
        resources: dict[str, list[str]] = {}
        for link in setup.links:
            for linked in link.accounts:
                resources.setdefault(linked.account.casefold(), []).append(link.resource_id)

        def job(account: str) -> _Job:
            async def run(_: _Graph) -> list[CheckLine]:
                try:
                    claims = await self._graphs.token_claims(tenant, account)
                except (TokenUnavailable, AzureError) as exc:
                    if isinstance(exc, TokenUnavailable):
                        return [token_failure(exc, app, account, resources.get(account.casefold(), ()))]
                    return [token_unreachable(exc, app, account)]
                mine = app_identity(tenant, claims, self._authority)
                needs = needs_of(setup, account)
                return [
                    token_line(claims, mine, account),
                    *permission_lines(needs, granted_by(claims), mine, account),
                ]

            return _Job(Check.TOKEN, [account], account, run)

        kept, cut = _bounded([job(a) for a in accounts], self._max_targets)
        lines = await self._run_jobs(kept, graph, deadline) + cut
        # refused, unreachable or not checked in time: no token either way
        refused = {line.target.casefold() for line in lines if line.status is not Status.OK}
        return app, lines, lambda mailbox: mailbox.casefold() in refused

    async def _setup(self, tenant_id: str) -> Setup:
        partition = escape_key(tenant_id)
        limit = 5 * self._max_targets  # enough to count what is left out; every row is a target

        async def rows(kind: type[Any]) -> list[Any]:
            return [r async for r in self._tables.repo(kind).list(partition, limit=limit)]

        links, imports, bookings, monitors, grants = await asyncio.gather(
            rows(ResourceLink), rows(MailImport), rows(BookingCalendar), rows(Presence), rows(DelegatedGrant)
        )
        settings = await self._tables.repo(PresenceSettings).get(*PresenceSettings.key(tenant_id))
        monitors.sort(key=lambda m: m.email)
        return Setup(links, imports, bookings, monitors, settings, grants)

    async def _run_jobs(self, jobs: Sequence[_Job], graph: _Graph, deadline: float) -> list[CheckLine]:
        """The jobs' lines, a few jobs at a time; a job still running at `deadline` (monotonic)
        is a warning."""
        if not jobs:
            return []
        gate = asyncio.Semaphore(self._concurrency)

        async def one(job: _Job) -> list[CheckLine]:
            async with gate:
                return await job.run(graph)

        tasks = [asyncio.ensure_future(one(job)) for job in jobs]
        try:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        finally:
            for task in tasks:
                task.cancel()  # no-op for those done
            await asyncio.gather(*tasks, return_exceptions=True)
        lines: list[CheckLine] = []
        for job, task in zip(jobs, tasks, strict=True):
            if task in pending or task.cancelled():
                slow = f"Not checked in time: {_BUSY}."
                lines += [CheckLine(job.check, t, Status.WARNING, slow) for t in job.targets]
            elif (error := task.exception()) is not None:
                reference = uuid.uuid4().hex
                log.error(
                    "settings check failed unexpectedly",
                    extra={"reference": reference, "check": job.check, "error_type": type(error).__name__},
                )
                detail = f"The check failed unexpectedly; reference {reference}."
                lines += [CheckLine(job.check, t, Status.WARNING, detail) for t in job.targets]
            else:
                lines += task.result()
        return lines


def _unless_token(job: _Job, no_token: Callable[[str], bool]) -> _Job:
    """The job, or (when its mailbox has no token) one that says it was not checked."""
    if not no_token(job.mailbox):
        return job
    why = f"Not checked: there is no Graph token for {job.mailbox} (see the token check)."

    async def skipped(_: _Graph) -> list[CheckLine]:
        return [CheckLine(job.check, target, Status.SKIPPED, why) for target in job.targets]

    return _Job(job.check, job.targets, job.mailbox, skipped)


def _jobs(setup: Setup, app: AppIdentity, now: datetime) -> list[_Job]:
    jobs = [_calendar_job(link, i, app) for link in setup.links for i in range(len(link.accounts))]
    jobs += [_mail_job(config, app) for config in setup.imports]
    jobs += [_booking_job(booking, app) for booking in setup.bookings]
    if setup.monitors:
        jobs.append(_presence_job(setup.monitors, setup.presence, app, now))
    return jobs


def _bounded(jobs: Sequence[_Job], limit: int) -> tuple[list[_Job], list[CheckLine]]:
    """The jobs that fit in `limit` targets (in order), and one line per check saying how many
    targets were left out."""
    kept: list[_Job] = []
    left: dict[Check, int] = {}
    used = 0
    for job in jobs:
        if not left and used + len(job.targets) <= limit:
            kept.append(job)
            used += len(job.targets)
        else:
            left[job.check] = left.get(job.check, 0) + len(job.targets)
    cut = [
        CheckLine(
            check,
            f"{count} more",
            Status.SKIPPED,
            f"Not checked: one test checks at most {limit} targets; at least {count} more "
            f"{check.value} targets were left out.",
        )
        for check, count in left.items()
    ]
    return kept, cut


def _calendar_job(link: ResourceLink, index: int, app: AppIdentity) -> _Job:
    account = link.accounts[index]
    targets = [f"{link.resource_id} > {account.account} > {name}" for name in account.calendars]
    where = f"the resource's link (PUT {app.route('resources/' + link.resource_id)})"

    async def run(graph: _Graph) -> list[CheckLine]:
        if account.direction is Direction.NONE:
            paused = "The link is paused (direction none): nothing is read or written."
            return [CheckLine(Check.CALENDAR, t, Status.SKIPPED, paused) for t in targets]
        try:
            calendars = await graph.calendars(account.account)
        except GraphError as exc:
            return [graph_failure(Check.CALENDAR, t, exc, account.account, app, where) for t in targets]
        return [
            calendar_line(Check.CALENDAR, t, account.account, name, calendars, where)
            for t, name in zip(targets, account.calendars, strict=True)
        ]

    return _Job(Check.CALENDAR, targets, account.account, run)


def _mail_job(config: MailImport, app: AppIdentity) -> _Job:
    folders = (
        ("importFolder", config.import_folder, config.import_folder_id),
        ("archiveFolder", config.archive_folder, config.archive_folder_id),
    )
    targets = [f"{config.import_id} > {config.mailbox} > {path}" for _, path, _ in folders]

    async def run(graph: _Graph) -> list[CheckLine]:
        if not config.enabled:
            off = "The import is disabled: nothing is read."
            return [CheckLine(Check.MAIL_FOLDER, t, Status.SKIPPED, off) for t in targets]
        lines = []
        for target, (name, path, saved_id) in zip(targets, folders, strict=True):
            where = f"the import's {name} (PUT {app.route('mail-imports/' + config.import_id)})"
            try:
                folder = await graph.gateway.resolve_folder_path(config.mailbox, path)
            except FolderNotFound as exc:
                lines.append(folder_missing(target, config.mailbox, path, exc, where))
                continue
            except GraphError as exc:
                lines.append(graph_failure(Check.MAIL_FOLDER, target, exc, config.mailbox, app, where))
                continue
            if folder.id != saved_id:
                lines.append(
                    CheckLine(
                        Check.MAIL_FOLDER,
                        target,
                        Status.WARNING,
                        f"The folder '{path}' in {config.mailbox} is not the one the import was saved "
                        "with, which it keeps using (was a folder renamed, moved or made again in "
                        "Outlook?).",
                        f"Save {where} again so that it uses this folder.",
                    )
                )
            else:
                lines.append(
                    CheckLine(Check.MAIL_FOLDER, target, Status.OK, f"'{path}' found in {config.mailbox}.")
                )
        return lines

    return _Job(Check.MAIL_FOLDER, targets, config.mailbox, run)


def _booking_job(booking: BookingCalendar, app: AppIdentity) -> _Job:
    target = f"{booking.booking_id} > {booking.owner} > {booking.calendar}"
    where = f"the booking calendar (PUT {app.route('booking-calendars/' + booking.booking_id)})"

    async def run(graph: _Graph) -> list[CheckLine]:
        try:
            calendars = await graph.calendars(booking.owner)
        except GraphError as exc:
            return [graph_failure(Check.BOOKING_CALENDAR, target, exc, booking.owner, app, where)]
        saved = booking.calendar_id if booking.calendar.casefold() != DEFAULT_CALENDAR else None
        line = calendar_line(
            Check.BOOKING_CALENDAR, target, booking.owner, booking.calendar, calendars, where, saved_id=saved
        )
        return [line]

    return _Job(Check.BOOKING_CALENDAR, [target], booking.owner, run)


def _presence_job(
    monitors: Sequence[Presence],
    settings: PresenceSettings | None,
    app: AppIdentity,
    now: datetime,
) -> _Job:
    users = [m.email for m in monitors[:PRESENCE_USERS]]
    asker = (settings.monitor_account if settings else None) or users[0]
    rest = len(monitors) - len(users)
    settings_route = f"PUT {app.route('presence/settings')}"

    async def run(graph: _Graph) -> list[CheckLine]:
        hour = now + timedelta(hours=1)
        try:
            schedules = await graph.gateway.get_schedule(asker, users, now, hour, interval_minutes=60)
        except GraphError as exc:
            target = f"getSchedule as {asker}"
            if isinstance(exc, NotFound):
                chosen = (
                    "the monitorAccount"
                    if settings and settings.monitor_account
                    else "the first monitored user"
                )
                return [
                    CheckLine(
                        Check.PRESENCE,
                        target,
                        Status.FAILED,
                        f"Free/busy is asked as {asker} ({chosen}), which is not a mailbox of the tenant.",
                        f"Set monitorAccount to a mailbox of the tenant ({settings_route}).",
                    )
                ]
            return [
                graph_failure(
                    Check.PRESENCE, target, exc, asker, app, f"the presence settings ({settings_route})"
                )
            ]
        lines = [
            _schedule_line(email, s.error, asker, app) for email, s in zip(users, schedules, strict=True)
        ]
        if rest > 0:
            lines.append(
                CheckLine(
                    Check.PRESENCE,
                    f"{rest} more monitored users",
                    Status.SKIPPED,
                    f"Not checked: one test reads {PRESENCE_USERS} users (one getSchedule call).",
                )
            )
        return lines

    return _Job(Check.PRESENCE, users, asker, run)


def _schedule_line(email: str, error: str | None, asker: str, app: AppIdentity) -> CheckLine:
    if error is None:
        return CheckLine(
            Check.PRESENCE, email, Status.OK, f"Free/busy of {email} can be read (asked as {asker})."
        )
    return CheckLine(
        Check.PRESENCE,
        email,
        Status.FAILED,
        f"Free/busy of {email} cannot be read ({safe_code(error) or 'error'}).",
        f"Check that {email} is a mailbox of the tenant (spelling, licence) and that {asker} may see its "
        f"free/busy; or stop monitoring it (DELETE {app.route('presence/monitors/' + email)}).",
    )
