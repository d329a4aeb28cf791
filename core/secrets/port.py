"""The secrets port: what every secret store does, and the rules every one of them enforces.

Names follow Key Vault's rule (1-127 ASCII letters, digits and '-') and, like Key Vault, are
case-insensitive: `Tenant-A` and `tenant-a` are one secret. Values are non-empty strings of at
most 25 KiB of UTF-8 (Key Vault's limit). The same checks run, with the same errors, in every
implementation, before any I/O, so the local stack rejects what Azure would.

No error message here or in any adapter contains a secret value, and the errors raised are
never chained to an exception that might hold one (see `raise_outside` in the adapters).
Invalid *names* are not echoed either: a name argument that fails validation may well be a
value passed in the wrong position.
"""

from __future__ import annotations

from typing import Protocol

from core.errors import InvalidSecretName, SecretStoreError

MAX_NAME_LENGTH = 127
MAX_VALUE_BYTES = 25 * 1024
_NAME_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")


class InvalidSecretValue(SecretStoreError, ValueError):
    """The value is not a non-empty string of at most 25 KiB (UTF-8). Never quotes the value."""


class SecretAccessDenied(SecretStoreError):
    """The store refused us (401/403, or no token could be obtained): a permissions or identity
    problem an operator must fix; retrying will not help."""


class SecretStoreUnavailable(SecretStoreError):
    """The store could not be reached, timed out, throttled us or failed on its side:
    retrying later may help."""


class SecretStore(Protocol):
    """Where the bridge keeps credentials (client secrets, refresh tokens)."""

    async def get(self, name: str) -> str | None:
        """The current value, or None if the secret does not exist or is deleted."""
        ...

    async def set(self, name: str, value: str) -> None:
        """Create the secret or store a new version; a deleted secret of that name is revived."""
        ...

    async def delete(self, name: str) -> None:
        """Delete the secret; deleting one that does not exist is not an error."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...


def validate_secret_name(name: object) -> str:
    """Return `name` if it is a valid secret name, else raise `InvalidSecretName`."""
    if not isinstance(name, str):
        raise InvalidSecretName(f"secret name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidSecretName("secret name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidSecretName(
            f"secret name is {len(name)} characters long; Key Vault allows at most {MAX_NAME_LENGTH}"
        )
    for position, char in enumerate(name):
        if char not in _NAME_CHARS:
            raise InvalidSecretName(
                "secret name may contain only ASCII letters, digits and '-' "
                f"(the character at position {position} is not one); build names with secret_name()"
            )
    return name


def validate_secret_value(value: object) -> str:
    """Return `value` if it is a storable secret value, else raise `InvalidSecretValue`."""
    if not isinstance(value, str):
        raise InvalidSecretValue(f"secret value must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidSecretValue("secret value is empty")
    size = utf8_size(value)
    if size is None:
        # checked outside any `except`: the UnicodeEncodeError holds the whole value
        raise InvalidSecretValue("secret value is not valid Unicode text (it contains a lone surrogate)")
    if size > MAX_VALUE_BYTES:
        raise InvalidSecretValue(
            f"secret value is {size} bytes of UTF-8; Key Vault allows at most {MAX_VALUE_BYTES}"
        )
    return value


def utf8_size(text: str) -> int | None:
    """Length of `text` in UTF-8, or None if it cannot be encoded (lone surrogates)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def store_key(name: str) -> str:
    """The case-folded key under which implementations file a (validated) name."""
    return name.lower()
