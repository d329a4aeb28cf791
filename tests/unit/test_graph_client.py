"""Building msgraph-sdk's request adapter: base URL, token scoping, CA trust."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from kiota_abstractions.method import Method
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_abstractions.request_information import RequestInformation
from kiota_http.middleware.options import ResponseHandlerOption

from core.graph import GraphUnavailable
from core.graph.client import GRAPH_SCOPE, GraphClientOptions, check_base_url, connect
from core.graph.errors import BadRequest
from core.graph.gateway import open_gateway
from core.graph.sender import RetryPolicy
from devtools.tls import generate_tls
from tests.unit.graph_http import TOKEN, GraphScript, StaticCredential, graph_json


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://graph.microsoft.com/v1.0", "https://graph.microsoft.com/v1.0"),
        ("https://127.0.0.1:8443/v1.0/", "https://127.0.0.1:8443/v1.0"),
        ("http://127.0.0.1:8080/v1.0", "http://127.0.0.1:8080/v1.0"),  # loopback only
    ],
)
def test_base_urls_are_https_with_a_version_and_lose_their_trailing_slash(url: str, expected: str) -> None:
    assert check_base_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://graph.microsoft.com/v1.0",  # a token would travel in clear text
        "https://graph.microsoft.com",  # no version
        "https://user:pw@graph.microsoft.com/v1.0",
        "https://graph.microsoft.com/v1.0?x=1",
        "ftp://graph.microsoft.com/v1.0",
    ],
)
def test_unsafe_or_incomplete_base_urls_are_rejected(url: str) -> None:
    with pytest.raises(BadRequest):
        GraphClientOptions(base_url=url)


async def _send(adapter: object, url: str) -> httpx.Response:
    info = RequestInformation(Method.GET)
    info.url = url
    info.add_request_options([ResponseHandlerOption(NativeResponseHandler())])
    return await adapter.send_primitive_async(info, "bytes", None)  # type: ignore[attr-defined, no-any-return]


async def test_the_token_goes_only_to_the_base_urls_host_and_asks_for_graphs_scope() -> None:
    script = GraphScript(lambda r: graph_json(body={}))
    credential = StaticCredential()
    connection = connect(
        credential,  # type: ignore[arg-type]
        GraphClientOptions(base_url="https://127.0.0.1:9443/v1.0"),
        transport=script.transport,
    )
    await _send(connection.adapter, "https://127.0.0.1:9443/v1.0/users/x")
    await _send(connection.adapter, "https://evil.test/v1.0/users/x")
    await connection.close()
    to_base, to_other = script.requests
    assert to_base.headers["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in to_other.headers
    assert credential.scopes == [(GRAPH_SCOPE,)]


async def test_the_adapter_is_built_without_kiotas_retry_handler() -> None:
    """The gateway retries itself (sender.py); a second retry layer below it would sleep while
    holding the mailbox slot and multiply the attempts."""
    answers = iter([httpx.Response(503, headers={"Retry-After": "0"}), graph_json(body={})])
    script = GraphScript(lambda r: next(answers))
    connection = connect(StaticCredential(), transport=script.transport)  # type: ignore[arg-type]
    response = await _send(connection.adapter, "https://graph.microsoft.com/v1.0/users/x")
    await connection.close()
    assert response.status_code == 503
    assert len(script.requests) == 1


@pytest.fixture
async def https_graph(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A loopback HTTPS server answering /v1.0/users/{id} with a certificate from a fresh CA."""
    tls = generate_tls(tmp_path / "tls")

    async def user(request: web.Request) -> web.Response:
        return web.json_response(
            {"id": "u-1", "displayName": "Kari", "userPrincipalName": request.match_info["id"]}
        )

    app = web.Application()
    app.router.add_get("/v1.0/users/{id}", user)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"https://127.0.0.1:{port}/v1.0", tls.ca_cert
    await runner.cleanup()


async def test_the_configured_ca_is_trusted_and_nothing_else_is(https_graph: tuple[str, Path]) -> None:
    base_url, ca_cert = https_graph
    trusted = open_gateway(
        StaticCredential(),  # type: ignore[arg-type]
        GraphClientOptions(base_url=base_url, ca_bundle=str(ca_cert)),
    )
    assert (await trusted.get_user("kari@contoso.example")).user_principal_name == "kari@contoso.example"
    await trusted.close()

    untrusted = open_gateway(
        StaticCredential(),  # type: ignore[arg-type]
        GraphClientOptions(base_url=base_url),
        retry=RetryPolicy(max_attempts=1),
    )
    with pytest.raises(GraphUnavailable):
        await untrusted.get_user("kari@contoso.example")
    await untrusted.close()
