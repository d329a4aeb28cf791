"""Build the app's secret store from settings (called once, by the composition root)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core.secrets.cache import CachedSecretStore
from core.secrets.local import LocalSecretStore
from core.secrets.port import SecretStore
from core.settings import SecretsProvider, Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential


def build_secret_store(
    settings: Settings,
    credential: AsyncTokenCredential | None = None,
    client_kwargs: Mapping[str, Any] | None = None,
) -> CachedSecretStore:
    """The configured store (local files or Key Vault) behind a `CachedSecretStore` with
    `settings.secrets_cache_seconds`.

    For Key Vault the credential defaults to the Function App's managed identity
    (`AZURE_CLIENT_ID` picks a user-assigned one) and is then owned, and closed, by the store;
    a credential passed in stays the caller's. `client_kwargs` go to `SecretClient` (the local
    stack passes `connection_verify=<CA path>`). Both are ignored for the local provider.
    """
    inner: SecretStore
    if settings.secrets_provider is SecretsProvider.LOCAL:
        inner = LocalSecretStore(settings.local_secrets_dir)
    else:
        # Imported here: the Azure SDKs cost ~0.3 s of cold start, which the local provider
        # (and every unit test) should not pay.
        from core.secrets.keyvault import KeyVaultSecretStore

        if settings.key_vault_uri is None:  # Settings validation already guarantees it
            raise ValueError("KEY_VAULT_URI is missing")
        owns_credential = credential is None
        if credential is None:
            from azure.identity.aio import ManagedIdentityCredential

            credential = ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
        inner = KeyVaultSecretStore(
            settings.key_vault_uri,
            credential,
            owns_credential=owns_credential,
            client_kwargs=client_kwargs,
        )
    return CachedSecretStore(inner, settings.secrets_cache_seconds)
