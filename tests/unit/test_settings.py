"""Settings are read once from environment variables and every problem is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import SettingsError
from core.settings import AZURITE_KEY, SecretsProvider, Settings, azurite_connection_string
from devtools.tls import generate_tls

ROOT = Path(__file__).resolve().parents[2]
AZURITE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def test_given_only_storage_when_built_then_local_defaults_point_at_the_local_stack() -> None:
    settings = Settings.from_env(AZURITE)
    assert settings.secrets_provider is SecretsProvider.LOCAL
    assert settings.storage.service_uri("table") == "http://127.0.0.1:10002/devstoreaccount1"
    assert settings.storage.service_uri("queue") == "http://127.0.0.1:10001/devstoreaccount1"
    assert settings.table_prefix == "bridge"
    assert settings.run_retention_days == 30


def test_given_no_storage_setting_when_built_then_one_error_names_it() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({})
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith("AzureWebJobsStorage is missing")


def test_given_several_bad_settings_when_built_then_each_is_named_once() -> None:
    env = {
        **AZURITE,
        "RUN_RETENTION_DAYS": "forever",
        "HOUSEKEEPING_SCHEDULE": "*/5 * * * *",
        "SECRETS_PROVIDER": "vault",
        "BRIDGE_TABLE_PREFIX": "9bad",
    }
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    named = sorted(p.split()[0] for p in err.value.problems)
    assert named == ["BRIDGE_TABLE_PREFIX", "HOUSEKEEPING_SCHEDULE", "RUN_RETENTION_DAYS", "SECRETS_PROVIDER"]
    assert "six-field NCRONTAB" in str(err.value)


def test_given_keyvault_provider_without_uri_when_built_then_the_missing_uri_is_named() -> None:
    with pytest.raises(SettingsError, match="KEY_VAULT_URI is missing"):
        Settings.from_env({**AZURITE, "SECRETS_PROVIDER": "keyvault"})


def test_given_identity_based_storage_when_built_then_service_uris_derive_from_the_account() -> None:
    settings = Settings.from_env(
        {"AzureWebJobsStorage__accountName": "stbridge", "AzureWebJobsStorage__clientId": "mi-client"}
    )
    assert settings.storage.uses_identity
    assert settings.storage.client_id == "mi-client"
    assert settings.storage.service_uri("blob") == "https://stbridge.blob.core.windows.net"


def test_given_a_malformed_connection_string_when_built_then_the_error_names_the_setting() -> None:
    with pytest.raises(SettingsError, match="AzureWebJobsStorage is not a storage connection string"):
        Settings.from_env({"AzureWebJobsStorage": "not a connection string"})


def test_the_storage_key_never_appears_in_repr_or_errors() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": azurite_connection_string()})
    assert AZURITE_KEY not in repr(settings)
    assert AZURITE_KEY not in str(settings.model_dump())
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"AzureWebJobsStorage": azurite_connection_string(), "RUN_RETENTION_DAYS": "0"})
    assert AZURITE_KEY not in str(err.value)


def test_settings_are_immutable() -> None:
    settings = Settings.from_env(AZURITE)
    with pytest.raises(ValueError, match="frozen"):
        settings.run_retention_days = 5  # type: ignore[misc]


def test_local_settings_example_lists_every_setting_with_a_working_value() -> None:
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    known = {f.alias for f in Settings.model_fields.values() if f.alias}
    assert known <= set(example), f"missing from the example: {sorted(known - set(example))}"
    Settings.from_env(example)  # the example works as it is


# --- Microsoft Graph ---------------------------------------------------------------------------


def test_given_no_graph_settings_when_built_then_they_point_at_microsoft_graph() -> None:
    settings = Settings.from_env(AZURITE)
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.graph_authority_host == "https://login.microsoftonline.com"
    assert settings.graph_ca_bundle is None
    assert (settings.graph_retry_budget_seconds, settings.graph_timeout_seconds) == (60, 30)


def test_given_the_emulators_graph_settings_when_built_then_they_are_taken(tmp_path: Path) -> None:
    tls = generate_tls(tmp_path)
    settings = Settings.from_env(
        {
            **AZURITE,
            "GRAPH_BASE_URL": "https://127.0.0.1:8443/v1.0/",
            "GRAPH_AUTHORITY_HOST": "https://127.0.0.1:8443/",
            "GRAPH_CA_BUNDLE": str(tls.ca_cert),
            "GRAPH_RETRY_BUDGET_SECONDS": "0.5",
            "GRAPH_TIMEOUT_SECONDS": "5",
        }
    )
    # Trailing slashes go: the SDK appends paths to the base URL (a double slash breaks them).
    assert settings.graph_base_url == "https://127.0.0.1:8443/v1.0"
    assert settings.graph_authority_host == "https://127.0.0.1:8443"
    assert settings.graph_ca_bundle == tls.ca_cert
    assert (settings.graph_retry_budget_seconds, settings.graph_timeout_seconds) == (0.5, 5)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/v1.0", "http://localhost/v1.0", "http://[::1]:80/beta"]
)
def test_given_plain_http_on_loopback_when_built_then_the_base_url_is_accepted(url: str) -> None:
    assert Settings.from_env({**AZURITE, "GRAPH_BASE_URL": url}).graph_base_url == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://graph.microsoft.com/v1.0", "must be an https:// URL (http:// only on loopback)"),
        ("http://10.0.0.5/v1.0", "must be an https:// URL"),
        ("https://graph.microsoft.com", "must end in the Graph API version"),
        ("https://graph.microsoft.com/v1.0?x=1", "nothing more"),
        ("https://user:pw@graph.microsoft.com/v1.0", "nothing more"),
        ("graph.microsoft.com/v1.0", "must be an https:// URL"),
    ],
)
def test_given_a_bad_graph_base_url_when_built_then_the_error_names_it(url: str, says: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({**AZURITE, "GRAPH_BASE_URL": url})
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith("GRAPH_BASE_URL ")
    assert says in err.value.problems[0]


@pytest.mark.parametrize(
    "authority", ["http://login.microsoftonline.com", "https://login.microsoftonline.com/tenant", "login"]
)
def test_given_a_bad_authority_host_when_built_then_the_error_names_it(authority: str) -> None:
    # azure-identity refuses a non-TLS authority; a path would be taken for a tenant.
    with pytest.raises(SettingsError, match="GRAPH_AUTHORITY_HOST must be"):
        Settings.from_env({**AZURITE, "GRAPH_AUTHORITY_HOST": authority})


def test_given_a_missing_or_non_pem_ca_bundle_when_built_then_the_error_names_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="GRAPH_CA_BUNDLE must be the path of a PEM file"):
        Settings.from_env({**AZURITE, "GRAPH_CA_BUNDLE": str(tmp_path / "missing.pem")})
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate")
    with pytest.raises(SettingsError, match="GRAPH_CA_BUNDLE is not a readable PEM file"):
        Settings.from_env({**AZURITE, "GRAPH_CA_BUNDLE": str(not_pem)})


def test_given_out_of_range_graph_durations_when_built_then_each_is_named() -> None:
    env = {**AZURITE, "GRAPH_RETRY_BUDGET_SECONDS": "-1", "GRAPH_TIMEOUT_SECONDS": "0"}
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    assert sorted(p.split()[0] for p in err.value.problems) == [
        "GRAPH_RETRY_BUDGET_SECONDS",
        "GRAPH_TIMEOUT_SECONDS",
    ]


# --- operator key and tenant keys ----------------------------------------------------------------


def test_given_operator_key_digests_when_built_then_each_is_kept_lower_case() -> None:
    one, two = "A" * 64, "b" * 64
    settings = Settings.from_env({**AZURITE, "BRIDGE_OPERATOR_KEY_SHA256": f"{one}, {two}"})
    assert settings.operator_key_sha256 == ("a" * 64, "b" * 64)
    assert Settings.from_env(AZURITE).operator_key_sha256 == ()
    assert Settings.from_env(AZURITE).api_key_grace_hours == 24


def test_given_a_bad_operator_digest_or_grace_when_built_then_both_are_named() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({**AZURITE, "BRIDGE_OPERATOR_KEY_SHA256": "my-key", "API_KEY_GRACE_HOURS": "1000"})
    named = sorted(p.split()[0] for p in err.value.problems)
    assert named == ["API_KEY_GRACE_HOURS", "BRIDGE_OPERATOR_KEY_SHA256"]
    assert "my-key" not in str(err.value)  # a key pasted instead of its digest is not echoed


# --- delivery to host webhooks -------------------------------------------------------------------


def test_given_no_delivery_settings_when_built_then_the_budget_outlasts_an_hour_long_outage() -> None:
    settings = Settings.from_env(AZURITE)
    assert settings.webhook_timeout_seconds == 10
    assert (settings.webhook_backoff_base_seconds, settings.webhook_backoff_cap_seconds) == (2, 300)
    assert settings.webhook_retry_budget_seconds == 86_400  # R8: a host may be down for an hour
    assert (settings.outbox_gap_grace_seconds, settings.outbox_retention_days) == (10, 30)


def test_given_bad_delivery_settings_when_built_then_each_is_named() -> None:
    env = {
        **AZURITE,
        "WEBHOOK_TIMEOUT_SECONDS": "0",
        "WEBHOOK_RETRY_BUDGET_SECONDS": "soon",
        "OUTBOX_GAP_GRACE_SECONDS": "-1",
        "OUTBOX_RETENTION_DAYS": "0",
    }
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    assert sorted(p.split()[0] for p in err.value.problems) == [
        "OUTBOX_GAP_GRACE_SECONDS",
        "OUTBOX_RETENTION_DAYS",
        "WEBHOOK_RETRY_BUDGET_SECONDS",
        "WEBHOOK_TIMEOUT_SECONDS",
    ]


def test_given_a_backoff_cap_below_its_base_when_built_then_both_are_named() -> None:
    env = {**AZURITE, "WEBHOOK_BACKOFF_BASE_SECONDS": "60", "WEBHOOK_BACKOFF_CAP_SECONDS": "5"}
    with pytest.raises(SettingsError, match="CAP_SECONDS must be at least WEBHOOK_BACKOFF_BASE"):
        Settings.from_env(env)
