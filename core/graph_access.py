"""A Graph gateway per tenant, built from the tenant's credential and kept for the process.

Capabilities ask `TenantGraphs.gateway(tenant)` and never see a credential. One gateway (one
token cache, one connection pool) serves every invocation for a tenant, so a sync of a
thousand calendars acquires one token, not a thousand. When the tenant's credential changes —
another client id, a rotated secret (read through the cached secret store) — the next call
builds a new gateway; the old one is closed with the process, because invocations still
running may hold it.

Credential modes:
- `client_secret`: the tenant's own app registration; its secret in the secrets port.
- `managed`: the deployment's own app registration (made by infra/, `BRIDGE_APP_CLIENT_ID`, or
  the tenant's `clientId`), secretless: the Function App's user-assigned managed identity
  (`AZURE_CLIENT_ID`) gets an `api://AzureADTokenExchange` token, which Entra ID accepts as the
  app's client assertion because the app trusts that identity as a federated credential. The
  customer tenant grants admin consent once (`admin_consent_url`).
- `delegated`: each user connected their own calendar (`core/delegated.py`); the tenant's
  gateway sends each call with the credential of the mailbox it names.
Whatever is missing fails with `TokenUnavailable` in plain words, which a run records.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from core.graph.client import GRAPH_SCOPE
from core.graph.errors import TokenUnavailable, aad_code
from core.graph.port import GraphGateway
from core.secrets import SecretStore
from core.store.records import CredentialMode, Tenant

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from core.delegated import TokenEndpoint
    from core.host import Emission
    from core.runs import Clock
    from core.store import Tables

log = logging.getLogger(__name__)

PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
TOKEN_EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"  # noqa: S105 - a scope, not a secret


class GraphProvider(Protocol):
    async def gateway(self, tenant: Tenant) -> GraphGateway:
        """The tenant's gateway (owned by the provider: do not close it)."""
        ...


@dataclass
class DelegatedAccess:
    """What delegated tenants' credentials need: where grants are recorded, Entra ID's token
    endpoint, and how to tell the host an account must reconnect."""

    tables: Tables
    endpoint: TokenEndpoint
    emit: Callable[[str, Emission], Awaitable[Any]]
    clock: Clock


@dataclass
class _Entry:
    fingerprint: str
    gateway: GraphGateway
    credential: AsyncTokenCredential


class TenantGraphs:
    def __init__(
        self,
        secrets: SecretStore,
        open_gateway: Callable[[AsyncTokenCredential], GraphGateway],
        *,
        authority: str = PUBLIC_AUTHORITY,
        ca_bundle: str | None = None,
        managed_identity_client_id: str | None = None,
        bridge_app_client_id: str | None = None,
        delegated: DelegatedAccess | None = None,
    ) -> None:
        self._delegated = delegated
        self._per_mailbox: dict[str, tuple[str, GraphGateway]] = {}
        self._accounts: dict[tuple[str, str], _Entry] = {}
        self._managed_identity = managed_identity_client_id
        self._bridge_app = bridge_app_client_id
        self._secrets = secrets
        self._open = open_gateway
        self._authority = authority
        self._ca_bundle = ca_bundle
        self._entries: dict[str, _Entry] = {}
        self._retired: list[_Entry] = []
        self._lock = asyncio.Lock()

    async def gateway(self, tenant: Tenant) -> GraphGateway:
        if tenant.credential_mode is CredentialMode.DELEGATED and self._delegated is not None:
            return self._delegated_gateway(tenant)
        mode, client_id, directory, secret = await self._credential_parts(tenant)
        material = "\x1f".join((mode, client_id, directory, secret))
        fingerprint = hashlib.sha256(material.encode("utf-8")).hexdigest()
        entry = self._entries.get(tenant.tenant_id)
        if entry is not None and entry.fingerprint == fingerprint:
            return entry.gateway
        async with self._lock:
            entry = self._entries.get(tenant.tenant_id)
            if entry is not None and entry.fingerprint == fingerprint:
                return entry.gateway
            if mode == CredentialMode.MANAGED_IDENTITY.value:
                credential = self._managed_credential(directory, client_id)
            else:
                assert tenant.client_secret_name is not None  # checked by _credential_parts
                credential = cast(
                    "AsyncTokenCredential",
                    _RotatingSecretCredential(
                        lambda value: self._client_secret_credential(directory, client_id, value),
                        self._secrets,
                        tenant.client_secret_name,
                        secret,
                    ),
                )
            fresh = _Entry(fingerprint, self._open(credential), credential)
            if entry is not None:
                self._retired.append(entry)
                log.info(
                    "tenant credential changed; new Graph gateway", extra={"tenant_id": tenant.tenant_id}
                )
            self._entries[tenant.tenant_id] = fresh
            return fresh.gateway

    def _delegated_gateway(self, tenant: Tenant) -> GraphGateway:
        """A gateway that sends each call with the credential of the mailbox it names."""
        from core.delegated import PerMailboxGateway

        fingerprint = _delegated_fingerprint(tenant)
        known = self._per_mailbox.get(tenant.tenant_id)
        if known is not None and known[0] == fingerprint:
            return known[1]

        async def gateway_for(mailbox: str) -> GraphGateway:
            return self._account_entry(tenant, mailbox).gateway

        gateway = cast(GraphGateway, PerMailboxGateway(gateway_for))
        self._per_mailbox[tenant.tenant_id] = (fingerprint, gateway)
        return gateway

    def _account_entry(self, tenant: Tenant, mailbox: str) -> _Entry:
        """The gateway and credential of one connected account of a delegated tenant."""
        from core.delegated import RefreshTokenCredential

        access = self._delegated
        assert access is not None
        key = (tenant.tenant_id, mailbox.lower())
        entry = self._accounts.get(key)
        fingerprint = _delegated_fingerprint(tenant)
        if entry is None or entry.fingerprint != fingerprint:
            if entry is not None:
                self._retired.append(entry)
            credential = RefreshTokenCredential(
                tenant,
                mailbox.lower(),
                access.tables,
                self._secrets,
                access.endpoint,
                access.emit,
                access.clock,
            )
            typed = cast("AsyncTokenCredential", credential)
            entry = _Entry(fingerprint, self._open(typed), typed)
            self._accounts[key] = entry
        return entry

    async def token_claims(self, tenant: Tenant, account: str | None = None) -> dict[str, Any]:
        """The claims of a Graph access token for the tenant's credential — in delegated mode,
        `account`'s — as Entra ID issued it (not verified: the bridge only reads what it was
        granted — `roles` for app-only permissions, `scp` for delegated ones). Raises
        `TokenUnavailable` when no token is had, with Entra's error code (AADSTS…) when it gave
        one (`GrantRevoked` when a user must connect again)."""
        from azure.core.exceptions import ClientAuthenticationError

        if tenant.credential_mode is CredentialMode.DELEGATED:
            if account is None or self._delegated is None:
                raise TokenUnavailable(
                    f"tenant {tenant.tenant_id!r}: delegated mode has a token per connected account, "
                    "none for the tenant",
                    operation="token",
                )
            entry = self._account_entry(tenant, account)
        else:
            await self.gateway(tenant)  # builds (or reuses) the credential
            entry = self._entries[tenant.tenant_id]
        try:
            token = await entry.credential.get_token(GRAPH_SCOPE)
        except ClientAuthenticationError as exc:
            code = aad_code(str(exc))
            raise TokenUnavailable(
                f"tenant {tenant.tenant_id!r}: Entra ID issued no token" + (f" ({code})" if code else ""),
                aad_code=code,
                operation="token",
            ) from None
        return unverified_claims(token.token)

    async def _credential_parts(self, tenant: Tenant) -> tuple[str, str, str, str]:
        where = f"tenant {tenant.tenant_id!r}"
        if tenant.credential_mode is CredentialMode.MANAGED_IDENTITY:
            return self._managed_parts(tenant, where)
        if tenant.credential_mode is not CredentialMode.CLIENT_SECRET:
            raise TokenUnavailable(
                f"{where}: credential mode {tenant.credential_mode.value!r} signs in each user on their "
                "own; tenant-wide Graph access needs client_secret or managed",
                operation="token",
            )
        if not tenant.graph_tenant_id or not tenant.graph_client_id:
            raise TokenUnavailable(
                f"{where}: the Microsoft Entra tenant id and client id are not set", operation="token"
            )
        if not tenant.client_secret_name:
            raise TokenUnavailable(f"{where}: no client secret is set", operation="token")
        secret = await self._secrets.get(tenant.client_secret_name)
        if not secret:
            raise TokenUnavailable(
                f"{where}: the client secret is missing from the secret store", operation="token"
            )
        return tenant.credential_mode.value, tenant.graph_client_id, tenant.graph_tenant_id, secret

    def _managed_parts(self, tenant: Tenant, where: str) -> tuple[str, str, str, str]:
        client_id = tenant.graph_client_id or self._bridge_app
        if not tenant.graph_tenant_id:
            raise TokenUnavailable(f"{where}: the Microsoft Entra tenant id is not set", operation="token")
        if not client_id:
            raise TokenUnavailable(
                f"{where}: managed mode needs the deployment's app registration (BRIDGE_APP_CLIENT_ID) "
                "or the tenant's graph.clientId",
                operation="token",
            )
        if not self._managed_identity:
            raise TokenUnavailable(
                f"{where}: managed mode needs the Function App's managed identity (AZURE_CLIENT_ID)",
                operation="token",
            )
        # The identity is part of the fingerprint: a changed AZURE_CLIENT_ID builds a new credential.
        return (
            CredentialMode.MANAGED_IDENTITY.value,
            client_id,
            tenant.graph_tenant_id,
            self._managed_identity,
        )

    def admin_consent_url(self, tenant: Tenant) -> str | None:
        """Where the customer's admin grants the deployment's app its permissions, once (managed
        mode): Entra's admin consent endpoint for the tenant and app."""
        client_id = tenant.graph_client_id or self._bridge_app
        if tenant.credential_mode is not CredentialMode.MANAGED_IDENTITY or not client_id:
            return None
        directory = tenant.graph_tenant_id or "organizations"
        return f"{self._authority.rstrip('/')}/{directory}/adminconsent?client_id={client_id}"

    def _managed_credential(self, directory: str, client_id: str) -> AsyncTokenCredential:
        from azure.identity.aio import ClientAssertionCredential, ManagedIdentityCredential

        extra: dict[str, Any] = {"connection_verify": self._ca_bundle} if self._ca_bundle else {}
        identity = ManagedIdentityCredential(client_id=self._managed_identity, **extra)
        federated = _FederatedCredential(identity)
        federated.app = ClientAssertionCredential(
            directory,
            client_id,
            federated.assertion,
            authority=self._authority,
            disable_instance_discovery=self._authority != PUBLIC_AUTHORITY,
            **extra,
        )
        return cast("AsyncTokenCredential", federated)

    def _client_secret_credential(self, directory: str, client_id: str, secret: str) -> AsyncTokenCredential:
        from azure.identity.aio import ClientSecretCredential

        extra = {"connection_verify": self._ca_bundle} if self._ca_bundle else {}
        return ClientSecretCredential(
            directory,
            client_id,
            secret,
            authority=self._authority,
            # instance discovery only knows Microsoft's clouds; a configured authority is trusted
            disable_instance_discovery=self._authority != PUBLIC_AUTHORITY,
            **extra,
        )

    async def close(self) -> None:
        entries, self._entries, retired, self._retired = list(self._entries.values()), {}, self._retired, []
        entries += list(self._accounts.values())
        self._accounts, self._per_mailbox = {}, {}
        for entry in (*entries, *retired):
            await entry.gateway.close()
            await entry.credential.close()


def _delegated_fingerprint(tenant: Tenant) -> str:
    return "\x1f".join(
        (tenant.graph_tenant_id or "", tenant.graph_client_id or "", tenant.client_secret_name or "")
    )


def unverified_claims(token: str) -> dict[str, Any]:
    """A JWT's payload (its middle part), unverified: what Entra ID says it granted."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


class _FederatedCredential:
    """The app's credential in managed mode: before each token request, an exchange token from
    the managed identity (async; the identity credential caches it) becomes the client
    assertion. `ClientAssertionCredential` asks for its assertion synchronously, so the async
    fetch happens here, first — a blocking fetch inside its callback would stall the event loop."""

    def __init__(self, identity: Any) -> None:
        self._identity = identity
        self._assertion = ""
        self.app: Any = None

    def assertion(self) -> str:
        return self._assertion

    async def _refresh(self) -> None:
        self._assertion = (await self._identity.get_token(TOKEN_EXCHANGE_SCOPE)).token

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        await self._refresh()
        return await self.app.get_token(*scopes, **kwargs)

    async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        await self._refresh()
        return await self.app.get_token_info(*scopes, options=options)

    async def close(self) -> None:
        await self.app.close()
        await self._identity.close()

    async def __aenter__(self) -> _FederatedCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# Entra ID's answers to a client secret that is no longer the app's: wrong, or expired.
_STALE_SECRET_CODES = frozenset({"AADSTS7000215", "AADSTS7000222"})


class _RotatingSecretCredential:
    """A client-secret credential that survives a rotation made elsewhere (in Key Vault, by an
    operator or another instance): when Entra ID refuses the secret, the secret is read again
    past the cache, and if it changed the request is tried once more with the new one."""

    def __init__(self, build: Any, secrets: SecretStore, name: str, secret: str) -> None:
        self._build = build
        self._secrets = secrets
        self._name = name
        self._secret = secret
        self._inner: Any = build(secret)
        self._old: list[Any] = []

    async def _renewed(self, exc: Exception) -> bool:
        if aad_code(str(exc)) not in _STALE_SECRET_CODES:
            return False
        invalidate = getattr(self._secrets, "invalidate", None)
        if invalidate is not None:
            invalidate(self._name)
        fresh = await self._secrets.get(self._name)
        if not fresh or fresh == self._secret:
            return False
        log.info("client secret rotated elsewhere; signing in with the new one")
        self._old.append(self._inner)
        self._secret, self._inner = fresh, self._build(fresh)
        return True

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return await self._inner.get_token(*scopes, **kwargs)
        except ClientAuthenticationError as exc:
            if not await self._renewed(exc):
                raise
        return await self._inner.get_token(*scopes, **kwargs)

    async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return await self._inner.get_token_info(*scopes, options=options)
        except ClientAuthenticationError as exc:
            if not await self._renewed(exc):
                raise
        return await self._inner.get_token_info(*scopes, options=options)

    async def close(self) -> None:
        for credential in (*self._old, self._inner):
            await credential.close()

    async def __aenter__(self) -> _RotatingSecretCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
