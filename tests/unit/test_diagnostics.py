"""Test settings (`core/diagnostics/`): one line per check with its status, and for every
failure the fix in plain words — against the in-memory Graph and tables, with a token provider
whose claims (or refusal) each test chooses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.diagnostics import (
    AppIdentity,
    Check,
    Granted,
    Need,
    Report,
    Setup,
    Status,
    TenantDiagnostics,
    accounts_of,
    granted_by,
    needs_of,
    token_fix,
)
from core.diagnostics.fixes import permission_lines
from core.graph.errors import ConsentMissing, GrantRevoked, Throttled, TokenUnavailable
from core.graph.fake import InMemoryGraph
from core.graph.model import EventDraft
from core.store import Tables, memory_tables
from core.store.records import (
    BookingCalendar,
    CredentialMode,
    DelegatedGrant,
    Direction,
    GrantStatus,
    LinkedAccount,
    MailImport,
    MailSender,
    Presence,
    PresenceSettings,
    ResourceLink,
    Tenant,
)

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
DIRECTORY = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "11111111-2222-3333-4444-555555555555"
TENANT = Tenant(tenant_id="acme", display_name="Acme AS", graph_tenant_id=DIRECTORY, graph_client_id=CLIENT)
ADELE = "adele@acme.example"
GRADY = "grady@acme.example"
INVOICES = "invoices@acme.example"
BOOKING = "booking@acme.example"
EVERYTHING = ("Calendars.ReadWrite", "Mail.ReadWrite", "Mail.Send")
CONSENT_URL = f"https://login.microsoftonline.com/{DIRECTORY}/adminconsent?client_id={CLIENT}"


class Graphs:
    """The tenant's Graph: a gateway (the fake) and the token's claims, or a refusal."""

    def __init__(
        self, graph: InMemoryGraph, roles: tuple[str, ...] = EVERYTHING, refusal: Exception | None = None
    ) -> None:
        self.graph = graph
        self.claims: dict[str, Any] = {"appid": CLIENT, "tid": DIRECTORY, "app_displayname": "m365-bridge"}
        if roles:
            self.claims["roles"] = list(roles)
        self.refusal = refusal

    async def gateway(self, tenant: Tenant) -> Any:
        return self.graph

    async def token_claims(self, tenant: Tenant, account: str | None = None) -> dict[str, Any]:
        assert account is None, "an app credential's token is the tenant's"
        if self.refusal is not None:
            raise self.refusal
        return self.claims


class UserGraphs:
    """A delegated tenant's Graph: the fake gateway, and each connected user's token claims (a
    dict) or refusal (an exception); an account not listed has not connected."""

    def __init__(self, graph: InMemoryGraph, users: dict[str, dict[str, Any] | Exception]) -> None:
        self.graph = graph
        self.users = users
        self.asked: list[str] = []

    async def gateway(self, tenant: Tenant) -> Any:
        return self.graph

    async def token_claims(self, tenant: Tenant, account: str | None = None) -> dict[str, Any]:
        assert account is not None, "delegated mode has no tenant-wide token"
        self.asked.append(account)
        found = self.users.get(account)
        if found is None:
            raise GrantRevoked(f"{account} has not connected their calendar", mailbox=account)
        if isinstance(found, Exception):
            raise found
        return found


def user_claims(upn: str, *scopes: str) -> dict[str, Any]:
    return {"appid": CLIENT, "tid": DIRECTORY, "upn": upn, "scp": " ".join(scopes)}


@pytest.fixture
def graph() -> InMemoryGraph:
    g = InMemoryGraph()
    for upn in (ADELE, GRADY, INVOICES, BOOKING):
        g.add_user(upn)
    return g


@pytest.fixture
def tables() -> Tables:
    return memory_tables()


def diagnostics(tables: Tables, graphs: Graphs | UserGraphs, **kw: Any) -> TenantDiagnostics:
    return TenantDiagnostics(tables, graphs, clock=lambda: T0, **kw)


async def link(tables: Tables, resource: str, *accounts: LinkedAccount) -> None:
    await tables.repo(ResourceLink).save(
        ResourceLink(tenant_id="acme", resource_id=resource, accounts=list(accounts))
    )


async def mail_import(
    tables: Tables, graph: InMemoryGraph, import_folder: str = "Inbox/Faktura", **kw: Any
) -> None:
    found = graph.add_mail_folder(INVOICES, "Inbox/Faktura")
    archive = graph.add_mail_folder(INVOICES, "Archive/Faktura")
    config = MailImport(
        tenant_id="acme",
        import_id="invoices",
        mailbox=INVOICES,
        import_folder=import_folder,
        import_folder_id=found.id,
        archive_folder="Archive/Faktura",
        archive_folder_id=archive.id,
        forward_to="accounts@acme.example",
        **kw,
    )
    await tables.repo(MailImport).save(config)


async def booking_calendar(tables: Tables, graph: InMemoryGraph, **kw: Any) -> None:
    """The booking calendar 'advice': the owner's 'Bookable slots' calendar."""
    slots = graph.add_calendar(BOOKING, "Bookable slots")
    await tables.repo(BookingCalendar).save(
        BookingCalendar(
            tenant_id="acme",
            booking_id="advice",
            owner=BOOKING,
            calendar="Bookable slots",
            calendar_id=slots.id,
            **kw,
        )
    )


async def full_setup(tables: Tables, graph: InMemoryGraph) -> None:
    """Every feature, set up right: a resource reading Adele's 'Ferie' calendar and writing
    Grady's default one, a mail import, a booking calendar that notifies, two monitored users."""
    ferie = graph.add_calendar(ADELE, "Ferie")
    graph.outlook_create_event(
        ADELE, ferie.id, EventDraft(subject="Secret merger talks", start=T0, end=T0 + timedelta(hours=1))
    )
    await link(
        tables,
        "room-4b",
        LinkedAccount(account=ADELE, direction=Direction.DOWN, calendars=["ferie"]),
        LinkedAccount(account=GRADY, direction=Direction.BOTH),
    )
    await mail_import(tables, graph, notify_to="it@acme.example")
    await booking_calendar(tables, graph, notify_attendees=True)
    for email in (GRADY, ADELE):
        await tables.repo(Presence).save(Presence(tenant_id="acme", email=email))
    await tables.repo(PresenceSettings).save(PresenceSettings(tenant_id="acme", monitor_account=GRADY))


def lines(report: Report, check: Check) -> list[dict[str, str]]:
    return [line for line in report.to_dict()["checks"] if line["check"] == check.value]


# --- the acceptance cases ------------------------------------------------------------------


async def test_given_every_feature_set_up_right_when_tested_then_every_line_is_ok(
    tables: Tables, graph: InMemoryGraph
) -> None:
    """GIVEN a resource link, a mail import, a booking calendar and presence monitors, all
    right, and a token with the permissions they need
    THEN the report is ok, one line per check and target in the documented order, no fix;
    AND no event content appears in it, and each mailbox's calendars were listed once."""
    await full_setup(tables, graph)
    report = await diagnostics(tables, Graphs(graph)).run(TENANT)
    body = report.to_dict()
    assert body["ok"] is True
    assert (body["tenantId"], body["checkedAt"], body["truncated"]) == ("acme", T0.isoformat(), False)
    assert [(c["check"], c["target"], c["status"]) for c in body["checks"]] == [
        ("token", CLIENT, "ok"),
        ("permissions", "Calendars.Read", "ok"),
        ("permissions", "Calendars.ReadWrite", "ok"),
        ("permissions", "Mail.ReadWrite", "ok"),
        ("permissions", "Mail.Send", "ok"),
        ("calendar", f"room-4b > {ADELE} > ferie", "ok"),
        ("calendar", f"room-4b > {GRADY} > default", "ok"),
        ("mail-folder", f"invoices > {INVOICES} > Inbox/Faktura", "ok"),
        ("mail-folder", f"invoices > {INVOICES} > Archive/Faktura", "ok"),
        ("booking-calendar", f"advice > {BOOKING} > Bookable slots", "ok"),
        ("presence", ADELE, "ok"),
        ("presence", GRADY, "ok"),
    ]
    assert all("fix" not in c for c in body["checks"])
    assert "Calendars.ReadWrite, Mail.ReadWrite, Mail.Send" in body["checks"][0]["detail"]
    assert "Secret merger talks" not in json.dumps(body)
    listed = [mailbox for op, mailbox in graph.calls if op == "list_calendars"]
    assert sorted(listed) == sorted([ADELE, GRADY, BOOKING])


async def test_given_a_missing_role_then_its_line_fails_naming_the_permission_and_the_consent_url(
    tables: Tables, graph: InMemoryGraph
) -> None:
    """GIVEN a link that writes to Outlook (both) and a token with only Calendars.Read
    THEN the Calendars.ReadWrite line fails, naming the permission, the app, where to grant it
    and the admin consent URL (on the configured authority host); the report is not ok."""
    await link(tables, "room-4b", LinkedAccount(account=GRADY, direction=Direction.BOTH))
    report = await diagnostics(tables, Graphs(graph, roles=("Calendars.Read",))).run(TENANT)
    assert not report.ok
    (line,) = lines(report, Check.PERMISSIONS)
    assert (line["target"], line["status"]) == ("Calendars.ReadWrite", "failed")
    assert "resource room-4b links grady@acme.example (both)" in line["detail"]
    fix = line["fix"]
    assert f"Grant the application permission Calendars.ReadWrite to the app {CLIENT}" in fix
    assert "API permissions > Add a permission > Microsoft Graph > Application permissions" in fix
    assert "'Grant admin consent for Acme AS'" in fix
    assert CONSENT_URL in fix

    local = diagnostics(tables, Graphs(graph, roles=()), authority="https://127.0.0.1:8443")
    (line,) = lines(await local.run(TENANT), Check.PERMISSIONS)
    assert f"https://127.0.0.1:8443/{DIRECTORY}/adminconsent?client_id={CLIENT}" in line["fix"]


async def test_given_a_wrong_secret_then_the_token_fails_with_the_rotate_fix_and_graph_checks_are_skipped(
    tables: Tables, graph: InMemoryGraph
) -> None:
    """GIVEN Entra ID refuses the client secret (AADSTS7000215)
    THEN the token line fails with the fix (a new secret, its Value, the operator PATCH), every
    later check is skipped with the reason, and no Graph call is made."""
    await full_setup(tables, graph)
    graph.calls.clear()
    refusal = TokenUnavailable(
        "tenant 'acme': Entra ID issued no token (AADSTS7000215)", aad_code="AADSTS7000215"
    )
    report = await diagnostics(tables, Graphs(graph, refusal=refusal)).run(TENANT)
    token, *rest = report.to_dict()["checks"]
    assert (token["check"], token["status"]) == ("token", "failed")
    assert "AADSTS7000215" in token["detail"]
    assert token["fix"].startswith("The client secret is wrong or expired: create a new secret under")
    assert "Certificates & secrets" in token["fix"]
    assert "PATCH /api/v1/operator/tenants/acme" in token["fix"]
    assert rest
    assert {c["status"] for c in rest} == {"skipped"}
    assert {c["check"] for c in rest} == {
        "permissions",
        "calendar",
        "mail-folder",
        "booking-calendar",
        "presence",
    }
    assert all("no Graph token" in c["detail"] for c in rest)
    assert graph.calls == []


async def test_given_an_unknown_mailbox_then_its_calendar_line_fails_saying_to_check_spelling_or_licence(
    tables: Tables, graph: InMemoryGraph
) -> None:
    await link(tables, "tech-7", LinkedAccount(account="nobody@acme.example", direction=Direction.DOWN))
    report = await diagnostics(tables, Graphs(graph)).run(TENANT)
    (line,) = lines(report, Check.CALENDAR)
    assert line["status"] == "failed"
    assert line["detail"] == "The mailbox nobody@acme.example does not exist in the tenant."
    assert "spelling of nobody@acme.example or the user's licence" in line["fix"]
    assert "PUT /api/v1/tenants/acme/resources/tech-7" in line["fix"]
    assert not report.ok


async def test_given_a_misspelt_folder_then_the_fix_names_the_first_missing_segment(
    tables: Tables, graph: InMemoryGraph
) -> None:
    """GIVEN an import whose folder is 'Inbox/Fakturer' while the mailbox has 'Inbox/Faktura'
    THEN that folder's line fails naming 'Fakturer' as the first missing part, under 'Inbox',
    and the fix says names match case-insensitively; the archive folder is ok."""
    await mail_import(tables, graph, import_folder="Inbox/Fakturer")
    report = await diagnostics(tables, Graphs(graph)).run(TENANT)
    wrong, archive = lines(report, Check.MAIL_FOLDER)
    assert wrong["status"] == "failed"
    assert wrong["detail"] == (
        f"The folder 'Inbox/Fakturer' was not found in {INVOICES}: the first missing part is 'Fakturer' "
        "(under 'Inbox')."
    )
    assert "matched case-insensitively: check the spelling of 'Fakturer'" in wrong["fix"]
    assert "importFolder (PUT /api/v1/tenants/acme/mail-imports/invoices)" in wrong["fix"]
    assert archive["status"] == "ok"


# --- more failures, each with its fix -------------------------------------------------------


async def test_given_a_calendar_name_the_mailbox_lacks_then_the_fix_lists_the_calendars_it_has(
    tables: Tables, graph: InMemoryGraph
) -> None:
    graph.add_calendar(ADELE, "Ferie")
    await link(tables, "room-4b", LinkedAccount(account=ADELE, direction=Direction.DOWN, calendars=["Feire"]))
    (line,) = lines(await diagnostics(tables, Graphs(graph)).run(TENANT), Check.CALENDAR)
    assert line["status"] == "failed"
    assert (
        line["detail"]
        == f"The mailbox {ADELE} has no calendar named 'Feire'; its calendars: 'Calendar', 'Ferie'."
    )
    assert "rename the calendar in Outlook" in line["fix"]


async def test_given_graph_refuses_a_mailbox_then_the_line_has_the_permission_fix_and_a_busy_graph_warns(
    tables: Tables, graph: InMemoryGraph
) -> None:
    """GIVEN Graph answers 403 for Adele's calendars (e.g. an Exchange RBAC scope leaves her out)
    and 429 for Grady's
    THEN Adele's line fails with the permission fix and the RBAC hint, Grady's is a warning to
    try again (which does not make the report fail by itself)."""
    await link(
        tables,
        "room-4b",
        LinkedAccount(account=ADELE, direction=Direction.DOWN),
        LinkedAccount(account=GRADY, direction=Direction.DOWN),
    )
    graph.inject(
        ADELE,
        ConsentMissing("list_calendars: admin consent missing", permission="Calendars.Read", status=403),
    )
    graph.inject(GRADY, Throttled("list_calendars: throttled", retry_after=30.0, status=429))
    adele, grady = lines(await diagnostics(tables, Graphs(graph)).run(TENANT), Check.CALENDAR)
    assert adele["status"] == "failed"
    assert (
        adele["detail"] == f"The app may not read {ADELE}: Calendars.Read is not granted for it (HTTP 403)."
    )
    assert "Grant the application permission Calendars.Read" in adele["fix"]
    assert "RBAC" in adele["fix"]
    assert (grady["status"], grady["detail"]) == (
        "warning",
        "Graph is busy, try again in 30 seconds (Throttled).",
    )

    graph.inject(GRADY, Throttled("list_calendars: throttled", status=429))
    only_grady = memory_tables()
    await link(only_grady, "room-5", LinkedAccount(account=GRADY, direction=Direction.DOWN))
    report = await diagnostics(only_grady, Graphs(graph)).run(TENANT)
    assert report.ok
    assert [line["status"] for line in lines(report, Check.CALENDAR)] == ["warning"]


async def test_presence_reports_each_unreadable_user_and_a_monitor_account_that_is_no_mailbox(
    tables: Tables, graph: InMemoryGraph
) -> None:
    for email in (ADELE, "ghost@acme.example"):
        await tables.repo(Presence).save(Presence(tenant_id="acme", email=email))
    adele, ghost = lines(await diagnostics(tables, Graphs(graph)).run(TENANT), Check.PRESENCE)
    assert (adele["target"], adele["status"]) == (ADELE, "ok")
    assert "asked as adele@acme.example" in adele["detail"]  # the first user, without a monitorAccount
    assert (ghost["target"], ghost["status"]) == ("ghost@acme.example", "failed")
    assert "cannot be read (ErrorMailboxNotFound)" in ghost["detail"]
    assert "DELETE /api/v1/tenants/acme/presence/monitors/ghost@acme.example" in ghost["fix"]

    await tables.repo(PresenceSettings).save(
        PresenceSettings(tenant_id="acme", monitor_account="switch@acme.example")
    )
    (line,) = lines(await diagnostics(tables, Graphs(graph)).run(TENANT), Check.PRESENCE)
    assert (line["target"], line["status"]) == ("getSchedule as switch@acme.example", "failed")
    assert (
        "Set monitorAccount to a mailbox of the tenant (PUT /api/v1/tenants/acme/presence/settings)"
        in line["fix"]
    )


async def test_a_folder_renamed_since_the_import_was_saved_warns_and_a_disabled_import_is_skipped(
    tables: Tables, graph: InMemoryGraph
) -> None:
    await mail_import(tables, graph)
    other = graph.add_mail_folder(INVOICES, "Inbox/Other")
    config = await tables.repo(MailImport).get(*MailImport.key("acme", "invoices"))
    assert config is not None
    await tables.repo(MailImport).save(config.model_copy(update={"import_folder_id": other.id}))
    moved, _ = lines(await diagnostics(tables, Graphs(graph)).run(TENANT), Check.MAIL_FOLDER)
    assert moved["status"] == "warning"
    assert "not the one the import was saved with" in moved["detail"]

    config = await tables.repo(MailImport).get(*MailImport.key("acme", "invoices"))
    assert config is not None
    await tables.repo(MailImport).save(config.model_copy(update={"enabled": False}))
    report = await diagnostics(tables, Graphs(graph)).run(TENANT)
    assert [line["status"] for line in lines(report, Check.MAIL_FOLDER)] == ["skipped", "skipped"]
    assert lines(report, Check.PERMISSIONS)[0]["detail"] == "Nothing configured yet needs a Graph permission."


# --- bounds -----------------------------------------------------------------------------------


async def test_at_most_max_targets_are_checked_and_the_report_says_how_many_were_left_out(
    tables: Tables, graph: InMemoryGraph
) -> None:
    for n in range(5):
        await link(tables, f"room-{n}", LinkedAccount(account=ADELE, direction=Direction.DOWN))
    report = await diagnostics(tables, Graphs(graph), max_targets=3).run(TENANT)
    assert report.truncated
    assert report.to_dict()["truncated"] is True
    calendar = lines(report, Check.CALENDAR)
    assert [c["status"] for c in calendar] == ["ok", "ok", "ok", "skipped"]
    assert calendar[-1]["target"] == "2 more"
    assert "at most 3 targets" in calendar[-1]["detail"]


async def test_checks_still_running_at_the_deadline_are_warnings_to_try_again(
    tables: Tables, graph: InMemoryGraph
) -> None:
    graph.latency = 1.0
    await link(tables, "room-4b", LinkedAccount(account=ADELE, direction=Direction.DOWN))
    report = await diagnostics(tables, Graphs(graph), deadline=0.05).run(TENANT)
    (line,) = lines(report, Check.CALENDAR)
    assert (line["status"], line["detail"]) == ("warning", "Not checked in time: Graph is busy, try again.")
    assert report.ok


# --- the pure parts ------------------------------------------------------------------------------


def test_needs_follow_the_configured_features() -> None:
    links = [
        ResourceLink(
            tenant_id="acme",
            resource_id="r",
            accounts=[
                LinkedAccount(account=ADELE, direction=Direction.DOWN),
                LinkedAccount(account=GRADY, direction=Direction.UP),
                LinkedAccount(account="paused@acme.example", direction=Direction.NONE),
            ],
        )
    ]
    assert [n.permission for n in needs_of(Setup(links=links))] == ["Calendars.Read", "Calendars.ReadWrite"]
    quiet = BookingCalendar(tenant_id="acme", booking_id="b", owner=BOOKING)
    assert [n.permission for n in needs_of(Setup(bookings=[quiet]))] == ["Calendars.ReadWrite"]
    notifying = quiet.model_copy(update={"notify_attendees": True})
    assert [n.permission for n in needs_of(Setup(bookings=[notifying]))] == [
        "Calendars.ReadWrite",
        "Mail.Send",
    ]
    monitors = [Presence(tenant_id="acme", email=ADELE)]
    assert [n.permission for n in needs_of(Setup(monitors=monitors))] == ["Calendars.Read"]
    sender = MailSender(tenant_id="acme", sender_id="forms", mailbox="no-reply@acme.example")
    drafts, send = needs_of(Setup(senders=[sender]))
    assert (send.permission, send.reasons, send.optional) == (
        "Mail.Send",
        ("mail sender forms sends host mail as no-reply@acme.example",),
        False,
    )
    assert (drafts.permission, drafts.optional) == ("Mail.ReadWrite", True)  # only for large mail
    config = MailImport(
        tenant_id="acme",
        import_id="i",
        mailbox=ADELE,
        import_folder="I",
        import_folder_id="f1",
        archive_folder="A",
        archive_folder_id="f2",
        forward_to=GRADY,
    )
    write, _ = needs_of(Setup(imports=[config], senders=[sender]))
    assert (write.permission, write.optional) == ("Mail.ReadWrite", False)  # the import needs it
    assert len(write.reasons) == 2
    assert needs_of(Setup(senders=[sender]), account=ADELE) == []  # delegated: only its own mailbox
    assert accounts_of(Setup(senders=[sender])) == ["no-reply@acme.example"]
    assert needs_of(Setup()) == []
    assert Need("Calendars.Read", ()).accepted == {"Calendars.Read", "Calendars.ReadWrite"}


def test_granted_reads_roles_for_apps_and_scp_for_delegated_tokens() -> None:
    assert granted_by({"roles": ["Mail.Send", 7]}) == Granted(frozenset({"Mail.Send"}))
    assert granted_by({"scp": "Calendars.ReadWrite Mail.Send"}) == Granted(
        frozenset({"Calendars.ReadWrite", "Mail.Send"}), delegated=True
    )
    assert granted_by({}) == Granted(frozenset())


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("AADSTS7000215", "The client secret is wrong or expired"),
        ("AADSTS7000222", "The client secret has expired"),
        ("AADSTS700016", f"Entra ID has no app {CLIENT} in the directory {DIRECTORY}"),
        ("AADSTS90002", f"Entra ID knows no tenant {DIRECTORY}"),
        ("AADSTS53003", "Conditional Access"),
        ("AADSTS700213", "federated credential"),
        ("AADSTS9999999", "https://login.microsoftonline.com/error?code=9999999"),
        (None, "PATCH /api/v1/operator/tenants/acme"),
    ],
)
def test_each_entra_refusal_has_its_fix(code: str | None, says: str) -> None:
    app = AppIdentity("acme", CLIENT, DIRECTORY, "m365-bridge", "Acme AS")
    assert says in token_fix(code, app)


def test_a_permission_only_large_mail_uses_is_a_warning_when_missing() -> None:
    app = AppIdentity("acme", CLIENT, DIRECTORY, "m365-bridge", "Acme AS")
    sender = MailSender(tenant_id="acme", sender_id="forms", mailbox="no-reply@acme.example")
    lines = permission_lines(needs_of(Setup(senders=[sender])), Granted(frozenset({"Mail.Send"})), app)
    assert [(line.target, line.status) for line in lines] == [
        ("Mail.ReadWrite", Status.WARNING),
        ("Mail.Send", Status.OK),
    ]
    assert "more than 3 MB of files" in lines[0].detail
    assert lines[0].fix is not None
    assert "Mail.ReadWrite" in lines[0].fix
    assert Report("acme", T0, tuple(lines)).ok
    bare = permission_lines(needs_of(Setup(senders=[sender])), Granted(frozenset()), app)
    assert [line.status for line in bare] == [Status.WARNING, Status.FAILED]


def test_a_report_is_ok_unless_a_line_failed() -> None:
    from core.diagnostics import CheckLine

    warn = CheckLine(Check.CALENDAR, "x", Status.WARNING, "busy")
    fail = CheckLine(Check.CALENDAR, "y", Status.FAILED, "gone", "fix it")
    assert Report("acme", T0, (warn,)).ok
    assert not Report("acme", T0, (warn, fail)).ok
    assert fail.to_dict() == {
        "check": "calendar",
        "target": "y",
        "status": "failed",
        "detail": "gone",
        "fix": "fix it",
    }


async def test_a_booking_calendar_made_again_warns_and_one_whose_owner_is_gone_fails(
    tables: Tables, graph: InMemoryGraph
) -> None:
    graph.add_calendar(BOOKING, "Bookable slots")
    for booking_id, owner in (("advice", BOOKING), ("gone", "left@acme.example")):
        await tables.repo(BookingCalendar).save(
            BookingCalendar(
                tenant_id="acme",
                booking_id=booking_id,
                owner=owner,
                calendar="Bookable slots",
                calendar_id="AAMk-the-old-one",
            )
        )
    advice, gone = lines(await diagnostics(tables, Graphs(graph)).run(TENANT), Check.BOOKING_CALENDAR)
    assert advice["status"] == "warning"
    assert "PUT /api/v1/tenants/acme/booking-calendars/advice" in advice["fix"]
    assert (gone["status"], gone["detail"]) == (
        "failed",
        "The mailbox left@acme.example does not exist in the tenant.",
    )


# --- delegated mode: each user's own token -----------------------------------------------------

DELEGATED = TENANT.model_copy(update={"credential_mode": CredentialMode.DELEGATED})


async def test_delegated_each_account_has_its_own_token_line_and_a_revoked_one_gets_the_reconnect_fix(
    tables: Tables, graph: InMemoryGraph
) -> None:
    """GIVEN a delegated tenant where Adele connected (reading, Calendars.Read), Grady's grant was
    revoked (his link writes) and nobody connected for the booking owner
    THEN there is a token line per account: Adele's ok with her delegated permissions and her
    calendar checked; Grady's and the owner's failed with the fix only they can do (sign in
    again at …/connect/start, naming Grady's resource), their Graph checks skipped, not tried."""
    graph.add_calendar(ADELE, "Ferie")
    await link(
        tables,
        "room-4b",
        LinkedAccount(account=ADELE, direction=Direction.DOWN, calendars=["Ferie"]),
        LinkedAccount(account=GRADY, direction=Direction.BOTH),
    )
    await booking_calendar(tables, graph)
    await tables.repo(DelegatedGrant).save(
        DelegatedGrant(tenant_id="acme", account=GRADY, status=GrantStatus.RECONNECT_REQUIRED)
    )
    revoked = GrantRevoked(
        "Entra ID refused the grant (invalid_grant, AADSTS50173)", aad_code="AADSTS50173", mailbox=GRADY
    )
    graphs = UserGraphs(graph, {ADELE: user_claims(ADELE, "Calendars.Read", "User.Read"), GRADY: revoked})
    report = await diagnostics(tables, graphs).run(DELEGATED)
    assert not report.ok
    assert [(c["check"], c["target"], c["status"]) for c in report.to_dict()["checks"]] == [
        ("token", ADELE, "ok"),
        ("permissions", f"{ADELE} > Calendars.Read", "ok"),
        ("token", GRADY, "failed"),
        ("token", BOOKING, "failed"),
        ("calendar", f"room-4b > {ADELE} > Ferie", "ok"),
        ("calendar", f"room-4b > {GRADY} > default", "skipped"),
        ("booking-calendar", f"advice > {BOOKING} > Bookable slots", "skipped"),
    ]
    token = report.to_dict()["checks"]
    assert "delegated permissions: Calendars.Read, User.Read" in token[0]["detail"]
    assert token[2]["fix"].startswith(f"Only {GRADY} can fix this: send them to GET /api/v1/tenants/acme/")
    assert f"connect/start?account={GRADY}&resourceId=room-4b" in token[2]["fix"]
    assert f"connect/start?account={BOOKING}&resourceId=<the resource>" in token[3]["fix"]
    assert sorted(graphs.asked) == sorted([ADELE, GRADY, BOOKING])
    assert {mailbox for _, mailbox in graph.calls} == {ADELE}


async def test_delegated_a_user_without_the_scope_a_link_needs_gets_the_delegated_permission_fix(
    tables: Tables, graph: InMemoryGraph
) -> None:
    await link(tables, "room-4b", LinkedAccount(account=GRADY, direction=Direction.BOTH))
    graphs = UserGraphs(graph, {GRADY: user_claims(GRADY, "Calendars.Read")})
    (line,) = lines(await diagnostics(tables, graphs).run(DELEGATED), Check.PERMISSIONS)
    assert (line["target"], line["status"]) == (f"{GRADY} > Calendars.ReadWrite", "failed")
    assert "The token does not carry the delegated permission Calendars.ReadWrite" in line["detail"]
    assert "Microsoft Graph > Delegated permissions > Calendars.ReadWrite" in line["fix"]
    assert "have the user connect again" in line["fix"]


async def test_delegated_with_nobody_connected_says_how_to_connect(
    tables: Tables, graph: InMemoryGraph
) -> None:
    report = await diagnostics(tables, UserGraphs(graph, {})).run(DELEGATED)
    [line] = report.to_dict()["checks"]
    assert (line["check"], line["target"], line["status"]) == ("token", "connected accounts", "skipped")
    assert "GET /api/v1/tenants/acme/connect/start?account=" in line["detail"]
    assert report.ok
