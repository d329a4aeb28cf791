"""The catalog builds clients without I/O: identity-based access picks the right endpoint and
credential, and closing releases both."""

from __future__ import annotations

from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

from core.settings import StorageSettings
from core.store.catalog import open_tables, service_client
from core.store.records import Tenant


async def test_given_an_account_and_client_id_then_the_managed_identity_and_table_endpoint_are_used():
    storage = StorageSettings(account_name="acct", client_id="00000000-0000-0000-0000-000000000001")
    client, close = service_client(storage)
    try:
        assert client.url.startswith("https://acct.table.core.windows.net")
        assert isinstance(client.credential, ManagedIdentityCredential)
    finally:
        await close()


async def test_given_no_client_id_then_the_default_credential_chain_is_used():
    client, close = service_client(StorageSettings(account_name="acct"))
    try:
        assert isinstance(client.credential, DefaultAzureCredential)
    finally:
        await close()


async def test_given_identity_settings_then_tables_are_named_with_the_prefix_and_close_cleanly():
    tables = open_tables(StorageSettings(account_name="acct", client_id="id"), "bridge")
    assert tables.store(Tenant).name == "bridgetenants"
    await tables.close()
    await tables.close()  # closing twice is harmless
