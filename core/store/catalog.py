"""The tables of the bridge and the one place their clients are built.

`open_tables(settings.storage, settings.table_prefix)` is called once by the composition root:
it builds one `TableServiceClient` (one connection pool, one credential) and a store per record
type on top of it; `memory_tables()` gives tests the same object over in-memory fakes.
Creating clients does no I/O; `create_tables()` does, and is idempotent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar, cast

from azure.data.tables.aio import TableServiceClient

from core.settings import StorageSettings
from core.store.azure_table import AzureTableStore
from core.store.memory_table import MemoryTableStore
from core.store.records import RECORD_TYPES, Counter, Run
from core.store.repository import Record, Repository
from core.store.runs import RunRepository
from core.store.table import TableStore

R = TypeVar("R", bound=Record)

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")


def table_name(prefix: str, record_type: type[Record]) -> str:
    """`prefix` + the record's table, e.g. "bridge" + "runs" -> "bridgeruns"."""
    name = prefix + record_type.table
    if not _TABLE_NAME.fullmatch(name):
        raise ValueError(f"table name {name!r} must be 3-63 letters or digits, starting with a letter")
    return name


class Tables:
    """A store per record type, plus typed repositories over them. Close it when done
    (`async with` or `await close()`): that closes the shared HTTP session and credential."""

    def __init__(
        self,
        stores: Mapping[type[Record], TableStore],
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._stores = dict(stores)
        self._close = close
        self._repos: dict[type[Record], Repository[Any]] = {}

    def store(self, record_type: type[Record]) -> TableStore:
        try:
            return self._stores[record_type]
        except KeyError:
            raise KeyError(f"no table for {record_type.__name__}") from None

    def repo(self, record_type: type[R]) -> Repository[R]:
        """The repository for `record_type` (one per type, reused). For `Run` it is the
        `RunRepository` (see `runs()`)."""
        repo = self._repos.get(record_type)
        if repo is None:
            repo = self._repos[record_type] = (
                RunRepository(self.store(Run))
                if record_type is Run
                else Repository(self.store(record_type), record_type)
            )
        return cast(Repository[R], repo)

    def runs(self) -> RunRepository:
        repo = self.repo(Run)
        assert isinstance(repo, RunRepository)  # repo() builds a RunRepository for Run
        return repo

    def counters(self) -> Repository[Counter]:
        return self.repo(Counter)

    async def create_tables(self) -> None:
        """Create every table that does not exist yet (safe to run on every start). All at once:
        one after another, a cold start waited for ~20 round trips (TARGETS P4)."""
        outcomes = await asyncio.gather(
            *(store.create_if_missing() for store in self._stores.values()), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def close(self) -> None:
        if self._close is not None:
            close, self._close = self._close, None
            await close()

    async def __aenter__(self) -> Tables:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def service_client(storage: StorageSettings) -> tuple[TableServiceClient, Callable[[], Awaitable[None]]]:
    """The Table service client for `storage` and a function that closes it (and its credential).

    A connection string (Azurite, key-based accounts) is used as is; otherwise the account's
    table endpoint with the managed identity named by `client_id`, or DefaultAzureCredential
    when there is none (a developer's az login)."""
    if storage.connection_string is not None:
        client = TableServiceClient.from_connection_string(storage.connection_string.get_secret_value())
        return client, client.close
    # Imported here: azure.identity is only needed (and only loaded) for identity-based access.
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    credential: ManagedIdentityCredential | DefaultAzureCredential = (
        ManagedIdentityCredential(client_id=storage.client_id)
        if storage.client_id
        else DefaultAzureCredential()
    )
    client = TableServiceClient(endpoint=storage.service_uri("table"), credential=credential)

    async def close() -> None:
        try:
            await client.close()
        finally:
            await credential.close()

    return client, close


def open_tables(storage: StorageSettings, prefix: str) -> Tables:
    """Stores for every record type over one shared service client (no I/O happens here)."""
    client, close = service_client(storage)
    stores = {
        record_type: AzureTableStore(client.get_table_client(table_name(prefix, record_type)))
        for record_type in RECORD_TYPES
    }
    return Tables(stores, close)


def memory_tables(prefix: str = "bridge") -> Tables:
    """The same tables as in-memory fakes, for unit tests and the demo."""
    return Tables({t: MemoryTableStore(table_name(prefix, t)) for t in RECORD_TYPES})
