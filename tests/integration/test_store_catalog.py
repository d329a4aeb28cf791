"""The catalog against Azurite: one service client for every table, idempotent creation,
and a repository that works end to end through it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.data.tables.aio import TableServiceClient
from pydantic import SecretStr

from core.errors import StoreError, StoreUnavailable
from core.settings import StorageSettings, azurite_connection_string
from core.store.azure_table import AzureTableStore
from core.store.catalog import open_tables
from core.store.records import RECORD_TYPES, Run, Tenant

pytestmark = pytest.mark.integration


async def test_given_connection_string_settings_when_tables_are_created_twice_then_both_succeed(
    storage_connection_string: str, unique_name: str
):
    storage = StorageSettings(connection_string=SecretStr(storage_connection_string))
    async with open_tables(storage, unique_name) as tables:
        await tables.create_tables()
        await tables.create_tables()  # idempotent: every start may run it
        tenants = tables.repo(Tenant)
        saved = await tenants.insert(Tenant(tenant_id="t1", display_name="Contoso"))
        assert await tenants.get(*Tenant.key("t1")) == saved
        runs = tables.runs()
        await runs.insert(Run(run_id="r", function="f", started_at=datetime(2020, 1, 1, tzinfo=UTC)))
        assert await runs.delete_older_than(datetime(2021, 1, 1, tzinfo=UTC)) == 1
        for record_type in RECORD_TYPES:
            assert tables.store(record_type).name == unique_name + record_type.table


async def test_given_tables_not_created_then_reads_fail_with_a_named_error_not_none(
    storage_connection_string: str, unique_name: str
):
    storage = StorageSettings(connection_string=SecretStr(storage_connection_string))
    async with open_tables(storage, unique_name) as tables:
        with pytest.raises(StoreError, match="does not exist"):
            await tables.repo(Tenant).get(*Tenant.key("t1"))


async def test_given_nothing_listening_then_store_unavailable_names_the_table(unique_name: str):
    # Port 9 (discard) on loopback: nothing listens, so the connection is refused at once;
    # no retries, so the test does not wait out the SDK's back-off.
    connection_string = azurite_connection_string(ports={"Table": 9})
    async with TableServiceClient.from_connection_string(connection_string, retry_total=0) as service:
        store = AzureTableStore(service.get_table_client(unique_name))
        with pytest.raises(StoreUnavailable, match=f"table {unique_name}: get failed") as caught:
            await store.get("p", "r")
        assert "could not be reached" in str(caught.value)
