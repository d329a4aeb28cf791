"""JSON batching: `POST /$batch` (docs: "Combine multiple HTTP requests using JSON batching").

Each sub-request is sent back through the emulator's own application (over a plain-HTTP
loopback listener, so a batch of 20 costs no TLS handshakes) with the batch's `Authorization`
header, so it is authenticated, permission-checked, counted, fault-injected and throttled on its
own exactly like a direct request: a 200 envelope can hold 401s, 403s and 429s
(with their `Retry-After`), as the docs say ("Requests in a batch are evaluated individually
against the applicable throttling limits").

- At most 20 requests (more: 400 for the whole batch); ids unique (case-insensitive); `dependsOn`
  must name ids of the batch and may not form a cycle (400).
- Outlook runs at most 4 requests of a batch in parallel per mailbox: sub-requests naming the same
  mailbox (`/users/{id|upn}/...`, `/me/...`) wait for one of 4 slots; others run in parallel.
- A request runs after all it `dependsOn`; if one of those failed (status >= 400, or was itself
  424) it is not run and answers 424 Failed Dependency.
- Responses come back in request order (Graph may reorder them; clients match by id). Each has
  `id`, `status`, `headers` (Content-Type, Location, Retry-After, ETag, Preference-Applied, the
  request ids) and `body`: JSON as JSON, text as a string, other bytes base64-encoded.
- Request bodies: JSON when the sub-request's Content-Type says JSON, otherwise a base64 string
  decoded to bytes (the docs' "base64 URL-encoded value"); a body without Content-Type answers 400.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp import web

from devtools.graph_emulator.context import graph_call, json_response, read_json
from devtools.graph_emulator.errors import GraphError
from devtools.graph_emulator.routing import ControlRouter, GraphRouter, ModuleBase

MAX_REQUESTS = 20
MAILBOX_PARALLELISM = 4
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
KEPT_HEADERS = (
    "Content-Type",
    "Location",
    "Retry-After",
    "ETag",
    "Preference-Applied",
    "request-id",
    "client-request-id",
)
_MISSING = object()


def batch_error(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


@dataclass(frozen=True)
class BatchStep:
    id: str
    method: str
    url: str
    headers: dict[str, str]
    body: Any  # _MISSING when the request has none
    depends_on: tuple[str, ...]

    @property
    def has_body(self) -> bool:
        return self.body is not _MISSING

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def parse_batch(body: dict[str, Any], max_requests: int = MAX_REQUESTS) -> list[BatchStep]:
    """The batch's requests, or the 400 Graph answers a malformed batch with."""
    raw = body.get("requests")
    if not isinstance(raw, list):
        raise batch_error("Invalid batch payload format: 'requests' must be an array.")
    if not raw:
        raise batch_error("Invalid batch payload format: the batch has no requests.")
    if len(raw) > max_requests:
        raise batch_error(
            f"The batch has {len(raw)} requests; a JSON batch may contain at most {max_requests}."
        )
    steps: list[BatchStep] = []
    seen: set[str] = set()
    for item in raw:
        steps.append(_parse_step(item))
        key = steps[-1].id.lower()
        if key in seen:
            raise batch_error(f"Duplicate request id '{steps[-1].id}' in the batch; ids must be unique.")
        seen.add(key)
    by_id = {s.id.lower(): s for s in steps}
    for step in steps:
        for dep in step.depends_on:
            if dep.lower() not in by_id:
                raise batch_error(f"Request '{step.id}' depends on '{dep}', which is not in the batch.")
    _check_acyclic(steps, by_id)
    return steps


def _parse_step(item: Any) -> BatchStep:
    if not isinstance(item, dict):
        raise batch_error("Invalid batch payload format: each request must be an object.")
    ident = item.get("id")
    method = item.get("method")
    url = item.get("url")
    if not isinstance(ident, str | int) or isinstance(ident, bool) or str(ident) == "":
        raise batch_error("Invalid batch payload format: every request needs an 'id'.")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise batch_error(f"Request '{ident}' has an invalid method '{method}'.")
    if not isinstance(url, str) or not url:
        raise batch_error(f"Request '{ident}' needs a 'url'.")
    headers = item.get("headers") or {}
    if not isinstance(headers, dict):
        raise batch_error(f"Request '{ident}': 'headers' must be an object.")
    depends = item.get("dependsOn") or []
    if not isinstance(depends, list) or not all(isinstance(d, str | int) for d in depends):
        raise batch_error(f"Request '{ident}': 'dependsOn' must be an array of request ids.")
    return BatchStep(
        id=str(ident),
        method=method.upper(),
        url=url,
        headers={str(k): str(v) for k, v in headers.items()},
        body=item.get("body", _MISSING),
        depends_on=tuple(str(d) for d in depends),
    )


def _check_acyclic(steps: list[BatchStep], by_id: dict[str, BatchStep]) -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(step: BatchStep) -> None:
        key = step.id.lower()
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise batch_error(f"The dependsOn chain through request '{step.id}' is circular.")
        state[key] = 1
        for dep in step.depends_on:
            visit(by_id[dep.lower()])
        state[key] = 2

    for step in steps:
        visit(step)


def mailbox_of(url: str) -> tuple[str, str] | None:
    """("me", "") or ("users", key) for a sub-request that is a mailbox request (the pipeline
    counts and throttles those per mailbox), None otherwise (`/users/{id}`, `/subscriptions`)."""
    segments = [unquote(s) for s in urlsplit(url).path.strip("/").split("/") if s]
    if segments and segments[0].lower() == "me":
        return ("me", "")
    if len(segments) >= 3 and segments[0].lower() == "users":
        return ("users", segments[1])
    return None


def error_body(code: str, message: str) -> dict[str, Any]:
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {"error": {"code": code, "message": message, "innerError": {"date": date}}}


def sub_response(
    step: BatchStep, status: int, body: Any = _MISSING, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": step.id, "status": status, "headers": headers or {}}
    if body is not _MISSING:
        out["body"] = body
    return out


class BatchModule(ModuleBase):
    name = "batch"

    def __init__(
        self, max_requests: int = MAX_REQUESTS, mailbox_parallelism: int = MAILBOX_PARALLELISM
    ) -> None:
        self.max_requests = max_requests
        self.mailbox_parallelism = mailbox_parallelism

    def graph_routes(self, router: GraphRouter) -> None:
        # Any valid token may send a batch; each sub-request is then checked on its own.
        router.add("POST", "/$batch", self._batch, permissions=None)

    def control_routes(self, router: ControlRouter) -> None:
        return None

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        auth = graph_call(request).caller
        steps = parse_batch(await read_json(request), self.max_requests)
        authorization = request.headers.get("Authorization", "")
        slots: dict[str, asyncio.Semaphore] = {}
        tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}

        def slot_for(step: BatchStep) -> asyncio.Semaphore | None:
            found = mailbox_of(step.url)
            if found is None:
                return None
            if found[0] == "me":
                key = f"id:{auth.user_id}"
            else:
                user = self.ctx.directory.user(auth.tenant_id, found[1])
                key = f"id:{user.id}" if user else f"key:{found[1].lower()}"
            return slots.setdefault(key, asyncio.Semaphore(self.mailbox_parallelism))

        # The listener is this emulator on loopback (plain HTTP once it runs; before that its
        # HTTPS one, whose certificate is not checked here: the client already trusted it).
        connector = aiohttp.TCPConnector(ssl=False, limit=0)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=300)
        ) as session:

            async def run(step: BatchStep) -> dict[str, Any]:
                for dep in step.depends_on:
                    result = await tasks[dep.lower()]
                    if int(result["status"]) >= 400:
                        return sub_response(
                            step,
                            424,
                            error_body(
                                "FailedDependency",
                                f"Request '{step.id}' was not run: request '{dep}' it depends on failed "
                                f"with status {result['status']}.",
                            ),
                            {"Content-Type": "application/json"},
                        )
                slot = slot_for(step)
                if slot is None:
                    return await self._send(session, step, authorization)
                async with slot:
                    return await self._send(session, step, authorization)

            for step in steps:
                tasks[step.id.lower()] = asyncio.ensure_future(run(step))
            try:
                responses = [await tasks[step.id.lower()] for step in steps]
            finally:  # the client went away mid-batch: stop what has not run yet
                for task in tasks.values():
                    task.cancel()
        return json_response({"responses": responses})

    async def _send(
        self, session: aiohttp.ClientSession, step: BatchStep, authorization: str
    ) -> dict[str, Any]:
        if urlsplit(step.url).path.rstrip("/").lower().endswith("$batch"):
            return sub_response(
                step,
                400,
                error_body("BadRequest", "A batch cannot contain another $batch request."),
                {"Content-Type": "application/json"},
            )
        if "://" in step.url:
            return sub_response(
                step,
                400,
                error_body("BadRequest", "Batch request URLs must be relative to the version, e.g. /users."),
                {"Content-Type": "application/json"},
            )
        headers = {
            k: v
            for k, v in step.headers.items()
            if k.lower() not in ("authorization", "host", "content-length")
        }
        headers["Authorization"] = authorization
        data: bytes | None = None
        if step.has_body:
            content_type = step.header("Content-Type")
            if content_type is None:
                return sub_response(
                    step,
                    400,
                    error_body("BadRequest", "A request with a body must have a Content-Type header."),
                    {"Content-Type": "application/json"},
                )
            try:
                data = _encode_body(step.body, content_type)
            except ValueError as exc:
                return sub_response(
                    step, 400, error_body("BadRequest", str(exc)), {"Content-Type": "application/json"}
                )
        base = f"{self.ctx.internal_url}/v1.0" if self.ctx.internal_url else self.ctx.graph_url
        url = f"{base}/{step.url.lstrip('/')}"
        try:
            async with session.request(step.method, url, headers=headers, data=data) as response:
                raw = await response.read()
                kept = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
                status = response.status
                content_type = response.content_type
                charset = response.charset or "utf-8"
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The workload never answered (an injected dropped connection): the gateway's timeout.
            return sub_response(
                step,
                504,
                error_body("gatewayTimeout", f"The request was not answered ({type(exc).__name__})."),
                {"Content-Type": "application/json"},
            )
        if not raw:
            return sub_response(step, status, headers=kept)
        return sub_response(step, status, _decode_body(raw, content_type, charset), kept)


def _encode_body(body: Any, content_type: str) -> bytes:
    if "json" in content_type.lower():
        return json.dumps(body, separators=(",", ":")).encode()
    if isinstance(body, str):
        try:
            standard = body.strip().replace("-", "+").replace("_", "/")  # URL-safe or not
            return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("A non-JSON body must be base64-encoded.") from None
    return json.dumps(body, separators=(",", ":")).encode()


def _decode_body(raw: bytes, content_type: str, charset: str) -> Any:
    if content_type.endswith("json"):
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(charset, "replace")
    if content_type.startswith("text/"):
        return raw.decode(charset, "replace")
    return base64.b64encode(raw).decode()
