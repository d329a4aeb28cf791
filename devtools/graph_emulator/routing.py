"""How a domain module plugs into the emulator.

A module is any object with the `EmulatorModule` shape below. The emulator calls, in order:
`setup(ctx)` once, `graph_routes(router)` to add Graph endpoints, `control_routes(router)` to add
`/_emulator/...` endpoints. `reset()` is called by the control API's reset. Modules keep their own
state (the calendar module keeps events per mailbox) and reach shared services through `ctx`.

Graph routes are registered with the permissions they need; the wrapper checks them after the
pipeline (auth, throttling) ran, so handlers start with a caller already allowed in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from devtools.graph_emulator.context import GRAPH_VERSION, EmulatorContext, Permissions, graph_call
from devtools.graph_emulator.errors import access_denied

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GraphRouter:
    """Adds routes under /v1.0 with a permission check."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def add(self, method: str, path: str, handler: Handler, *, permissions: Permissions | None) -> None:
        """`path` is relative to the version root, e.g. "/users/{user}". `permissions=None` means
        any valid token will do."""
        for variant in _function_forms(path):
            self._app.router.add_route(
                method, f"/{GRAPH_VERSION}{variant}", _guard(handler, permissions, None)
            )

    def add_mailbox(
        self,
        method: str,
        subpath: str,
        handler: Handler,
        *,
        permissions: Permissions | None,
        other_mailboxes_delegated: bool = False,
    ) -> None:
        """Register `subpath` under both `/users/{user}` and `/me`. The handler can rely on
        `graph_call(request).user()` naming an existing mailbox; a delegated token may only use
        its own mailbox unless `other_mailboxes_delegated` (getSchedule reads others' free/busy)."""
        guarded = _guard(handler, permissions, other_mailboxes_delegated)
        for variant in _function_forms(subpath):
            self._app.router.add_route(method, f"/{GRAPH_VERSION}/users/{{user}}{variant}", guarded)
            self._app.router.add_route(method, f"/{GRAPH_VERSION}/me{variant}", guarded)

    def add_raw(self, method: str, path: str, handler: Handler) -> None:
        """A route outside the Graph pipeline's auth and throttling (identity platform endpoints,
        pre-authenticated upload URLs). The envelope still adds request ids and error bodies."""
        self._app.router.add_route(method, path, handler)


def _function_forms(path: str) -> tuple[str, ...]:
    """OData functions may be called with or without "()": Graph accepts `.../delta` and
    `.../delta()`, and msgraph-sdk sends the latter."""
    if path.endswith("/delta"):
        return (path, path + "()")
    return (path,)


def _guard(handler: Handler, permissions: Permissions | None, mailbox_others: bool | None) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        auth = call.caller
        if permissions is not None:
            permissions.check(auth)
        if mailbox_others is not None:
            user = call.user()
            if auth.delegated and not mailbox_others and user.id != auth.user_id:
                raise access_denied()
        return await handler(request)

    return guarded


class ControlRouter:
    """Adds routes under /_emulator (no authentication; loopback clients only)."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def add(self, method: str, path: str, handler: Handler) -> None:
        self._app.router.add_route(method, f"/_emulator{path}", handler)


class ModuleBase:
    """The context plumbing every module shares: `setup` keeps the emulator context, `ctx`
    returns it (a module used before setup is a bug in the emulator, so it raises). Modules
    that build more state in `setup` call `super().setup(ctx)` first."""

    name: str
    _ctx: EmulatorContext | None = None

    @property
    def ctx(self) -> EmulatorContext:
        if self._ctx is None:
            raise RuntimeError(f"the {self.name} module is not set up")
        return self._ctx

    def setup(self, ctx: EmulatorContext) -> None:
        self._ctx = ctx

    def reset(self) -> None:
        return None


class EmulatorModule(Protocol):
    name: str

    def setup(self, ctx: EmulatorContext) -> None: ...

    def graph_routes(self, router: GraphRouter) -> None: ...

    def control_routes(self, router: ControlRouter) -> None: ...

    def reset(self) -> None: ...
