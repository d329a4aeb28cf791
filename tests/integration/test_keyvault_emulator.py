"""The Key Vault emulator behaves like the service where the real SDK and our adapter care:
the challenge protocol, token checks, paging, soft delete, and real error bodies."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ServiceRequestError
from azure.keyvault.secrets._shared import http_challenge_cache
from azure.keyvault.secrets.aio import SecretClient

from core.errors import SecretStoreError
from core.secrets import SecretAccessDenied, SecretStoreUnavailable
from core.secrets.keyvault import KeyVaultSecretStore
from devtools.keyvault_emulator import KeyVaultEmulator, StaticTokenCredential

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "integration-token"


@pytest.fixture
async def kv(tmp_path: Path) -> AsyncIterator[KeyVaultEmulator]:
    async with KeyVaultEmulator({TOKEN}, directory=tmp_path / "kv") as emulator:
        yield emulator


def _client(kv: KeyVaultEmulator, token: str = TOKEN) -> SecretClient:
    return SecretClient(kv.url, StaticTokenCredential(token), connection_verify=str(kv.ca_cert))


def _store(kv: KeyVaultEmulator, credential: StaticTokenCredential, **kwargs: object) -> KeyVaultSecretStore:
    return KeyVaultSecretStore(
        kv.url, credential, client_kwargs={"connection_verify": str(kv.ca_cert), **kwargs}
    )


async def _raw_get(
    kv: KeyVaultEmulator, path: str, token: str | None = None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(kv.ca_cert)))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"{kv.url.rstrip('/')}{path}", headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.json()


async def test_a_request_without_a_token_gets_the_key_vault_challenge(kv: KeyVaultEmulator) -> None:
    status, headers, body = await _raw_get(kv, "/secrets/anything?api-version=7.5")
    assert status == 401
    assert headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.microsoftonline.com/{kv.tenant_id}", resource="{kv.resource}"'
    )
    assert body["error"]["code"] == "Unauthorized"


async def test_a_token_the_emulator_did_not_issue_is_rejected(kv: KeyVaultEmulator) -> None:
    status, headers, body = await _raw_get(kv, "/secrets/anything?api-version=7.5", token="forged")
    assert status == 401
    assert "WWW-Authenticate" in headers
    status, _, body = await _raw_get(kv, "/secrets/anything?api-version=7.5", token=TOKEN)
    assert (status, body["error"]["code"]) == (404, "SecretNotFound")


async def test_the_sdk_answers_the_challenge_with_a_token_for_the_vaults_resource(
    kv: KeyVaultEmulator,
) -> None:
    """The SDK's own resource verification stays on and passes for https://127.0.0.1:PORT."""
    # The SDK keeps challenges per host:port for the process; an earlier test's emulator on a
    # reused port would spare this one its first contact (no bodiless probe).
    http_challenge_cache.clear()
    credential = StaticTokenCredential(TOKEN)
    store = _store(kv, credential)
    await store.set("first-contact", "value")
    assert await store.get("first-contact") == "value"
    await store.close()
    assert credential.requests == [((kv.scope,), kv.tenant_id)]  # one token, then reused
    first, second = kv.requests[:2]
    assert (first.method, first.authorized, first.status) == ("PUT", False, 401)  # bodiless probe
    assert (second.method, second.authorized, second.status) == ("PUT", True, 200)


async def test_given_a_wrong_token_the_store_reports_access_denied(kv: KeyVaultEmulator) -> None:
    store = _store(kv, StaticTokenCredential("forged"))
    with pytest.raises(SecretAccessDenied, match=r"'client-secret'.*HTTP 401.*Key Vault Secrets"):
        await store.get("client-secret")
    await store.close()
    assert not any(r.authorized for r in kv.requests)


async def test_given_a_revoked_token_the_store_reports_access_denied(kv: KeyVaultEmulator) -> None:
    store = _store(kv, StaticTokenCredential(TOKEN))
    await store.set("client-secret", "value")
    kv.accepted_tokens.clear()
    with pytest.raises(SecretAccessDenied):
        await store.get("client-secret")
    await store.close()


async def test_given_a_challenge_for_another_resource_no_token_is_sent(tmp_path: Path) -> None:
    """If the vault's challenge names a resource the URL does not belong to, the SDK refuses
    to get a token; the store says so without leaking anything."""
    async with KeyVaultEmulator({TOKEN}, directory=tmp_path, resource="https://vault.azure.net") as kv:
        credential = StaticTokenCredential(TOKEN)
        store = _store(kv, credential)
        with pytest.raises(SecretStoreError, match="challenge") as err:
            await store.get("client-secret")
        await store.close()
    assert credential.requests == []
    assert err.value.__context__ is None


async def test_forbidden_and_throttled_answers_map_to_named_errors(kv: KeyVaultEmulator) -> None:
    store = _store(kv, StaticTokenCredential(TOKEN), retry_total=0)
    kv.fail_next(403, "ForbiddenByRbac", "Caller is not authorized.")
    with pytest.raises(SecretAccessDenied, match="HTTP 403 ForbiddenByRbac"):
        await store.get("client-secret")
    kv.fail_next(429, "Throttled", "Too many requests.")
    with pytest.raises(SecretStoreUnavailable, match="HTTP 429"):
        await store.get("client-secret")
    await store.close()


async def test_an_unreachable_vault_is_reported_as_unavailable(kv: KeyVaultEmulator) -> None:
    store = _store(kv, StaticTokenCredential(TOKEN), retry_total=0)
    await kv.stop()
    with pytest.raises(SecretStoreUnavailable, match="did not answer"):
        await store.get("client-secret")
    await store.close()


async def test_the_emulator_really_echoes_bodies_when_asked(kv: KeyVaultEmulator) -> None:
    """Guards the contract suite's leak test: without the adapter, the value does leak."""
    async with _client(kv) as client:
        kv.fail_next(400, "BadParameter", "Rejected.", echo_body=True)
        with pytest.raises(HttpResponseError) as err:
            await client.set_secret("victim", "the-value-itself")
    assert "the-value-itself" in str(err.value)


async def test_listing_pages_through_next_links(kv: KeyVaultEmulator) -> None:
    async with _client(kv) as client:
        for i in range(30):
            await client.set_secret(f"s{i:02d}", "value")
        await client.set_secret("s00", "second version")
        names = [p.name async for p in client.list_properties_of_secrets()]
        versions = [p.version async for p in client.list_properties_of_secret_versions("S00")]
    assert sorted(n or "" for n in names) == [f"s{i:02d}" for i in range(30)]
    assert len([r for r in kv.requests if r.path == "/secrets" and r.authorized]) == 2  # 25 + 5
    assert len(set(versions)) == 2


async def test_soft_delete_recover_and_purge_follow_the_service(kv: KeyVaultEmulator) -> None:
    async with _client(kv) as client:
        created = await client.set_secret("Lifecycle", "v1")
        deleted = await client.delete_secret("lifecycle")
        assert deleted.recovery_id == f"{kv.url}deletedsecrets/Lifecycle"
        assert (await client.get_deleted_secret("LIFECYCLE")).name == "Lifecycle"
        with pytest.raises(ResourceExistsError) as err:
            await client.set_secret("lifecycle", "v2")
        assert err.value.error is not None
        assert err.value.error.innererror == {"code": "ObjectIsDeletedButRecoverable"}
        await client.recover_deleted_secret("lifecycle")
        recovered = await client.get_secret("lifecycle")
        assert (recovered.value, recovered.properties.version) == ("v1", created.properties.version)
        await client.delete_secret("lifecycle")
        await client.purge_deleted_secret("lifecycle")
        assert [d.name async for d in client.list_deleted_secrets()] == []
        await client.set_secret("lifecycle", "fresh")  # purged: the name is free again
        assert (await client.get_secret("lifecycle")).value == "fresh"


async def test_the_certificate_is_only_trusted_through_the_generated_ca(kv: KeyVaultEmulator) -> None:
    async with SecretClient(kv.url, StaticTokenCredential(TOKEN), retry_total=0) as client:
        with pytest.raises(ServiceRequestError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get_secret("x")
    # and the certificate names every loopback spelling
    for host in ("localhost", "127.0.0.1"):
        ctx = ssl.create_default_context(cafile=str(kv.ca_cert))
        _, writer = await asyncio.open_connection(host, kv.port, ssl=ctx, server_hostname=host)
        writer.close()
        await writer.wait_closed()


def test_standalone_emulator_prints_url_ca_and_token_and_serves_the_sdk(tmp_path: Path) -> None:
    """`python -m devtools.keyvault_emulator --dir …`, then a separate process that trusts the
    CA only through SSL_CERT_FILE (as documented) reaches it."""
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "devtools.keyvault_emulator", "--dir", str(tmp_path / "kv"), "--token", TOKEN],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = dict(line.split(":", 1) for line in (proc.stdout.readline() for _ in range(4)))
        url = lines["Key Vault emulator"].strip()
        ca = lines["CA certificate"].split()[0]
        assert lines["Accepted token"].strip() == TOKEN
        assert Path(ca) == tmp_path / "kv" / "ca.pem"
        assert oct(os.stat(tmp_path / "kv" / "server-key.pem").st_mode & 0o777) == "0o600"
        probe = (
            "import urllib.request, urllib.error, sys\n"
            "try: urllib.request.urlopen(sys.argv[1] + 'secrets?api-version=7.5')\n"
            "except urllib.error.HTTPError as e: print(e.code, e.headers['WWW-Authenticate'])\n"
        )
        out = subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, "-c", probe, url],
            env={**os.environ, "SSL_CERT_FILE": ca},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert out.stdout.startswith("401 Bearer authorization=")
        with pytest.raises(urllib.error.URLError):  # without the CA: refused
            urllib.request.urlopen(url, timeout=10)  # noqa: S310 - https URL we just started
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
