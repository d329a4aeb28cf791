"""The runs repository: run records plus the housekeeping that keeps the table small."""

from __future__ import annotations

from datetime import datetime

from core.store.keys import inverted_timestamp
from core.store.records import Run
from core.store.repository import Repository
from core.store.table import TableStore

# Rows per delete batch: the service's limit for one entity-group transaction.
_BATCH = 100


def older_than_floor(cutoff: datetime) -> str:
    """The lowest row key of a run that started strictly before `cutoff`.

    Row keys start with the inverted start time, so runs started before `cutoff` have a larger
    inverted time: they are exactly the keys >= inverted(cutoff) + 1 (18 digits, then '|')."""
    return f"{int(inverted_timestamp(cutoff)) + 1:018d}"


class RunRepository(Repository[Run]):
    def __init__(self, store: TableStore) -> None:
        super().__init__(store, Run)

    async def delete_older_than(self, cutoff: datetime) -> int:
        """Delete every run (all partitions) that started before `cutoff`; returns how many.

        One cross-partition query with a row-key lower bound: the service returns only the old
        rows, whatever the number of tenants, and never decodes them. Deletes go in batches per
        partition while the query pages on (its continuation is past the deleted rows)."""
        deleted = 0
        partition: str | None = None
        batch: list[str] = []
        async for row in self.store.query(row_key_from=older_than_floor(cutoff)):
            if row.partition_key != partition or len(batch) == _BATCH:
                if partition is not None and batch:
                    deleted += await self.store.delete_rows(partition, batch)
                partition, batch = row.partition_key, []
            batch.append(row.row_key)
        if partition is not None and batch:
            deleted += await self.store.delete_rows(partition, batch)
        return deleted
