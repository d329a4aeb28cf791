"""The TableStore adapter over `azure.data.tables.aio.TableClient`.

It owns three translations the rest of the code must never see: Python values <-> Edm types
(ints beyond 32 bits go out as Edm.Int64 and come back as plain ints), SDK exceptions -> the
named errors of `core.errors`, and query arguments -> an OData filter whose values are
substituted by the SDK's `parameters` mechanism (never concatenated).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any, NoReturn

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineResponse
from azure.data.tables import EdmType, EntityProperty, TableEntity, TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from core.errors import AlreadyExists, NotFound, StaleEtag, StoreError, StoreUnavailable
from core.store.limits import (
    check_key,
    check_range,
    check_writes,
    normalise_columns,
    normalise_value,
    normalise_where,
)
from core.store.table import MAX_TRANSACTION, Row, Scalar, Write

_BATCH = MAX_TRANSACTION
# The service returns at most 1000 entities per page.
_MAX_PAGE = 1000


def _to_entity(partition_key: str, row_key: str, columns: Mapping[str, Scalar]) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": row_key}
    for name, value in columns.items():
        if isinstance(value, int) and not isinstance(value, bool):
            # Every int is an Edm.Int64, whatever its size. The SDK would send small ints as
            # Int32 (and refuse big ones), so a column's type would depend on its value, and an
            # equality filter with a big value over rows holding small ones mixes Int32 and
            # Int64 (Azurite answers 500). One width keeps column types and filters consistent.
            entity[name] = (value, EdmType.INT64)
        else:
            entity[name] = value
    return entity


def _from_entity(entity: TableEntity) -> Row:
    data: dict[str, Any] = {}
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            continue
        if isinstance(value, EntityProperty):
            # Int64 (and any Edm type the SDK has no Python type for) arrives wrapped.
            value = int(value.value) if value.edm_type == EdmType.INT64 else value.value
        elif isinstance(value, uuid.UUID):
            value = str(value)  # an Edm.Guid column written by another tool
        if isinstance(value, datetime):
            value = normalise_value(name, value)  # TablesEntityDatetime -> plain aware UTC datetime
        data[name] = value
    etag = entity.metadata.get("etag")
    if not etag:
        raise StoreError("the store returned a row without an etag")
    return Row(entity["PartitionKey"], entity["RowKey"], MappingProxyType(data), etag)


def _error_code(exc: HttpResponseError) -> str:
    """The service's error code as text (the SDK gives an enum member or a plain string)."""
    code = getattr(exc, "error_code", None)  # set by the Tables SDK, absent from the base type
    return str(getattr(code, "value", code) or "")


def _odata_int(value: int) -> str:
    """An Int64 literal, matching how every int column is written. Written here rather than by
    the SDK, whose substitution would send small ints as Int32 (and 2**31..2**32-1 as an
    overflowing Int32). An int renders as digits and a sign only: inlining it cannot inject."""
    return f"{value}L"


class AzureTableStore:
    """One table. The `TableClient` comes from a shared `TableServiceClient` (see catalog.py),
    so every table reuses one connection pool; closing is the service client's job."""

    def __init__(self, client: TableClient) -> None:
        self._client = client

    @property
    def name(self) -> str:
        return self._client.table_name

    def _fail(self, exc: AzureError, operation: str) -> NoReturn:
        """Raise the named error for an SDK failure. The message has the table, the operation and
        the status, never entity content (the SDK's own message may quote the request)."""
        where = f"table {self.name}: {operation}"
        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            status = exc.status_code
            code = _error_code(exc)
            detail = f"{where} failed with status {status}" + (f" ({code})" if code else "")
            if status == 412:
                raise StaleEtag(f"{where}: the row changed since it was read (stale etag)") from exc
            if status == 404 and code == "TableNotFound":
                raise StoreError(f"{where}: the table does not exist (run create_tables first)") from exc
            if status == 404:
                raise NotFound(f"{where}: the row does not exist") from exc
            if status == 409 and operation == "insert":
                raise AlreadyExists(f"{where}: the row already exists") from exc
            if status in (401, 403):
                raise StoreError(f"{detail}: access denied (check the identity's role)") from exc
            if status >= 500 or status in (408, 429):
                raise StoreUnavailable(detail) from exc
            raise StoreError(detail) from exc
        if isinstance(exc, ServiceRequestError | ServiceResponseError | ClientAuthenticationError):
            # No HTTP answer at all: connection refused, reset, timed out, or no token.
            reason = type(exc).__name__
            raise StoreUnavailable(f"{where} failed: {reason}, the store could not be reached") from exc
        raise StoreError(f"{where} failed: {type(exc).__name__}") from exc

    async def create_if_missing(self) -> None:
        try:
            await self._client.create_table()
        except HttpResponseError as exc:
            if exc.status_code == 409:  # TableAlreadyExists: creating is idempotent on purpose
                return
            self._fail(exc, "create table")
        except AzureError as exc:
            self._fail(exc, "create table")

    async def get(self, partition_key: str, row_key: str) -> Row | None:
        check_key("PartitionKey", partition_key)
        check_key("RowKey", row_key)
        try:
            entity = await self._client.get_entity(partition_key, row_key)
        except HttpResponseError as exc:
            if exc.status_code == 404 and _error_code(exc) != "TableNotFound":
                return None
            self._fail(exc, "get")
        except AzureError as exc:
            self._fail(exc, "get")
        return _from_entity(entity)

    async def insert(self, partition_key: str, row_key: str, data: Mapping[str, Any]) -> Row:
        columns = normalise_columns(partition_key, row_key, data)
        try:
            meta = await self._client.create_entity(_to_entity(partition_key, row_key, columns))
        except AzureError as exc:
            self._fail(exc, "insert")
        return Row(partition_key, row_key, MappingProxyType(columns), meta["etag"])

    async def update(self, partition_key: str, row_key: str, data: Mapping[str, Any], etag: str) -> Row:
        columns = normalise_columns(partition_key, row_key, data)
        try:
            meta = await self._client.update_entity(
                _to_entity(partition_key, row_key, columns),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except AzureError as exc:
            self._fail(exc, "update")
        return Row(partition_key, row_key, MappingProxyType(columns), meta["etag"])

    async def upsert(self, partition_key: str, row_key: str, data: Mapping[str, Any]) -> Row:
        columns = normalise_columns(partition_key, row_key, data)
        try:
            meta = await self._client.upsert_entity(
                _to_entity(partition_key, row_key, columns), mode=UpdateMode.REPLACE
            )
        except AzureError as exc:
            self._fail(exc, "upsert")
        return Row(partition_key, row_key, MappingProxyType(columns), meta["etag"])

    async def delete(self, partition_key: str, row_key: str, etag: str | None = None) -> None:
        check_key("PartitionKey", partition_key)
        check_key("RowKey", row_key)
        statuses = await self._delete(partition_key, row_key, etag)
        # The SDK swallows a 404 on delete; with an etag the caller expected the row to be there.
        if etag is not None and 404 in statuses:
            raise NotFound(f"table {self.name}: delete: the row does not exist")

    async def _delete(self, partition_key: str, row_key: str, etag: str | None) -> list[int]:
        """Delete one row; returns the HTTP statuses seen (the SDK hides a 404 otherwise)."""
        statuses: list[int] = []

        def record(response: PipelineResponse[Any, Any]) -> None:
            statuses.append(response.http_response.status_code)

        conditions: dict[str, Any] = (
            {} if etag is None else {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        )
        try:
            await self._client.delete_entity(partition_key, row_key, raw_response_hook=record, **conditions)
        except AzureError as exc:
            self._fail(exc, "delete")
        return statuses

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
        clauses: list[str] = []
        parameters: dict[str, Any] = {}
        # Each placeholder is its own space-separated word: that is how the SDK finds them.
        if partition_key is not None:
            clauses.append("PartitionKey eq @pk")
            parameters["pk"] = partition_key
        if row_key_from is not None:
            clauses.append("RowKey ge @rkfrom")
            parameters["rkfrom"] = row_key_from
        if row_key_to is not None:
            clauses.append("RowKey lt @rkto")
            parameters["rkto"] = row_key_to
        for index, (column, value) in enumerate(conditions.items()):
            # `column` passed check_column_name: letters, digits and '_' only.
            if isinstance(value, int) and not isinstance(value, bool):
                clauses.append(f"{column} eq {_odata_int(value)}")
            else:
                clauses.append(f"{column} eq @w{index}")
                parameters[f"w{index}"] = value
        page = min(limit, _MAX_PAGE) if limit is not None else None
        try:
            if clauses:
                entities = self._client.query_entities(
                    " and ".join(clauses), parameters=parameters, results_per_page=page
                )
            else:
                entities = self._client.list_entities(results_per_page=page)
            returned = 0
            async for entity in entities:
                yield _from_entity(entity)
                returned += 1
                if limit is not None and returned >= limit:
                    return
        except AzureError as exc:
            self._fail(exc, "query")

    async def write_many(self, partition_key: str, writes: Sequence[Write]) -> list[Row]:
        columns = check_writes(partition_key, writes)
        operations: list[Any] = []
        for write, data in zip(writes, columns, strict=True):
            entity = _to_entity(partition_key, write.row_key, data)
            if write.etag is None:
                operations.append(("create", entity))
            else:
                conditions = {
                    "mode": UpdateMode.REPLACE,
                    "etag": write.etag,
                    "match_condition": MatchConditions.IfNotModified,
                }
                operations.append(("update", entity, conditions))
        if not operations:
            return []
        try:
            results = await self._client.submit_transaction(operations)
        except TableTransactionError as exc:
            where = f"table {self.name}: write many (write {exc.index})"
            if exc.status_code == 412:
                raise StaleEtag(f"{where}: the row changed since it was read (stale etag)") from exc
            if exc.status_code == 409 and _error_code(exc) == "EntityAlreadyExists":
                raise AlreadyExists(f"{where}: the row already exists") from exc
            if exc.status_code == 404 and _error_code(exc) != "TableNotFound":
                raise NotFound(f"{where}: the row does not exist") from exc
            self._fail(exc, "write many")
        except AzureError as exc:
            self._fail(exc, "write many")
        return [
            Row(partition_key, write.row_key, MappingProxyType(data), result["etag"])
            for write, data, result in zip(writes, columns, results, strict=True)
        ]

    async def delete_rows(self, partition_key: str, row_keys: Sequence[str]) -> int:
        check_key("PartitionKey", partition_key)
        for row_key in row_keys:
            check_key("RowKey", row_key)
        unique = list(dict.fromkeys(row_keys))  # a transaction may touch a row only once
        deleted = 0
        for start in range(0, len(unique), _BATCH):
            chunk = unique[start : start + _BATCH]
            try:
                await self._client.submit_transaction(
                    [("delete", {"PartitionKey": partition_key, "RowKey": rk}) for rk in chunk]
                )
                deleted += len(chunk)
                continue
            except TableTransactionError as exc:
                if exc.status_code != 404:
                    self._fail(exc, "delete rows")
            except AzureError as exc:
                self._fail(exc, "delete rows")
            # A row of the batch was already gone (another cleaner got there first) and a
            # transaction is all-or-nothing: fall back to one delete per row.
            for row_key in chunk:
                if 404 not in await self._delete(partition_key, row_key, None):
                    deleted += 1
        return deleted

    async def delete_partition(self, partition_key: str) -> int:
        check_key("PartitionKey", partition_key)
        deleted = 0
        chunk: list[str] = []
        async for row in self.query(partition_key):
            chunk.append(row.row_key)
            if len(chunk) == _BATCH:
                deleted += await self.delete_rows(partition_key, chunk)
                chunk = []
        if chunk:
            deleted += await self.delete_rows(partition_key, chunk)
        return deleted
