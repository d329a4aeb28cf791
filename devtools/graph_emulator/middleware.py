"""The request pipeline every Graph call goes through, outermost first.

1. `envelope`: request ids, `Prefer` parsing, Graph error bodies for raised `GraphError`s (and
   for unknown routes), `Preference-Applied`, per-mailbox request/byte/429 counters, and dropping
   the connection when a fault says so.
2. `authenticate` (only under /v1.0): bearer token -> `AuthContext`; 401 InvalidAuthenticationToken
   otherwise. Resolves the mailbox the path names (`/users/{user}/...` or `/me/...`).
3. `throttle` (only under /v1.0): injected faults, global latency, the per-app per-mailbox
   concurrency limit and request budget.
Permission checks happen after these, in the route wrapper (routing.py), so a 403 is counted and
throttled like any other request to the mailbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from devtools.graph_emulator.context import (
    CALL,
    GRAPH_VERSION,
    AuthContext,
    EmulatorContext,
    GraphCall,
    Prefer,
    json_response,
)
from devtools.graph_emulator.errors import GraphError, bad_request, invalid_token, throttled
from devtools.graph_emulator.throttling import Fault
from devtools.graph_emulator.tokens import TokenError

_LOG = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GRAPH_PREFIX = f"/{GRAPH_VERSION}/"
GRAPH_AUDIENCES = ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000")


class DropConnection(Exception):
    """Raised to close the connection without answering (a fault kind)."""


def error_response(err: GraphError, call: GraphCall | None) -> web.Response:
    inner: dict[str, str] = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")}
    if call is not None:
        inner["request-id"] = call.request_id
        inner["client-request-id"] = call.client_request_id
    if err.inner_code:
        inner["code"] = err.inner_code
    body = {"error": {"code": err.code, "message": err.message, "innerError": inner}}
    return json_response(body, err.status, headers=err.headers)


class Pipeline:
    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx
        # Tokens whose issue number (the `xms_emu_n` claim) is below this are refused: the control
        # API's "revoke all tokens". A counter, not a time: a token fetched in the same second as
        # the revocation must still work.
        self.first_valid_token = 0

    # -- 1 ---------------------------------------------------------------------------------

    @web.middleware
    async def envelope(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        call = GraphCall(request_id, request.headers.get("client-request-id") or request_id, Prefer())
        request[CALL] = call
        call.count = lambda response: self._count(request, call, response)
        response: web.StreamResponse
        try:
            call.prefer = Prefer.parse(request)
            response = await handler(request)
        except GraphError as err:
            response = error_response(err, call)
        except DropConnection:
            self._count(request, call, None)
            if request.transport is not None:
                request.transport.abort()
            # aiohttp finds the transport closed and writes nothing (raising would log an error).
            return web.Response(status=204)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            # aiohttp's own 404/405 for paths no module serves: answer like Graph does.
            response = error_response(_route_error(request, exc), call)
        except Exception:
            _LOG.exception("graph emulator handler failed for %s %s", request.method, request.path)
            response = error_response(
                GraphError(
                    500, "generalException", "An internal server error occurred. The operation failed."
                ),
                call,
            )
        if not response.prepared:  # a streamed body set its headers itself (odata.stream_bytes)
            response.headers["request-id"] = call.request_id
            response.headers["client-request-id"] = call.client_request_id
            if call.applied_preferences:
                response.headers["Preference-Applied"] = ",".join(call.applied_preferences)
        self._count(request, call, response)
        return response

    def _count(self, request: web.Request, call: GraphCall, response: web.StreamResponse | None) -> None:
        key = _mailbox_counter_key(call)
        if key is None or call.counted:
            return
        call.counted = True
        counters = self.ctx.counters.mailbox(key, call.mailbox.user_principal_name if call.mailbox else None)
        counters.requests += 1
        counters.bytes_in += request.content_length or 0
        if response is None:
            return
        if isinstance(response, web.Response) and response.body is not None and not response.prepared:
            counters.bytes_out += len(response.body) if isinstance(response.body, bytes | bytearray) else 0
        elif response.content_length is not None:
            counters.bytes_out += response.content_length
        if response.status == 429:
            counters.throttled += 1

    # -- 2 ---------------------------------------------------------------------------------

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(GRAPH_PREFIX):
            return await handler(request)
        call = request[CALL]
        call.auth = self.validate(request.headers.get("Authorization", ""))
        self._resolve_mailbox(request, call)
        if call.prefer.immutable_ids:
            # Ids here never change (see calendar_store.py); Graph still confirms the preference.
            call.apply('IdType="ImmutableId"')
        return await handler(request)

    def validate(self, authorization: str) -> AuthContext:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise invalid_token("Access token is empty.")
        try:
            claims = self.ctx.signer.decode(token)
        except TokenError as exc:
            raise invalid_token(str(exc)) from None
        if claims.get("aud") not in GRAPH_AUDIENCES:
            raise invalid_token("Access token validation failure. Invalid audience.")
        now = time.time()
        if int(claims.get("exp", 0)) <= now or int(claims.get("xms_emu_n", -1)) < self.first_valid_token:
            raise invalid_token("Lifetime validation failed, the token is expired.")
        if int(claims.get("nbf", 0)) > now + 300:
            raise invalid_token("Lifetime validation failed, the token is not yet valid.")
        tenant_id = str(claims.get("tid", ""))
        app = self.ctx.directory.app(tenant_id, str(claims.get("appid", "")))
        if app is None:
            raise invalid_token(
                "Access token validation failure. The application or tenant no longer exists."
            )
        user_id = claims.get("oid") if claims.get("idtyp") == "user" else None
        return AuthContext(
            tenant_id=tenant_id,
            client_id=app.client_id,
            app_display_name=app.display_name,
            user_id=str(user_id) if user_id else None,
            roles=frozenset(claims.get("roles") or ()),
            scopes=frozenset(str(claims.get("scp") or "").split()),
            claims=claims,
        )

    def _resolve_mailbox(self, request: web.Request, call: GraphCall) -> None:
        auth = call.caller
        rest = request.path[len(GRAPH_PREFIX) :]
        if rest == "me" or rest.startswith("me/"):
            if auth.user_id is None:
                raise bad_request(
                    "/me request is only valid with delegated authentication flow.", "BadRequest"
                )
            call.mailbox_key = "me"
            call.mailbox = self.ctx.directory.user(auth.tenant_id, auth.user_id)
            return
        key = request.match_info.get("user")
        if key:
            call.mailbox_key = key
            call.mailbox = self.ctx.directory.user(auth.tenant_id, key)

    # -- 3 ---------------------------------------------------------------------------------

    @web.middleware
    async def throttle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(GRAPH_PREFIX):
            return await handler(request)
        call = request[CALL]
        ctx = self.ctx
        limits = ctx.limits
        mailbox = _mailbox_counter_key(call)
        fault = ctx.faults.take(request.method, request.path, mailbox)
        upn = call.mailbox.user_principal_name if call.mailbox else None
        if fault is not None and mailbox is not None:
            ctx.counters.mailbox(mailbox, upn).faults += 1
        if fault is not None and fault.kind == "drop":
            raise DropConnection
        if fault is not None and fault.kind == "status":
            raise _fault_error(fault.status, fault.retry_after)
        if mailbox is None:
            await _sleep(limits.latency_seconds + (fault.latency_seconds if fault else 0.0))
            return _after(await handler(request), fault)

        key = (call.caller.client_id, mailbox)
        state = ctx.throttle
        if state.in_flight[key] >= limits.concurrency:
            raise throttled(
                "Application is over its MailboxConcurrency limit.",
                limits.concurrency_retry_after,
                "MailboxConcurrency",
            )
        wait = state.spend(key, ctx.clock.timestamp(), limits)
        if wait is not None:
            raise throttled("Application is over its MailboxRequests limit.", wait, "MailboxRequests")
        state.in_flight[key] += 1
        state.mailbox_in_flight[mailbox] += 1
        counters = ctx.counters.mailbox(mailbox, upn)
        counters.max_concurrent = max(counters.max_concurrent, state.mailbox_in_flight[mailbox])
        try:
            await _sleep(limits.latency_seconds + (fault.latency_seconds if fault else 0.0))
            return _after(await handler(request), fault)
        finally:
            state.in_flight[key] -= 1
            state.mailbox_in_flight[mailbox] -= 1

    # -- control API guard -----------------------------------------------------------------

    @web.middleware
    async def loopback_only(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The control API has no authentication, so it only answers loopback clients."""
        if request.path.startswith("/_emulator"):
            remote = request.remote or ""
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(remote.split("%")[0]).is_loopback:
                    return await handler(request)
            raise GraphError(403, "Forbidden", "The emulator control API only answers loopback clients.")
        return await handler(request)


def _route_error(request: web.Request, exc: web.HTTPException) -> GraphError:
    if exc.status == 404:
        segment = request.path.rstrip("/").rsplit("/", 1)[-1]
        return bad_request(f"Resource not found for the segment '{segment}'.", "BadRequest")
    if exc.status == 405:
        return GraphError(405, "Request_BadRequest", f"The method {request.method} is not allowed here.")
    return GraphError(exc.status, "BadRequest", exc.reason)


def _mailbox_counter_key(call: GraphCall) -> str | None:
    if call.mailbox is not None:
        return call.mailbox.id
    if call.mailbox_key and call.mailbox_key != "me":
        return call.mailbox_key.lower()
    return None


def _after(response: web.StreamResponse, fault: Fault | None) -> web.StreamResponse:
    if fault is not None and fault.kind == "drop_after":
        raise DropConnection
    return response


def _fault_error(status: int, retry_after: int | None) -> GraphError:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    codes = {
        429: ("TooManyRequests", "Too many requests (injected fault)."),
        503: ("serviceNotAvailable", "The service is temporarily unavailable (injected fault)."),
        504: ("gatewayTimeout", "The gateway timed out (injected fault)."),
    }
    code, message = codes.get(status, ("generalException", f"Injected fault {status}."))
    return GraphError(status, code, message, headers=headers)


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)
