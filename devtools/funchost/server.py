"""Translation between aiohttp and `azure.functions` HTTP types, as the worker's converters do."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from multidict import CIMultiDict

from devtools.funchost.indexing import IndexedFunction
from devtools.funchost.routes import AuthLevel, RouteTemplate

log = logging.getLogger("devtools.funchost")

# The real host's request body limit is 100 MB (aiohttp's default is 1 MB).
MAX_REQUEST_BODY = 100 * 1024 * 1024
# Framing is the server's business: copying these from a function's response would corrupt it.
_HOP_HEADERS = {"content-length", "transfer-encoding", "connection"}

LANDING_PAGE = (
    "<!DOCTYPE html><html><head><title>Functions host</title></head>"
    "<body><h1>Your Functions app is up and running</h1>"
    "<p>This is the m365-bridge local Functions host (devtools.funchost).</p></body></html>"
)


class AccessLogger(AbstractAccessLogger):
    """One line per request, with the `code` query parameter (a function key, or a sign-in's
    authorization code) and a sign-in's `state` redacted."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        url = request.rel_url
        for name in ("code", "state"):
            if name in url.query:
                url = url.update_query({name: "REDACTED"})
        self.logger.info("%s %s -> %d (%.0fms)", request.method, url, response.status, time * 1000)


@dataclass(frozen=True)
class HttpRoute:
    """An HTTP-triggered function as served: template, methods (empty = any), auth level."""

    function: IndexedFunction
    template: RouteTemplate
    methods: frozenset[str]
    auth_level: AuthLevel

    @property
    def name(self) -> str:
        return self.function.name

    def allows(self, method: str) -> bool:
        return not self.methods or method.upper() in self.methods


def _joined(multi: Any) -> dict[str, str]:
    """Collapse repeated keys with ',' (ASP.NET's StringValues) so no value is silently lost."""
    out: dict[str, str] = {}
    for key in multi:
        if key not in out:
            out[key] = ",".join(multi.getall(key))
    return out


async def to_function_request(request: web.Request, route_params: dict[str, str]) -> func.HttpRequest:
    """The `func.HttpRequest` the function receives for this aiohttp request."""
    body = await request.read()
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        # repeated headers are combined with ", " as HTTP allows for list-valued headers
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return func.HttpRequest(
        method=request.method,
        url=str(request.url),
        headers=headers,
        params=_joined(request.query),
        route_params=route_params,
        body=body,
    )


def to_web_response(result: object, function_name: str) -> web.Response:
    """The aiohttp response for what the function returned.

    Like the worker's http output converter: a `func.HttpResponse` or a `str` (200, text/plain).
    Anything else is a bug in the function and becomes a 500, logged.
    """
    if isinstance(result, str):
        result = func.HttpResponse(result)
    if not isinstance(result, func.HttpResponse):
        log.error(
            "Function '%s' returned %s; an HTTP function must return func.HttpResponse or str",
            function_name,
            type(result).__name__,
        )
        return web.Response(status=500)
    headers: CIMultiDict[str] = CIMultiDict()
    for key, value in result.headers.items():
        if key.lower() not in _HOP_HEADERS:
            headers.add(key, value)
    if "content-type" not in headers and result.mimetype:
        headers["Content-Type"] = (
            f"{result.mimetype}; charset={result.charset}" if result.charset else result.mimetype
        )
    return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
