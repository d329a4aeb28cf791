"""A read-through cache in front of any secret store.

Key Vault is a network call with its own throttling limits, and the bridge reads the same few
credentials for every Graph call; the cache keeps each value for `ttl_seconds`.

- Writes go through: `set`/`delete` write to the inner store first, then update the cache, so
  this instance reads its own writes at once. Other instances see them after at most the ttl.
- `invalidate(name)` drops one entry, e.g. when Graph answers 401 with a cached client secret:
  the next `get` re-reads it, so a rotated secret is picked up without a restart.
- Absent secrets are cached too, but only for `absent_ttl_seconds` (default: the smaller of
  10 s and the ttl). Caching them at all spares the vault a burst of identical misses (a fan-out
  of queue messages for a tenant that has no secret); keeping it short means a secret that
  another instance has just stored - a tenant being onboarded - is visible within seconds.
  Nothing else would ever invalidate a cached "absent": no 401 follows from a missing secret.
- Failures are not cached: the next `get` tries again.
- Single flight: concurrent `get`s of a name that is not cached share one inner call. A load
  that a `set`, `delete` or `invalidate` overtook does not write its (older) result to the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.secrets.port import SecretStore, store_key, validate_secret_name, validate_secret_value

ABSENT_TTL_SECONDS = 10.0


@dataclass(frozen=True)
class _Entry:
    value: str | None
    expires_at: float


class CachedSecretStore:
    """`SecretStore` that caches another one's `get` results (see the module doc)."""

    def __init__(
        self,
        inner: SecretStore,
        ttl_seconds: float,
        *,
        absent_ttl_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds < 0 or (absent_ttl_seconds is not None and absent_ttl_seconds < 0):
            raise ValueError("cache ttls must be >= 0 seconds")
        self.inner = inner
        self._ttl = float(ttl_seconds)
        self._absent_ttl = (
            min(self._ttl, ABSENT_TTL_SECONDS) if absent_ttl_seconds is None else absent_ttl_seconds
        )
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._loads: dict[str, asyncio.Task[str | None]] = {}

    async def get(self, name: str) -> str | None:
        key = store_key(validate_secret_name(name))
        entry = self._entries.get(key)
        if entry is not None and self._clock() < entry.expires_at:
            return entry.value
        load = self._loads.get(key)
        if load is None:
            # A task, not a bare coroutine: if the first caller is cancelled, the others still
            # get their answer. shield() keeps one caller's cancellation from cancelling it.
            load = asyncio.create_task(self._load(name, key), name=f"secret-load-{key}")
            load.add_done_callback(_consume_exception)
            self._loads[key] = load
        return await asyncio.shield(load)

    async def set(self, name: str, value: str) -> None:
        key = store_key(validate_secret_name(name))
        validate_secret_value(value)
        self._forget(key)
        try:
            await self.inner.set(name, value)
        finally:
            # Also on failure: the write may or may not have happened, so read it afresh next time.
            self._forget(key)
        self._remember(key, value)

    async def delete(self, name: str) -> None:
        key = store_key(validate_secret_name(name))
        self._forget(key)
        try:
            await self.inner.delete(name)
        finally:
            self._forget(key)
        self._remember(key, None)

    def invalidate(self, name: str) -> None:
        """Forget the cached value of `name`; the next `get` reads the inner store."""
        self._forget(store_key(validate_secret_name(name)))

    def clear(self) -> None:
        """Forget every cached value."""
        self._entries.clear()
        self._loads.clear()

    async def close(self) -> None:
        self.clear()  # also drops the values from memory
        await self.inner.close()

    def __repr__(self) -> str:
        return f"CachedSecretStore({self.inner!r}, ttl={self._ttl:g}s, cached={len(self._entries)})"

    async def _load(self, name: str, key: str) -> str | None:
        me = asyncio.current_task()
        try:
            value = await self.inner.get(name)
        except BaseException:
            if self._loads.get(key) is me:
                del self._loads[key]
            raise
        if self._loads.get(key) is me:  # not overtaken by a set/delete/invalidate meanwhile
            del self._loads[key]
            self._remember(key, value)
        return value

    def _remember(self, key: str, value: str | None) -> None:
        ttl = self._ttl if value is not None else self._absent_ttl
        if ttl > 0:
            self._entries[key] = _Entry(value, self._clock() + ttl)
        else:
            self._entries.pop(key, None)

    def _forget(self, key: str) -> None:
        self._entries.pop(key, None)
        # Detach (don't cancel) a load in flight: its callers still get an answer, but it will
        # not write its possibly older value over ours.
        self._loads.pop(key, None)


def _consume_exception(task: asyncio.Task[str | None]) -> None:
    # If every caller was cancelled, nobody retrieves a failed load's exception and asyncio
    # would log "Task exception was never retrieved"; the next get simply tries again.
    if not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()
