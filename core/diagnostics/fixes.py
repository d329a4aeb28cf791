"""Each check's line and, for every failure, the fix in plain words (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.calendar.sync import calendar_named
from core.diagnostics.needs import Granted, Need, granted_by
from core.diagnostics.report import Check, CheckLine, Status
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
from core.graph_access import PUBLIC_AUTHORITY
from core.store.records import (
    DEFAULT_CALENDAR,
    Tenant,
)

MAX_CALENDAR_HINTS = 20
_MAX_REASONS = 3
BUSY = "Graph is busy, try again"


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
                    Status.WARNING if need.optional else Status.FAILED,
                    f"The token does not carry the {granted.kind} permission {name}, which is "
                    f"{'used' if need.optional else 'needed'}: {shown}.",
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
        return CheckLine(check, target, Status.WARNING, f"{BUSY}{wait} ({type(exc).__name__}).")
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


def schedule_line(email: str, error: str | None, asker: str, app: AppIdentity) -> CheckLine:
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
