"""Builds msgraph-sdk's request adapter for one credential: the SDK's Azure Identity auth
provider, its middleware, an httpx client with the configured CA trust, and the base URL.

msgraph-sdk and kiota are imported inside `connect`, not at module import: importing them
costs ~0.2-0.3 s of cold start (TARGETS P4), which an invocation that never calls Graph should
not pay. No SDK *model* module is imported at all (see `parse.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from core.graph.errors import BadRequest
from core.settings import is_loopback_host

if TYPE_CHECKING:
    import ssl

    import httpx
    from azure.core.credentials_async import AsyncTokenCredential
    from kiota_abstractions.request_adapter import RequestAdapter

GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@dataclass(frozen=True)
class GraphClientOptions:
    """Where Graph is and how to reach it. `scopes` stay Graph's even against the emulator:
    the token is for Microsoft Graph, whichever host serves it."""

    base_url: str = GRAPH_BASE_URL
    scopes: tuple[str, ...] = (GRAPH_SCOPE,)
    ca_bundle: str | None = None
    timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    max_connections: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", check_base_url(self.base_url))


def check_base_url(url: str) -> str:
    """`url` without a trailing slash, if it is an https URL with a version path (or an http
    one on loopback, which only tests use); else BadRequest."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(host)):
        raise BadRequest("the Graph base URL must be an https:// URL")
    if not host or parts.username or parts.password or parts.query or parts.fragment:
        raise BadRequest("the Graph base URL must be scheme://host[:port]/version, nothing more")
    if parts.path.strip("/") == "":
        raise BadRequest("the Graph base URL must end in the API version, e.g. /v1.0")
    return url.strip().rstrip("/")


@dataclass
class GraphConnection:
    """The SDK request adapter and the httpx client under it (which this object owns)."""

    adapter: RequestAdapter[httpx.Request]
    http: httpx.AsyncClient
    base_url: str

    async def close(self) -> None:
        await self.http.aclose()


def connect(
    credential: AsyncTokenCredential,
    options: GraphClientOptions | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> GraphConnection:
    """The SDK's `GraphRequestAdapter` for `credential`, sending to `options.base_url`.

    The middleware is the SDK's default chain (redirects with header scrubbing, parameter-name
    decoding, user agent, headers inspection, Graph telemetry) *without* kiota's
    RetryHandler: the gateway retries itself (see `sender.py` for why). The token goes only to
    the base URL's host (`allowed_hosts`). `transport` replaces the network (tests)."""
    import httpx
    from kiota_http.kiota_client_factory import KiotaClientFactory
    from kiota_http.middleware import RetryHandler
    from msgraph._version import VERSION
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph.graph_request_adapter import options as sdk_options
    from msgraph_core import APIVersion, GraphClientFactory  # type: ignore[import-untyped]
    from msgraph_core.authentication import (  # type: ignore[import-untyped]
        AzureIdentityAuthenticationProvider,
    )
    from msgraph_core.middleware import GraphTelemetryHandler  # type: ignore[import-untyped]
    from msgraph_core.middleware.options import GraphTelemetryHandlerOption  # type: ignore[import-untyped]

    options = options or GraphClientOptions()
    host = urlsplit(options.base_url).hostname or ""
    auth = AzureIdentityAuthenticationProvider(credential, scopes=list(options.scopes), allowed_hosts=[host])
    verify: ssl.SSLContext | bool = True
    if options.ca_bundle:
        # The configured CA is trusted in addition to the public roots (the local emulator's
        # generated CA, or a corporate TLS-inspecting proxy).
        context = httpx.create_ssl_context()
        context.load_verify_locations(cafile=options.ca_bundle)
        verify = context
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(options.timeout_seconds, connect=options.connect_timeout_seconds),
        # every connection kept: a burst of requests reuses them instead of opening (TLS) anew
        limits=httpx.Limits(
            max_connections=options.max_connections, max_keepalive_connections=options.max_connections
        ),
        verify=verify,
        transport=transport,
    )
    middleware = [
        m for m in KiotaClientFactory.get_default_middleware(sdk_options) if not isinstance(m, RetryHandler)
    ]
    middleware.append(
        GraphTelemetryHandler(
            options=GraphTelemetryHandlerOption(api_version=APIVersion.v1, sdk_version=VERSION)
        )
    )
    GraphClientFactory.create_with_custom_middleware(middleware, client=http)
    adapter = GraphRequestAdapter(auth, client=http)
    # On the adapter, not the httpx client (that gives a double slash; FACTS).
    adapter.base_url = options.base_url
    return GraphConnection(adapter=adapter, http=http, base_url=options.base_url)
