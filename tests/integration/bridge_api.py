"""Fixtures and a small client for the tenant-facing and operator APIs: the real
`function_app` on the local Functions host against Azurite, called over real HTTP.

Import the fixtures into a test module (`from tests.integration.bridge_api import api, ...`).
Every response the client receives is kept (`Api.responses`), so a test can search all of them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

import function_app
from core import bootstrap
from core.bootstrap import Container
from core.operator_auth import new_operator_key
from core.secrets import LocalSecretStore
from devtools.funchost import FunctionHost

ROOT = Path(__file__).resolve().parents[2]
GRAPH_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    text: str

    @property
    def body(self) -> Any:
        return json.loads(self.text) if self.text else None

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    def is_problem(self, status: int) -> bool:
        body = self.body
        return (
            self.status == status
            and self.content_type == "application/problem+json"
            and isinstance(body, dict)
            and body.get("status") == status
            and bool(body.get("detail"))
        )


@dataclass
class Api:
    host: FunctionHost
    http: aiohttp.ClientSession
    operator_key: str
    secrets_dir: Path
    responses: list[Reply] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        *,
        bearer: str | None = None,
        json_body: Any = None,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        sent = {"x-functions-key": self.host.function_key, **(headers or {})}
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer}"
        data = raw if raw is not None else (json.dumps(json_body).encode() if json_body is not None else None)
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        async with self.http.request(
            method, self.host.base_url + path, data=data, headers=sent, params=params
        ) as resp:
            reply = Reply(resp.status, CIMultiDict(resp.headers), await resp.text())
        self.responses.append(reply)
        return reply

    async def operator(self, method: str, path: str, **kwargs: Any) -> Reply:
        return await self.call(method, "/api/v1/operator" + path, bearer=self.operator_key, **kwargs)

    async def create_tenant(self, tenant_id: str, **overrides: Any) -> Reply:
        reply = await self.operator("POST", "/tenants", json_body=tenant_body(tenant_id, **overrides))
        assert reply.status == 201, reply.text
        return reply

    async def secret(self, name: str) -> str | None:
        """Read the secrets port's backing store directly (no cache)."""
        store = LocalSecretStore(self.secrets_dir)
        try:
            return await store.get(name)
        finally:
            await store.close()


def tenant_body(tenant_id: str | None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "displayName": f"Tenant {tenant_id}",
        "graph": {"tenantId": GRAPH_TENANT, "clientId": CLIENT_ID, "credentialMode": "managed"},
        "host": {"webhookUrl": "https://erp.example/hooks/bridge"},
        "defaults": {"language": "nb", "timeZone": "Europe/Oslo"},
    }
    if tenant_id is not None:
        body["id"] = tenant_id
    for name, value in overrides.items():
        if isinstance(value, dict) and isinstance(body.get(name), dict):
            body[name] = {**body[name], **value}
        else:
            body[name] = value
    return body


def link_body(*accounts: str, direction: str = "both") -> dict[str, Any]:
    return {
        "displayName": "Møterom 4B",
        "accounts": [{"account": a, "direction": direction} for a in accounts],
    }


@pytest.fixture
async def api_env(
    storage_connection_string: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[dict[str, str]]:
    operator_key, digest = new_operator_key()
    env = {
        "AzureWebJobsStorage": storage_connection_string,
        "BRIDGE_TABLE_PREFIX": "t" + uuid.uuid4().hex[:10],
        "LOCAL_SECRETS_DIR": str(tmp_path / "secrets"),
        "HOUSEKEEPING_SCHEDULE": "0 0 0 1 1 *",
        "MAIL_IMPORT_SCHEDULE": "0 0 0 1 1 *",
        "GRAPH_SUBSCRIPTION_SCHEDULE": "0 0 0 1 1 *",
        "CALENDAR_SYNC_SCHEDULE": "0 0 0 1 1 *",
        "BRIDGE_OPERATOR_KEY_SHA256": digest,
        "API_KEY_GRACE_HOURS": "24",
        "SECRETS_CACHE_SECONDS": "0",
        "TEST_OPERATOR_KEY": operator_key,  # for the fixture below, not a setting the app reads
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    await bootstrap.reset()
    yield env
    await bootstrap.reset()


@pytest.fixture
async def api(api_env: dict[str, str]) -> AsyncIterator[Api]:
    async with (
        FunctionHost(function_app.app, host_json=ROOT / "host.json", port=0, env=api_env) as host,
        aiohttp.ClientSession() as http,
    ):
        yield Api(host, http, api_env["TEST_OPERATOR_KEY"], Path(api_env["LOCAL_SECRETS_DIR"]))


@pytest.fixture
async def app(api: Api) -> Container:
    """The container the host's functions use (same process), e.g. to set its clock."""
    return await bootstrap.container()


async def every_row(
    connection_string: str, prefix: str
) -> dict[tuple[str, str, str], tuple[str, dict[str, Any]]]:
    """Every row of every table of this app (tables named `<prefix>…`), whatever record type or
    capability owns it: (table, PartitionKey, RowKey) -> (etag, columns)."""
    from azure.data.tables.aio import TableServiceClient

    rows: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
    async with TableServiceClient.from_connection_string(connection_string) as service:
        async for table in service.list_tables():
            if not table.name.startswith(prefix):
                continue
            async for entity in service.get_table_client(table.name).list_entities():
                key = (table.name, str(entity["PartitionKey"]), str(entity["RowKey"]))
                rows[key] = (str(entity.metadata["etag"]), dict(entity))
    return rows


def every_secret_file(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }
