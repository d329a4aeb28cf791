"""Domain errors.

Adapters translate transport failures (HTTP statuses, SDK exceptions) into these named
errors, so callers never inspect status codes. No error message ever carries a secret value.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class Reportable(BridgeError):
    """An error whose message is written for people and safe to record anywhere (run rows,
    sync state, logs): it says what failed and what to do, and never carries mail or event
    content or a secret. A run records such a message; of any other error only its type."""


def describe(exc: BaseException, limit: int = 1000) -> str:
    """What a run records about `exc`: the message of a `Reportable`, else the type's name."""
    if isinstance(exc, Reportable):
        return f"{type(exc).__name__}: {exc}"[:limit]
    return type(exc).__name__


class SettingsError(BridgeError):
    """The app settings are missing or invalid. `problems` names each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("Invalid app settings: " + "; ".join(self.problems))


class StoreError(BridgeError):
    """A state store (Table Storage) failed in a way the caller cannot fix by retrying."""


class NotFound(StoreError):
    """The row does not exist."""


class AlreadyExists(StoreError):
    """An insert met an existing row with the same keys."""


class StaleEtag(StoreError):
    """An update or delete carried an ETag that no longer matches the stored row:
    someone else wrote it first. Re-read, re-apply, retry."""


class StoreUnavailable(StoreError):
    """The store could not be reached or answered with a server error."""


class SecretStoreError(BridgeError):
    """The secret store failed. The message names the secret, never its value."""


class InvalidSecretName(SecretStoreError, ValueError):
    """Secret names are 1-127 characters of ASCII letters, digits and hyphens (Key Vault's rule)."""
