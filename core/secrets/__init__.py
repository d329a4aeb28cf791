"""Secrets: the port, its implementations, a cache, and the factory the app uses.

`KeyVaultSecretStore` lives in `core.secrets.keyvault` and is not imported here, so importing
this package does not load the Azure SDK.
"""

from __future__ import annotations

from core.errors import InvalidSecretName, SecretStoreError
from core.secrets.cache import CachedSecretStore
from core.secrets.factory import build_secret_store
from core.secrets.local import LocalSecretStore
from core.secrets.memory import InMemorySecretStore
from core.secrets.names import secret_name, split_secret_name
from core.secrets.port import (
    MAX_NAME_LENGTH,
    MAX_VALUE_BYTES,
    InvalidSecretValue,
    SecretAccessDenied,
    SecretStore,
    SecretStoreUnavailable,
    validate_secret_name,
    validate_secret_value,
)

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_VALUE_BYTES",
    "CachedSecretStore",
    "InMemorySecretStore",
    "InvalidSecretName",
    "InvalidSecretValue",
    "LocalSecretStore",
    "SecretAccessDenied",
    "SecretStore",
    "SecretStoreError",
    "SecretStoreUnavailable",
    "build_secret_store",
    "secret_name",
    "split_secret_name",
    "validate_secret_name",
    "validate_secret_value",
]
