"""Graph credential modes end to end on the local stack: the real app on the local Functions
host, Azurite, and the emulated Entra ID and Graph over HTTPS with the real azure-identity.

`managed`: no secret anywhere. The Function App's managed identity (the emulator's App Service
style endpoint, IDENTITY_ENDPOINT/IDENTITY_HEADER) gets an api://AzureADTokenExchange token;
ClientAssertionCredential presents it for the deployment's app registration, which trusts the
identity as a federated credential (what infra/ sets up).

`client_secret`: a secret rotated through the operator API is used on the next call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from core.secrets import LocalSecretStore
from core.tenant_schema import client_secret_name
from tests.integration.bridge_api import api_env  # noqa: F401 - fixture
from tests.integration.test_calendar_sync_down import (  # noqa: F401 - fixtures
    PERMISSIONS,
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
