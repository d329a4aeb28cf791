"""The secrets port on Azure Key Vault (`azure-keyvault-secrets`, async client).

Errors. Every SDK failure becomes a `SecretStoreError` subclass whose message names the secret,
the HTTP status and Key Vault's error code, plus what to do about it. The server's free-text
message is not repeated (a careless server could echo a request body), and the SDK exception is
never attached: an `HttpResponseError` keeps the request (`exc.response.request`), whose body is
the value on a set. Raising inside `except ... from None` would still set `__context__`, so
failures are captured as plain data (`_Failure`) inside the handler and raised after it.

Soft delete. `delete` soft-deletes (the vault's retention period is the operator's undo; purge
protection may forbid purging anyway). Setting a name that is soft-deleted gets 409 Conflict
with inner code ObjectIsDeletedButRecoverable; `set` then recovers the secret and writes the new
version, so "delete then set" behaves as it does in every other store.

Challenge resource. The SDK's challenge policy verifies that the vault answers with a resource
whose domain the vault URL belongs to (`verify_challenge_resource`). This adapter never turns
that off; the local emulator answers with a resource that passes the check.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets.aio import SecretClient

from core.errors import SecretStoreError
from core.secrets.port import (
    SecretAccessDenied,
    SecretStoreUnavailable,
    validate_secret_name,
    validate_secret_value,
)

T = TypeVar("T")

# Conflicts that clear by themselves within seconds: a delete or recover still in progress
# (here or by another instance). `set` waits and retries them a bounded number of times.
_TRANSIENT_CONFLICTS = frozenset({"ObjectIsBeingDeleted", "ObjectIsBeingRecovered"})
_DELETED_BUT_RECOVERABLE = "ObjectIsDeletedButRecoverable"
_SET_ATTEMPTS = 5
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")

_ROLE_HINT = (
    "give the Function App's managed identity the 'Key Vault Secrets Officer' role on the vault "
    "('Key Vault Secrets User' is enough to read)"
)


@dataclass(frozen=True)
class _Failure:
    """What we keep of an SDK exception: safe, plain data only."""

    kind: type[SecretStoreError]
    status: int | None
    code: str | None
    inner_code: str | None
    detail: str

    @classmethod
    def of(cls, exc: Exception) -> _Failure:
        status = getattr(exc, "status_code", None)
        code = inner = None
        odata = getattr(exc, "error", None)
        if odata is not None:
            code = _safe_code(getattr(odata, "code", None))
            innererror = getattr(odata, "innererror", None) or {}
            inner = _safe_code(innererror.get("code")) if isinstance(innererror, Mapping) else None
        if isinstance(exc, ClientAuthenticationError) and exc.response is None:
            # the credential failed to get a token; its message comes from azure-identity, not
            # from the vault, and says why (e.g. no managed identity endpoint)
            first_line = (exc.message or "").strip().splitlines()[:1]
            detail = (
                f"could not get a token for Key Vault ({type(exc).__name__}: {''.join(first_line)[:300]})"
            )
            return cls(
                SecretAccessDenied, None, None, None, detail + "; check AZURE_CLIENT_ID and the identity"
            )
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            return cls(
                SecretStoreUnavailable, None, None, None, f"Key Vault did not answer ({type(exc).__name__})"
            )
        if isinstance(exc, ValueError):
            # The challenge policy raises ValueError when the vault's challenge names a resource
            # the vault URL does not belong to: it refuses to send a token there.
            if "challenge" in str(exc).lower():
                detail = (
                    "the vault's authentication challenge names a resource that does not match the "
                    "vault URL, so no token was sent; check KEY_VAULT_URI"
                )
            else:
                detail = "the Key Vault client rejected the request (ValueError); check KEY_VAULT_URI"
            return cls(SecretStoreError, None, None, None, detail)
        if isinstance(exc, HttpResponseError) and status is not None:
            shown = f"HTTP {status}" + (f" {code}" if code else "") + (f" ({inner})" if inner else "")
            if status in (401, 403):
                return cls(SecretAccessDenied, status, code, inner, f"{shown}; {_ROLE_HINT}")
            if status in (408, 429) or status >= 500:
                return cls(SecretStoreUnavailable, status, code, inner, f"{shown}; retry later")
            return cls(SecretStoreError, status, code, inner, shown)
        return cls(
            SecretStoreError, status, code, inner, f"the Key Vault client failed ({type(exc).__name__})"
        )

    def error(self, action: str, name: str) -> SecretStoreError:
        return self.kind(f"Key Vault could not {action} secret '{name}': {self.detail}")


class KeyVaultSecretStore:
    """`SecretStore` on an Azure Key Vault.

    `credential` is any azure-core `AsyncTokenCredential` (in Azure, `ManagedIdentityCredential`);
    it is closed with the store only if `owns_credential`. `client_kwargs` go to `SecretClient`
    (e.g. `connection_verify=<CA path>` for the local emulator, `retry_total=...`).
    """

    def __init__(
        self,
        vault_url: str,
        credential: AsyncTokenCredential,
        *,
        owns_credential: bool = False,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self._vault_url = vault_url
        self._credential = credential
        self._owns_credential = owns_credential
        self._client = SecretClient(vault_url, credential, **dict(client_kwargs or {}))
        self._closed = False

    async def get(self, name: str) -> str | None:
        name = validate_secret_name(name)
        result = await _attempt(lambda: self._client.get_secret(name))
        if isinstance(result, _Failure):
            if result.status == 404:
                return None  # absent, or soft-deleted: both read as "no secret"
            raise result.error("read", name)
        return result.value

    async def set(self, name: str, value: str) -> None:
        name = validate_secret_name(name)
        value = validate_secret_value(value)
        delay = 0.5
        for attempt in range(1, _SET_ATTEMPTS + 1):
            result = await _attempt(lambda: self._client.set_secret(name, value))
            if not isinstance(result, _Failure):
                return
            if result.status == 409 and result.inner_code == _DELETED_BUT_RECOVERABLE:
                recovered = await _attempt(lambda: self._client.recover_deleted_secret(name))
                # 404/409 here means another writer recovered or purged it first: just set again
                if isinstance(recovered, _Failure) and recovered.status not in (404, 409):
                    raise recovered.error("recover deleted", name)
                continue
            if result.status == 409 and result.inner_code in _TRANSIENT_CONFLICTS and attempt < _SET_ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
                continue
            raise result.error("write", name)
        raise SecretStoreError(
            f"Key Vault could not write secret '{name}': it stayed deleted or in transition "
            f"after {_SET_ATTEMPTS} attempts"
        )

    async def delete(self, name: str) -> None:
        name = validate_secret_name(name)
        result = await _attempt(lambda: self._client.delete_secret(name))
        if isinstance(result, _Failure) and result.status != 404:
            raise result.error("delete", name)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.close()
        if self._owns_credential:
            await self._credential.close()

    def __repr__(self) -> str:
        return f"KeyVaultSecretStore({self._vault_url!r})"


def _safe_code(code: object) -> str | None:
    # Key Vault's codes are identifiers ("SecretNotFound", "ForbiddenByRbac"); anything else is
    # dropped rather than shown, as it is server-controlled text like the message.
    return code if isinstance(code, str) and _CODE.fullmatch(code) else None


async def _attempt(call: Callable[[], Awaitable[T]]) -> T | _Failure:
    """Run one SDK call; a failure comes back as `_Failure` (the exception is dropped here, so
    nothing raised later can chain to it)."""
    try:
        return await call()
    except (AzureError, ValueError) as exc:
        return _Failure.of(exc)
