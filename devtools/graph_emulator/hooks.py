"""Change hooks: how a domain module tells the rest of the emulator that a resource changed.

The calendar module calls `hooks.emit(Change(...))` whenever an event is created, updated or
deleted - through Graph or through the control API ("a person in Outlook"). A subscriptions
module subscribes once and turns changes into change notifications; tests can subscribe too.
Listeners may be plain functions or coroutine functions (run as tasks, errors logged).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

_LOG = logging.getLogger(__name__)

Listener = Callable[["Change"], Awaitable[None] | None]


@dataclass(frozen=True)
class Change:
    """One change to one resource.

    `resource` is the Graph resource path relative to the version root, as a subscription would
    name it: "users/{user-id}/events/{event-id}" (occurrences and exceptions use their own ids and
    carry `series_master_id`). `change_type` is "created", "updated" or "deleted", like Graph's
    `changeType`. `kind` names the domain ("event", later "message").
    """

    kind: str
    change_type: str
    tenant_id: str
    user_id: str
    resource_id: str
    resource: str
    container_id: str | None = None  # calendar id (events), folder id (messages)
    series_master_id: str | None = None
    change_key: str | None = None
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


class ChangeHooks:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every change; returns a function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def emit(self, change: Change) -> None:
        for listener in list(self._listeners):
            try:
                result = listener(change)
            except Exception:  # a broken listener must not fail the request that changed state
                _LOG.exception("change listener failed")
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOG.error("change listener failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for listeners still running (tests call this before asserting on their effects)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
