"""Resources, account links and runs over real HTTP on the local host against Azurite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.bootstrap import Container
from core.store.records import Run, RunStatus
from tests.integration.bridge_api import Api, api, api_env, app, link_body

__all__ = ["api", "api_env", "app"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

OBJECT_ID = "6F1C3A52-0B7E-4E43-9B1D-7B2C2E7F0A11"


async def tenant_key(api: Api, tenant_id: str = "contoso") -> str:
    return str((await api.create_tenant(tenant_id)).body["apiKey"])


async def test_given_ordered_accounts_when_a_resource_is_put_then_it_reads_back_with_its_main_account(
    api: Api,
) -> None:
    key = await tenant_key(api)
    body = {
        "displayName": "Anna Hansen",
        "accounts": [
            {"account": "Anna@Contoso.example", "direction": "down"},
            {"account": OBJECT_ID, "direction": "none", "calendars": ["default", "Prosjekt"]},
            {"account": "room4b@contoso.example", "direction": "both", "scope": "Calendars.ReadWrite"},
            {"account": "desk@contoso.example", "direction": "up"},
        ],
    }
    path = "/api/v1/tenants/contoso/resources/Anna%20H%2301%3F%7C"  # a host's id, escaped in the URL
    created = await api.call("PUT", path, bearer=key, json_body=body)
    assert created.status == 201, created.text
    assert created.body["id"] == "Anna H#01?|"
    accounts = created.body["accounts"]
    assert [a["account"] for a in accounts] == [
        "anna@contoso.example",
        OBJECT_ID.lower(),
        "room4b@contoso.example",
        "desk@contoso.example",
    ]
    assert [a["scope"] for a in accounts] == [
        "Calendars.Read",
        "Calendars.Read",
        "Calendars.ReadWrite",
        "Calendars.ReadWrite",
    ]
    assert accounts[1]["calendars"] == ["default", "Prosjekt"]
    assert created.body["mainAccount"] == "room4b@contoso.example"

    read = await api.call("GET", path, bearer=key)
    assert read.body == created.body
    assert read.headers["ETag"] == created.headers["ETag"]

    # a replace with the read ETag: 200; with the old one afterwards: 412
    replaced = await api.call(
        "PUT",
        path,
        bearer=key,
        json_body=link_body("x@contoso.example"),
        headers={"If-Match": read.headers["ETag"]},
    )
    assert replaced.status == 200
    assert replaced.body["mainAccount"] == "x@contoso.example"
    stale = await api.call(
        "PUT",
        path,
        bearer=key,
        json_body=link_body("y@contoso.example"),
        headers={"If-Match": read.headers["ETag"]},
    )
    assert stale.is_problem(412)
    create_only = await api.call(
        "PUT", path, bearer=key, json_body=link_body("y@contoso.example"), headers={"If-None-Match": "*"}
    )
    assert create_only.is_problem(412)

    listed = await api.call("GET", "/api/v1/tenants/contoso/resources", bearer=key)
    assert [r["mainAccount"] for r in listed.body["resources"]] == ["x@contoso.example"]
    assert listed.body["next"] is None

    assert (await api.call("DELETE", path, bearer=key)).status == 204
    assert (await api.call("GET", path, bearer=key)).is_problem(404)
    assert (await api.call("DELETE", path, bearer=key)).is_problem(404)


async def test_given_many_resources_when_listed_in_pages_then_every_one_comes_once_in_order(api: Api) -> None:
    key = await tenant_key(api)
    ids = [f"r{i:02d}" for i in range(7)]
    for rid in reversed(ids):
        reply = await api.call(
            "PUT", f"/api/v1/tenants/contoso/resources/{rid}", bearer=key, json_body=link_body()
        )
        assert reply.status == 201
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "3", **({"after": after} if after else {})}
        page = await api.call("GET", "/api/v1/tenants/contoso/resources", bearer=key, params=params)
        seen += [r["id"] for r in page.body["resources"]]
        after = page.body["next"]
        if after is None:
            break
    assert seen == ids


BAD_LINKS: list[tuple[dict[str, Any], set[str]]] = [
    (
        {
            "accounts": [
                {"account": "not an account", "direction": "sideways"},
                {"account": "a@contoso.example", "direction": "both", "calendars": []},
                {"account": "A@contoso.example", "direction": "down"},
                {"account": "b@contoso.example", "direction": "up", "scope": "Calendars.Read"},
                {"account": "c@contoso.example", "direction": "down", "calendars": ["Team", "team"]},
                {"account": "d@contoso.example", "direction": "down", "colour": "red"},
            ]
        },
        {
            "accounts[0].account",
            "accounts[0].direction",
            "accounts[1].calendars",
        },
    ),
    (
        {
            "accounts": [
                {"account": "a@contoso.example", "direction": "both"},
                {"account": "A@contoso.example", "direction": "down"},
                {"account": "b@contoso.example", "direction": "up", "scope": "Calendars.Read"},
                {"account": "c@contoso.example", "direction": "down", "calendars": ["Team", "team"]},
            ]
        },
        {"accounts[1].account", "accounts[2].scope", "accounts[3].calendars[1]"},
    ),
    (
        {"accounts": [{"account": f"u{i}@contoso.example", "direction": "down"} for i in range(21)]},
        {"accounts"},
    ),
    ({"accounts": [{"direction": "down"}], "owner": "x"}, {"accounts[0].account", "owner"}),
]


@pytest.mark.parametrize(("body", "fields"), BAD_LINKS)
async def test_given_a_bad_link_body_when_put_then_422_names_each_bad_field_and_the_old_link_stays(
    api: Api, body: dict[str, Any], fields: set[str]
) -> None:
    key = await tenant_key(api)
    path = "/api/v1/tenants/contoso/resources/room-1"
    before = await api.call("PUT", path, bearer=key, json_body=link_body("keep@contoso.example"))
    reply = await api.call("PUT", path, bearer=key, json_body=body)
    assert reply.is_problem(422), reply.text
    assert {e["field"] for e in reply.body["errors"]} >= fields
    after = await api.call("GET", path, bearer=key)
    assert after.body == before.body
    assert after.headers["ETag"] == before.headers["ETag"]


async def test_given_runs_of_several_tenants_when_a_tenant_reads_its_runs_then_only_its_own_come_newest_first(
    api: Api, app: Container
) -> None:
    key = await tenant_key(api)
    await api.create_tenant("fabrikam")
    start = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    runs = app.tables.runs()
    for i, function in enumerate(["calendar_down", "mail_import", "calendar_down", "calendar_down"]):
        await runs.insert(
            Run(
                scope="contoso",
                run_id=f"c{i}",
                function=function,
                started_at=start + timedelta(minutes=i),
                ended_at=start + timedelta(minutes=i, seconds=5),
                status=RunStatus.SUCCEEDED if i != 2 else RunStatus.FAILED,
                counts={"events": i},
                error="Throttled" if i == 2 else None,
            )
        )
    await runs.insert(Run(scope="fabrikam", run_id="f0", function="calendar_down", started_at=start))

    every = await api.call("GET", "/api/v1/tenants/contoso/runs", bearer=key)
    assert [r["id"] for r in every.body["runs"]] == ["c3", "c2", "c1", "c0"]
    assert every.body["runs"][1] == {
        "id": "c2",
        "function": "calendar_down",
        "status": "failed",
        "startedAt": "2025-03-01T12:02:00+00:00",
        "endedAt": "2025-03-01T12:02:05+00:00",
        "counts": {"events": 2},
        "error": "Throttled",
    }
    last_sync = await api.call(
        "GET", "/api/v1/tenants/contoso/runs", bearer=key, params={"function": "calendar_down", "limit": "2"}
    )
    assert [r["id"] for r in last_sync.body["runs"]] == ["c3", "c2"]
    for params, field in [
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"function": ""}, "function"),
    ]:
        bad = await api.call("GET", "/api/v1/tenants/contoso/runs", bearer=key, params=params)
        assert bad.is_problem(422), (params, bad.text)
        assert [e["field"] for e in bad.body["errors"]] == [field]
