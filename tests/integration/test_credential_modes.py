"""Graph credential modes end to end on the local stack: the real app on the local Functions
host, Azurite, and the emulated Entra ID and Graph over HTTPS with the real azure-identity.

`managed`: no secret anywhere. The Function App's managed identity (the emulator's App Service
style endpoint, IDENTITY_ENDPOINT/IDENTITY_HEADER) gets an api://AzureADTokenExchange token;
ClientAssertionCredential presents it for the deployment's app registration, which trusts the
identity as a federated credential (what infra/ sets up).

`client_secret`: a secret rotated through the operator API is used on the next call."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from core.delegated import refresh_token_name
from core.secrets import LocalSecretStore
from core.tenant_schema import client_secret_name
from tests.integration.bridge_api import api_env, every_row  # noqa: F401 - fixture
from tests.integration.test_calendar_sync_down import (  # noqa: F401 - fixtures
    PERMISSIONS,
    eventually,
    graph,
    start_bridge,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def test_managed_mode_reaches_graph_secretless_through_the_federated_managed_identity(
    start_bridge: Callable[..., Any], graph: Any
) -> None:
    """GIVEN the deployment's app registration trusting the Function App's managed identity
    WHEN a tenant in managed mode is created (no client id, no secret) THEN its view carries the
    admin consent URL, and a booking calendar PUT (which resolves the calendar in Graph) works with a
    token Entra ID issued for the app against the identity's assertion; an app that does not
    trust the identity gets no token, in plain words."""
    directory = graph.add_tenant(name="tmanaged", domain="tmanaged.onmicrosoft.com")
    deployment_app = graph.add_app(directory.id, application_permissions=PERMISSIONS)
    identity = graph.add_managed_identity(directory.id)
    graph.federate(directory.id, deployment_app.client_id, identity)
    settings = {
        "IDENTITY_ENDPOINT": graph.identity_endpoint,
        "IDENTITY_HEADER": graph.identity_header,
        "AZURE_CLIENT_ID": identity.client_id,
        "BRIDGE_APP_CLIENT_ID": deployment_app.client_id,
    }
    async with start_bridge(**settings) as bridge:
        mailbox = "adele@tmanaged.onmicrosoft.com"
        graph.add_user(directory.id, mailbox)
        body = {
            "id": "managed-co",
            "displayName": "Managed Co",
            "graph": {"tenantId": directory.id, "credentialMode": "managed"},
            "host": {},
            "defaults": {"language": "nb", "timeZone": "Europe/Oslo"},
        }
        created = await bridge.api.operator("POST", "/tenants", json_body=body)
        assert created.status == 201, created.text
        consent = created.body["graph"]["adminConsentUrl"]
        assert (
            consent == f"{graph.authority}/{directory.id}/adminconsent?client_id={deployment_app.client_id}"
        )
        key = created.body["apiKey"]

        graph.calendar.create_calendar(mailbox, "Bookable slots")
        config = {"displayName": "Rådgivning", "owner": mailbox, "calendar": "Bookable slots"}
        path = "/api/v1/tenants/managed-co/booking-calendars/advice"
        reply = await bridge.api.call("PUT", path, bearer=key, json_body=config)
        assert reply.status == 201, reply.text
        kinds = [(t.grant_type, t.client_id) for t in graph.identity.issued]
        assert ("managed_identity", identity.client_id) in kinds
        assert ("client_credentials", deployment_app.client_id) in kinds

        stranger = graph.add_app(directory.id, application_permissions=PERMISSIONS)
        patched = await bridge.api.operator(
            "PATCH", "/tenants/managed-co", json_body={"graph": {"clientId": stranger.client_id}}
        )
        assert patched.status == 200, patched.text
        refused = await bridge.api.call("PUT", path, bearer=key, json_body=config)
        assert refused.status == 422, refused.text
        assert "AADSTS700211" in refused.text  # no federated credential of that app matches


async def test_a_rotated_client_secret_is_used_on_the_next_call(start_bridge: Callable[..., Any]) -> None:
    """GIVEN a working tenant WHEN the app's secret is replaced in Entra ID and rotated through
    the operator API THEN the next Graph call signs in with the new one, without a restart."""
    async with start_bridge() as bridge:
        outlook = bridge.outlook
        mailbox = outlook.mailbox("adele")
        bridge.graph.calendar.create_calendar(mailbox, "Bookable slots")
        config = {"displayName": "Rådgivning", "owner": mailbox, "calendar": "Bookable slots"}
        assert (await bridge.call("PUT", "/booking-calendars/a", json_body=config)).status == 201
        new_secret = "s-rotated-" + "x" * 24
        app = bridge.graph.app(outlook.tenant_id, outlook.client_id)
        app.secrets = [new_secret]  # the old secret is deleted in Entra ID
        patched = await bridge.api.operator(
            "PATCH", f"/tenants/{bridge.tenant_id}", json_body={"graph": {"clientSecret": new_secret}}
        )
        assert patched.status == 200, patched.text
        before = len(bridge.graph.identity.issued)
        assert (await bridge.call("PUT", "/booking-calendars/b", json_body=config)).status == 201
        assert len(bridge.graph.identity.issued) > before  # a new token, from the new secret


async def test_a_secret_rotated_in_the_secret_store_behind_the_cache_is_picked_up_on_a_401(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN secrets cached for 5 minutes and short-lived tokens WHEN the secret is replaced in
    Entra ID and in the secret store directly (as another instance or Key Vault rotation would)
    THEN the next call's token request is refused (invalid_client), the bridge reads the secret
    again past its cache and the call succeeds — no restart, no wait for the cache."""
    async with start_bridge(SECRETS_CACHE_SECONDS="300") as bridge:
        outlook = bridge.outlook
        bridge.graph.identity.token_lifetime_seconds = 2  # every call needs a fresh token
        mailbox = outlook.mailbox("adele")
        bridge.graph.calendar.create_calendar(mailbox, "Bookable slots")
        config = {"displayName": "Rådgivning", "owner": mailbox, "calendar": "Bookable slots"}
        assert (await bridge.call("PUT", "/booking-calendars/a", json_body=config)).status == 201
        new_secret = "s-rotated-" + "y" * 24
        bridge.graph.app(outlook.tenant_id, outlook.client_id).secrets = [new_secret]
        await LocalSecretStore(bridge.api.secrets_dir).set(client_secret_name(bridge.tenant_id), new_secret)
        await asyncio.sleep(2.5)  # the cached token expires
        reply = await bridge.call("PUT", "/booking-calendars/b", json_body=config)
        assert reply.status == 201, reply.text
        bridge.graph.identity.token_lifetime_seconds = 3600


@dataclass
class DelegatedTenant:
    """A delegated tenant on the running bridge, driven as its host and its users' browsers."""

    bridge: Any
    graph: Any
    key: str
    client_id: str
    megan_id: str
    base: str = "/api/v1/tenants/delegated-co"

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.bridge.api.call(method, self.base + path, bearer=self.key, **kwargs)

    async def connect(self, account: str, resource: str, **extra: str) -> tuple[int, Any]:
        """The host sends `account` to connect; their browser signs in at Microsoft and comes
        back to the bridge. The callback's status and body."""
        api = self.bridge.api
        headers = {"x-functions-key": api.host.function_key, "Authorization": f"Bearer {self.key}"}
        params = {"resourceId": resource, "account": account, **extra}
        start = api.host.base_url + self.base + "/connect/start"
        async with api.http.get(start, params=params, headers=headers, allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            sign_in = resp.headers["Location"]
            assert sign_in == (await resp.json())["authorizeUrl"]
        assert "code_challenge_method=S256" in sign_in
        ssl = aiohttp_ssl(self.graph)
        async with api.http.get(sign_in, allow_redirects=False, ssl=ssl) as resp:
            assert resp.status == 302, await resp.text()  # the emulated Microsoft sign-in
            back = resp.headers["Location"]
        async with api.http.get(back, allow_redirects=False) as resp:  # no key: a browser
            body = await resp.json(content_type=None)
            status = resp.status
        async with api.http.get(back, allow_redirects=False) as resp:
            assert resp.status in (400, 422)  # a state is used once
        return status, body

    async def run_of(self, run_id: str) -> dict[str, Any] | None:
        runs = await self.call("GET", "/runs", params={"runId": run_id})
        ended = [r for r in runs.body["runs"] if r["status"] in ("succeeded", "failed")]
        return ended[0] if ended else None

    async def sync(self, resource: str) -> dict[str, Any]:
        """Sync calendar now; the finished run."""
        sync = await self.call("POST", f"/resources/{resource}/sync")
        assert sync.status == 202, sync.text
        run: dict[str, Any] = await eventually(lambda: self.run_of(sync.body["runId"]), what="the sync run")
        return run

    def told(self) -> list[dict[str, Any]]:
        return [
            json.loads(r.body)
            for r in self.bridge.receiver.accepted
            if json.loads(r.body)["type"] == "account.reconnect_required"
        ]


@asynccontextmanager
async def delegated_tenant(start_bridge: Callable[..., Any], graph: Any) -> AsyncIterator[DelegatedTenant]:
    """A delegated tenant whose app registration is a public client (no secret: PKCE only),
    consented for calendars; Megan has one appointment."""
    directory = graph.add_tenant(name="tdelegated", domain="tdelegated.onmicrosoft.com")
    consented = ["Calendars.Read", "Calendars.ReadWrite", "User.Read"]
    public_app = graph.add_app(directory.id, delegated_permissions=consented)
    megan = graph.add_user(directory.id, MEGAN)
    graph.calendar.create_event(
        MEGAN,
        {
            "subject": "Tannlege",
            "start": {"dateTime": "2030-01-07T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-01-07T10:00:00", "timeZone": "UTC"},
        },
    )
    async with start_bridge() as bridge:
        body = {
            "id": "delegated-co",
            "displayName": "Delegated Co",
            "graph": {
                "tenantId": directory.id,
                "clientId": public_app.client_id,
                "credentialMode": "delegated",
            },
            "host": {"webhookUrl": bridge.receiver.url},
            "defaults": {"language": "nb", "timeZone": "Europe/Oslo"},
        }
        created = await bridge.api.operator("POST", "/tenants", json_body=body)
        assert created.status == 201, created.text
        yield DelegatedTenant(bridge, graph, created.body["apiKey"], public_app.client_id, megan.id)


MEGAN = "megan@tdelegated.onmicrosoft.com"


async def test_delegated_a_user_connects_their_calendar_and_a_revoked_grant_asks_for_reconnect(
    start_bridge: Callable[..., Any], graph: Any, api_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """GIVEN a tenant in delegated mode (a public client app with delegated consent)
    WHEN the host starts a connection for Megan and her browser signs in THEN the callback
    stores her grant, links her to the resource, and a sync reads her calendar with her own
    token; WHEN she revokes the grant THEN the next sync fails in plain words, the grant says
    reconnect_required and the host hears account.reconnect_required once; WHEN she connects
    again THEN the sync works again and the grant is connected. Her refresh token is only ever
    in the secret store: in no table row and no log record."""
    caplog.set_level(logging.DEBUG)
    async with delegated_tenant(start_bridge, graph) as tenant:
        status, body = await tenant.connect(MEGAN, "megan-desk")
        assert (status, body) == (200, {"status": "connected", "account": MEGAN})
        stored = LocalSecretStore(tenant.bridge.api.secrets_dir)
        refresh = await stored.get(refresh_token_name("delegated-co", MEGAN))
        assert refresh
        rows = await every_row(api_env["AzureWebJobsStorage"], api_env["BRIDGE_TABLE_PREFIX"])
        assert refresh not in repr(rows)
        assert refresh not in caplog.text
        link = await tenant.call("GET", "/resources/megan-desk")
        assert [(a["account"], a["direction"]) for a in link.body["accounts"]] == [(MEGAN, "both")]
        assert (await tenant.sync("megan-desk"))["status"] == "succeeded"
        delegated = [t for t in graph.identity.issued if t.client_id == tenant.client_id]
        assert {t.grant_type for t in delegated} >= {"authorization_code", "refresh_token"}
        assert all(t.user_id == tenant.megan_id for t in delegated)
        accounts = await tenant.call("GET", "/connect/accounts")
        assert [(a["account"], a["status"]) for a in accounts.body["accounts"]] == [(MEGAN, "connected")]
        assert "Calendars.ReadWrite" in accounts.body["accounts"][0]["scopes"]

        graph.identity.revoke_refresh_tokens(tenant.megan_id)
        await tenant.bridge.app.graphs.close()  # drop cached access tokens, as a new instance would
        run = await tenant.sync("megan-desk")
        assert run["status"] == "failed"
        assert "GrantRevoked" in run["error"]
        assert "must connect their calendar again" in run["error"]
        [event] = await eventually(lambda: tenant.told() or None, what="account.reconnect_required")
        assert event["data"]["account"] == MEGAN
        assert "invalid_grant" in event["data"]["reason"]
        mine = await tenant.call("GET", f"/connect/accounts/{MEGAN}")
        assert (mine.body["status"], "invalid_grant" in mine.body["error"]) == ("reconnect_required", True)
        link = await tenant.call("GET", "/resources/megan-desk")
        assert [a["connection"] for a in link.body["accounts"]] == ["reconnect_required"]  # the link says so
        assert (await tenant.sync("megan-desk"))["status"] == "failed"  # told once, not twice
        await asyncio.sleep(1)
        assert len(tenant.told()) == 1

        status, _ = await tenant.connect(MEGAN, "megan-desk")
        assert status == 200
        assert (await tenant.call("GET", f"/connect/accounts/{MEGAN}")).body["status"] == "connected"
        assert (await tenant.sync("megan-desk"))["status"] == "succeeded"
        link = await tenant.call("GET", "/resources/megan-desk")
        assert [a["connection"] for a in link.body["accounts"]] == ["connected"]  # once, not twice


async def test_delegated_test_settings_show_each_users_token_and_disconnect_forgets_the_grant(
    start_bridge: Callable[..., Any], graph: Any
) -> None:
    """GIVEN Megan connected for reading only (direction down) and Ola linked but never
    connected WHEN the host presses "Test settings" THEN Megan's token is ok with her delegated
    Calendars.Read, her calendar is read with it, and Ola's line says only he can fix it, at
    …/connect/start; WHEN Megan is disconnected THEN her refresh token is gone and the next
    test says she must connect."""
    async with delegated_tenant(start_bridge, graph) as tenant:
        status, body = await tenant.connect(
            MEGAN, "desk", direction="down", returnUrl="https://erp.example/done"
        )
        assert status == 302
        assert body == {"status": "connected", "account": MEGAN}
        ola = "ola@tdelegated.onmicrosoft.com"
        resource = await tenant.call("GET", "/resources/desk")
        accounts = [{k: v for k, v in a.items() if k != "connection"} for a in resource.body["accounts"]] + [
            {"account": ola, "direction": "down"}
        ]
        put = await tenant.call(
            "PUT",
            "/resources/desk",
            json_body={"displayName": "Desk", "accounts": accounts},
            headers={"If-Match": resource.headers["ETag"]},
        )
        assert put.status == 200, put.text
        assert [a["connection"] for a in put.body["accounts"]] == ["connected", "not_connected"]

        report = (await tenant.call("POST", "/test")).body
        assert [(c["check"], c["target"], c["status"]) for c in report["checks"]] == [
            ("token", MEGAN, "ok"),
            ("permissions", f"{MEGAN} > Calendars.Read", "ok"),
            ("token", ola, "failed"),
            ("calendar", f"desk > {MEGAN} > default", "ok"),
            ("calendar", f"desk > {ola} > default", "skipped"),
        ]
        assert "delegated permissions: Calendars.Read, User.Read" in report["checks"][0]["detail"]
        assert f"connect/start?account={ola}&resourceId=desk" in report["checks"][2]["fix"]
        assert report["ok"] is False

        assert (await tenant.call("DELETE", f"/connect/accounts/{MEGAN}")).status == 204
        assert (await tenant.call("GET", f"/connect/accounts/{MEGAN}")).status == 404
        secrets_dir = tenant.bridge.api.secrets_dir
        name = refresh_token_name("delegated-co", MEGAN)
        assert await LocalSecretStore(secrets_dir).get(name) is None
        await tenant.bridge.app.graphs.close()
        report = (await tenant.call("POST", "/test")).body
        token = report["checks"][0]
        assert (token["target"], token["status"]) == (MEGAN, "failed")
        assert "has not connected their calendar" in token["detail"]


def aiohttp_ssl(graph: Any) -> Any:
    import ssl

    context = ssl.create_default_context(cafile=str(graph.ca_cert))
    return context
