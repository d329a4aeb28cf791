"""The request models and pure plans behind the operator and resource APIs: every bad field is
named, values are normalised, secrets stay out of tenants and error messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from core.links import plan_link
from core.request_errors import InvalidInput, MalformedRequest
from core.store.records import CalendarScope, CredentialMode, Direction, Tenant
from core.tenant_schema import (
    RotateIn,
    TenantCreate,
    TenantPatch,
    client_secret_name,
    plan_create,
    plan_patch,
    webhook_secret_name,
)
from core.validators import (
    parse,
    query_int,
    valid_account,
    valid_language,
    valid_resource_id,
    valid_time_zone,
    valid_webhook_url,
)

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
GUID = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"
SECRET = "Q~a-client-secret-that-must-never-show"


def fields(exc: pytest.ExceptionInfo[InvalidInput]) -> set[str]:
    return {p.field for p in exc.value.problems}


def create(**graph: Any) -> TenantCreate:
    return parse(
        TenantCreate,
        {"displayName": "Contoso", "graph": {"tenantId": GUID, "credentialMode": "managed", **graph}},
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [("nb", "nb"), ("DA", "da"), ("en-gb", "en-GB"), ("zh-hant-tw", "zh-Hant-TW"), ("es-419", "es-419")],
)
def test_given_bcp47_tags_then_they_are_kept_in_canonical_case(given: str, expected: str) -> None:
    assert valid_language(given) == expected


@pytest.mark.parametrize("bad", ["", "norwegian", "n", "en_GB", "en-", "x-private", "en-GB-"])
def test_given_malformed_language_tags_then_they_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="BCP 47"):
        valid_language(bad)


@pytest.mark.parametrize("zone", ["Europe/Oslo", "UTC", "America/New_York", "W. Europe Standard Time"])
def test_given_iana_or_windows_zones_then_they_are_accepted(zone: str) -> None:
    assert valid_time_zone(zone) == zone


@pytest.mark.parametrize("zone", ["", "Mars/Olympus", "../etc/passwd", "europe/oslo", "CET Standard"])
def test_given_unknown_zones_then_they_are_refused(zone: str) -> None:
    with pytest.raises(ValueError, match="time zone"):
        valid_time_zone(zone)


@pytest.mark.parametrize(
    "url", ["https://erp.example/hooks", "http://127.0.0.1:8080/h", "http://localhost/h", "https://[::1]:9/x"]
)
def test_given_https_or_loopback_http_webhooks_then_they_are_accepted(url: str) -> None:
    assert valid_webhook_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://erp.example/hooks",
        "ftp://erp.example/x",
        "https://user:pw@erp.example/x",
        "https://erp.example/x#frag",
        "/relative",
        "https://erp.example:99999/x",
        "https://erp.example/\x00",
    ],
)
def test_given_unsafe_webhook_urls_then_they_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="must"):
        valid_webhook_url(url)


def test_given_accounts_then_upns_and_object_ids_are_normalised() -> None:
    assert valid_account(" Anna@Contoso.Example ") == "anna@contoso.example"
    assert valid_account(GUID) == GUID.lower()
    for bad in ["anna", "anna@", "@contoso.example", "anna@contoso", "a..b@x.example", "a b@x.example"]:
        with pytest.raises(ValueError, match="user principal name"):
            valid_account(bad)


def test_given_resource_ids_then_long_or_control_ones_are_refused() -> None:
    assert valid_resource_id("Room 4B #1?") == "Room 4B #1?"
    for bad in ["", " ", "x" * 257, "a\nb", "/" * 200]:
        with pytest.raises(ValueError, match=r"must|too long"):
            valid_resource_id(bad)


def test_given_query_ints_then_range_and_type_are_checked() -> None:
    assert query_int("limit", None, default=5, low=1, high=10) == 5
    assert query_int("limit", "7", default=5, low=1, high=10) == 7
    for bad in ("0", "11", "x", "1.5"):
        with pytest.raises(InvalidInput) as exc:
            query_int("limit", bad, default=5, low=1, high=10)
        assert fields(exc) == {"limit"}


def test_given_a_body_that_is_not_an_object_then_it_is_malformed() -> None:
    bodies: list[object] = [[], "x", None, 3]
    for body in bodies:
        with pytest.raises(MalformedRequest):
            parse(TenantCreate, body)


def test_given_a_client_secret_tenant_then_the_plan_names_the_secret_and_the_tenant_holds_no_value() -> None:
    spec = create(credentialMode="client_secret", clientId=GUID, clientSecret=SECRET)
    tenant, writes = plan_create(spec, "contoso", NOW, SecretStr("whsec_" + "x" * 40))
    assert tenant.graph_tenant_id == GUID.lower()
    assert tenant.client_secret_name == client_secret_name("contoso") == "tenant--contoso--client-secret"
    assert tenant.webhook_secret_name == webhook_secret_name("contoso")
    assert {name: v.get_secret_value() for name, v in writes.set.items()} == {
        client_secret_name("contoso"): SECRET,
        webhook_secret_name("contoso"): "whsec_" + "x" * 40,
    }
    assert SECRET not in tenant.model_dump_json()
    assert SECRET not in repr(spec)
    assert SECRET not in repr(writes)


@pytest.mark.parametrize(
    ("graph", "bad"),
    [
        ({"credentialMode": "client_secret", "clientId": GUID}, {"graph.clientSecret"}),
        ({"credentialMode": "client_secret", "clientSecret": SECRET}, {"graph.clientId"}),
        ({"credentialMode": "delegated"}, {"graph.clientId"}),
        ({"credentialMode": "managed", "clientSecret": SECRET}, {"graph.clientSecret"}),
    ],
)
def test_given_credentials_that_do_not_fit_the_mode_then_the_create_plan_names_them(
    graph: dict[str, str], bad: set[str]
) -> None:
    with pytest.raises(InvalidInput) as exc:
        plan_create(create(**graph), "contoso", NOW, SecretStr("whsec_" + "x" * 40))
    assert fields(exc) == bad
    assert SECRET not in str(exc.value)


def test_given_a_secret_in_a_wrong_field_then_the_error_does_not_echo_it() -> None:
    with pytest.raises(InvalidInput) as exc:
        parse(
            TenantCreate,
            {"displayName": SECRET * 20, "graph": {"tenantId": SECRET, "credentialMode": SECRET}},
        )
    assert fields(exc) == {"displayName", "graph.tenantId", "graph.credentialMode"}
    assert SECRET not in str(exc.value)
    assert SECRET not in repr([p.detail for p in exc.value.problems])


def stored_tenant(**changes: Any) -> Tenant:
    base = Tenant(
        tenant_id="contoso",
        display_name="Contoso",
        graph_tenant_id=GUID.lower(),
        graph_client_id=GUID.lower(),
        credential_mode=CredentialMode.CLIENT_SECRET,
        client_secret_name=client_secret_name("contoso"),
        webhook_secret_name=webhook_secret_name("contoso"),
        webhook_url="https://erp.example/h",
        language="nb",
        time_zone="Europe/Oslo",
        created_at=NOW,
        etag='W/"1"',
    )
    return base.model_copy(update=changes)


def test_given_a_patch_then_only_named_fields_change_and_null_removes_what_may_be_removed() -> None:
    current = stored_tenant()
    patch = parse(TenantPatch, {"defaults": {"language": "da"}, "host": {"webhookUrl": None}})
    updated, writes = plan_patch(current, patch, NOW)
    assert (updated.language, updated.time_zone, updated.webhook_url) == ("da", "Europe/Oslo", None)
    assert updated.display_name == "Contoso"
    assert updated.credential_mode is CredentialMode.CLIENT_SECRET
    assert updated.updated_at == NOW
    assert updated.etag == current.etag
    assert writes.set == {}
    assert writes.delete == ()


def test_given_an_empty_patch_then_nothing_changes() -> None:
    current = stored_tenant()
    updated, writes = plan_patch(current, parse(TenantPatch, {}), NOW)
    assert updated.model_dump() == current.model_dump()
    assert writes.set == {}
    assert writes.delete == ()


def test_given_a_switch_to_managed_then_the_unused_client_secret_is_deleted() -> None:
    updated, writes = plan_patch(
        stored_tenant(), parse(TenantPatch, {"graph": {"credentialMode": "managed"}}), NOW
    )
    assert updated.client_secret_name is None
    assert writes.delete == (client_secret_name("contoso"),)


def test_given_a_switch_to_client_secret_with_the_secret_then_it_is_written() -> None:
    current = stored_tenant(credential_mode=CredentialMode.MANAGED_IDENTITY, client_secret_name=None)
    patch = parse(TenantPatch, {"graph": {"credentialMode": "client_secret", "clientSecret": SECRET}})
    updated, writes = plan_patch(current, patch, NOW)
    assert updated.client_secret_name == client_secret_name("contoso")
    assert writes.set[client_secret_name("contoso")].get_secret_value() == SECRET


@pytest.mark.parametrize(
    ("body", "bad"),
    [
        ({"displayName": None, "graph": {"tenantId": None}}, {"displayName", "graph.tenantId"}),
        ({"graph": None, "enabled": None}, {"graph", "enabled"}),
        ({"defaults": {"language": None, "timeZone": "Nowhere"}}, {"defaults.language", "defaults.timeZone"}),
        ({"keys": []}, {"keys"}),
    ],
)
def test_given_nulls_for_required_values_or_unknown_fields_then_the_patch_names_each(
    body: dict[str, Any], bad: set[str]
) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse(TenantPatch, body)
    assert fields(exc) == bad


def test_given_a_link_body_then_scopes_follow_direction_and_the_main_account_is_the_first_uploader() -> None:
    link = plan_link(
        "contoso",
        "room-1",
        {
            "accounts": [
                {"account": "A@x.example", "direction": "down"},
                {"account": "b@x.example", "direction": "none", "calendars": ["Team"]},
                {"account": GUID, "direction": "up"},
            ]
        },
        NOW,
    )
    assert [a.scope for a in link.accounts] == [
        CalendarScope.READ,
        CalendarScope.READ,
        CalendarScope.READ_WRITE,
    ]
    assert [a.calendars for a in link.accounts] == [["default"], ["Team"], ["default"]]
    assert link.main_account is not None
    assert link.main_account.account == GUID.lower()
    assert link.accounts[0].direction is Direction.DOWN


def test_given_a_bad_resource_id_then_it_is_named() -> None:
    with pytest.raises(InvalidInput) as exc:
        plan_link("contoso", "a\tb", {"accounts": []}, NOW)
    assert fields(exc) == {"resourceId"}


def test_given_accounts_too_large_for_one_row_then_the_link_is_refused_not_failed() -> None:
    calendars = [f"{i:02d}" + "c" * 250 for i in range(20)]
    accounts = [
        {"account": f"u{i}@x.example", "direction": "down", "calendars": calendars} for i in range(20)
    ]
    with pytest.raises(InvalidInput) as exc:
        plan_link("contoso", "room-1", {"accounts": accounts}, NOW)
    assert fields(exc) == {"accounts"}


def test_given_delegated_mode_then_a_client_secret_is_optional_and_kept_as_a_secret() -> None:
    """A delegated app registration is a public client (no secret) or a confidential one (its
    redirect URI registered as Web), whose secret goes to the secrets port like any other."""
    public, writes = plan_create(
        create(credentialMode="delegated", clientId=GUID), "contoso", NOW, SecretStr("whsec_" + "x" * 40)
    )
    assert public.client_secret_name is None
    assert client_secret_name("contoso") not in writes.set
    confidential, writes = plan_create(
        create(credentialMode="delegated", clientId=GUID, clientSecret=SECRET),
        "contoso",
        NOW,
        SecretStr("whsec_" + "x" * 40),
    )
    assert confidential.client_secret_name == client_secret_name("contoso")
    assert writes.set[client_secret_name("contoso")].get_secret_value() == SECRET
    assert SECRET not in repr(confidential)


@pytest.mark.parametrize("hours", [False, True, "0", "24"])
def test_a_rotation_grace_that_is_not_a_number_is_refused_not_read_as_one(hours: object) -> None:
    """The document says `graceHours` is a number; lax parsing read `false` as 0, which revokes
    every previous key at once (found by the R4 fuzzing's negative data)."""
    with pytest.raises(InvalidInput) as invalid:
        parse(RotateIn, {"graceHours": hours})
    assert [p.field for p in invalid.value.problems] == ["graceHours"]


def test_a_rotation_grace_in_hours_whole_or_not() -> None:
    assert parse(RotateIn, {"graceHours": 0}).grace_hours == 0
    assert parse(RotateIn, {"graceHours": 1.5}).grace_hours == 1.5
    assert parse(RotateIn, {}).grace_hours is None
