"""Sends one Graph request through msgraph-sdk's request adapter, and owns what happens around
it: the per-mailbox slot, the Prefer header, retries, and turning failures into named errors.

The SDK part is kept: requests are kiota `RequestInformation`s sent by the SDK's
`GraphRequestAdapter` (its Azure Identity auth provider with allowed hosts, its middleware
chain, its `{+baseurl}` handling) with a `NativeResponseHandler`, so the raw httpx response
comes back and its bytes are parsed by `core.graph.parse` — no SDK models.

Why the gateway retries itself instead of relying on kiota's RetryHandler (which the client
is built without, see `client.py`):
1. The per-mailbox slot must be released while sleeping on Retry-After. kiota sleeps inside
   the middleware, i.e. while the request still holds its slot: one throttled request would
   block three healthy ones to the same mailbox for the whole Retry-After.
2. A bounded total wait. kiota retries up to 3 times with any Retry-After under 180 s (up to
   9 minutes in one queue invocation). Here the waits of one request share a budget
   (`RetryPolicy.max_total_wait`); past it the caller gets `Throttled(retry_after)` and
   requeues the message with that delay instead of holding an instance.
3. Safe retries per operation. kiota retries 503/504 for POST too. A 429 means Graph did not
   process the request, so every operation retries it; but a 5xx or timeout is ambiguous —
   the request may have been executed — so only operations that are idempotent (reads,
   PATCH, DELETE, `move` with immutable ids, event creation with its transactionId) retry
   them. `sendMail` and `forward` raise `GraphUnavailable` and leave the decision to the
   mail ledger.

Upload-session ranges (`upload_chunk`) are the one kind of request that does not go through the
adapter: they go to the pre-authenticated uploadUrl on another host, through the same httpx
client but without the auth provider, so they carry no Authorization header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit

import httpx
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from kiota_abstractions.method import Method
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_abstractions.request_information import RequestInformation
from kiota_http.middleware import REQUEST_OPTIONS_KEY
from kiota_http.middleware.options import RedirectHandlerOption, ResponseHandlerOption

from core.graph.errors import (
    BadRequest,
    Context,
    GraphError,
    GraphUnavailable,
    MalformedResponse,
    Throttled,
    TokenUnavailable,
    aad_code,
    error_for_status,
    safe_code,
)
from core.graph.limits import MailboxLimiter
from core.settings import is_loopback_host

if TYPE_CHECKING:
    from kiota_abstractions.request_adapter import RequestAdapter

IMMUTABLE_IDS = 'IdType="ImmutableId"'
UTC_TIMES = 'outlook.timezone="UTC"'
# Statuses that mean "not executed, or failed on Graph's side": worth another attempt.
_TRANSIENT = frozenset({502, 503, 504})
# Transport failures that happen before a request's bytes leave: safe to repeat any request.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Upload PUTs are not followed through redirects (kiota's RedirectHandler is in the client's
# middleware): the bytes go to the uploadUrl Graph named, or nowhere.
_NO_REDIRECTS = {
    REQUEST_OPTIONS_KEY: {RedirectHandlerOption.get_key(): RedirectHandlerOption(should_redirect=False)}
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How long one request may keep trying. Waits are Graph's Retry-After when it sends one,
    else exponential backoff with jitter; their sum never exceeds `max_total_wait`."""

    max_attempts: int = 5
    max_total_wait: float = 60.0
    backoff_initial: float = 1.0
    backoff_max: float = 16.0

    def backoff(self, attempt: int) -> float:
        """Delay after the `attempt`-th failure (1-based), with 50-100% jitter."""
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


@dataclass(frozen=True, slots=True)
class Call:
    """One Graph request, described without any SDK type.

    `path` is relative to the base URL and already percent-encoded (with its query string);
    `url` is an absolute next/delta link Graph returned. `idempotent` says whether a 5xx or a
    timeout may be retried (429 always is)."""

    operation: str
    mailbox: str
    method: str = "GET"
    path: str | None = None
    url: str | None = None
    body: bytes | None = None
    prefer: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    permission: str = ""
    idempotent: bool = True
    accept: str = "application/json"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    content: bytes = field(repr=False)


class _Failure:
    """A failure captured inside an `except` and raised after it, so the transport exception
    (whose request holds the Authorization header) is never chained to the named error."""

    __slots__ = ("error", "retryable")

    def __init__(self, error: GraphError, retryable: bool) -> None:
        self.error = error
        self.retryable = retryable


class _AdapterLike(Protocol):
    """The part of kiota's `HttpxRequestAdapter` the sender uses."""

    @property
    def base_url(self) -> str: ...

    async def send_primitive_async(
        self, request_info: RequestInformation, response_type: str, error_map: Any
    ) -> Any: ...

    async def convert_to_native_async(self, request_info: RequestInformation) -> httpx.Request: ...

    def set_base_url_for_request_information(self, request_info: RequestInformation) -> None: ...


class GraphSender:
    def __init__(
        self,
        adapter: RequestAdapter[httpx.Request] | _AdapterLike,
        http: httpx.AsyncClient,
        limiter: MailboxLimiter,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        *,
        connections: int = 100,
    ) -> None:
        self._adapter = cast(_AdapterLike, adapter)
        self._http = http
        self._limiter = limiter
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        # No more requests on the wire than the client keeps connections: a request queued
        # inside httpcore's pool costs a scan of every queued request and connection each
        # time one finishes (quadratic in a burst); waiting here costs nothing.
        self._wire = asyncio.Semaphore(connections)

    @asynccontextmanager
    async def _held(self, mailboxes: Sequence[str]) -> AsyncIterator[None]:
        """A slot of each mailbox (Exchange's limit; in key order, so two holders of several
        never wait on each other), then a connection's."""
        async with contextlib.AsyncExitStack() as stack:
            for key in sorted({self._limiter.key(m) for m in mailboxes}):
                await stack.enter_async_context(self._limiter.slot(key))
            await stack.enter_async_context(self._wire)
            yield

    @property
    def base_url(self) -> str:
        return self._adapter.base_url.rstrip("/")

    # --- building the request ------------------------------------------------------------

    def _request_info(self, call: Call) -> RequestInformation:
        info = RequestInformation(Method(call.method))
        if call.url is not None:
            self._check_link(call)
            info.url = call.url
        else:
            # The adapter fills {+baseurl} at send time from `adapter.base_url`.
            info.url_template = "{+baseurl}" + (call.path or "")
        info.headers.add("Accept", call.accept)
        # One Prefer header with every preference, in a fixed order; immutable ids always.
        info.headers.add("Prefer", ", ".join((IMMUTABLE_IDS, *call.prefer)))
        for name, value in call.headers:
            info.headers.add(name, value)
        if call.body is not None:
            info.content = call.body
            info.headers.add("Content-Type", "application/json")
        info.add_request_options([ResponseHandlerOption(NativeResponseHandler())])
        return info

    def _check_link(self, call: Call) -> None:
        # A next/delta link is followed only under the configured base URL: the auth provider
        # would not send the token elsewhere anyway, but nothing should be requested there.
        assert call.url is not None
        if not call.url.startswith(self.base_url + "/"):
            raise MalformedResponse(
                f"{call.operation}: Graph returned a link outside {self.base_url}",
                operation=call.operation,
                mailbox=call.mailbox,
            )

    # --- sending -------------------------------------------------------------------------

    async def send(self, call: Call, *, mailboxes: Sequence[str] = ()) -> Reply:
        """Send `call`, retrying within the policy; a 2xx comes back as a `Reply`, anything else
        as a named `GraphError`. A `$batch` names the `mailboxes` its requests go to: it holds
        a slot of each while it is on the wire, as each of its requests counts against its
        mailbox (taken in key order, so two batches never wait on each other's slots)."""
        held = tuple(mailboxes) or (call.mailbox,)

        async def once() -> tuple[httpx.Response | None, _Failure | None]:
            info = self._request_info(call)  # fresh per attempt: a fresh token, no stale headers
            async with self._held(held):
                try:
                    return await self._adapter.send_primitive_async(info, "bytes", None), None
                except Exception as exc:  # classified, then raised outside
                    return None, _classify(exc, call)

        return await self._with_retries(call, once)

    async def _with_retries(
        self, call: Call, once: Callable[[], Awaitable[tuple[httpx.Response | None, _Failure | None]]]
    ) -> Reply:
        """Run `once` (one attempt: a response, or the failure it met) until it succeeds, or
        the policy says stop: then its named error is raised, outside any `except`."""
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            response, failure = await once()
            if response is not None:
                if response.is_success:
                    return Reply(response.status_code, response.headers, response.content)
                failure = _failure_for(response.status_code, response.headers, response.content, call)
            assert failure is not None
            delay = self._delay(failure, attempt, waited)
            if delay is None:
                raise failure.error
            await self._sleep(delay)
            waited += delay

    async def stream(self, call: Call, chunk_size: int) -> AsyncGenerator[bytes, None]:
        """Send `call` and yield the body in chunks of at most `chunk_size` bytes, holding the
        mailbox slot while the body streams. Retries happen only before the first byte."""
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            info = self._request_info(call)
            failure: _Failure | None = None
            async with self._held((call.mailbox,)):
                response: httpx.Response | None = None
                try:
                    self._adapter.set_base_url_for_request_information(info)
                    request = await self._adapter.convert_to_native_async(info)
                    response = await self._http.send(request, stream=True)
                except Exception as exc:
                    failure = _classify(exc, call)
                if response is not None:
                    try:
                        if response.is_success:
                            broken = False
                            try:
                                async for chunk in response.aiter_bytes(chunk_size):
                                    yield chunk
                            except (httpx.TransportError, httpx.StreamError):
                                broken = True
                            if not broken:
                                return
                            failure = _Failure(
                                GraphUnavailable(
                                    f"{call.operation}: the connection dropped while streaming",
                                    **_context(call),
                                ),
                                retryable=False,  # bytes were already handed out
                            )
                        else:
                            content = await _read_error_body(response)
                            failure = _failure_for(response.status_code, response.headers, content, call)
                    finally:
                        await response.aclose()
            assert failure is not None
            delay = self._delay(failure, attempt, waited)
            if delay is None:
                raise failure.error
            await self._sleep(delay)
            waited += delay

    # --- upload sessions -----------------------------------------------------------------

    async def upload_chunk(self, call: Call, content: bytes, start: int, total: int) -> Reply:
        """PUT bytes [start, start+len(content)) of a `total`-byte file to the upload session at
        `call.url` (the pre-authenticated uploadUrl Graph returned). Goes through the plain httpx
        client, so no Authorization header is sent; holds the mailbox slot while on the wire;
        failures are the same named errors as `send`'s.

        What is retried: the upload session only takes ranges in order, so the same range may
        be sent again only while the server still expects it. That is known after a 429 (Graph
        did not process the request) and after a connection that never opened (nothing was
        sent); both are retried within the policy. A 5xx, a timeout or a dropped connection
        after the bytes left may or may not have landed — the range is not sent again, the
        caller gets `GraphUnavailable` (and should cancel the session)."""
        url = self._check_upload_url(call)
        end = start + len(content) - 1
        headers = {
            "Content-Range": f"bytes {start}-{end}/{total}",
            "Content-Type": "application/octet-stream",
        }

        async def once() -> tuple[httpx.Response | None, _Failure | None]:
            async with self._held((call.mailbox,)):
                try:
                    sent = await self._http.put(
                        url, content=content, headers=headers, extensions=_NO_REDIRECTS
                    )
                    return sent, None
                except Exception as exc:
                    failure = _classify(exc, call)
                    if isinstance(exc, _NOT_SENT):
                        failure.retryable = True
                    return None, failure

        return await self._with_retries(call, once)

    async def cancel_upload(self, call: Call) -> None:
        """DELETE the upload session at `call.url` (no Authorization header), so a session
        that failed half-way can never complete later. Best effort: one attempt, any failure is
        ignored (an unfinished session expires on its own)."""
        with contextlib.suppress(Exception):  # best effort: the session expires by itself
            url = self._check_upload_url(call)
            async with self._held((call.mailbox,)):
                await self._http.delete(url, extensions=_NO_REDIRECTS)

    def _check_upload_url(self, call: Call) -> str:
        # The uploadUrl is on another host than Graph (outlook.office.com), so it is not held to
        # the base URL like a next link; but the file's bytes go there, so it must be https (or
        # plain http on loopback, for local tests) — never wherever a malformed answer points.
        parts = urlsplit(call.url or "")
        host = parts.hostname or ""
        secure = parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))
        if not secure or not host or parts.username or parts.password:
            raise MalformedResponse(
                f"{call.operation}: Graph returned an upload URL that is not https",
                operation=call.operation,
                mailbox=call.mailbox,
            )
        assert call.url is not None
        return call.url

    def _delay(self, failure: _Failure, attempt: int, waited: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if not failure.retryable or attempt >= self._retry.max_attempts:
            return None
        error = failure.error
        advised = error.retry_after if isinstance(error, Throttled | GraphUnavailable) else None
        delay = advised if advised is not None else self._retry.backoff(attempt)
        if waited + delay > self._retry.max_total_wait:
            return None
        # what the workbook's throttling chart counts (never the mailbox or the URL)
        log.warning(
            "graph request retried",
            extra={
                "operation": error.operation,
                "error": type(error).__name__,
                "status": error.status,
                "delay_seconds": round(delay, 3),
            },
        )
        return delay


async def _read_error_body(response: httpx.Response, limit: int = 64 * 1024) -> bytes:
    """An error body, read up to `limit` bytes (error JSON is small; a proxy page may not be)."""
    out = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            out += chunk[: limit - len(out)]
            if len(out) >= limit:
                break
    except (httpx.TransportError, httpx.StreamError):
        pass
    return bytes(out)


def _context(call: Call) -> Context:
    return {"operation": call.operation, "mailbox": call.mailbox}


def _error_code(content: bytes) -> str | None:
    try:
        doc = json.loads(content)
    except ValueError:
        return None
    error = doc.get("error") if type(doc) is dict else None
    return safe_code(error.get("code")) if type(error) is dict else None


def _failure_for(status: int, headers: Mapping[str, str], content: bytes, call: Call) -> _Failure:
    error = error_for_status(
        status,
        code=_error_code(content),
        headers=headers,
        operation=call.operation,
        mailbox=call.mailbox,
        permission=call.permission,
    )
    # A throttled request was not executed: always safe to repeat. Others only if idempotent.
    retryable = isinstance(error, Throttled) or (status in _TRANSIENT and call.idempotent)
    return _Failure(error, retryable)


def _classify(exc: Exception, call: Call) -> _Failure:
    """A transport or credential exception → a named error. Must be called inside `except`;
    the caller raises the result after the block."""
    if isinstance(exc, GraphError):
        return _Failure(exc, False)
    if isinstance(exc, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(exc, httpx.TransportError | ServiceRequestError | ServiceResponseError):
        what = "could not reach Graph or its token endpoint (connection failed or dropped)"
    elif isinstance(exc, ClientAuthenticationError):
        code = aad_code(str(exc))
        return _Failure(
            TokenUnavailable(
                f"{call.operation}: no access token for Graph"
                + (f" ({code})" if code else "")
                + "; check the app registration's client id, tenant and secret or federated credential",
                aad_code=code,
                **_context(call),
            ),
            retryable=False,
        )
    else:
        # Anything else is a bug or a misconfiguration (e.g. a non-https base URL); its text
        # may hold request details, so only its type is named.
        return _Failure(
            BadRequest(
                f"{call.operation}: the request could not be sent ({type(exc).__name__})", **_context(call)
            ),
            retryable=False,
        )
    return _Failure(
        GraphUnavailable(f"{call.operation}: {what}", **_context(call)), retryable=call.idempotent
    )
