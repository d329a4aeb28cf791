"""Settings are read once from environment variables and every problem is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import SettingsError
from core.settings import AZURITE_KEY, SecretsProvider, Settings, azurite_connection_string

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
