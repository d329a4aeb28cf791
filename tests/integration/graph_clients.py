"""Wiring the real `azure-identity` and `msgraph-sdk` clients to the Graph emulator (tests only;
the gateway in core/ builds its own production version).

- azure-identity: `authority=emulator.authority`, `disable_instance_discovery=True` (MSAL would
  otherwise ask login.microsoftonline.com about the authority) and `connection_verify=<CA path>`.
- msgraph-sdk: an httpx client trusting the emulator's CA, loaded with Graph's default middleware
  (retry, redirect, `/me` URL replacement...), the Azure auth provider allowed to send tokens to
  127.0.0.1, and `request_adapter.base_url = emulator.graph_url` (on the adapter, not on httpx).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from azure.core.credentials import TokenCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_abstractions.request_information import RequestInformation
from kiota_abstractions.request_option import RequestOption
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import ResponseHandlerOption, RetryHandlerOption
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.event import Event
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_request_adapter import options as graph_middleware_options
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory  # type: ignore[import-untyped]

from devtools.graph_emulator import App, GraphEmulator, Tenant, User

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def secret_credential(
    emulator: GraphEmulator, tenant_id: str, client_id: str, secret: str
) -> ClientSecretCredential:
    return ClientSecretCredential(
        tenant_id,
        client_id,
        secret,
        authority=emulator.authority,
        disable_instance_discovery=True,
        connection_verify=str(emulator.ca_cert),
    )


def graph_client(
    emulator: GraphEmulator, credential: AsyncTokenCredential | TokenCredential
) -> tuple[GraphServiceClient, httpx.AsyncClient]:
    """A GraphServiceClient on the emulator, and its httpx client (close it when done)."""
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=emulator.tls.client_context(), timeout=30.0),
        options=graph_middleware_options,
    )
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE], allowed_hosts=["127.0.0.1"])
    adapter = GraphRequestAdapter(auth, http)
    adapter.base_url = emulator.graph_url
    return GraphServiceClient(request_adapter=adapter), http


# -- a seeded emulator for one test -------------------------------------------------------------

SECRET = "s3cret-value"
BRIDGE_PERMISSIONS = (
    "Calendars.ReadWrite",
    "Mail.ReadWrite",
    "Mail.Send",
    "MailboxSettings.Read",
    "User.Read.All",
)


@dataclass
class Seed:
    """An emulator with one tenant, the bridge's app (client secret) and two users."""

    graph: GraphEmulator
    tenant: Tenant
    app: App
    adele: User
    megan: User
    credential: ClientSecretCredential
    client: GraphServiceClient
    http: httpx.AsyncClient

    def user_client(self, user: str) -> UserItemRequestBuilder:
        return self.client.users.by_user_id(user)


@contextlib.asynccontextmanager
async def seeded(directory: Path, permissions: tuple[str, ...] = BRIDGE_PERMISSIONS) -> AsyncIterator[Seed]:
    async with GraphEmulator(directory=directory) as graph:
        tenant = graph.add_tenant(name="Contoso", domain="contoso.onmicrosoft.com")
        app = graph.add_app(tenant.id, secrets=[SECRET], application_permissions=permissions)
        adele = graph.add_user(tenant.id, "adele@contoso.onmicrosoft.com", display_name="Adele Vance")
        megan = graph.add_user(tenant.id, "megan@contoso.onmicrosoft.com", display_name="Megan Bowen")
        credential = secret_credential(graph, tenant.id, app.client_id, SECRET)
        client, http = graph_client(graph, credential)
        try:
            yield Seed(graph, tenant, app, adele, megan, credential, client, http)
        finally:
            await http.aclose()
            await credential.close()


def event(
    subject: str,
    start: str,
    end: str,
    tz: str = "UTC",
    **fields: Any,
) -> Event:
    """An msgraph `Event` model; `fields` are extra model attributes (show_as, transaction_id...)."""
    model = Event(
        subject=subject,
        body=ItemBody(content_type=BodyType.Text, content=f"about {subject}"),
        start=DateTimeTimeZone(date_time=start, time_zone=tz),
        end=DateTimeTimeZone(date_time=end, time_zone=tz),
    )
    for name, value in fields.items():
        setattr(model, name, value)
    return model


def config(
    *,
    headers: dict[str, str] | None = None,
    native: bool = False,
    retries: int | None = None,
    query: Any = None,
) -> RequestConfiguration[Any]:
    """A request configuration: extra headers (Prefer, If-Match), the raw httpx response instead of
    a parsed model (`native`), a retry limit, query parameters."""
    options: list[RequestOption] = []
    if native:
        options.append(ResponseHandlerOption(NativeResponseHandler()))
    if retries is not None:
        options.append(RetryHandlerOption(max_retries=retries, should_retry=retries > 0))
    cfg: RequestConfiguration[Any] = RequestConfiguration(options=options or None, query_parameters=query)
    for name, value in (headers or {}).items():
        cfg.headers.add(name, value)
    return cfg


async def native(call: Awaitable[Any]) -> httpx.Response:
    """The raw response of an SDK call made with `config(native=True)`."""
    response = await call
    assert isinstance(response, httpx.Response)
    return response


async def get_bytes(client: GraphServiceClient, url: str) -> bytes:
    """GET a raw body (`.../$value`) through the SDK's request adapter (auth, middleware)."""
    info = RequestInformation(Method.GET, url)
    info.url = url
    # kiota types send_primitive_async loosely; for "bytes" it returns the body.
    data: Any = await client.request_adapter.send_primitive_async(info, "bytes", {})
    assert isinstance(data, bytes)
    return data
