"""The Table Storage port: one table, rows addressed by (PartitionKey, RowKey), written with etags.

`AzureTableStore` (azure_table.py) and `MemoryTableStore` (memory_table.py) implement it and
pass the same contract suite (tests/contract/test_table_contract.py). Callers above this layer
(repositories) never see SDK types, HTTP statuses or Edm types: only `Row`, plain Python
scalars and the errors in `core.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

# The service accepts at most 100 operations per entity-group transaction.
MAX_TRANSACTION = 100

# What a column may hold. Table Storage has no null: a None value is simply not stored.
Scalar = str | int | float | bool | datetime | bytes


@dataclass(frozen=True, slots=True)
class Row:
    """One stored entity. `data` holds the columns (never the keys), as plain Python values:
    ints are ints whatever their Edm width, datetimes are aware UTC `datetime`s."""

    partition_key: str
    row_key: str
    data: Mapping[str, Any]
    etag: str


@dataclass(frozen=True, slots=True)
class Write:
    """One conditional write of `TableStore.write_many`: an insert (`etag` None: the row must
    not exist) or a replace of a row that must still have `etag`."""

    row_key: str
    data: Mapping[str, Any]
    etag: str | None = None


class TableStore(Protocol):
    """One table. Every method validates keys and columns before any I/O (ValueError/TypeError),
    so an invalid key fails identically against the fake and the real service."""

    @property
    def name(self) -> str: ...

    async def create_if_missing(self) -> None:
        """Create the table; a no-op when it exists."""
        ...

    async def get(self, partition_key: str, row_key: str) -> Row | None: ...

    async def insert(self, partition_key: str, row_key: str, data: Mapping[str, Any]) -> Row:
        """Raises AlreadyExists when the row exists."""
        ...

    async def update(self, partition_key: str, row_key: str, data: Mapping[str, Any], etag: str) -> Row:
        """Replace the row's columns if its etag still equals `etag`.
        Raises StaleEtag when someone wrote it since, NotFound when it is gone."""
        ...

    async def upsert(self, partition_key: str, row_key: str, data: Mapping[str, Any]) -> Row:
        """Insert or replace, unconditionally (last writer wins: use only for data one writer owns)."""
        ...

    async def delete(self, partition_key: str, row_key: str, etag: str | None = None) -> None:
        """Without `etag`: delete if present (a missing row is a no-op).
        With `etag`: StaleEtag if it no longer matches, NotFound if the row is gone."""
        ...

    def query(
        self,
        partition_key: str | None = None,
        *,
        row_key_from: str | None = None,
        row_key_to: str | None = None,
        where: Mapping[str, Scalar] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Row]:
        """Rows in (PartitionKey, RowKey) order. `row_key_from` is inclusive, `row_key_to`
        exclusive (half-open, so adjacent ranges never overlap); `where` is column equality."""
        ...

    async def write_many(self, partition_key: str, writes: Sequence[Write]) -> list[Row]:
        """One entity-group transaction: at most `MAX_TRANSACTION` writes to distinct rows of
        one partition, every one applied or none. When a write's condition fails nothing is
        written and its error is raised (AlreadyExists, StaleEtag or NotFound). Returns the
        written rows, in order, with their new etags."""
        ...

    async def delete_rows(self, partition_key: str, row_keys: Sequence[str]) -> int:
        """Unconditionally delete rows of one partition (batched); missing rows are skipped.
        Returns how many rows were actually deleted."""
        ...

    async def delete_partition(self, partition_key: str) -> int:
        """Delete every row of a partition; returns how many were deleted."""
        ...
