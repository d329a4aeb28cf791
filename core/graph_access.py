"""A Graph gateway per tenant, built from the tenant's credential and kept for the process.

Capabilities ask `TenantGraphs.gateway(tenant)` and never see a credential. One gateway (one
token cache, one connection pool) serves every invocation for a tenant, so a sync of a
thousand calendars acquires one token, not a thousand. When the tenant's credential changes —
another client id, a rotated secret (read through the cached secret store) — the next call
builds a new gateway; the old one is closed with the process, because invocations still
running may hold it.

Credential modes: `client_secret` (the tenant's own app registration; its secret in the
secrets port). The other modes fail here with `TokenUnavailable` naming what is missing, which
a run records in plain words.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from core.graph.errors import TokenUnavailable
from core.graph.port import GraphGateway
from core.secrets import SecretStore
from core.store.records import CredentialMode, Tenant

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

log = logging.getLogger(__name__)

PUBLIC_AUTHORITY = "https://login.microsoftonline.com"


class GraphProvider(Protocol):
    async def gateway(self, tenant: Tenant) -> GraphGateway:
        """The tenant's gateway (owned by the provider: do not close it)."""
        ...


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
    ) -> None:
        self._secrets = secrets
        self._open = open_gateway
        self._authority = authority
        self._ca_bundle = ca_bundle
        self._entries: dict[str, _Entry] = {}
        self._retired: list[_Entry] = []
        self._lock = asyncio.Lock()

    async def gateway(self, tenant: Tenant) -> GraphGateway:
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
            credential = self._client_secret_credential(directory, client_id, secret)
            fresh = _Entry(fingerprint, self._open(credential), credential)
            if entry is not None:
                self._retired.append(entry)
                log.info(
                    "tenant credential changed; new Graph gateway", extra={"tenant_id": tenant.tenant_id}
                )
            self._entries[tenant.tenant_id] = fresh
            return fresh.gateway

    async def _credential_parts(self, tenant: Tenant) -> tuple[str, str, str, str]:
        where = f"tenant {tenant.tenant_id!r}"
        if tenant.credential_mode is not CredentialMode.CLIENT_SECRET:
            raise TokenUnavailable(
                f"{where}: credential mode {tenant.credential_mode.value!r} is not available in this "
                "deployment; use client_secret (the tenant's own app registration and secret)",
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
        for entry in (*entries, *retired):
            await entry.gateway.close()
            await entry.credential.close()
