"""Delegated sign-in over memory tables and secrets with a scripted token endpoint: the state is
single-use and expires, the signed-in account must be the one asked for, the refresh token goes
to the secrets port (never a table), a revoked grant asks for reconnecting once, and a delegated
tenant's gateway routes each call by its mailbox."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from core.delegated import (
    AppClient,
    ConnectService,
    PerMailboxGateway,
    RefreshTokenCredential,
    refresh_token_name,
)
from core.graph.errors import GrantRevoked
from core.host import Emission
from core.request_errors import EditConflict, InvalidInput, ItemNotFound
from core.secrets import InMemorySecretStore
from core.store import memory_tables
from core.store.records import CredentialMode, DelegatedGrant, Direction, GrantStatus, ResourceLink, Tenant
from tests.unit.calendar_world import Clock

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
TENANT = Tenant(
    tenant_id="acme",
    graph_tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
    graph_client_id="11111111-2222-3333-4444-555555555555",
    credential_mode=CredentialMode.DELEGATED,
)
CALLBACK = "https://bridge.example/api/v1/connect/callback"


MEGAN_OID = "0b8f5b3e-1c1a-4e9b-9d1e-2f4a6c8e0a11"


def token_for(upn: str) -> str:
    payload = base64.urlsafe_b64encode(
        json.dumps({"upn": upn, "oid": MEGAN_OID, "scp": "Calendars.ReadWrite"}).encode()
    ).decode()
    return f"e30.{payload.rstrip('=')}.sig"


class Endpoint:
    """Entra ID's token endpoint as a script: records each grant and the client it came from."""

    def __init__(self) -> None:
        self.grants: list[dict[str, str]] = []
        self.clients: list[AppClient] = []
        self.signed_in = "megan@acme.example"
        self.revoked = False

    def authorize_url(self, directory: str) -> str:
        return f"https://login.example/{directory}/oauth2/v2.0/authorize"

    async def redeem(self, client: AppClient, fields: dict[str, str]) -> dict[str, Any]:
        self.grants.append(fields)
        self.clients.append(client)
        if self.revoked and fields["grant_type"] == "refresh_token":
            raise GrantRevoked(
                "Entra ID refused the grant (invalid_grant, AADSTS50173)", aad_code="AADSTS50173"
            )
        return {
            "access_token": token_for(self.signed_in),
            "refresh_token": f"rt-{len(self.grants)}",
            "expires_in": 3600,
        }


@pytest.fixture
async def world() -> Any:
    tables = memory_tables()
    await tables.repo(Tenant).upsert(TENANT)
    secrets = InMemorySecretStore()
    endpoint = Endpoint()
    clock = Clock(T0)
    return tables, secrets, endpoint, clock, ConnectService(tables, secrets, endpoint, clock)  # type: ignore[arg-type]


async def start(
    service: ConnectService, account: str = "megan@acme.example", direction: str | None = None
) -> dict[str, str]:
    url, _ = await service.start(TENANT, "desk-1", account, None, CALLBACK, direction)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["redirect_uri"] == CALLBACK
    assert query["code_challenge_method"] == "S256"
    assert "offline_access" in query["scope"]
    return query


async def test_a_sign_in_stores_the_refresh_token_in_secrets_and_links_the_account(world: Any) -> None:
    tables, secrets, endpoint, _, service = world
    query = await start(service)
    grant, back = await service.callback("code-1", query["state"], None)
    assert (grant.status, grant.account, back) == (GrantStatus.CONNECTED, "megan@acme.example", None)
    assert await secrets.get(refresh_token_name("acme", "megan@acme.example")) == "rt-1"
    redeemed = endpoint.grants[0]
    assert redeemed["grant_type"] == "authorization_code"
    assert redeemed["code_verifier"]  # PKCE: the verifier whose challenge went to the sign-in
    link = await tables.repo(ResourceLink).get(*ResourceLink.key("acme", "desk-1"))
    assert [a.account for a in link.accounts] == ["megan@acme.example"]
    rows = [r async for r in tables.repo(DelegatedGrant).list("acme")]
    assert "rt-1" not in repr([r.model_dump() for r in rows])  # the token never in a table
    with pytest.raises(InvalidInput, match="state"):
        await service.callback("code-1", query["state"], None)  # used once


async def test_an_expired_state_another_account_or_a_refused_sign_in_connects_nothing(world: Any) -> None:
    tables, secrets, endpoint, clock, service = world
    old = await start(service)
    clock.advance(timedelta(minutes=11))
    with pytest.raises(InvalidInput, match="expired"):
        await service.callback("code", old["state"], None)
    endpoint.signed_in = "someone.else@acme.example"
    with pytest.raises(EditConflict, match="another account"):
        await service.callback("code", (await start(service))["state"], None)
    with pytest.raises(InvalidInput, match="did not complete"):
        await service.callback(None, (await start(service))["state"], "access_denied")
    assert await secrets.get(refresh_token_name("acme", "megan@acme.example")) is None
    assert [r async for r in tables.repo(ResourceLink).list("acme")] == []


async def test_a_revoked_grant_asks_for_reconnecting_once(world: Any) -> None:
    tables, secrets, endpoint, clock, service = world
    await service.callback("code", (await start(service))["state"], None)
    told: list[Emission] = []

    async def emit(tenant_id: str, event: Emission) -> None:
        told.append(event)

    credential = RefreshTokenCredential(TENANT, "megan@acme.example", tables, secrets, endpoint, emit, clock)
    assert (await credential.get_token("scope")).token == token_for("megan@acme.example")
    assert await secrets.get(refresh_token_name("acme", "megan@acme.example")) == "rt-2"  # rotated
    endpoint.revoked = True
    for _ in range(2):
        fresh = RefreshTokenCredential(TENANT, "megan@acme.example", tables, secrets, endpoint, emit, clock)
        with pytest.raises(GrantRevoked, match=r"invalid_grant.*connect their calendar again") as refused:
            await fresh.get_token("scope")
        assert refused.value.mailbox == "megan@acme.example"
    grant = await tables.repo(DelegatedGrant).get(*DelegatedGrant.key("acme", "megan@acme.example"))
    assert grant.status is GrantStatus.RECONNECT_REQUIRED
    assert [e.type for e in told] == ["account.reconnect_required"]


async def test_a_delegated_gateway_sends_each_call_with_its_mailboxs_own_gateway() -> None:
    calls: list[tuple[str, str]] = []

    class Fake:
        def __init__(self, owner: str) -> None:
            self.owner = owner

        async def get_event(self, mailbox: str, event_id: str) -> str:
            calls.append((self.owner, mailbox))
            return event_id

        async def list_messages(self, mailbox: str, folder: str) -> Any:
            calls.append((self.owner, mailbox))
            yield folder

    async def gateway_for(mailbox: str) -> Any:
        return Fake(mailbox)

    gateway = PerMailboxGateway(gateway_for)
    assert await gateway.get_event("a@x.example", "e1") == "e1"
    assert [m async for m in gateway.list_messages("b@x.example", "f")] == ["f"]
    assert calls == [("a@x.example", "a@x.example"), ("b@x.example", "b@x.example")]


async def test_the_direction_asked_for_sets_the_scopes_and_the_link(world: Any) -> None:
    """GIVEN a connection for reading only WHEN it completes THEN the user was asked for
    Calendars.Read (not ReadWrite) and is linked down; a bad direction is a 422 naming it."""
    tables, _, _, _, service = world
    query = await start(service, direction="down")
    assert "Calendars.Read" in query["scope"].split()
    assert "Calendars.ReadWrite" not in query["scope"].split()
    await service.callback("code", query["state"], None)
    link = await tables.repo(ResourceLink).get(*ResourceLink.key("acme", "desk-1"))
    assert [(a.account, a.direction) for a in link.accounts] == [("megan@acme.example", Direction.DOWN)]
    with pytest.raises(InvalidInput) as bad:
        await service.start(TENANT, "", "not an address", "ftp://x", CALLBACK, "sideways")
    assert {p.field for p in bad.value.problems} == {"resourceId", "account", "returnUrl", "direction"}


async def test_an_account_linked_by_object_id_connects_when_that_user_signs_in(world: Any) -> None:
    _, secrets, _, _, service = world
    grant, _ = await service.callback("code", (await start(service, MEGAN_OID.upper()))["state"], None)
    assert grant.account == MEGAN_OID
    assert await secrets.get(refresh_token_name("acme", MEGAN_OID)) == "rt-1"


async def test_a_confidential_client_sends_its_secret_and_a_public_one_none(world: Any) -> None:
    """GIVEN the tenant's app registration with a client secret (redirect URI as Web) THEN the
    code and refresh-token redemptions carry it; without one (a public client) they carry none."""
    tables, secrets, endpoint, clock, service = world
    await service.callback("code", (await start(service))["state"], None)
    assert endpoint.clients[-1].secret is None
    confidential = TENANT.model_copy(update={"client_secret_name": "tenant--acme--client-secret"})
    await tables.repo(Tenant).upsert(confidential)
    await secrets.set("tenant--acme--client-secret", "s3cret-value")
    await service.callback("code", (await start(service))["state"], None)

    async def emit(tenant_id: str, event: Emission) -> None:
        raise AssertionError("nothing to tell")

    credential = RefreshTokenCredential(
        confidential, "megan@acme.example", tables, secrets, endpoint, emit, clock
    )
    await credential.get_token("scope")
    assert [c.secret for c in endpoint.clients[-2:]] == ["s3cret-value", "s3cret-value"]
    assert endpoint.grants[-1]["scope"] == "https://graph.microsoft.com/.default offline_access"


async def test_an_account_that_never_connected_fails_in_plain_words_without_asking_entra(world: Any) -> None:
    tables, secrets, endpoint, clock, _ = world

    async def emit(tenant_id: str, event: Emission) -> None:
        raise AssertionError("nothing to tell")

    credential = RefreshTokenCredential(TENANT, "nobody@acme.example", tables, secrets, endpoint, emit, clock)
    with pytest.raises(
        GrantRevoked, match=r"has not connected their calendar.*connect/start\?account=nobody"
    ):
        await credential.get_token("scope")
    assert endpoint.grants == []


async def test_disconnecting_forgets_the_refresh_token_and_the_grant(world: Any) -> None:
    tables, secrets, _, _, service = world
    await service.callback("code", (await start(service))["state"], None)
    assert [g.account for g in await service.accounts("acme")] == ["megan@acme.example"]
    assert (await service.account("acme", "Megan@Acme.example")).status is GrantStatus.CONNECTED
    await service.disconnect("acme", "megan@acme.example")
    assert await secrets.get(refresh_token_name("acme", "megan@acme.example")) is None
    assert await service.accounts("acme") == []
    for missing in ("megan@acme.example", "not an address"):
        with pytest.raises(ItemNotFound):
            await service.disconnect("acme", missing)
    link = await tables.repo(ResourceLink).get(*ResourceLink.key("acme", "desk-1"))
    assert [a.account for a in link.accounts] == ["megan@acme.example"]  # links stay
