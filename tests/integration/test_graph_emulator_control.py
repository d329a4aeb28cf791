"""The control API over HTTP (what a test in another process, or the demo, uses) and the
standalone command: seed a tenant, act as a person in Outlook, set faults, settings and the clock,
read counters, expire delta state - then check the effects through the real SDK."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devtools.graph_emulator import GraphEmulator
from tests.integration.graph_clients import config, graph_client, native, secret_credential

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def graph(tmp_path: Path) -> AsyncIterator[GraphEmulator]:
    async with GraphEmulator(directory=tmp_path / "graph") as emulator:
        yield emulator


class Control:
    def __init__(self, graph: GraphEmulator, session: aiohttp.ClientSession) -> None:
        self.base = f"{graph.url}/_emulator"
        self.session = session

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.session.request(method, self.base + path, json=body) as response:
            assert response.status == expect, await response.text()
            return await response.json() if response.status != 204 else None


@pytest.fixture
async def control(graph: GraphEmulator) -> AsyncIterator[Control]:
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(graph.ca_cert)))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Control(graph, session)


async def test_seed_act_and_observe_through_the_control_api(graph: GraphEmulator, control: Control) -> None:
    tenant = await control.call(
        "POST", "/tenants", {"name": "Fabrikam", "domain": "fabrikam.onmicrosoft.com"}, 201
    )
    app = await control.call(
        "POST",
        f"/tenants/{tenant['id']}/apps",
        {"secrets": ["pw"], "applicationPermissions": ["Calendars.Read"]},
        201,
    )
    user = await control.call(
        "POST", f"/tenants/{tenant['id']}/users", {"userPrincipalName": "lee@fabrikam.onmicrosoft.com"}, 201
    )
    made = await control.call(
        "POST",
        "/users/lee@fabrikam.onmicrosoft.com/events",
        {
            "subject": "Made in Outlook",
            "start": {"dateTime": "2024-06-03T10:00:00", "timeZone": "Romance Standard Time"},
            "end": {"dateTime": "2024-06-03T11:00:00", "timeZone": "Romance Standard Time"},
        },
        201,
    )
    moved = await control.call(
        "POST", f"/users/{user['id']}/events/{made['id']}/move", {"start": "2024-06-04T08:00:00Z"}
    )
    assert moved["start"] == {"dateTime": "2024-06-04T08:00:00.0000000", "timeZone": "UTC"}
    assert moved["end"]["dateTime"] == "2024-06-04T09:00:00.0000000"

    credential = secret_credential(graph, tenant["id"], app["clientId"], "pw")
    client, http = graph_client(graph, credential)
    try:
        read = await client.users.by_user_id(user["id"]).events.by_event_id(made["id"]).get()
        assert read is not None
        assert read.subject == "Made in Outlook"

        await control.call("POST", "/faults", {"status": 503, "count": 1, "mailbox": user["id"]}, 201)
        assert len((await control.call("GET", "/faults"))["value"]) == 1
        raw = await native(
            client.users.by_user_id(user["id"]).calendar.get(
                request_configuration=config(native=True, retries=0)
            )
        )
        assert raw.status_code == 503
        counters = await control.call("GET", f"/counters/{user['userPrincipalName']}")
        assert counters["requests"] == 2
        assert counters["faults"] == 1
        assert counters["bytesOut"] > 0
        await control.call("DELETE", "/counters", expect=204)
        assert (await control.call("GET", "/counters"))["value"] == []

        settings = await control.call("PATCH", "/settings", {"latencySeconds": 0.05, "budget": 50})
        assert settings["latencySeconds"] == 0.05
        assert settings["budget"] == 50
        assert settings["concurrency"] == 4

        now = await control.call("POST", "/clock", {"now": "2030-01-01T00:00:00Z", "freeze": True})
        assert now["now"] == "2030-01-01T00:00:00Z"
        later = await control.call("POST", "/clock", {"advanceSeconds": 90})
        assert later["now"] == "2030-01-01T00:01:30Z"

        await control.call("DELETE", f"/users/{user['id']}/events/{made['id']}", expect=204)
        assert (await control.call("GET", f"/users/{user['id']}/events"))["value"] == []
        assert (await control.call("POST", "/delta/expire", {}))["expired"] == 0

        await control.call(
            "PATCH", f"/tenants/{tenant['id']}/apps/{app['clientId']}", {"secrets": ["new-pw"]}
        )
        await control.call("POST", "/tokens/revoke", {}, 204)
        state = await control.call("GET", "/state")
        assert state["tenants"][0]["apps"][0]["secretCount"] == 1
    finally:
        await http.aclose()
        await credential.close()


async def test_reset_forgets_everything(graph: GraphEmulator, control: Control) -> None:
    tenant = graph.add_tenant()
    graph.add_user(tenant.id, "a@contoso.onmicrosoft.com")
    await control.call("POST", "/reset", expect=204)
    assert (await control.call("GET", "/state"))["tenants"] == []


async def test_the_standalone_command_prints_what_clients_need(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devtools.graph_emulator",
        "--dir",
        str(tmp_path / "standalone"),
        "--demo",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines: dict[str, str] = {}
        while "Demo tenant" not in lines:
            line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
            assert line, "the emulator exited early"
            name, _, value = line.partition(":")
            lines[name.strip()] = value.strip()
        graph_url = lines["Graph emulator"]
        ca = lines["CA certificate"].split()[0]
        tenant_id = lines["Demo tenant"].split()[0]
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca))
        async with aiohttp.ClientSession(connector=connector) as session:
            discovery = (
                f"{lines['Authority']}".split()[0] + f"/{tenant_id}/v2.0/.well-known/openid-configuration"
            )
            async with session.get(discovery) as response:
                assert response.status == 200
                assert (await response.json())["token_endpoint"].endswith(f"/{tenant_id}/oauth2/v2.0/token")
            async with session.get(f"{graph_url}/users") as response:
                assert response.status == 401  # Graph itself wants a token
    finally:
        process.terminate()
        await process.wait()
