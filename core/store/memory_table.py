"""An in-memory TableStore with the real service's semantics: etags that change on every write,
(PartitionKey, RowKey) order by UTF-16 code units, the same validation and the same errors.

Every operation yields to the event loop first, as a network call would, so concurrent
coroutines interleave between a read and a write exactly where they can against the service;
without that, read-modify-write races could never show up in tests that use the fake.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

from core.errors import AlreadyExists, NotFound, StaleEtag
from core.store.limits import check_key, check_range, check_writes, normalise_columns, normalise_where
from core.store.table import Row, Scalar, Write

_etags = itertools.count(1)


def _order(key: str) -> bytes:
    """Sort key matching the service: it compares UTF-16 code units, so a character outside the
    BMP (a surrogate pair) sorts below U+E000..U+FFFF, unlike Python's code-point order."""
    return key.encode("utf-16-be", "surrogatepass")


def _kind(value: Scalar) -> str:
    """The comparison class of a value: Table Storage never matches a bool against a number or a
    string against a datetime, while Python's == would (True == 1)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, datetime):
        return "datetime"
    return type(value).__name__


def _matches(data: Mapping[str, Scalar], where: Mapping[str, Scalar]) -> bool:
    for name, wanted in where.items():
        if name not in data:
            return False
        have = data[name]
        if _kind(have) != _kind(wanted) or have != wanted:
            return False
    return True


class MemoryTableStore:
    """The fake. `name` is only used in messages, like the real table's name."""

    def __init__(self, name: str = "memory") -> None:
        self._name = name
        self._rows: dict[tuple[str, str], Row] = {}

    @property
    def name(self) -> str:
        return self._name

    def _write(self, partition_key: str, row_key: str, data: dict[str, Scalar]) -> Row:
        row = Row(partition_key, row_key, MappingProxyType(data), f'W/"memory-{next(_etags)}"')
        self._rows[(partition_key, row_key)] = row
        return row

    async def create_if_missing(self) -> None:
        await asyncio.sleep(0)

    async def get(self, partition_key: str, row_key: str) -> Row | None:
        check_key("PartitionKey", partition_key)
        check_key("RowKey", row_key)
        await asyncio.sleep(0)
        return self._rows.get((partition_key, row_key))

    async def insert(self, partition_key: str, row_key: str, data: Mapping[str, Any]) -> Row:
        columns = normalise_columns(partition_key, row_key, data)
        await asyncio.sleep(0)
        if (partition_key, row_key) in self._rows:
            raise AlreadyExists(f"table {self._name}: the row already exists")
        return self._write(partition_key, row_key, columns)

    async def update(self, partition_key: str, row_key: str, data: Mapping[str, Any], etag: str) -> Row:
        columns = normalise_columns(partition_key, row_key, data)
        await asyncio.sleep(0)
        current = self._rows.get((partition_key, row_key))
        if current is None:
            raise NotFound(f"table {self._name}: the row to update does not exist")
        if current.etag != etag:
            raise StaleEtag(f"table {self._name}: the row changed since it was read (stale etag)")
        return self._write(partition_key, row_key, columns)

    async def upsert(self, partition_key: str, row_key: str, data: Mapping[str, Any]) -> Row:
        columns = normalise_columns(partition_key, row_key, data)
        await asyncio.sleep(0)
        return self._write(partition_key, row_key, columns)

    async def delete(self, partition_key: str, row_key: str, etag: str | None = None) -> None:
        check_key("PartitionKey", partition_key)
        check_key("RowKey", row_key)
        await asyncio.sleep(0)
        current = self._rows.get((partition_key, row_key))
        if etag is not None:
            if current is None:
                raise NotFound(f"table {self._name}: the row to delete does not exist")
            if current.etag != etag:
                raise StaleEtag(f"table {self._name}: the row changed since it was read (stale etag)")
        self._rows.pop((partition_key, row_key), None)

    async def write_many(self, partition_key: str, writes: Sequence[Write]) -> list[Row]:
        columns = check_writes(partition_key, writes)
        await asyncio.sleep(0)
        for index, write in enumerate(writes):  # every condition first: all or nothing
            current = self._rows.get((partition_key, write.row_key))
            where = f"table {self._name}: write many (write {index})"
            if write.etag is None and current is not None:
                raise AlreadyExists(f"{where}: the row already exists")
            if write.etag is not None and current is None:
                raise NotFound(f"{where}: the row does not exist")
            if write.etag is not None and current is not None and current.etag != write.etag:
                raise StaleEtag(f"{where}: the row changed since it was read (stale etag)")
        pairs = zip(writes, columns, strict=True)
        return [self._write(partition_key, write.row_key, data) for write, data in pairs]

    async def query(
        self,
        partition_key: str | None = None,
        *,
        row_key_from: str | None = None,
        row_key_to: str | None = None,
        where: Mapping[str, Scalar] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Row]:
        if partition_key is not None:
            check_key("PartitionKey", partition_key)
        check_range(row_key_from, row_key_to, limit)
        conditions = normalise_where(where)
        await asyncio.sleep(0)
        low = None if row_key_from is None else _order(row_key_from)
        high = None if row_key_to is None else _order(row_key_to)
        # A snapshot, like the service's pages: writes during iteration don't disturb it.
        snapshot = sorted(self._rows.values(), key=lambda r: (_order(r.partition_key), _order(r.row_key)))
        returned = 0
        for row in snapshot:
            if partition_key is not None and row.partition_key != partition_key:
                continue
            order = _order(row.row_key)
            if (low is not None and order < low) or (high is not None and order >= high):
                continue
            if not _matches(row.data, conditions):
                continue
            yield row
            returned += 1
            if limit is not None and returned >= limit:
                return

    async def delete_rows(self, partition_key: str, row_keys: Sequence[str]) -> int:
        check_key("PartitionKey", partition_key)
        for row_key in row_keys:
            check_key("RowKey", row_key)
        await asyncio.sleep(0)
        deleted = 0
        for row_key in dict.fromkeys(row_keys):
            if self._rows.pop((partition_key, row_key), None) is not None:
                deleted += 1
        return deleted

    async def delete_partition(self, partition_key: str) -> int:
        check_key("PartitionKey", partition_key)
        keys = [rk for (pk, rk) in list(self._rows) if pk == partition_key]
        return await self.delete_rows(partition_key, keys) if keys else 0
