"""Typed repositories over a TableStore: records in, records out, etags carried along.

A record is a frozen pydantic model that names its table and computes its own keys from its
fields, so a record can never be stored under keys that disagree with its content. Its `etag`
is filled on every read and write; `save` sends it back (optimistic concurrency) and `mutate`
turns a pure function into a safe read-modify-write loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from core.errors import AlreadyExists, NotFound, StaleEtag
from core.store import codec
from core.store.table import Row, Scalar, TableStore, Write


class Record(BaseModel):
    """Base of every stored record. Subclasses set `table` and implement both key properties."""

    # extra="ignore": a row written by a newer or older version with other columns still loads.
    model_config = ConfigDict(frozen=True, extra="ignore")

    table: ClassVar[str]
    # Row metadata, not a column: excluded from dumps so it never leaks into stored data or APIs.
    etag: str | None = Field(default=None, exclude=True)

    @property
    def partition_key(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} must define partition_key")

    @property
    def row_key(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} must define row_key")


R = TypeVar("R", bound=Record)

# Back-off between read-modify-write attempts: jittered so colliding writers spread out,
# capped so a hot row costs milliseconds, not seconds.
_BACKOFF_BASE = 0.005
_BACKOFF_CAP = 0.1


class Repository(Generic[R]):
    """Records of one type in one table."""

    def __init__(self, store: TableStore, record_type: type[R]) -> None:
        self.store = store
        self.record_type = record_type

    def _record(self, row: Row) -> R:
        return codec.decode(self.record_type, row.data, etag=row.etag)

    async def get(self, partition_key: str, row_key: str) -> R | None:
        row = await self.store.get(partition_key, row_key)
        return None if row is None else self._record(row)

    async def insert(self, record: R) -> R:
        """Store a new record; AlreadyExists if its keys are taken (claims rely on this)."""
        row = await self.store.insert(record.partition_key, record.row_key, codec.encode(record))
        return record.model_copy(update={"etag": row.etag})

    async def save(self, record: R) -> R:
        """Update a record read from the store (StaleEtag if someone wrote it since, NotFound if it
        was deleted), or insert one that was never stored (it has no etag)."""
        if record.etag is None:
            return await self.insert(record)
        row = await self.store.update(record.partition_key, record.row_key, codec.encode(record), record.etag)
        return record.model_copy(update={"etag": row.etag})

    async def save_many(self, records: Sequence[R]) -> list[R]:
        """`save` for records of one partition in one transaction (at most 100): every one is
        written or none is, and the first failed condition's error is raised (StaleEtag,
        NotFound, AlreadyExists) — the caller falls back to saving them one by one."""
        if not records:
            return []
        partition = records[0].partition_key
        if any(r.partition_key != partition for r in records):
            raise ValueError("save_many: the records must share a partition")
        writes = [Write(r.row_key, codec.encode(r), r.etag) for r in records]
        rows = await self.store.write_many(partition, writes)
        return [r.model_copy(update={"etag": row.etag}) for r, row in zip(records, rows, strict=True)]

    async def upsert(self, record: R) -> R:
        """Write unconditionally: only for rows a single writer owns (last writer wins)."""
        row = await self.store.upsert(record.partition_key, record.row_key, codec.encode(record))
        return record.model_copy(update={"etag": row.etag})

    async def delete(self, record: R) -> None:
        """Delete with the record's etag when it has one (StaleEtag if it changed since)."""
        await self.store.delete(record.partition_key, record.row_key, etag=record.etag)

    async def list(
        self,
        partition_key: str | None = None,
        *,
        row_key_from: str | None = None,
        row_key_to: str | None = None,
        where: Mapping[str, Scalar] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[R]:
        """Records in key order (see TableStore.query for the arguments)."""
        rows = self.store.query(
            partition_key, row_key_from=row_key_from, row_key_to=row_key_to, where=where, limit=limit
        )
        async for row in rows:
            yield self._record(row)

    async def mutate(
        self,
        partition_key: str,
        row_key: str,
        fn: Callable[[R | None], R],
        *,
        attempts: int = 5,
    ) -> R:
        """Read the row, apply `fn` (None when the row does not exist), write the result with the
        etag that was read; when another writer got in between, re-read and re-apply. `fn` must be
        pure: it may run several times. Returning the current record unchanged writes nothing.

        Each lost race means another writer succeeded, so with N concurrent writers N attempts
        always suffice. Raises StaleEtag when every attempt lost."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)
                await asyncio.sleep(random.uniform(0, delay))  # noqa: S311 - jitter, not security
            current = await self.get(partition_key, row_key)
            wanted = fn(current)
            if (wanted.partition_key, wanted.row_key) != (partition_key, row_key):
                raise ValueError(f"mutate: {type(wanted).__name__} returned by fn has different keys")
            try:
                if current is None:
                    return await self.insert(wanted)
                if wanted.model_dump() == current.model_dump():
                    return current
                return await self.save(wanted.model_copy(update={"etag": current.etag}))
            except (StaleEtag, NotFound, AlreadyExists) as exc:
                # Someone updated, deleted or created the row after our read: start over.
                last = exc
        raise StaleEtag(
            f"table {self.store.name}: gave up after {attempts} attempts, the row kept changing"
        ) from last
