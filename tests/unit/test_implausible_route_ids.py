"""Route ids that no stored item can have (too long for a Table Storage key, control characters)
are a 404 problem, not a 500: the R4 fuzzing sent a 5,000-character resource id to `GET` and
`POST …/resources/{r}/sync` and `GET …/resources/{r}/appointments/{id}`, which looked the row up
with a key the Azure adapter refuses. The handlers are called directly over an in-memory
container whose table store checks keys on reads as the Azure adapter does (`check_keys`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import azure.functions as func
import pytest

from core import apikeys
from core.bootstrap import Container
from core.calendar.changes import plausible_appointment
from core.links import plausible_resource_id
from core.store.limits import check_keys
from core.store.memory_table import MemoryTableStore
from core.store.records import HostAppointment, Tenant
from functions.appointments import get_appointment
from functions.calendar import get_sync_status, sync_resource
from tests.unit.memory_app import memory_app

TOO_LONG = "x" * 600
IMPLAUSIBLE = [TOO_LONG, "room\x00", "room\ud800", " "]


@pytest.fixture
async def app(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Container]:
    read = MemoryTableStore.get

    async def strict_get(self: MemoryTableStore, partition_key: str, row_key: str) -> object:
        check_keys(partition_key, row_key)  # what the Azure adapter does before reading
        return await read(self, partition_key, row_key)

    monkeypatch.setattr(MemoryTableStore, "get", strict_get)
    async with memory_app() as app:
        yield app


async def tenant_key(app: Container) -> str:
    key = apikeys.new_key("alpha", app.clock())
    await app.tables.repo(Tenant).insert(Tenant(tenant_id="alpha", api_keys=[key.entry]))
    return key.value


def request(method: str, key: str, **route: str) -> func.HttpRequest:
    return func.HttpRequest(
        method=method,
        url="http://localhost/api/v1/tenants/alpha/resources/x",
        headers={"Authorization": f"Bearer {key}"},
        route_params={"tenantId": "alpha", **route},
        body=b"",
    )


def assert_not_found(resp: func.HttpResponse) -> None:
    assert resp.status_code == 404, resp.get_body()
    assert resp.mimetype == "application/problem+json"
    assert json.loads(resp.get_body())["status"] == 404


@pytest.mark.parametrize("resource_id", IMPLAUSIBLE)
async def test_a_resource_id_no_resource_can_have_is_a_404_for_sync_and_its_status(
    app: Container, resource_id: str
) -> None:
    key = await tenant_key(app)
    assert_not_found(await sync_resource(request("POST", key, resourceId=resource_id)))
    assert_not_found(await get_sync_status(request("GET", key, resourceId=resource_id)))


@pytest.mark.parametrize(
    ("resource_id", "host_id"),
    [(TOO_LONG, "SO-1"), ("room-4b", TOO_LONG), ("room-4b", "x" * 480), ("room\x00", "SO-1"), ("room", "")],
)
async def test_an_appointment_no_push_can_have_made_is_a_404(
    app: Container, resource_id: str, host_id: str
) -> None:
    key = await tenant_key(app)
    resp = await get_appointment(request("GET", key, resourceId=resource_id, hostAppointmentId=host_id))
    assert_not_found(resp)


async def test_a_pushed_appointment_is_still_found(app: Container) -> None:
    key = await tenant_key(app)
    await app.tables.repo(HostAppointment).insert(
        HostAppointment(tenant_id="alpha", resource_id="room-4b", host_appointment_id="SO-1", version=3)
    )
    resp = await get_appointment(request("GET", key, resourceId="room-4b", hostAppointmentId="SO-1"))
    assert resp.status_code == 200
    assert json.loads(resp.get_body())["version"] == 3


def test_plausible_ids_are_the_ones_a_request_body_may_name() -> None:
    assert plausible_resource_id("room-4b")
    assert plausible_appointment("room-4b", "SO-1001")
    for bad in IMPLAUSIBLE:
        assert not plausible_resource_id(bad)
        assert not plausible_appointment(bad, "SO-1001")
        assert not plausible_appointment("room-4b", bad)
