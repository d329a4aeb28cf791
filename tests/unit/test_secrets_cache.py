"""The secrets cache: ttl, write-through, invalidation and single flight, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from core.secrets import CachedSecretStore, InMemorySecretStore, SecretStoreUnavailable
from core.secrets.cache import ABSENT_TTL_SECONDS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingStore(InMemorySecretStore):
    """The fake, counting reads; `gate` (when set) holds every read until it opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.gate: asyncio.Event | None = None
        self.fail_reads = 0

    async def get(self, name: str) -> str | None:
        self.gets += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_reads:
            self.fail_reads -= 1
            raise SecretStoreUnavailable("Key Vault could not read secret 'x': HTTP 503")
        return await super().get(name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def inner() -> CountingStore:
    return CountingStore()


@pytest.fixture
def cache(inner: CountingStore, clock: Clock) -> CachedSecretStore:
    return CachedSecretStore(inner, ttl_seconds=300, clock=clock)


async def _gets(inner: CountingStore, cache: CachedSecretStore, name: str) -> int:
    before = inner.gets
    await cache.get(name)
    return inner.gets - before


async def test_given_a_cached_value_when_read_within_ttl_then_inner_is_not_called(
    inner: CountingStore, cache: CachedSecretStore, clock: Clock
) -> None:
    await inner.set("client-secret", "v1")
    assert await cache.get("client-secret") == "v1"
    clock.advance(299.9)
    assert await _gets(inner, cache, "client-secret") == 0
    assert await cache.get("CLIENT-SECRET") == "v1"  # same secret, same cache entry
    assert inner.gets == 1


async def test_given_a_cached_value_when_ttl_passes_then_inner_is_read_again(
    inner: CountingStore, cache: CachedSecretStore, clock: Clock
) -> None:
    await inner.set("client-secret", "v1")
    await cache.get("client-secret")
    await inner.set("client-secret", "rotated elsewhere")
    clock.advance(300)
    assert await cache.get("client-secret") == "rotated elsewhere"
    assert inner.gets == 2


async def test_absent_secrets_are_cached_only_briefly(
    inner: CountingStore, cache: CachedSecretStore, clock: Clock
) -> None:
    """A burst of misses costs one read, yet a secret another instance stores is seen within
    ABSENT_TTL_SECONDS (nothing else would invalidate a cached absence)."""
    assert await cache.get("onboarding") is None
    assert await _gets(inner, cache, "onboarding") == 0
    await inner.set("onboarding", "stored by another instance")
    clock.advance(ABSENT_TTL_SECONDS)
    assert await cache.get("onboarding") == "stored by another instance"
    assert inner.gets == 2


async def test_set_writes_through_and_is_read_back_without_calling_inner(
    inner: CountingStore, cache: CachedSecretStore
) -> None:
    await cache.get("client-secret")  # caches "absent"
    await cache.set("client-secret", "v2")
    assert await inner.get("client-secret") == "v2"  # written through
    reads = inner.gets
    assert await cache.get("client-secret") == "v2"
    assert inner.gets == reads


async def test_delete_writes_through_and_the_cache_forgets_the_value(
    inner: CountingStore, cache: CachedSecretStore
) -> None:
    await cache.set("client-secret", "v1")
    await cache.delete("client-secret")
    assert await inner.get("client-secret") is None
    reads = inner.gets
    assert await cache.get("client-secret") is None
    assert inner.gets == reads


async def test_invalidate_forces_the_next_get_to_reload(
    inner: CountingStore, cache: CachedSecretStore
) -> None:
    """What the Graph client does on 401: a secret rotated in Key Vault is picked up at once."""
    await inner.set("client-secret", "old")
    assert await cache.get("client-secret") == "old"
    await inner.set("client-secret", "rotated")
    assert await cache.get("client-secret") == "old"
    cache.invalidate("Client-Secret")
    assert await cache.get("client-secret") == "rotated"


async def test_concurrent_gets_of_an_uncached_name_make_one_inner_call(
    inner: CountingStore, cache: CachedSecretStore
) -> None:
    await inner.set("client-secret", "v1")
    inner.gate = asyncio.Event()
    readers = asyncio.gather(*(cache.get("client-secret") for _ in range(20)))
    await asyncio.sleep(0)  # let every reader reach the cache
    inner.gate.set()
    assert await readers == ["v1"] * 20
    assert inner.gets == 1


async def test_single_flight_shares_a_failure_and_does_not_cache_it(
    inner: CountingStore, cache: CachedSecretStore
) -> None:
    await inner.set("client-secret", "v1")
    inner.gate = asyncio.Event()
    inner.fail_reads = 1
    readers = asyncio.gather(*(cache.get("client-secret") for _ in range(5)), return_exceptions=True)
    await asyncio.sleep(0)
    inner.gate.set()
    results = await readers
    assert all(isinstance(r, SecretStoreUnavailable) for r in results)
    assert inner.gets == 1
    assert await cache.get("client-secret") == "v1"  # the failure was not cached
    assert inner.gets == 2


async def test_a_cancelled_reader_does_not_cancel_the_others(
    inner: CountingStore, cache: CachedSecretStore
) -> None:
    await inner.set("client-secret", "v1")
    inner.gate = asyncio.Event()
    first = asyncio.ensure_future(cache.get("client-secret"))
    second = asyncio.ensure_future(cache.get("client-secret"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    inner.gate.set()
    assert await second == "v1"
    assert first.cancelled()
    assert inner.gets == 1


async def test_a_set_during_a_slow_read_is_not_overwritten_by_the_older_value(
    inner: CountingStore, cache: CachedSecretStore
) -> None:
    await inner.set("client-secret", "old")
    inner.gate = asyncio.Event()
    slow_read = asyncio.ensure_future(cache.get("client-secret"))
    await asyncio.sleep(0)  # the read is in flight, holding "old" once released
    await cache.set("client-secret", "new")
    inner.gate.set()
    await slow_read  # it may answer "old" (it started first) ...
    inner.gate = None
    assert await cache.get("client-secret") == "new"  # ... but must not have cached it


async def test_a_failed_write_leaves_nothing_stale_in_the_cache(
    inner: CountingStore, cache: CachedSecretStore
) -> None:
    await cache.set("client-secret", "v1")

    async def failing_set(name: str, value: str) -> None:
        raise SecretStoreUnavailable("Key Vault could not write secret 'client-secret': HTTP 503")

    inner.set = failing_set  # type: ignore[method-assign]
    with pytest.raises(SecretStoreUnavailable):
        await cache.set("client-secret", "v2")
    reads = inner.gets
    assert await cache.get("client-secret") == "v1"  # re-read from the store, not assumed
    assert inner.gets == reads + 1


async def test_a_zero_ttl_never_serves_from_cache_but_still_single_flights(
    inner: CountingStore, clock: Clock
) -> None:
    cache = CachedSecretStore(inner, ttl_seconds=0, clock=clock)
    await inner.set("client-secret", "v1")
    await cache.get("client-secret")
    await cache.get("client-secret")
    assert inner.gets == 2
    inner.gate = asyncio.Event()
    readers = asyncio.gather(cache.get("client-secret"), cache.get("client-secret"))
    await asyncio.sleep(0)
    inner.gate.set()
    assert list(await readers) == ["v1", "v1"]
    assert inner.gets == 3


async def test_close_drops_cached_values_and_closes_inner(
    inner: CountingStore, cache: CachedSecretStore
) -> None:
    await cache.set("client-secret", "top secret value")
    assert "top secret value" not in repr(cache)
    await cache.close()
    assert "cached=0" in repr(cache)


def test_negative_ttls_are_refused(inner: CountingStore) -> None:
    with pytest.raises(ValueError, match="ttl"):
        CachedSecretStore(inner, ttl_seconds=-1)
    with pytest.raises(ValueError, match="ttl"):
        CachedSecretStore(inner, ttl_seconds=10, absent_ttl_seconds=-1)
