"""R5: a tenant's key never reads or changes another tenant's state.

The routes come from the app itself (indexed the way the local host does), so a route added
later - by any capability - is covered without touching this test: every route with
`{tenantId}` is called with tenant B's valid key on tenant A's id, for each of its methods, with
plausible parameters and bodies, and must answer 404 problem+json exactly like a missing tenant,
change nothing anywhere in storage or the secrets port, and answer 401 without a key. A route
that does not go through `tenant_endpoint` fails here (it would answer differently, and it lacks
the guard's mark)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

import function_app
from core.bootstrap import Container
from core.store.records import Run
from devtools.funchost.indexing import HTTP_TRIGGER, index_app
from tests.integration.bridge_api import Api, api, api_env, app, every_row, every_secret_file, link_body

__all__ = ["api", "api_env", "app"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
TENANT_PREFIX = "v1/tenants/{tenantId}"
OPERATOR_PREFIX = "v1/operator/"

# Values for route parameters other than the tenant, chosen to hit tenant A's real state.
PARAMS = {"resourceId": "room-1"}
_BY_CONSTRAINT = {"int": "1", "long": "1", "bool": "true", "alpha": "abc", "guid": str(uuid.uuid4())}
_PARAM = re.compile(r"\{(?P<star>\*{0,2})(?P<name>\w+)(?::(?P<constraint>\w+))?[^}]*\}")
# Request bodies that would succeed for tenant A if the guard let them through.
BODIES: dict[str, Any] = {"resources/{resourceId}": link_body("intruder@contoso.example")}


@dataclass(frozen=True)
class Route:
    name: str
    template: str
    methods: tuple[str, ...]
    user_function: Any

    def path(self, tenant_id: str) -> str:
        def fill(match: re.Match[str]) -> str:
            name = match["name"]
            if name == "tenantId":
                return tenant_id
            if match["star"]:
                return "a/b"
            return PARAMS.get(name) or _BY_CONSTRAINT.get(match["constraint"] or "", "x")

        return "/api/" + _PARAM.sub(fill, self.template)

    def body(self) -> Any:
        for suffix, body in BODIES.items():
            if self.template.endswith(suffix):
                return body
        return {}


def http_routes() -> list[Route]:
    routes = []
    for fn in index_app(function_app.app):  # cached per app object, like the host's own index
        if fn.trigger_type != HTTP_TRIGGER:
            continue
        methods = tuple(m.upper() for m in fn.trigger.get("methods") or ALL_METHODS)
        routes.append(Route(fn.name, str(fn.trigger.get("route") or fn.name), methods, fn.user_function))
    return routes


def test_every_route_with_a_tenant_id_is_a_guarded_tenant_or_operator_route() -> None:
    routes = [r for r in http_routes() if "{tenantId}" in r.template]
    assert routes, "no tenant routes found"
    for route in routes:
        if route.template.startswith(OPERATOR_PREFIX):
            assert getattr(route.user_function, "operator_guarded", False), route.name
        else:
            assert route.template.startswith(TENANT_PREFIX), (
                f"{route.name}: tenant routes live under {TENANT_PREFIX}"
            )
            assert getattr(route.user_function, "tenant_guarded", False), (
                f"{route.name} skips tenant_endpoint"
            )
    for route in http_routes():
        if route.template.startswith(OPERATOR_PREFIX):
            assert getattr(route.user_function, "operator_guarded", False), route.name


async def test_given_tenant_bs_key_when_every_tenant_route_of_tenant_a_is_called_then_404_and_nothing_changes(
    api: Api, app: Container, api_env: dict[str, str]
) -> None:
    key_a = (await api.create_tenant("tenant-a")).body["apiKey"]
    key_b = (await api.create_tenant("tenant-b")).body["apiKey"]
    # tenant A has state a cross-tenant call could read or change
    put = await api.call(
        "PUT", "/api/v1/tenants/tenant-a/resources/room-1", bearer=key_a, json_body=link_body("a@x.example")
    )
    assert put.status == 201
    await app.tables.runs().insert(Run(scope="tenant-a", run_id="r1", function="f", started_at=app.clock()))

    routes = [r for r in http_routes() if r.template.startswith(TENANT_PREFIX)]
    assert {"put_resource", "get_resource", "delete_resource", "list_resources", "list_runs"} <= {
        r.name for r in routes
    }
    rows_before = await every_row(api_env["AzureWebJobsStorage"], api_env["BRIDGE_TABLE_PREFIX"])
    secrets_before = every_secret_file(api.secrets_dir)

    checked = 0
    for route in routes:
        for method in route.methods:
            body = route.body() if method in ("POST", "PUT", "PATCH") else None
            cross = await api.call(method, route.path("tenant-a"), bearer=key_b, json_body=body)
            assert cross.is_problem(404), (
                f"{method} {route.template} with B's key on A: {cross.status} {cross.text}"
            )
            missing = await api.call(method, route.path("no-such-tenant"), bearer=key_b, json_body=body)
            assert cross.body == missing.body, f"{method} {route.template}: cross-tenant differs from missing"
            anonymous = await api.call(method, route.path("tenant-a"), json_body=body)
            assert anonymous.is_problem(401), f"{method} {route.template} without a key: {anonymous.status}"
            assert anonymous.headers["WWW-Authenticate"] == "Bearer"
            wrong = await api.call(method, route.path("tenant-a"), bearer=key_b[:-4] + "AAAA", json_body=body)
            assert wrong.is_problem(401), f"{method} {route.template} with a wrong key: {wrong.status}"
            checked += 1

    assert checked >= 5
    assert await every_row(api_env["AzureWebJobsStorage"], api_env["BRIDGE_TABLE_PREFIX"]) == rows_before
    assert every_secret_file(api.secrets_dir) == secrets_before
    # and A's own key still sees A's state as it was
    own = await api.call("GET", "/api/v1/tenants/tenant-a/resources/room-1", bearer=key_a)
    assert own.body["accounts"][0]["account"] == "a@x.example"


async def test_given_a_tenant_key_when_any_operator_route_is_called_then_401(api: Api) -> None:
    key = (await api.create_tenant("tenant-a")).body["apiKey"]
    routes = [r for r in http_routes() if r.template.startswith(OPERATOR_PREFIX)]
    assert len(routes) >= 6
    for route in routes:
        for method in route.methods:
            reply = await api.call(
                method, route.path("tenant-a"), bearer=key, json_body={} if method != "GET" else None
            )
            assert reply.is_problem(401), f"{method} {route.template}: {reply.status}"
    assert (await api.operator("GET", "/tenants/tenant-a")).status == 200
