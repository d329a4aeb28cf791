"""The emulator's identity platform with the real azure-identity credentials: client secret
(async, and MSAL's sync path), wrong secret, federated managed identity, authorization code and
refresh token; and Graph's answers to tokens without permission, revoked tokens and /me."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential as SyncClientSecretCredential
from azure.identity.aio import (
    AuthorizationCodeCredential,
    ClientAssertionCredential,
    ManagedIdentityCredential,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from devtools.graph_emulator.tokens import decode_unverified
from tests.integration.graph_clients import GRAPH_SCOPE, SECRET, Seed, graph_client, secret_credential, seeded

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def seed(tmp_path: Path) -> AsyncIterator[Seed]:
    async with seeded(tmp_path / "graph") as s:
        yield s


async def test_client_secret_credential_gets_a_token_whose_roles_are_the_granted_permissions(
    seed: Seed,
) -> None:
    token = await seed.credential.get_token(GRAPH_SCOPE)
    _, claims = decode_unverified(token.token)
    assert claims["tid"] == seed.tenant.id
    assert claims["appid"] == seed.app.client_id
    assert claims["aud"] == "https://graph.microsoft.com"
    assert sorted(claims["roles"]) == sorted(seed.app.application_permissions)
    assert "scp" not in claims
    me = await seed.user_client("ADELE@contoso.onmicrosoft.com").get()  # UPN lookup ignores case
    assert me is not None
    assert me.id == seed.adele.id
    assert me.display_name == "Adele Vance"


async def test_msal_sync_credential_discovers_the_tenant_and_gets_a_token(seed: Seed) -> None:
    """The sync credential goes through MSAL: OpenID discovery, then the token endpoint. It blocks,
    so it runs in a thread while the emulator serves on this loop."""
    credential = SyncClientSecretCredential(
        seed.tenant.id,
        seed.app.client_id,
        SECRET,
        authority=seed.graph.authority,
        disable_instance_discovery=True,
        connection_verify=str(seed.graph.ca_cert),
    )
    token = await asyncio.to_thread(credential.get_token, GRAPH_SCOPE)
    assert decode_unverified(token.token)[1]["appid"] == seed.app.client_id


async def test_a_wrong_secret_is_refused_like_entra_does(seed: Seed) -> None:
    credential = secret_credential(seed.graph, seed.tenant.id, seed.app.client_id, "not-the-secret")
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        await credential.get_token(GRAPH_SCOPE)
    await credential.close()
    unknown_tenant = secret_credential(seed.graph, "contoso-typo.onmicrosoft.com", seed.app.client_id, SECRET)
    with pytest.raises(ClientAuthenticationError, match="AADSTS90002"):
        await unknown_tenant.get_token(GRAPH_SCOPE)
    await unknown_tenant.close()


async def test_a_token_without_the_permission_gets_403_and_a_new_token_after_consent_works(
    seed: Seed,
) -> None:
    """GIVEN an app granted only User.Read.All WHEN it reads a calendar THEN 403 ErrorAccessDenied;
    after admin consent for Calendars.Read a *new* token carries the role and the read works."""
    limited = seed.graph.add_app(seed.tenant.id, secrets=["x"], application_permissions=["User.Read.All"])
    credential = secret_credential(seed.graph, seed.tenant.id, limited.client_id, "x")
    client, http = graph_client(seed.graph, credential)
    with pytest.raises(ODataError) as denied:
        await client.users.by_user_id(seed.adele.id).calendar.get()
    assert denied.value.response_status_code == 403
    assert denied.value.error is not None
    assert denied.value.error.code == "ErrorAccessDenied"

    seed.graph.grant(seed.tenant.id, limited.client_id, "Calendars.Read")
    with pytest.raises(ODataError):  # the cached token still has the old roles
        await client.users.by_user_id(seed.adele.id).calendar.get()
    await http.aclose()
    await credential.close()
    fresh = secret_credential(seed.graph, seed.tenant.id, limited.client_id, "x")
    client, http = graph_client(seed.graph, fresh)
    calendar = await client.users.by_user_id(seed.adele.id).calendar.get()
    assert calendar is not None
    assert calendar.is_default_calendar is True
    await http.aclose()
    await fresh.close()


async def test_revoked_and_missing_tokens_get_401_invalid_authentication_token(seed: Seed) -> None:
    await seed.user_client(seed.adele.id).get()
    seed.graph.revoke_tokens()
    with pytest.raises(ODataError) as revoked:
        await seed.user_client(seed.adele.id).get()
    assert revoked.value.response_status_code == 401
    assert revoked.value.error is not None
    assert revoked.value.error.code == "InvalidAuthenticationToken"


async def test_managed_identity_signs_in_as_the_app_through_its_federated_credential(
    seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secretless mode: ManagedIdentityCredential (App Service endpoint) gets an
    api://AzureADTokenExchange token; ClientAssertionCredential presents it to the token endpoint,
    which accepts it because the app trusts that identity; an identity it does not trust is refused."""
    graph = seed.graph
    trusted = graph.add_managed_identity(seed.tenant.id)
    stranger = graph.add_managed_identity(seed.tenant.id)
    graph.federate(seed.tenant.id, seed.app.client_id, trusted)
    monkeypatch.setenv("IDENTITY_ENDPOINT", graph.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", graph.identity_header)

    async def exchange_token(client_id: str) -> str:
        async with ManagedIdentityCredential(client_id=client_id, connection_verify=str(graph.ca_cert)) as mi:
            token: str = (await mi.get_token("api://AzureADTokenExchange/.default")).token
            return token

    for identity, works in ((trusted, True), (stranger, False)):
        assertion = await exchange_token(identity.client_id)
        credential = ClientAssertionCredential(
            seed.tenant.id,
            seed.app.client_id,
            functools.partial(str, assertion),
            authority=graph.authority,
            disable_instance_discovery=True,
            connection_verify=str(graph.ca_cert),
        )
        if works:
            client, http = graph_client(graph, credential)
            user = await client.users.by_user_id(seed.megan.user_principal_name).get()
            assert user is not None
            assert user.id == seed.megan.id
            assert decode_unverified((await credential.get_token(GRAPH_SCOPE)).token)[1]["appidacr"] == "2"
            await http.aclose()
        else:
            with pytest.raises(ClientAuthenticationError, match="AADSTS700213"):
                await credential.get_token(GRAPH_SCOPE)
        await credential.close()


async def test_authorization_code_then_refresh_token_give_delegated_tokens_for_me(seed: Seed) -> None:
    """Delegated consent: the code is redeemed for a token with `scp` (no `roles`) that works on
    /me and the user's own calendar but not on someone else's; when it expires the credential
    redeems its refresh token."""
    graph = seed.graph
    graph.grant(seed.tenant.id, seed.app.client_id, "Calendars.ReadWrite", "User.Read", delegated=True)
    # Short-lived, so the call after the sleep must refresh; 3 s rather than 1 so that a token
    # cannot expire in flight on a loaded machine before the first calls land.
    graph.identity.token_lifetime_seconds = 3
    redirect = "http://localhost:8400/callback"
    scopes = ["Calendars.ReadWrite", "User.Read", "offline_access"]
    code = graph.authorize(
        seed.tenant.id, seed.app.client_id, seed.megan.user_principal_name, scopes, redirect
    )
    credential = AuthorizationCodeCredential(
        seed.tenant.id,
        seed.app.client_id,
        code,
        redirect,
        client_secret=SECRET,
        authority=graph.authority,
        connection_verify=str(graph.ca_cert),
    )
    client, http = graph_client(graph, credential)
    me = await client.me.get()
    assert me is not None
    assert me.id == seed.megan.id
    # The SDK's auth provider asks for CAE tokens; azure-identity caches those separately.
    claims = decode_unverified((await credential.get_token(GRAPH_SCOPE, enable_cae=True)).token)[1]
    assert set(claims["scp"].split()) == {"Calendars.ReadWrite", "User.Read"}
    assert "roles" not in claims
    assert claims["oid"] == seed.megan.id
    await asyncio.sleep(3.1)
    calendar = await client.me.calendar.get()
    assert calendar is not None
    assert calendar.owner is not None
    assert calendar.owner.address == seed.megan.mail
    with pytest.raises(ODataError) as other:
        await client.users.by_user_id(seed.adele.id).calendar.get()
    assert other.value.response_status_code == 403
    grants = [t.grant_type for t in graph.identity.issued if t.user_id == seed.megan.id]
    assert grants[0] == "authorization_code"
    assert "refresh_token" in grants[1:]
    await http.aclose()
    await credential.close()


async def test_me_with_an_app_only_token_is_a_bad_request(seed: Seed) -> None:
    with pytest.raises(ODataError) as bad:
        await seed.client.me.get()
    assert bad.value.response_status_code == 400


async def test_a_token_fetched_right_after_a_revocation_works(seed: Seed) -> None:
    seed.graph.revoke_tokens()
    fresh = secret_credential(seed.graph, seed.tenant.id, seed.app.client_id, SECRET)
    client, http = graph_client(seed.graph, fresh)
    assert await client.users.by_user_id(seed.adele.id).get() is not None
    await http.aclose()
    await fresh.close()


async def test_the_authorize_endpoint_signs_in_the_hinted_user_and_redirects_with_a_code(seed: Seed) -> None:
    """What a browser does in the delegated consent flow: GET authorize, follow nothing, read the
    code from the redirect; the code is then redeemed by AuthorizationCodeCredential."""
    graph = seed.graph
    graph.grant(seed.tenant.id, seed.app.client_id, "User.Read", delegated=True)
    redirect = "https://bridge.example/api/v1/consent/callback"
    query = {
        "client_id": seed.app.client_id,
        "response_type": "code",
        "redirect_uri": redirect,
        "scope": "User.Read offline_access",
        "state": "xyz",
        "login_hint": seed.adele.user_principal_name,
    }
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(graph.ca_cert)))
    async with (
        aiohttp.ClientSession(connector=connector) as browser,
        browser.get(
            f"{graph.authority}/{seed.tenant.id}/oauth2/v2.0/authorize", params=query, allow_redirects=False
        ) as r,
    ):
        assert r.status == 302
        location = urlparse(r.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
    params = parse_qs(location.query)
    assert params["state"] == ["xyz"]
    credential = AuthorizationCodeCredential(
        seed.tenant.id,
        seed.app.client_id,
        params["code"][0],
        redirect,
        client_secret=SECRET,
        authority=graph.authority,
        connection_verify=str(graph.ca_cert),
    )
    client, http = graph_client(graph, credential)
    me = await client.me.get()
    assert me is not None
    assert me.id == seed.adele.id
    await http.aclose()
    await credential.close()


async def test_a_code_bound_to_a_pkce_challenge_is_redeemed_only_with_its_verifier(seed: Seed) -> None:
    """PKCE (RFC 7636): a code asked for with an S256 challenge is refused with a wrong or
    missing verifier (AADSTS501481), redeemed with the right one, and only once (70008)."""
    graph = seed.graph
    graph.grant(seed.tenant.id, seed.app.client_id, "Calendars.Read", delegated=True)
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    redirect = "https://bridge.example/api/v1/connect/callback"
    token_url = f"{graph.authority}/{seed.tenant.id}/oauth2/v2.0/token"

    def code() -> str:
        return graph.authorize(
            seed.tenant.id,
            seed.app.client_id,
            seed.adele.user_principal_name,
            ["Calendars.Read", "offline_access"],
            redirect,
            code_challenge=challenge,
            code_challenge_method="S256",
        )

    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(graph.ca_cert)))
    async with aiohttp.ClientSession(connector=connector) as browser:

        async def redeem(the_code: str, sent: str | None) -> tuple[int, int | None]:
            form = {
                "grant_type": "authorization_code",
                "client_id": seed.app.client_id,
                "client_secret": SECRET,
                "code": the_code,
                "redirect_uri": redirect,
                **({"code_verifier": sent} if sent is not None else {}),
            }
            async with browser.post(token_url, data=form) as r:
                return r.status, (await r.json()).get("error_codes", [None])[0]

        assert await redeem(code(), "w" * 50) == (400, 501481)
        assert await redeem(code(), None) == (400, 501481)
        good = code()
        assert await redeem(good, verifier) == (200, None)
        assert await redeem(good, verifier) == (400, 70008)
