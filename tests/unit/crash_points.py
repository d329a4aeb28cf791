"""Killing a worker at every step boundary (TARGETS R2).

A step boundary is the moment right after one I/O operation completed: a table read or write,
a Graph call, a blob staged, a queue message sent, a webhook POST answered. `Boundaries` wraps
the operations of the fakes a test uses, numbers every boundary a run passes, and, armed with
`kill_at=n`, makes the process die right after the n-th: the operation's effect stands (the row
is written, the POST reached the host), and `Killed` — a BaseException, so no `except Exception`
in the code under test can catch it — unwinds the worker. A dead process does no more I/O: every
wrapped operation after the kill raises `Killed` before it runs, so `finally` blocks (a lease
released, a run recorded as failed) cannot tidy up as they could not after a real crash. What
the dead worker held in memory is gone; what it wrote to the fakes stays, as it would in
storage.

A test first runs its workload once unarmed to learn how many boundaries it has, then once per
boundary: a fresh world, killed there, then rerun unarmed until it settles.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest


class Killed(BaseException):
    """The process dies right after the boundary named in the message."""


@dataclass
class Boundaries:
    kill_at: int | None = None  # 1-based: die right after this boundary
    seen: list[str] = field(default_factory=list)  # every boundary passed, in order
    killed: str | None = None  # the boundary the process died after

    def dead(self) -> None:
        """Refuse I/O once the process has died."""
        if self.killed is not None:
            raise Killed(f"the process died after {self.killed}")

    def passed(self, label: str) -> None:
        self.seen.append(label)
        if self.killed is None and self.kill_at is not None and len(self.seen) == self.kill_at:
            self.killed = label
            raise Killed(f"killed after boundary {self.kill_at}: {label}")

    def disarm(self) -> None:
        self.kill_at = None

    def wrap(
        self,
        monkeypatch: pytest.MonkeyPatch,
        target: Any,
        name: str,
        label: str | Callable[[Any], str] | None = None,
    ) -> None:
        """Make `target.name` (a coroutine function or an async generator function, on an
        instance or a class) pass a boundary when it completes. For a class, `label` may be a
        function of the instance (e.g. the table's name)."""
        real = getattr(target, name)
        on_class = inspect.isclass(target)
        boundaries = self

        def named(owner: Any) -> str:
            if callable(label):
                return f"{label(owner)}.{name}"
            return label or name

        if inspect.isasyncgenfunction(real):

            @functools.wraps(real)
            async def gen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                owner = args[0] if on_class else target
                boundaries.dead()
                async for item in real(*args, **kwargs):
                    yield item
                boundaries.passed(named(owner))  # the whole read completed

            monkeypatch.setattr(target, name, gen_wrapper)
            return

        @functools.wraps(real)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            owner = args[0] if on_class else target
            boundaries.dead()
            result = await real(*args, **kwargs)
            boundaries.passed(named(owner))
            return result

        monkeypatch.setattr(target, name, wrapper)


TABLE_OPERATIONS = ("get", "insert", "update", "upsert", "delete", "write_many", "query", "delete_rows")
