"""OData envelopes and query options shared by every collection endpoint.

- `collection(...)`: `{"@odata.context", "value", "@odata.nextLink" | "@odata.deltaLink"}`.
- `page_size(...)`: `$top`, else `Prefer: odata.maxpagesize` (recorded as applied), else a default.
- `offset_page(...)`: `$skip`-style paging for plain lists (calendarView, lists); the next link
  repeats the request's own query with the next `$skip`, like Graph's links for these endpoints.
- `select(...)`: a simple `$select` (top-level properties; `id` and `@odata.etag` always kept).
- `stream_bytes(...)`: a raw body (`/$value`) written in chunks with a Content-Length, so a client
  that streams really streams.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from devtools.graph_emulator.context import CALL, GraphCall
from devtools.graph_emulator.errors import bad_request

ALWAYS_SELECTED = ("id", "@odata.etag", "@odata.type", "@removed")
CHUNK = 64 * 1024


def collection(
    value: list[dict[str, Any]],
    *,
    context: str | None = None,
    next_link: str | None = None,
    delta_link: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if context:
        body["@odata.context"] = context
    if next_link:
        body["@odata.nextLink"] = next_link
    if delta_link:
        body["@odata.deltaLink"] = delta_link
    body["value"] = value
    return body


def query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"Invalid value '{raw}' for query option {name}.", "BadRequest") from None
    if value < 0:
        raise bad_request(f"Invalid value '{raw}' for query option {name}.", "BadRequest")
    return value


def page_size(request: web.Request, call: GraphCall, default: int, maximum: int) -> int:
    top = query_int(request, "$top")
    if top is not None:
        return max(1, min(top, maximum))
    if call.prefer.max_page_size is not None:
        size = min(call.prefer.max_page_size, maximum)
        call.apply(f"odata.maxpagesize={size}")
        return size
    return default


def link(base_url: str, path: str, params: dict[str, str]) -> str:
    """An absolute link on this emulator; `$` stays literal in the query, as Graph writes it."""
    query = urlencode(params, quote_via=quote, safe="$:")
    return f"{base_url}{path}?{query}" if query else f"{base_url}{path}"


def offset_page(
    request: web.Request,
    call: GraphCall,
    base_url: str,
    items: list[dict[str, Any]],
    *,
    default_size: int = 10,
    max_size: int = 1000,
) -> tuple[list[dict[str, Any]], str | None]:
    size = page_size(request, call, default_size, max_size)
    skip = query_int(request, "$skip") or 0
    page = items[skip : skip + size]
    if skip + size >= len(items):
        return page, None
    params = {k: v for k, v in request.query.items() if k != "$skip"}
    if "$top" in params:
        params["$top"] = str(size)
    params["$skip"] = str(skip + size)
    return page, link(base_url, request.path, params)


def select(items: list[dict[str, Any]], request: web.Request) -> list[dict[str, Any]]:
    raw = request.query.get("$select")
    if not raw:
        return items
    wanted = {name.strip() for name in raw.split(",") if name.strip()}
    lowered = {w.lower() for w in wanted}
    return [{k: v for k, v in item.items() if k in ALWAYS_SELECTED or k.lower() in lowered} for item in items]


async def stream_bytes(request: web.Request, data: bytes, content_type: str) -> web.StreamResponse:
    call = request[CALL]
    # Headers must be final before prepare(): the envelope cannot add its ids afterwards.
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": content_type,
            "request-id": call.request_id,
            "client-request-id": call.client_request_id,
        },
    )
    response.content_length = len(data)
    if call.count is not None:
        call.count(response)  # before the body: see GraphCall.count
    await response.prepare(request)
    for start in range(0, len(data), CHUNK):
        await response.write(data[start : start + CHUNK])
    await response.write_eof()
    return response
