"""Call user functions the way the Python worker does, and log each call like the host does.

`async def` functions run on the host's event loop; plain `def` functions run in a thread
pool so one slow sync function cannot stall HTTP, timers and queue polling (the worker does
the same). Every invocation gets an id and the host's "Executing"/"Executed" log lines.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import _abc as func_abc

from devtools.funchost.indexing import CONTEXT_PARAM, IndexedFunction

log = logging.getLogger("devtools.funchost")


class _TraceContext(func_abc.TraceContext):
    """No distributed tracing locally: empty W3C values, so code reading them does not crash."""

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(func_abc.RetryContext):
    """Retry policies are not run locally; every invocation is the first try."""

    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """The `context` argument a function may declare."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return threading.local

    @property
    def trace_context(self) -> func_abc.TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> func_abc.RetryContext:
        return _RetryContext()


def _directory_of(function: IndexedFunction) -> str:
    """The folder of the function's source file (the worker reports the function's folder)."""
    try:
        source = inspect.getsourcefile(function.user_function)
    except TypeError:  # a builtin or C callable has no source file
        source = None
    return str(Path(source).parent) if source else str(Path.cwd())


class Invoker:
    """Runs invocations and keeps track of them so the host can wait for them at shutdown."""

    def __init__(self, max_threads: int | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="funchost-worker")
        self._inflight: set[asyncio.Task[Any]] = set()

    @property
    def tasks(self) -> set[asyncio.Task[Any]]:
        """Invocations running now."""
        return set(self._inflight)

    async def invoke(
        self,
        function: IndexedFunction,
        argument: Any,
        *,
        reason: str,
        details: Mapping[str, object] | None = None,
        invocation_id: str | None = None,
    ) -> Any:
        """Call `function` with its trigger argument; return its result or raise its exception.

        The exception is logged here with its traceback, so callers only decide what it means
        (500, retry, poison, nothing) and do not log it again.
        """
        invocation_id = invocation_id or str(uuid.uuid4())
        kwargs: dict[str, Any] = {function.trigger_param: argument}
        if function.wants_context:
            kwargs[CONTEXT_PARAM] = InvocationContext(invocation_id, function.name, _directory_of(function))
        extra = "".join(f", {k}={v}" for k, v in (details or {}).items())
        task = asyncio.ensure_future(self._run(function, kwargs, reason, invocation_id, extra))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        # shielded: a cancelled caller (a dropped HTTP connection, shutdown) must not cut an
        # invocation off mid-way; the host waits for in-flight calls when it stops
        return await asyncio.shield(task)

    async def _run(
        self, function: IndexedFunction, kwargs: dict[str, Any], reason: str, invocation_id: str, extra: str
    ) -> Any:
        # logged inside the task so the outcome is recorded even when nobody awaits it any more
        log.info(
            "Executing 'Functions.%s' (Reason='%s', Id=%s%s)", function.name, reason, invocation_id, extra
        )
        started = time.monotonic()
        try:
            result = await self._call(function, kwargs)
        except Exception:
            elapsed = (time.monotonic() - started) * 1000
            log.exception(
                "Executed 'Functions.%s' (Failed, Id=%s%s, Duration=%dms)",
                function.name,
                invocation_id,
                extra,
                elapsed,
            )
            raise
        elapsed = (time.monotonic() - started) * 1000
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s%s, Duration=%dms)",
            function.name,
            invocation_id,
            extra,
            elapsed,
        )
        return result

    async def _call(self, function: IndexedFunction, kwargs: dict[str, Any]) -> Any:
        if function.is_async:
            return await function.user_function(**kwargs)
        # copy the context so contextvars set by the caller are visible in the worker thread
        call = functools.partial(contextvars.copy_context().run, function.user_function, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def drain(self, grace: float) -> None:
        """Wait up to `grace` s for in-flight invocations, then cancel what is left.

        Sync functions already running in a thread cannot be interrupted; they are abandoned
        (the pool is shut down without waiting) as the real worker abandons them on shutdown.
        """
        pending = set(self._inflight)
        if pending:
            log.info("Waiting up to %.1fs for %d in-flight invocation(s)", grace, len(pending))
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                log.warning("Cancelled %d invocation(s) still running at shutdown", len(still))
                await asyncio.wait(still, timeout=1.0)
        self._executor.shutdown(wait=False, cancel_futures=True)
