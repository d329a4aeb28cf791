"""`FunctionHost`: index an app, then serve its HTTP routes, fire its timers, feed its queues.

All configuration is resolved in the constructor (settings, schedules, routes, connections),
so a bad app or setting fails before anything is started, naming the function and setting at
fault, as the real host fails indexing. `start()` then only opens sockets and starts tasks.

Settings (`%NAME%` references, connection names, key overrides) are read from `os.environ`
overlaid with `env`. `env` is not written into `os.environ`: tests pass per-test queue names
through it without leaking them into other tests. Functions that read settings themselves see
the process environment, which the CLI fills from local.settings.json.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from azure.storage.queue import QueueClient

from devtools.funchost.indexing import (
    HTTP_TRIGGER,
    QUEUE_TRIGGER,
    TIMER_TRIGGER,
    IndexableApp,
    IndexedFunction,
    index_app,
)
from devtools.funchost.invoker import Invoker
from devtools.funchost.queues import QueueListener, admin_message, validate_queue_name
from devtools.funchost.routes import AuthLevel, RouteTemplate, key_allows, parse_auth_level, provided_key
from devtools.funchost.server import (
    LANDING_PAGE,
    MAX_REQUEST_BODY,
    AccessLogger,
    HttpRoute,
    to_function_request,
    to_web_response,
)
from devtools.funchost.settings import (
    FunctionHostError,
    HostConfig,
    load_host_json,
    resolve_connection,
    resolve_setting_refs,
)
from devtools.funchost.timers import Schedule, TimerRunner

log = logging.getLogger("devtools.funchost")

FUNCTION_KEY_SETTING = "FUNCHOST_FUNCTION_KEY"
MASTER_KEY_SETTING = "FUNCHOST_MASTER_KEY"
ADMIN_INVOKE_REASON = "This function was programmatically called via the host APIs."


@dataclass(frozen=True)
class TimerSpec:
    function: IndexedFunction
    schedule: Schedule
    run_on_startup: bool


@dataclass(frozen=True)
class QueueSpec:
    function: IndexedFunction
    queue_name: str
    connection_string: str


class FunctionHost:
    """A local Functions host for one app. Use as `async with FunctionHost(app=...) as host:`.

    `app`: a `func.FunctionApp` (indexed once per app object, cached across hosts).
    `host_json`: a path to host.json, a `HostConfig`, or None for the real host's defaults.
    `port`: TCP port on `bind` (127.0.0.1); 0 picks a free one, see `base_url`.
    `env`: settings overlaid on `os.environ` for this host (see the module docstring).
    `shutdown_timeout`: seconds to wait for in-flight invocations when stopping.
    """

    def __init__(
        self,
        app: IndexableApp,
        *,
        host_json: str | Path | HostConfig | None = None,
        port: int = 7071,
        bind: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.config = host_json if isinstance(host_json, HostConfig) else load_host_json(host_json)
        self.settings: dict[str, str] = {**os.environ, **(env or {})}
        self.port = port
        self.bind = bind
        self.shutdown_timeout = shutdown_timeout
        # not persisted: a restart hands out new keys unless they are pinned through settings
        self.function_key = self.settings.get(FUNCTION_KEY_SETTING) or secrets.token_urlsafe(32)
        self.master_key = self.settings.get(MASTER_KEY_SETTING) or secrets.token_urlsafe(32)
        self.host_id = uuid.uuid4().hex[:16]

        self.functions: dict[str, IndexedFunction] = {}
        self.routes: list[HttpRoute] = []
        self.timer_specs: dict[str, TimerSpec] = {}
        self.queue_specs: dict[str, QueueSpec] = {}
        for function in index_app(app):
            self.functions[function.name.lower()] = function
            kind = function.trigger_type
            if kind == HTTP_TRIGGER:
                self.routes.append(self._http_route(function))
            elif kind == TIMER_TRIGGER:
                self.timer_specs[function.name] = self._timer_spec(function)
            elif kind == QUEUE_TRIGGER:
                self.queue_specs[function.name] = self._queue_spec(function)
        # most specific first, as ASP.NET orders routes; stable, so declaration order breaks ties
        self.routes.sort(key=lambda r: r.template.precedence)

        self._invoker: Invoker | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._started_at = time.monotonic()
        self.timers: dict[str, TimerRunner] = {}
        self.queues: dict[str, QueueListener] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # -- indexing -----------------------------------------------------------------------------

    def _http_route(self, function: IndexedFunction) -> HttpRoute:
        trigger = function.trigger
        what = f"function '{function.name}'"
        route = trigger.get("route")
        template = resolve_setting_refs(str(route), self.settings, what=what) if route else function.name
        methods = frozenset(str(m).upper() for m in trigger.get("methods") or [])
        return HttpRoute(
            function=function,
            template=RouteTemplate.parse(template),
            methods=methods,
            auth_level=parse_auth_level(trigger.get("authLevel"), what=what),
        )

    def _timer_spec(self, function: IndexedFunction) -> TimerSpec:
        what = f"function '{function.name}' schedule"
        raw = str(function.trigger.get("schedule") or "")
        if not raw:
            raise FunctionHostError(f"{what}: no schedule")
        expression = resolve_setting_refs(raw, self.settings, what=what)
        return TimerSpec(
            function=function,
            schedule=Schedule.parse(expression, what=what),
            run_on_startup=bool(function.trigger.get("runOnStartup", False)),
        )

    def _queue_spec(self, function: IndexedFunction) -> QueueSpec:
        what = f"function '{function.name}'"
        raw = str(function.trigger.get("queueName") or "")
        name = validate_queue_name(resolve_setting_refs(raw, self.settings, what=what), what=what)
        connection = resolve_connection(function.trigger.get("connection"), self.settings, what=what)
        try:
            # parses only (no I/O), so a malformed string fails here rather than mid-start
            QueueClient.from_connection_string(connection, name).close()
        except ValueError as err:
            raise FunctionHostError(f"{what}: its storage connection string is invalid ({err})") from None
        return QueueSpec(function=function, queue_name=name, connection_string=connection)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` once started (with the real port when started with 0)."""
        if self._base_url is None:
            raise RuntimeError("the host is not started")
        return self._base_url

    @property
    def invoker(self) -> Invoker:
        if self._invoker is None:
            raise RuntimeError("the host is not started")
        return self._invoker

    async def start(self) -> FunctionHost:
        if self._invoker is not None:
            raise RuntimeError("the host is already started")
        self._invoker = Invoker()
        self._started_at = time.monotonic()
        try:
            web_app = web.Application(client_max_size=MAX_REQUEST_BODY)
            # every path, a percent-encoded newline (%0A) in it too: `.` would not match it, and
            # aiohttp's own text/plain 404 would answer instead of the host's routing
            web_app.router.add_route("*", r"/{tail:[\s\S]*}", self._handle)
            self._runner = web.AppRunner(
                web_app,
                shutdown_timeout=self.shutdown_timeout,
                access_log_class=AccessLogger,
                access_log=logging.getLogger("devtools.funchost.http"),
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.bind, self.port)
            await site.start()
            port = self._runner.addresses[0][1]
            self._base_url = f"http://{self.bind}:{port}"
            for name, spec in self.timer_specs.items():
                runner = TimerRunner(
                    spec.function, spec.schedule, run_on_startup=spec.run_on_startup, invoker=self._invoker
                )
                self.timers[name] = runner
                runner.start()
            for name, qspec in self.queue_specs.items():
                listener = QueueListener(
                    qspec.function,
                    qspec.queue_name,
                    qspec.connection_string,
                    self.config.queues,
                    self._invoker,
                )
                self.queues[name] = listener
                listener.start()
        except BaseException:
            await self.stop()
            raise
        log.info("Host started at %s (%d functions)", self._base_url, len(self.functions))
        return self

    async def stop(self) -> None:
        """Stop taking work, give in-flight invocations `shutdown_timeout` s, then close."""
        if self._invoker is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout
        for listener in self.queues.values():
            listener.stop_polling()
        await asyncio.gather(*(t.stop() for t in self.timers.values()))
        for task in self._background:
            task.cancel()  # the invocation itself is shielded and drained below

        async def drain() -> None:
            pending: set[asyncio.Task[Any]] = set(self.invoker.tasks)
            for listener in self.queues.values():
                pending |= listener.message_tasks
            if pending:
                await asyncio.wait(pending, timeout=self.shutdown_timeout)
            for listener in self.queues.values():
                await listener.close()
            await self.invoker.drain(max(0.0, deadline - loop.time()))

        async def close_http() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        await asyncio.gather(drain(), close_http(), *self._background, return_exceptions=True)
        self.timers.clear()
        self.queues.clear()
        self._background.clear()
        self._runner = None
        self._base_url = None
        self._invoker = None
        log.info("Host stopped")

    async def __aenter__(self) -> FunctionHost:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- invoking ---------------------------------------------------------------------------

    def _function(self, name: str) -> IndexedFunction:
        function = self.functions.get(name.lower())
        if function is None:
            raise KeyError(f"no function named '{name}'")
        return function

    async def invoke_timer(self, name: str) -> None:
        """Run timer function `name` now and return when it is done, raising what it raised."""
        function = self._function(name)
        runner = self.timers.get(function.name)
        if runner is None:
            raise ValueError(
                f"function '{function.name}' is not a timer function, or the host is not started"
            )
        await runner.fire(reason=ADMIN_INVOKE_REASON)

    def next_run(self, name: str) -> datetime | None:
        """When timer function `name` fires next (UTC)."""
        function = self._function(name)
        runner = self.timers.get(function.name)
        if runner is not None:
            return runner.next_run
        return self.timer_specs[function.name].schedule.next_after(datetime.now(UTC))

    def route_url(self, function_name: str, /, **values: object) -> str:
        """The URL of HTTP function `function_name`, its route parameters filled from `values`."""
        function = self._function(function_name)
        for route in self.routes:
            if route.function is function:
                return f"{self.base_url}{self._prefix_path()}/{route.template.format(**values)}"
        raise ValueError(f"function '{function.name}' is not an HTTP function")

    def _prefix_path(self) -> str:
        return f"/{self.config.route_prefix}" if self.config.route_prefix else ""

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _invoke_quietly(self, function: IndexedFunction, text: str) -> None:
        try:
            await self.invoker.invoke(function, admin_message(text), reason=ADMIN_INVOKE_REASON)
        except Exception:  # logged with its traceback by the invoker; the caller already has 202
            return

    # -- HTTP ---------------------------------------------------------------------------------

    def _key_ok(self, request: web.Request, level: AuthLevel) -> bool:
        key = provided_key(request.query, request.headers)
        return key_allows(level, key, function_key=self.function_key, master_key=self.master_key)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        lowered = path.lower()
        if lowered == "/admin" or lowered.startswith("/admin/"):
            return await self._admin(request, path)
        prefix = f"/{self.config.route_prefix}".rstrip("/").lower()
        if lowered == prefix or lowered.startswith(prefix + "/"):
            relative = path[len(prefix) :]
            for route in self.routes:
                values = route.template.match(relative)
                # a route whose methods exclude this one is skipped: the real host answers 404
                if values is not None and route.allows(request.method):
                    return await self._serve(route, values, request)
        if path == "/" and request.method in ("GET", "HEAD"):
            return web.Response(text=LANDING_PAGE, content_type="text/html")
        return web.Response(status=404)

    async def _serve(
        self, route: HttpRoute, values: dict[str, str], request: web.Request
    ) -> web.StreamResponse:
        if not self._key_ok(request, route.auth_level):
            return web.Response(status=401)
        function_request = await to_function_request(request, values)
        try:
            result = await self.invoker.invoke(
                route.function,
                function_request,
                reason=f"{ADMIN_INVOKE_REASON[:-1]} ({request.method} {request.path}).",
            )
        except Exception:  # logged with its traceback by the invoker
            return web.Response(status=500)
        return to_web_response(result, route.name)

    async def _admin(self, request: web.Request, path: str) -> web.StreamResponse:
        parts = [p for p in path.split("/") if p]
        if parts[1:] == ["host", "status"] and request.method == "GET":
            if not self._key_ok(request, AuthLevel.ADMIN):
                return web.Response(status=401)
            return web.json_response(
                {
                    "id": self.host_id,
                    "state": "Running",
                    "version": "devtools.funchost",
                    "processUptime": int((time.monotonic() - self._started_at) * 1000),
                }
            )
        if len(parts) == 3 and parts[1].lower() == "functions" and request.method == "POST":
            if not self._key_ok(request, AuthLevel.ADMIN):
                return web.Response(status=401)
            return await self._admin_invoke(request, parts[2])
        return web.Response(status=404)

    async def _admin_invoke(self, request: web.Request, name: str) -> web.StreamResponse:
        function = self.functions.get(name.lower())
        if function is None:
            return web.Response(status=404)
        if function.trigger_type == HTTP_TRIGGER:
            return web.json_response({"error": "HTTP functions are called through their route"}, status=400)
        raw = await request.read()
        try:
            payload = json.loads(raw) if raw.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": 'the body must be JSON: {"input": "..."}'}, status=400)
        if not isinstance(payload, dict):
            return web.json_response({"error": 'the body must be JSON: {"input": "..."}'}, status=400)
        text = payload.get("input")
        text = "" if text is None else text if isinstance(text, str) else json.dumps(text)
        if function.trigger_type == TIMER_TRIGGER:
            runner = self.timers[function.name]
            runner.spawn(due=None, reason=ADMIN_INVOKE_REASON)  # tracked and stopped by the runner
        else:
            self._spawn(self._invoke_quietly(function, text))
        return web.Response(status=202)

    # -- describing ---------------------------------------------------------------------------

    def describe(self) -> list[str]:
        """What the CLI prints at start: URLs, routes, timers, queues and keys."""
        lines = [f"Functions host running at {self.base_url}", ""]
        for route in self.routes:
            methods = ",".join(sorted(route.methods)) or "*"
            # the template itself, placeholders and all, as `func start` prints it
            url = f"{self.base_url}{self._prefix_path()}/{route.template.template}"
            lines.append(f"  {route.name}: [{methods}] {url}  (authLevel={route.auth_level.value})")
        for name, tspec in self.timer_specs.items():
            nxt = self.next_run(name)
            when = nxt.isoformat() if nxt else "?"
            lines.append(f"  {name}: timerTrigger '{tspec.schedule.expression}', next run {when} (UTC)")
        for name, qspec in self.queue_specs.items():
            lines.append(
                f"  {name}: queueTrigger on '{qspec.queue_name}' (poison: '{qspec.queue_name}-poison')"
            )
        lines += [
            "",
            f"  Function key: {self.function_key}",
            f"  Master key:   {self.master_key}",
        ]
        return lines
