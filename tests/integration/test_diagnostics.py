"""Test settings (`POST …/tenants/{id}/test`) on the local stack: the real `function_app` on the
local Functions host, Azurite, and the Graph emulator's Entra ID and Graph over HTTPS with the
real azure-identity and msgraph-sdk clients.

The emulator's admin consent is what a token carries when Entra ID issues it, so each test sets
the app's permissions before the bridge's first token (the first Graph call of the tenant)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.bridge_api import api_env  # noqa: F401 - fixture
from tests.integration.test_calendar_sync_down import (  # noqa: F401 - fixtures
    Bridge,
    graph,
    start_bridge,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

MAIL_PERMISSIONS = ("Mail.ReadWrite", "Mail.Send")


async def press_test_settings(bridge: Bridge) -> dict[str, Any]:
    """The guides' "Test settings" button: the report, checked for what must never be in it."""
    reply = await bridge.call("POST", "/test")
    assert reply.status == 200, reply.text
    assert reply.headers["Cache-Control"] == "no-store"
    assert bridge.outlook.secret not in reply.text
    assert "eyJ" not in reply.text  # no JWT (header or payload) in any form
    report: dict[str, Any] = reply.body
    assert report["tenantId"] == bridge.tenant_id
    return report


def lines(report: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [line for line in report["checks"] if line["check"] == check]


def failed(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [line for line in report["checks"] if line["status"] == "failed"]


async def mail_import(bridge: Bridge, folder: str = "Inbox/Fakturer") -> tuple[str, Any]:
    box = bridge.outlook.mailbox("invoices")
    mail = bridge.graph.module("mail").mail
    mail.ensure_folder_path(box, folder)
    mail.ensure_folder_path(box, "Archive/Fakturer")
    body = {
        "mailbox": box,
        "importFolder": folder,
        "archiveFolder": "Archive/Fakturer",
        "forwardTo": "accounts@contoso.example",
    }
    reply = await bridge.call("PUT", "/mail-imports/invoices", json_body=body)
    assert reply.status == 201, reply.text
    return box, mail


async def test_given_every_feature_set_up_right_then_the_report_is_all_green(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a resource link (a named calendar down, a default one both ways), a mail import,
    a booking calendar and two monitored users, with the permissions they need consented
    WHEN the host presses "Test settings"
    THEN every line is ok, in the documented order, with the token's permissions listed."""
    async with start_bridge() as bridge:
        outlook = bridge.outlook
        bridge.graph.grant(outlook.tenant_id, outlook.client_id, *MAIL_PERMISSIONS)
        adele, grady, owner = (outlook.mailbox(n) for n in ("adele", "grady", "booking"))
        bridge.graph.calendar.create_calendar(adele, "Ferie")
        bridge.graph.calendar.create_calendar(owner, "Bookable slots")
        await bridge.link(
            "room-4b",
            {"account": adele, "direction": "down", "calendars": ["Ferie"]},
            {"account": grady, "direction": "both"},
        )
        box, _ = await mail_import(bridge)
        booking = {"displayName": "Rådgivning", "owner": owner, "calendar": "Bookable slots"}
        reply = await bridge.call("PUT", "/booking-calendars/advice", json_body=booking)
        assert reply.status == 201, reply.text
        for user in (adele, grady):
            reply = await bridge.call("PUT", f"/presence/monitors/{user}", json_body={})
            assert reply.status == 201, reply.text

        report = await press_test_settings(bridge)
        assert report["ok"] is True, failed(report)
        assert report["truncated"] is False
        assert [(c["check"], c["target"], c["status"]) for c in report["checks"]] == [
            ("token", outlook.client_id, "ok"),
            ("permissions", "Calendars.Read", "ok"),
            ("permissions", "Calendars.ReadWrite", "ok"),
            ("permissions", "Mail.ReadWrite", "ok"),
            ("permissions", "Mail.Send", "ok"),
            ("calendar", f"room-4b > {adele} > Ferie", "ok"),
            ("calendar", f"room-4b > {grady} > default", "ok"),
            ("mail-folder", f"invoices > {box} > Inbox/Fakturer", "ok"),
            ("mail-folder", f"invoices > {box} > Archive/Fakturer", "ok"),
            ("booking-calendar", f"advice > {owner} > Bookable slots", "ok"),
            ("presence", adele, "ok"),
            ("presence", grady, "ok"),
        ]
        token = report["checks"][0]["detail"]
        assert "Calendars.ReadWrite, Mail.ReadWrite, Mail.Send, User.Read.All" in token


async def test_given_consent_missing_then_the_permission_line_names_it_and_the_admin_consent_url(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a resource linked both ways but an app consented only Calendars.Read
    THEN the Calendars.ReadWrite line fails with where to grant it and the consent URL (the
    configured authority host: the emulator's), and the report is not ok."""
    async with start_bridge() as bridge:
        outlook = bridge.outlook
        bridge.graph.revoke(outlook.tenant_id, outlook.client_id, "Calendars.ReadWrite")
        bridge.graph.grant(outlook.tenant_id, outlook.client_id, "Calendars.Read")
        await bridge.link("room-4b", {"account": outlook.mailbox("grady"), "direction": "both"})

        report = await press_test_settings(bridge)
        assert report["ok"] is False
        (line,) = failed(report)
        assert (line["check"], line["target"]) == ("permissions", "Calendars.ReadWrite")
        consent = f"{bridge.graph.authority}/{outlook.tenant_id}/adminconsent?client_id={outlook.client_id}"
        assert consent in line["fix"]
        assert (
            f"Grant the application permission Calendars.ReadWrite to the app {outlook.client_id}"
            in line["fix"]
        )
        assert "'Grant admin consent for Contoso'" in line["fix"]
        # the calendar itself can be read with Calendars.Read
        assert [c["status"] for c in lines(report, "calendar")] == ["ok"]


async def test_given_a_wrong_secret_then_the_token_line_says_to_rotate_it_and_graph_checks_are_skipped(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN the operator PATCHed a wrong client secret
    THEN the token line fails with AADSTS7000215 and the rotate fix, and every Graph check is
    skipped for want of a token."""
    async with start_bridge() as bridge:
        await bridge.link("room-4b", {"account": bridge.outlook.mailbox("adele"), "direction": "down"})
        patched = await bridge.api.operator(
            "PATCH", f"/tenants/{bridge.tenant_id}", json_body={"graph": {"clientSecret": "not-the-secret"}}
        )
        assert patched.status == 200, patched.text

        report = await press_test_settings(bridge)
        assert report["ok"] is False
        token, *rest = report["checks"]
        assert (token["check"], token["status"]) == ("token", "failed")
        assert "AADSTS7000215" in token["detail"]
        assert token["fix"].startswith("The client secret is wrong or expired")
        assert f"PATCH /api/v1/operator/tenants/{bridge.tenant_id}" in token["fix"]
        assert "not-the-secret" not in str(report)
        assert [(c["check"], c["status"]) for c in rest] == [
            ("permissions", "skipped"),
            ("calendar", "skipped"),
        ]


async def test_given_an_unknown_mailbox_then_its_calendar_line_says_to_check_spelling_or_licence(
    start_bridge: Callable[..., Any],
) -> None:
    async with start_bridge() as bridge:
        nobody = f"nobody@{bridge.outlook.domain}"
        await bridge.link("tech-7", {"account": nobody, "direction": "down"})

        report = await press_test_settings(bridge)
        (line,) = failed(report)
        assert (line["check"], line["target"]) == ("calendar", f"tech-7 > {nobody} > default")
        assert line["detail"] == f"The mailbox {nobody} does not exist in the tenant."
        assert f"Check the spelling of {nobody} or the user's licence" in line["fix"]


async def test_given_a_folder_renamed_in_outlook_then_the_fix_names_the_missing_segment(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN an import of 'Inbox/Fakturer', whose folder was then renamed 'Faktura' in Outlook
    THEN the import folder's line fails naming 'Fakturer' as the first missing part; the
    archive folder is ok."""
    async with start_bridge() as bridge:
        outlook = bridge.outlook
        bridge.graph.grant(outlook.tenant_id, outlook.client_id, *MAIL_PERMISSIONS)
        box, mail = await mail_import(bridge)
        mail.ensure_folder_path(box, "Inbox/Fakturer", create=False).display_name = "Faktura"

        report = await press_test_settings(bridge)
        (line,) = failed(report)
        assert (line["check"], line["target"]) == ("mail-folder", f"invoices > {box} > Inbox/Fakturer")
        assert line["detail"] == (
            f"The folder 'Inbox/Fakturer' was not found in {box}: the first missing part is 'Fakturer' "
            "(under 'Inbox')."
        )
        assert "folder names are matched case-insensitively" in line["fix"].lower()
        assert [c["status"] for c in lines(report, "mail-folder")] == ["failed", "ok"]
