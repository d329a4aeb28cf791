"""The one guard of tenant routes (`functions.http.tenant_endpoint`), called directly over an
in-memory container: who gets 401, 403, 404, and who gets through."""

from __future__ import annotations

import json
from datetime import timedelta

import azure.functions as func
import pytest

from core import apikeys
from core.bootstrap import Container
from core.store.records import Tenant
from core.tenants import TenantContext
from devtools.funchost.indexing import index_app
from functions.http import json_response, tenant_endpoint
from tests.unit.memory_app import ManualClock, memory_app

seen: list[TenantContext] = []


@tenant_endpoint
async def whoami(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    seen.append(ctx)
    return json_response({"tenant": ctx.tenant.tenant_id})


def request(tenant_id: str, key: str | None) -> func.HttpRequest:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return func.HttpRequest(
        method="GET",
        url=f"http://localhost/api/v1/tenants/{tenant_id}/whoami",
        headers=headers,
        route_params={"tenantId": tenant_id},
        body=b"",
    )


async def add_tenant(app: Container, tenant_id: str, *, enabled: bool = True) -> str:
    key = apikeys.new_key(tenant_id, app.clock())
    await app.tables.repo(Tenant).insert(Tenant(tenant_id=tenant_id, api_keys=[key.entry], enabled=enabled))
    return key.value


def body(resp: func.HttpResponse) -> dict[str, object]:
    return dict(json.loads(resp.get_body()))


@pytest.fixture
async def app() -> object:
    seen.clear()
    async with memory_app() as app:
        yield app


async def test_given_the_tenants_own_key_when_called_then_the_handler_gets_that_tenant(
    app: Container,
) -> None:
    key = await add_tenant(app, "alpha")
    resp = await whoami(request("alpha", key))
    assert resp.status_code == 200
    assert body(resp) == {"tenant": "alpha"}
    assert seen[-1].tenant.tenant_id == "alpha"
    assert seen[-1].app is app


@pytest.mark.parametrize("header_key", [None, "", "m365b_alpha_" + "x" * 43, "not-a-bridge-key"])
async def test_given_no_key_or_a_wrong_key_when_called_then_401_with_a_bearer_challenge(
    app: Container, header_key: str | None
) -> None:
    await add_tenant(app, "alpha")
    resp = await whoami(request("alpha", header_key))
    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert body(resp)["detail"]
    assert seen == []


async def test_given_another_tenants_key_when_called_then_404_exactly_like_a_missing_tenant(
    app: Container,
) -> None:
    await add_tenant(app, "alpha")
    key_b = await add_tenant(app, "beta")
    cross = await whoami(request("alpha", key_b))
    missing = await whoami(request("gamma", key_b))
    assert cross.status_code == missing.status_code == 404
    assert cross.mimetype == missing.mimetype == "application/problem+json"
    assert body(cross) == body(missing)
    assert seen == []


async def test_given_a_wrong_key_on_a_missing_tenant_when_called_then_401_so_ids_cannot_be_probed(
    app: Container,
) -> None:
    await add_tenant(app, "alpha")
    existing = await whoami(request("alpha", "m365b_alpha_" + "y" * 43))
    missing = await whoami(request("nobody", "m365b_nobody_" + "y" * 43))
    assert existing.status_code == missing.status_code == 401
    assert body(existing) == body(missing)


async def test_given_a_disabled_tenant_when_its_key_is_used_then_403(app: Container) -> None:
    key = await add_tenant(app, "alpha", enabled=False)
    resp = await whoami(request("alpha", key))
    assert resp.status_code == 403
    assert seen == []


async def test_given_an_expired_key_when_used_then_401(app: Container) -> None:
    key = await add_tenant(app, "alpha")
    repo = app.tables.repo(Tenant)
    tenant = await repo.get(*Tenant.key("alpha"))
    assert tenant is not None
    fresh = apikeys.new_key("alpha", app.clock())
    rotated = apikeys.rotate(tenant.api_keys, fresh.entry, app.clock(), timedelta(hours=1))
    await repo.save(tenant.model_copy(update={"api_keys": rotated}))
    assert isinstance(app.clock, ManualClock)
    app.clock.advance(timedelta(minutes=59))
    assert (await whoami(request("alpha", key))).status_code == 200
    app.clock.advance(timedelta(minutes=1))
    assert (await whoami(request("alpha", key))).status_code == 401
    assert (await whoami(request("alpha", fresh.value))).status_code == 200


def test_a_guarded_function_is_indexed_with_only_its_trigger_parameter() -> None:
    bp = func.Blueprint()
    bp.route(route="v1/tenants/{tenantId}/whoami", methods=["GET"])(whoami)
    functions = func.FunctionApp()
    functions.register_functions(bp)
    [indexed] = index_app(functions)
    assert indexed.name == "whoami"
    assert indexed.trigger["route"] == "v1/tenants/{tenantId}/whoami"
    assert getattr(indexed.user_function, "tenant_guarded", False)
