"""The tenant service over in-memory tables and secrets: what a lost race, a failed secret
write and a half-finished delete leave behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from core.bootstrap import Container
from core.request_errors import EditConflict, ItemNotFound, PreconditionFailed
from core.secrets import SecretStoreUnavailable
from core.store.records import ResourceLink, Tenant
from core.tenant_schema import client_secret_name, webhook_secret_name
from core.tenants import TenantService
from core.versions import public_etag
from tests.unit.memory_app import memory_app

SECRET = "Q~unit-client-secret-0123456789"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
async def app() -> AsyncIterator[Container]:
    async with memory_app() as app:
        yield app


def service(app: Container) -> TenantService:
    return TenantService(app.tables, app.secrets, app.clock, grace=timedelta(hours=24))


def body(tenant_id: str, **graph: Any) -> dict[str, Any]:
    return {
        "id": tenant_id,
        "displayName": tenant_id,
        "graph": {"tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47", "credentialMode": "managed", **graph},
    }


async def test_given_a_concurrent_write_when_a_patch_saves_then_it_is_refused_and_writes_no_secret(
    app: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants = service(app)
    await tenants.create(
        body("contoso", credentialMode="client_secret", clientId=CLIENT_ID, clientSecret=SECRET)
    )
    stale = await tenants.get("contoso")
    await tenants.update("contoso", {"displayName": "Someone else"})  # the other writer wins

    async def stale_read(*_: str) -> Tenant:
        return stale

    monkeypatch.setattr(tenants.repo, "get", stale_read)
    new_secret = {"graph": {"clientSecret": SECRET + "-lost"}}
    with pytest.raises(EditConflict):
        await tenants.update("contoso", new_secret)
    with pytest.raises(PreconditionFailed):
        await tenants.update("contoso", new_secret, if_match=public_etag(stale))
    monkeypatch.undo()
    assert (await tenants.get("contoso")).display_name == "Someone else"
    assert await app.secrets.get(client_secret_name("contoso")) == SECRET


async def test_given_the_secret_store_fails_when_a_tenant_is_created_then_the_id_is_given_back(
    app: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants = service(app)
    calls = 0
    real_set = app.secrets.set

    async def flaky_set(name: str, value: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise SecretStoreUnavailable("Key Vault did not answer")
        await real_set(name, value)

    monkeypatch.setattr(app.secrets, "set", flaky_set)
    with pytest.raises(SecretStoreUnavailable):
        await tenants.create(
            body("contoso", credentialMode="client_secret", clientId=CLIENT_ID, clientSecret=SECRET)
        )
    assert [t async for t in tenants.repo.list()] == []
    assert await app.secrets.get(webhook_secret_name("contoso")) is None
    monkeypatch.undo()
    issued = await tenants.create(body("contoso"))
    assert issued.tenant.tenant_id == "contoso"


async def test_given_a_delete_that_failed_half_way_when_retried_then_it_completes(
    app: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants = service(app)
    await tenants.create(body("contoso"))
    await app.tables.repo(ResourceLink).insert(ResourceLink(tenant_id="contoso", resource_id="r1"))

    async def down(name: str) -> None:
        raise SecretStoreUnavailable("Key Vault did not answer")

    monkeypatch.setattr(app.secrets, "delete", down)
    with pytest.raises(SecretStoreUnavailable):
        await tenants.delete("contoso")
    left = await tenants.get("contoso")
    assert left.enabled is False  # its keys no longer work while it is half deleted
    monkeypatch.undo()
    await tenants.delete("contoso")
    with pytest.raises(ItemNotFound):
        await tenants.get("contoso")
    assert [link async for link in app.tables.repo(ResourceLink).list("contoso")] == []
    assert await app.secrets.get(webhook_secret_name("contoso")) is None


async def test_given_ids_that_cannot_be_tenants_when_read_then_not_found_without_a_store_call(
    app: Container,
) -> None:
    tenants = service(app)
    for tenant_id in ("", "UPPER", "a/b", "x" * 64, "-a", "a_b"):
        with pytest.raises(ItemNotFound):
            await tenants.get(tenant_id)
