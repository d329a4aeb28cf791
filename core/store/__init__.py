"""Table Storage state: the TableStore port, its Azure adapter and in-memory fake, the codec,
typed repositories, the record types and the catalog that builds them."""

from __future__ import annotations

from core.store.catalog import Tables, memory_tables, open_tables, table_name
from core.store.repository import Record, Repository
from core.store.runs import RunRepository
from core.store.sequences import next_sequence
from core.store.table import Row, Scalar, TableStore

__all__ = [
    "Record",
    "Repository",
    "Row",
    "RunRepository",
    "Scalar",
    "TableStore",
    "Tables",
    "memory_tables",
    "next_sequence",
    "open_tables",
    "table_name",
]
