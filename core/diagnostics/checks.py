"""The shell: reads the tenant's configuration, makes the Graph calls a few at a time within a
target and time budget, and turns each answer or named error into a line."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.core.exceptions import AzureError

from core.diagnostics.fixes import (
    BUSY,
    AppIdentity,
    app_identity,
    calendar_line,
    folder_missing,
    graph_failure,
    permission_lines,
    schedule_line,
    token_failure,
    token_line,
    token_unreachable,
)
from core.diagnostics.needs import Setup, accounts_of, granted_by, needs_of
from core.diagnostics.report import Check, CheckLine, Report, Status
from core.graph.errors import (
    FolderNotFound,
    GraphError,
    NotFound,
    TokenUnavailable,
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
    MailSender,
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


class TokenGraphs(GraphProvider, Protocol):
    async def token_claims(self, tenant: Tenant, account: str | None = None) -> dict[str, Any]:
        """The unverified claims of a Graph token for the tenant (in delegated mode, for
        `account`); TokenUnavailable if none."""
        ...


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

        links, imports, bookings, monitors, grants, senders = await asyncio.gather(
            rows(ResourceLink),
            rows(MailImport),
            rows(BookingCalendar),
            rows(Presence),
            rows(DelegatedGrant),
            rows(MailSender),
        )
        settings = await self._tables.repo(PresenceSettings).get(*PresenceSettings.key(tenant_id))
        monitors.sort(key=lambda m: m.email)
        return Setup(links, imports, bookings, monitors, settings, grants, senders)

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
                slow = f"Not checked in time: {BUSY}."
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
        lines = [schedule_line(email, s.error, asker, app) for email, s in zip(users, schedules, strict=True)]
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
