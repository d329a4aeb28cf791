"""`GET /api/v1/openapi.json` on the local stack: the real `function_app` on the local Functions
host against Azurite serves a valid OpenAPI 3.1 document with the Functions key alone, and the
live API answers the document's own request examples as the document says."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

import function_app
from core import __version__
from core.openapi_examples import RESOURCE, TENANT_CREATE
from devtools.funchost.indexing import HTTP_TRIGGER, index_app
from tests.integration.bridge_api import Api, Reply, api, api_env
from tests.unit.test_openapi import registered_routes

__all__ = ["api", "api_env"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PATH = "/api/v1/openapi.json"


def fits(document: dict[str, Any], method: str, path: str, reply: Reply) -> None:
    """`reply` is one the document describes for `method path`: its status is listed and its
    JSON body fits the schema given for that status."""
    answer = document["paths"][path][method.lower()]["responses"].get(str(reply.status))
    assert answer is not None, f"{method} {path} answered {reply.status}, which is not documented"
    assert "$ref" not in answer, f"{method} {path}: {reply.status} is documented as a problem"
    schema = answer["content"]["application/json"]["schema"]
    OAS31Validator({**schema, "components": document["components"]}).validate(reply.body)


async def test_given_the_functions_key_when_the_document_is_fetched_then_it_is_valid_openapi_3_1(
    api: Api,
) -> None:
    reply = await api.call("GET", PATH)
    assert reply.status == 200, reply.text
    assert reply.content_type == "application/json"
    document = reply.body
    assert [str(e) for e in OpenAPIV31SpecValidator(document).iter_errors()] == []
    assert document["info"]["version"] == __version__
    reservations = "/api/v1/tenants/{tenantId}/booking-calendars/{bookingCalendarId}/reservations"
    assert set(document["paths"][reservations]) == {"get", "post"}
    by_code = {"code": api.host.function_key}
    again = await api.call("GET", PATH, headers={"x-functions-key": ""}, params=by_code)
    assert again.status == 200
    assert again.text == reply.text


async def test_given_the_served_document_then_every_registered_http_route_is_in_it_and_no_other(
    api: Api,
) -> None:
    """GIVEN the document the running app serves WHEN its operations are compared with the HTTP
    routes the app registers (indexed as the Functions host indexes them) THEN each route is
    there with its method and function name, nothing else is, and the anonymous routes (the
    sign-in callback, Graph's notifications) are the ones documented without keys."""
    document = (await api.call("GET", PATH)).body
    served = {
        (method.upper(), path): operation["operationId"]
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    registered = registered_routes()
    assert len(registered) >= 45
    assert served == registered
    keyless = {route for route in served if document["paths"][route[1]][route[0].lower()]["security"] == []}
    anonymous = {
        fn.name
        for fn in index_app(function_app.app)
        if fn.trigger_type == HTTP_TRIGGER and fn.trigger.get("authLevel") == "anonymous"
    }
    assert {served[route] for route in keyless} == anonymous == {"connect_callback", "graph_notifications"}


async def test_given_no_functions_key_when_the_document_is_fetched_then_401(api: Api) -> None:
    assert (await api.call("GET", PATH, headers={"x-functions-key": ""})).status == 401


async def test_given_the_documents_examples_when_sent_to_the_live_api_then_the_answers_fit_it(
    api: Api,
) -> None:
    """GIVEN the document's own tenant and resource examples WHEN an operator and the tenant's
    host send them THEN each answer has a documented status and fits its documented schema."""
    document = (await api.call("GET", PATH)).body
    created = await api.operator("POST", "/tenants", json_body=TENANT_CREATE)
    assert created.status == 201, created.text
    fits(document, "POST", "/api/v1/operator/tenants", created)
    key = created.body["apiKey"]
    tenant = "/api/v1/tenants/{tenantId}"
    base = "/api/v1/tenants/" + TENANT_CREATE["id"]

    put = await api.call("PUT", base + "/resources/room-4b", bearer=key, json_body=RESOURCE)
    assert put.status == 201, put.text
    fits(document, "PUT", tenant + "/resources/{resourceId}", put)
    for method, path, template in (
        ("GET", "/resources/room-4b", "/resources/{resourceId}"),
        ("GET", "/resources", "/resources"),
        ("GET", "/resources/room-4b/sync", "/resources/{resourceId}/sync"),
        ("POST", "/events/test", "/events/test"),
        ("GET", "/events", "/events"),
        ("GET", "/runs", "/runs"),
        ("GET", "/presence/settings", "/presence/settings"),
    ):
        reply = await api.call(method, base + path, bearer=key)
        assert reply.status < 300, f"{method} {path}: {reply.status} {reply.text}"
        fits(document, method, tenant + template, reply)

    fetched = await api.operator("GET", "/tenants/" + TENANT_CREATE["id"])
    fits(document, "GET", "/api/v1/operator/tenants/{tenantId}", fetched)
    missing = await api.call("GET", base + "/resources/nowhere", bearer=key)
    assert missing.is_problem(404)
    assert "404" in document["paths"][tenant + "/resources/{resourceId}"]["get"]["responses"]
