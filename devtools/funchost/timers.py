"""Timer schedules: six-field NCRONTAB (`sec min hour day month dow`) or a TimeSpan interval.

NCRONTAB differs from Unix cron in two ways that matter here: it has a seconds field first,
and when both day-of-month and day-of-week are restricted a time must match *both*
(`0 0 8 1-7 * Tue` is "the first Tuesday"), where Unix cron would match either. croniter does
both with `second_at_beginning=True, day_or=False`. All times are UTC, as on Linux plans when
WEBSITE_TIME_ZONE is not set.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.functions.timer import TimerRequest
from croniter import croniter

from devtools.funchost.indexing import IndexedFunction
from devtools.funchost.invoker import Invoker
from devtools.funchost.settings import FunctionHostError, parse_timespan

_TIMESPAN_SCHEDULE = re.compile(r"^(?:\d+\.)?\d{1,2}:\d{1,2}:\d{1,2}$")

# An invocation that starts more than this after its scheduled time is reported as past due.
PAST_DUE_AFTER = timedelta(seconds=1)


@dataclass(frozen=True)
class Schedule:
    """When a timer fires: `Schedule.parse("0 */5 * * * *").next_after(now)`."""

    expression: str
    interval: timedelta | None = None  # set for TimeSpan schedules ("00:05:00")

    @classmethod
    def parse(cls, expression: str, *, what: str = "schedule") -> Schedule:
        text = " ".join(expression.split())
        if _TIMESPAN_SCHEDULE.match(text):
            seconds = parse_timespan(text, what=what)
            if seconds <= 0:
                raise FunctionHostError(f"{what}: a TimeSpan schedule must be longer than zero")
            return cls(expression=text, interval=timedelta(seconds=seconds))
        fields = text.split(" ")
        if len(fields) != 6:
            raise FunctionHostError(
                f"{what}: '{expression}' has {len(fields)} fields; NCRONTAB needs six "
                "(second minute hour day month day-of-week)"
            )
        if not croniter.is_valid(text, second_at_beginning=True):
            raise FunctionHostError(f"{what}: '{expression}' is not a valid NCRONTAB expression")
        return cls(expression=text)

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (aware; the result is UTC)."""
        moment = moment.astimezone(UTC)
        if self.interval is not None:
            return moment + self.interval
        it = croniter(self.expression, moment, day_or=False, second_at_beginning=True)
        nxt: datetime = it.get_next(datetime)
        return nxt.astimezone(UTC)

    def is_past_due(self, scheduled: datetime, started: datetime) -> bool:
        """Whether an invocation that starts at `started` is late for the one due at `scheduled`."""
        return started - scheduled > PAST_DUE_AFTER


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class TimerRunner:
    """Fires one timer function on its schedule; one invocation at a time, like the real host.

    Scheduled, on-start-up and on-demand invocations share one lock, so a manual run while a
    scheduled one is going waits for it (and a scheduled one that had to wait is past due).
    A failed invocation is logged and not retried: the next run is the next occurrence.
    """

    def __init__(
        self, function: IndexedFunction, schedule: Schedule, *, run_on_startup: bool, invoker: Invoker
    ) -> None:
        self.function = function
        self.schedule = schedule
        self.run_on_startup = run_on_startup
        self._invoker = invoker
        self._lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._fires: set[asyncio.Task[None]] = set()
        self.last_run: datetime | None = None
        self.next_run: datetime | None = schedule.next_after(datetime.now(UTC))

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name=f"funchost-timer-{self.function.name}")

    async def _loop(self) -> None:
        if self.run_on_startup:
            await self._fire_and_wait(None, "Timer fired at start-up (runOnStartup).")
        last_due = datetime.now(UTC)
        while True:
            # never before the previous occurrence: a wake-up a hair early must not fire it twice
            due = self.schedule.next_after(max(datetime.now(UTC), last_due))
            self.next_run = due
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            last_due = due
            await self._fire_and_wait(due, f"Timer fired at {due.isoformat()}")

    async def _fire_and_wait(self, due: datetime | None, reason: str) -> None:
        task = self.spawn(due=due, reason=reason)
        # asyncio.wait does not cancel `task` when this loop is cancelled at shutdown
        await asyncio.wait({task})

    def spawn(self, *, due: datetime | None, reason: str) -> asyncio.Task[None]:
        """Run the function in the background (errors logged, not raised); tracked for shutdown."""
        task = asyncio.create_task(self._fire_logged(due, reason))
        self._fires.add(task)
        task.add_done_callback(self._fires.discard)
        return task

    async def _fire_logged(self, due: datetime | None, reason: str) -> None:
        # the invoker logged the traceback; a timer failure is not retried (real behaviour)
        with contextlib.suppress(Exception):
            await self.fire(due=due, reason=reason)

    async def fire(self, *, due: datetime | None = None, reason: str) -> None:
        """Run the function now (after any invocation in progress) and raise what it raises."""
        async with self._lock:
            started = datetime.now(UTC)
            request = TimerRequest(
                past_due=due is not None and self.schedule.is_past_due(due, started),
                schedule_status={
                    "Last": _iso(self.last_run),
                    "Next": _iso(self.next_run),
                    "LastUpdated": started.isoformat(),
                },
                schedule={"AdjustForDST": True},
            )
            try:
                await self._invoker.invoke(self.function, request, reason=reason)
            finally:
                self.last_run = started

    async def stop(self) -> None:
        """Stop scheduling and drop invocations still waiting for the lock.

        Invocations already running are not cut off: they belong to the invoker, which the host
        drains afterwards.
        """
        tasks = [t for t in (self._loop_task, *self._fires) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
