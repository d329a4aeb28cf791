"""The operator API on the local host against Azurite: a tenant's whole life, its keys, its
validation and its concurrency, over real HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.bootstrap import Container
from core.store.records import ResourceLink, Run, Tenant
from core.tenant_schema import client_secret_name, webhook_secret_name
from tests.integration.bridge_api import CLIENT_ID, Api, api, api_env, app, link_body, tenant_body
from tests.unit.memory_app import ManualClock

__all__ = ["api", "api_env", "app"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CLIENT_SECRET = "Q~client-secret-value-0123456789abcdefgh"
WEBHOOK_SECRET = "whsec_operator-chosen-signing-secret-0123456789"


async def test_given_a_new_tenant_when_it_is_created_read_listed_patched_and_deleted_then_each_step_holds(
    api: Api, app: Container
) -> None:
    # create: 201, the key and the generated webhook secret once, secrets only in the port
    body = tenant_body(
        "contoso",
        graph={"credentialMode": "client_secret", "clientSecret": CLIENT_SECRET},
    )
    created = await api.operator("POST", "/tenants", json_body=body)
    assert created.status == 201, created.text
    assert created.headers["Location"] == "/api/v1/operator/tenants/contoso"
    assert created.headers["Cache-Control"] == "no-store"
    view = created.body
    key, generated = view["apiKey"], view["webhookSecret"]
    assert key.startswith("m365b_contoso_")
    assert generated.startswith("whsec_")
    assert view["graph"] == {
        "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "clientId": CLIENT_ID,
        "credentialMode": "client_secret",
        "clientSecretSet": True,
    }
    assert view["host"] == {"webhookUrl": "https://erp.example/hooks/bridge", "webhookSecretSet": True}
    assert view["defaults"] == {"language": "nb", "timeZone": "Europe/Oslo"}
    assert await api.secret(client_secret_name("contoso")) == CLIENT_SECRET
    assert await api.secret(webhook_secret_name("contoso")) == generated
    stored = await app.tables.repo(Tenant).get(*Tenant.key("contoso"))
    assert stored is not None
    assert stored.client_secret_name == client_secret_name("contoso")
    assert stored.webhook_secret_name == webhook_secret_name("contoso")

    # the key works on the tenant's own routes
    own = await api.call("GET", "/api/v1/tenants/contoso/resources", bearer=key)
    assert own.status == 200, own.text

    # read: no key, no secret, no hash; an ETag
    read = await api.operator("GET", "/tenants/contoso")
    assert read.status == 200
    assert "apiKey" not in read.body
    assert "webhookSecret" not in read.body
    assert key not in read.text
    assert generated not in read.text
    assert CLIENT_SECRET not in read.text
    assert stored.api_keys[0].sha256 not in read.text
    assert [k["active"] for k in read.body["apiKeys"]] == [True]
    assert read.headers["ETag"].startswith('"')

    # list
    await api.create_tenant("fabrikam")
    listed = await api.operator("GET", "/tenants")
    assert [t["id"] for t in listed.body["tenants"]] == ["contoso", "fabrikam"]

    # patch merges: only the named fields change; a new client secret goes to the port
    patched = await api.operator(
        "PATCH",
        "/tenants/contoso",
        json_body={"displayName": "Contoso AS", "graph": {"clientSecret": CLIENT_SECRET + "-v2"}},
    )
    assert patched.status == 200, patched.text
    assert patched.body["displayName"] == "Contoso AS"
    assert patched.body["defaults"] == {"language": "nb", "timeZone": "Europe/Oslo"}
    assert patched.body["graph"]["credentialMode"] == "client_secret"
    assert patched.headers["ETag"] != read.headers["ETag"]
    assert await api.secret(client_secret_name("contoso")) == CLIENT_SECRET + "-v2"

    # switching to the managed identity drops the client secret it no longer uses
    managed = await api.operator(
        "PATCH", "/tenants/contoso", json_body={"graph": {"credentialMode": "managed"}}
    )
    assert managed.body["graph"]["clientSecretSet"] is False
    assert await api.secret(client_secret_name("contoso")) is None

    # delete: the tenant, its secrets, its links and runs go; its key stops working
    await api.call(
        "PUT", "/api/v1/tenants/contoso/resources/room-1", bearer=key, json_body=link_body("a@x.example")
    )
    await app.tables.runs().insert(
        Run(scope="contoso", run_id="r1", function="f", started_at=datetime.now(UTC))
    )
    deleted = await api.operator("DELETE", "/tenants/contoso")
    assert deleted.status == 204
    gone = await api.operator("GET", "/tenants/contoso")
    assert gone.is_problem(404)
    assert await api.secret(webhook_secret_name("contoso")) is None
    assert [link async for link in app.tables.repo(ResourceLink).list("contoso")] == []
    assert [run async for run in app.tables.runs().list("contoso")] == []
    refused = await api.call("GET", "/api/v1/tenants/contoso/resources", bearer=key)
    assert refused.is_problem(401)
    again = await api.operator("DELETE", "/tenants/contoso")
    assert again.is_problem(404)
    # the other tenant is untouched
    assert (await api.operator("GET", "/tenants/fabrikam")).status == 200


async def test_given_a_rotated_key_when_the_grace_period_passes_then_only_the_new_key_works(
    api: Api, app: Container
) -> None:
    clock = ManualClock(datetime.now(UTC))
    app.clock = clock
    old = (await api.create_tenant("contoso")).body["apiKey"]

    rotated = await api.operator("POST", "/tenants/contoso/keys/rotate")
    assert rotated.status == 200, rotated.text
    new = rotated.body["apiKey"]
    assert new != old
    assert [k["expiresAt"] is not None for k in rotated.body["apiKeys"]] == [True, False]

    async def works(key: str) -> bool:
        reply = await api.call("GET", "/api/v1/tenants/contoso/runs", bearer=key)
        assert reply.status in (200, 401), reply.text
        return reply.status == 200

    assert await works(old)
    assert await works(new)
    clock.advance(timedelta(hours=23, minutes=59))
    assert await works(old)
    clock.advance(timedelta(minutes=1))
    assert not await works(old)
    assert await works(new)

    # graceHours 0 revokes at once (a leaked key)
    newest = (await api.operator("POST", "/tenants/contoso/keys/rotate", json_body={"graceHours": 0})).body
    assert not await works(new)
    assert await works(newest["apiKey"])
    assert [k["active"] for k in newest["apiKeys"]] == [True]  # revoked and expired keys are dropped


async def test_given_two_patches_with_the_same_etag_when_sent_together_then_one_wins_and_one_gets_412(
    api: Api,
) -> None:
    etag = (await api.create_tenant("contoso")).headers["ETag"]
    a, b = await asyncio.gather(
        api.operator("PATCH", "/tenants/contoso", json_body={"displayName": "A"}, headers={"If-Match": etag}),
        api.operator("PATCH", "/tenants/contoso", json_body={"displayName": "B"}, headers={"If-Match": etag}),
    )
    assert sorted([a.status, b.status]) == [200, 412]
    winner, loser = (a, b) if a.status == 200 else (b, a)
    assert loser.is_problem(412)
    final = await api.operator("GET", "/tenants/contoso")
    assert final.body["displayName"] == winner.body["displayName"]
    assert final.headers["ETag"] == winner.headers["ETag"]
    # a stale ETag on delete is refused too, and the tenant stays
    assert (await api.operator("DELETE", "/tenants/contoso", headers={"If-Match": etag})).is_problem(412)
    assert (await api.operator("GET", "/tenants/contoso")).status == 200


async def test_given_an_existing_id_when_created_again_then_409_and_its_secrets_stay(api: Api) -> None:
    first = await api.create_tenant("contoso")
    secret = await api.secret(webhook_secret_name("contoso"))
    again = await api.operator(
        "POST", "/tenants", json_body=tenant_body("contoso", host={"webhookSecret": WEBHOOK_SECRET})
    )
    assert again.is_problem(409)
    assert await api.secret(webhook_secret_name("contoso")) == secret == first.body["webhookSecret"]


BAD_CREATES: list[tuple[dict[str, Any], set[str]]] = [
    (
        tenant_body(
            "Not A Slug!",
            displayName="",
            graph={"tenantId": "contoso.onmicrosoft.com", "clientId": "x", "credentialMode": "password"},
            host={"webhookUrl": "http://erp.example/hooks", "webhookSecret": "short"},
            defaults={"language": "norwegian", "timeZone": "Mars/Olympus"},
        ),
        {
            "id",
            "displayName",
            "graph.tenantId",
            "graph.clientId",
            "graph.credentialMode",
            "host.webhookUrl",
            "host.webhookSecret",
            "defaults.language",
            "defaults.timeZone",
        },
    ),
    (tenant_body("contoso", graph={"credentialMode": "client_secret"}), {"graph.clientSecret"}),
    (tenant_body("contoso", graph={"clientSecret": CLIENT_SECRET}), {"graph.clientSecret"}),
    (tenant_body("contoso", colour="blue", graph={"extra": 1}), {"colour", "graph.extra"}),
    ({"id": "contoso"}, {"displayName", "graph"}),
]


@pytest.mark.parametrize(("body", "fields"), BAD_CREATES)
async def test_given_a_bad_create_body_when_posted_then_422_names_each_bad_field_and_nothing_is_stored(
    api: Api, app: Container, body: dict[str, Any], fields: set[str]
) -> None:
    reply = await api.operator("POST", "/tenants", json_body=body)
    assert reply.is_problem(422), reply.text
    assert {e["field"] for e in reply.body["errors"]} == fields
    for name in fields:
        assert name in reply.body["detail"]
    assert CLIENT_SECRET not in reply.text
    assert [t async for t in app.tables.repo(Tenant).list()] == []
    assert not any(api.secrets_dir.rglob("*")) if api.secrets_dir.exists() else True


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b"", 400),
        (b'"text"', 400),
        (b'{"displayName": NaN}', 400),
        (b"\xff\xfe", 400),
        (b"[" * 100_000, 400),
    ],
)
async def test_given_a_body_that_is_not_a_json_object_when_posted_then_400(
    api: Api, raw: bytes, status: int
) -> None:
    reply = await api.operator("POST", "/tenants", raw=raw)
    assert reply.is_problem(status), reply.text


async def test_given_a_bad_patch_when_sent_then_422_and_the_tenant_reads_back_unchanged(api: Api) -> None:
    created = await api.create_tenant("contoso")
    before = (await api.operator("GET", "/tenants/contoso")).body
    bad_patches = [
        (
            {"displayName": None, "defaults": {"timeZone": "Nowhere/Special"}},
            {"displayName", "defaults.timeZone"},
        ),
        ({"graph": {"credentialMode": "client_secret"}}, {"graph.clientSecret"}),
        ({"graph": {"clientId": None, "credentialMode": "delegated"}}, {"graph.clientId"}),
        ({"host": {"webhookUrl": "ftp://erp.example"}, "apiKeys": []}, {"host.webhookUrl", "apiKeys"}),
        ({"enabled": "maybe"}, {"enabled"}),
    ]
    for patch, fields in bad_patches:
        reply = await api.operator("PATCH", "/tenants/contoso", json_body=patch)
        assert reply.is_problem(422), (patch, reply.text)
        assert {e["field"] for e in reply.body["errors"]} == fields, patch
    after = await api.operator("GET", "/tenants/contoso")
    assert after.body == before
    assert after.headers["ETag"] == created.headers["ETag"]
    assert await api.secret(client_secret_name("contoso")) is None


async def test_given_no_or_a_wrong_operator_key_when_calling_the_operator_api_then_401(api: Api) -> None:
    tenant_key = (await api.create_tenant("contoso")).body["apiKey"]
    for bearer in (None, "wrong", tenant_key):
        reply = await api.call("GET", "/api/v1/operator/tenants", bearer=bearer)
        assert reply.is_problem(401)
        assert reply.headers["WWW-Authenticate"] == "Bearer"


async def test_given_a_disabled_tenant_when_its_key_is_used_then_403_until_enabled_again(api: Api) -> None:
    key = (await api.create_tenant("contoso")).body["apiKey"]
    await api.operator("PATCH", "/tenants/contoso", json_body={"enabled": False})
    assert (await api.call("GET", "/api/v1/tenants/contoso/runs", bearer=key)).is_problem(403)
    await api.operator("PATCH", "/tenants/contoso", json_body={"enabled": True})
    assert (await api.call("GET", "/api/v1/tenants/contoso/runs", bearer=key)).status == 200
