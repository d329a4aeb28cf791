"""One contract for every secret store: the fake, the local files, Key Vault and the cache.

The Key Vault variants run the real `azure-keyvault-secrets` client over HTTPS against the
emulator (trusting its generated CA), through the challenge protocol with a faked credential.
"keyvault-app" is what the app runs in Azure: `build_secret_store` with the cache in front.
If the fake passes and Key Vault does not (or the reverse), the fake is lying.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.errors import InvalidSecretName, SecretStoreError
from core.secrets import (
    MAX_VALUE_BYTES,
    CachedSecretStore,
    InMemorySecretStore,
    InvalidSecretValue,
    LocalSecretStore,
    SecretStore,
    build_secret_store,
    validate_secret_name,
)
from core.secrets.keyvault import KeyVaultSecretStore
from core.settings import SecretsProvider, Settings, StorageSettings
from devtools.keyvault_emulator import KeyVaultEmulator, StaticTokenCredential

TOKEN = "contract-test-token"
VALUE = "s3cr3t-Välue-🔑-0a9f"  # distinctive enough that a leak is unmistakable


@dataclass
class Harness:
    store: SecretStore
    # Makes the next write fail inside the backing store (None: this store cannot fail).
    break_next_write: Callable[[], None] | None = None


async def _memory(_: Path) -> AsyncIterator[Harness]:
    yield Harness(InMemorySecretStore())


async def _local(tmp: Path) -> AsyncIterator[Harness]:
    directory = tmp / "secrets"
    store = LocalSecretStore(directory)

    def break_next_write() -> None:
        # A directory where the secret's file would go: the rename fails, as a full or
        # read-only disk would (file modes do not stop root, which the tests may run as).
        directory.mkdir(mode=0o700, exist_ok=True)
        (directory / "victim").mkdir()

    yield Harness(store, break_next_write)


async def _keyvault(tmp: Path) -> AsyncIterator[Harness]:
    async with KeyVaultEmulator({TOKEN}, directory=tmp / "kv") as kv:
        store = KeyVaultSecretStore(
            kv.url, StaticTokenCredential(TOKEN), client_kwargs={"connection_verify": str(kv.ca_cert)}
        )
        yield Harness(store, lambda: kv.fail_next(400, "BadParameter", "Rejected.", echo_body=True))
        await store.close()


async def _keyvault_app(tmp: Path) -> AsyncIterator[Harness]:
    async with KeyVaultEmulator({TOKEN}, directory=tmp / "kv") as kv:
        settings = Settings(
            storage=StorageSettings(account_name="unused"),
            secrets_provider=SecretsProvider.KEYVAULT,
            key_vault_uri=kv.url,
            secrets_cache_seconds=300,
        )
        store = build_secret_store(
            settings, StaticTokenCredential(TOKEN), client_kwargs={"connection_verify": str(kv.ca_cert)}
        )
        yield Harness(store, lambda: kv.fail_next(403, "Forbidden", "Denied.", echo_body=True))
        await store.close()


async def _cached_memory(_: Path) -> AsyncIterator[Harness]:
    yield Harness(CachedSecretStore(InMemorySecretStore(), ttl_seconds=300))


VARIANTS = {
    "memory": _memory,
    "local": _local,
    "keyvault": _keyvault,
    "keyvault-app": _keyvault_app,
    "cached-memory": _cached_memory,
}


@pytest.fixture(params=list(VARIANTS))
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in VARIANTS[request.param](tmp_path):
        yield h


# The variants with a backing system that can be made to fail mid-request.
FAILABLE = ["keyvault", "keyvault-app"]


@pytest.fixture(params=FAILABLE)
async def failable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in VARIANTS[request.param](tmp_path):
        assert h.break_next_write is not None
        yield h


@pytest.fixture
def store(harness: Harness) -> SecretStore:
    return harness.store


async def test_given_no_secret_when_read_then_none(store: SecretStore) -> None:
    assert await store.get("never-written") is None


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "pässwörd ✓ 🔑 日本語",
        "line1\r\nline2\n",  # exact bytes: no newline translation or stripping
        "  padded  ",
        "x" * MAX_VALUE_BYTES,  # exactly at Key Vault's limit
        "é" * (MAX_VALUE_BYTES // 2),  # the limit counts UTF-8 bytes, not characters
    ],
    ids=["ascii", "unicode", "newlines", "spaces", "max-ascii", "max-utf8"],
)
async def test_given_a_value_when_set_then_get_returns_it_exactly(store: SecretStore, value: str) -> None:
    await store.set("round-trip", value)
    assert await store.get("round-trip") == value


async def test_given_a_secret_when_overwritten_then_get_returns_the_latest(store: SecretStore) -> None:
    await store.set("rotating", "first")
    await store.set("rotating", "second")
    assert await store.get("rotating") == "second"


async def test_names_are_case_insensitive_like_key_vault(store: SecretStore) -> None:
    await store.set("Tenant-ABC", "v1")
    assert await store.get("tenant-abc") == "v1"
    await store.set("TENANT-abc", "v2")
    assert await store.get("Tenant-ABC") == "v2"
    await store.delete("tenant-ABC")
    assert await store.get("Tenant-ABC") is None


async def test_given_a_secret_when_deleted_then_get_returns_none(store: SecretStore) -> None:
    await store.set("doomed", "value")
    await store.delete("doomed")
    assert await store.get("doomed") is None


async def test_deleting_an_absent_secret_is_not_an_error(store: SecretStore) -> None:
    await store.delete("never-written")
    await store.set("twice", "value")
    await store.delete("twice")
    await store.delete("twice")  # in Key Vault: now soft-deleted, and deleting again is still fine
    assert await store.get("twice") is None


async def test_given_a_deleted_secret_when_set_again_then_the_new_value_is_read(store: SecretStore) -> None:
    """Key Vault answers 409 ObjectIsDeletedButRecoverable here; the adapter recovers, then sets."""
    await store.set("phoenix", "old")
    await store.delete("phoenix")
    await store.set("phoenix", "new")
    assert await store.get("phoenix") == "new"
    await store.delete("phoenix")
    assert await store.get("phoenix") is None


BAD_NAMES = ["", "has_underscore", "has space", "a/b", "../escape", "dot.ted", "ünïcode", "x" * 128]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:12]))
async def test_invalid_names_are_rejected_identically_by_every_store(store: SecretStore, name: str) -> None:
    with pytest.raises(InvalidSecretName) as expected:
        validate_secret_name(name)
    for call in (store.get(name), store.set(name, "value"), store.delete(name)):
        with pytest.raises(InvalidSecretName) as err:
            await call
        assert str(err.value) == str(expected.value)
    # nothing was written under some normalised form of the name either
    assert await store.get("has-underscore") is None


@pytest.mark.parametrize(
    "value",
    ["", "x" * (MAX_VALUE_BYTES + 1), "é" * (MAX_VALUE_BYTES // 2 + 1), "lone \ud800 surrogate"],
    ids=["empty", "over-limit-ascii", "over-limit-utf8", "lone-surrogate"],
)
async def test_unstorable_values_are_rejected_before_any_write(store: SecretStore, value: str) -> None:
    with pytest.raises(InvalidSecretValue) as err:
        await store.set("unstorable", value)
    assert isinstance(err.value, ValueError)
    if value:
        assert value[:40] not in str(err.value)
    assert _chain(err.value) == [err.value]  # not chained to e.g. the UnicodeEncodeError holding it
    assert await store.get("unstorable") is None


async def test_values_never_appear_in_the_repr_of_a_store(store: SecretStore) -> None:
    await store.set("visible-name", VALUE)
    assert await store.get("visible-name") == VALUE
    assert VALUE not in repr(store)
    assert VALUE not in str(store)


async def test_a_failed_write_raises_an_error_that_never_contains_the_value(failable: Harness) -> None:
    """The emulator variants echo the request body in their error message, as a careless
    server might; neither the error nor anything it is chained to may repeat it."""
    harness = failable
    assert harness.break_next_write is not None
    harness.break_next_write()
    with pytest.raises(SecretStoreError) as err:
        await harness.store.set("victim", VALUE)
    assert "'victim'" in str(err.value)  # names the secret
    for exc in _chain(err.value):
        assert VALUE not in str(exc)
        assert VALUE not in repr(exc)
        assert all(VALUE not in repr(v) for v in vars(exc).values())
    assert err.value.__cause__ is None
    assert err.value.__context__ is None
    assert VALUE not in repr(harness.store)


async def test_close_is_idempotent(store: SecretStore) -> None:
    await store.close()
    await store.close()


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is not None and all(e is not s for s in seen):
            seen.append(e)
            todo += [e.__cause__, e.__context__]
    return seen
