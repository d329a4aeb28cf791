"""Delivering notifications over HTTP the way Graph's webhook channel does.

- Validation handshake: POST `{url}?validationToken=<token>` (Content-Type text/plain, empty body);
  the receiver must answer 200, `text/plain`, the URL-decoded token, within 10 s. The token looks
  like the service's ("Validation: Testing client application reachability ...": spaces and a
  colon), so a receiver that echoes it still URL-encoded fails here as it would against Graph.
- Notifications are queued per (URL, kind) and sent together when several arrive within
  `batch_window_seconds`, as `{"value": [...]}`. A 2xx within `timeout_seconds` (3 s) is success;
  anything else is retried with exponential backoff for `retry_for_seconds` (Graph: "multiple
  times, for up to 4 hours"), then dropped. Graph additionally throttles endpoints that are slow
  for 10% of 100 notifications (10-minute delays) and drops at 15%; the emulator does not.
- Every attempt is recorded (`log`) and summed per subscription (`stats`) for tests.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from devtools.graph_emulator.clock import Clock
from devtools.graph_emulator.errors import GraphError
from devtools.graph_emulator.ids import guid
from devtools.graph_emulator.subscriptions_store import NotificationSettings, Pending
from devtools.graph_emulator.timezones import format_instant

_LOG = logging.getLogger(__name__)

VALIDATION_FAILED = "Subscription validation request failed."
MUST_ANSWER_200 = "Notification endpoint must respond with 200 OK to validation request."


@dataclass(frozen=True)
class DeliveryAttempt:
    """One HTTP request the emulator made to a receiver (or a notification it dropped)."""

    number: int
    kind: str  # "validation" | "change" | "lifecycle"
    url: str
    subscription_ids: tuple[str, ...]
    notifications: int
    attempt: int  # 1 for the first try of a batch, 2 for its first retry, ...
    # "delivered" (2xx), "failed" (other status), "timeout", "error" (no connection),
    # "dropped" (the drop knob), "gaveUp" (retries exhausted), "validated" / "rejected" (handshake)
    outcome: str
    status: int | None
    error: str | None
    duration_ms: float
    at: dt.datetime  # emulator clock

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "kind": self.kind,
            "url": self.url,
            "subscriptionIds": list(self.subscription_ids),
            "notifications": self.notifications,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "status": self.status,
            "error": self.error,
            "durationMs": round(self.duration_ms, 1),
            "at": format_instant(self.at),
        }


@dataclass
class DeliveryStats:
    """Per subscription: what was queued for it and what became of it."""

    subscription_id: str
    queued: int = 0  # change and lifecycle notifications queued
    delivered: int = 0  # change notifications acknowledged with a 2xx
    lifecycle_delivered: int = 0
    dropped: int = 0  # lost: the drop knob, or retries given up
    attempts: int = 0  # HTTP attempts carrying at least one of its notifications
    failures: int = 0
    last_status: int | None = None
    last_outcome: str | None = None
    last_error: str | None = None
    last_attempt_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "subscriptionId": self.subscription_id,
            "queued": self.queued,
            "delivered": self.delivered,
            "lifecycleDelivered": self.lifecycle_delivered,
            "dropped": self.dropped,
            "attempts": self.attempts,
            "failures": self.failures,
            "lastStatus": self.last_status,
            "lastOutcome": self.last_outcome,
            "lastError": self.last_error,
            "lastAttemptAt": format_instant(self.last_attempt_at) if self.last_attempt_at else None,
        }


def validation_error(message: str) -> GraphError:
    return GraphError(400, "ValidationError", message)


class Deliverer:
    def __init__(self, clock: Clock, settings: NotificationSettings) -> None:
        self.clock = clock
        self.settings = settings
        self.log: list[DeliveryAttempt] = []
        self.stats: dict[str, DeliveryStats] = {}
        self._outbox: dict[tuple[str, str], list[Pending]] = collections.defaultdict(list)
        self._flushers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the handshake ---------------------------------------------------------------------------

    async def validate(self, url: str) -> None:
        """Graph's validation request; raises the 400 Graph answers the create request with."""
        token = f"Validation: Testing client application reachability for subscription Request-Id: {guid()}"
        separator = "&" if "?" in url else "?"
        # Encoded by hand (%20 for spaces, like .NET's Uri.EscapeDataString) and passed as already
        # encoded, so aiohttp sends exactly this.
        target = URL(f"{url}{separator}validationToken={quote(token, safe='')}", encoded=True)
        started = time.monotonic()
        status: int | None = None
        try:
            timeout = aiohttp.ClientTimeout(total=self.settings.validation_timeout_seconds)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    target,
                    data=b"",
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                    ssl=self.settings.verify_tls,
                ) as response,
            ):
                status = response.status
                content_type = response.content_type
                body = await response.text()
        except TimeoutError:
            self._record_validation(url, "timeout", None, "no answer in time", started)
            raise validation_error("Subscription validation request timed out.") from None
        except aiohttp.ClientError as exc:
            self._record_validation(url, "error", None, str(exc) or type(exc).__name__, started)
            raise validation_error(f"{VALIDATION_FAILED} {MUST_ANSWER_200}") from None
        if status != 200:
            self._record_validation(url, "rejected", status, "status is not 200", started)
            try:
                phrase = HTTPStatus(status).phrase.replace(" ", "")
            except ValueError:
                phrase = str(status)
            raise validation_error(f"{VALIDATION_FAILED} HTTP status code is '{phrase}'. {MUST_ANSWER_200}")
        if content_type != "text/plain":
            self._record_validation(url, "rejected", status, f"Content-Type {content_type}", started)
            raise validation_error(f"{VALIDATION_FAILED} The response must have Content-Type text/plain.")
        if body != token:
            self._record_validation(url, "rejected", status, "the token was not echoed", started)
            raise validation_error(
                f"{VALIDATION_FAILED} Response must exactly match validationToken query parameter."
            )
        self._record_validation(url, "validated", status, None, started)

    def _record_validation(
        self, url: str, outcome: str, status: int | None, error: str | None, started: float
    ) -> None:
        self._append("validation", url, (), 0, 1, outcome, status, error, started)

    # -- notifications ---------------------------------------------------------------------------

    def stats_for(self, subscription_id: str) -> DeliveryStats:
        found = self.stats.get(subscription_id)
        if found is None:
            found = self.stats[subscription_id] = DeliveryStats(subscription_id)
        return found

    def enqueue(self, pending: Pending) -> None:
        """Queue one notification; it goes out with others to the same URL after the batch window."""
        stats = self.stats_for(pending.subscription_id)
        stats.queued += 1
        if self.settings.drop:
            stats.dropped += 1
            self._append(
                pending.kind, pending.url, (pending.subscription_id,), 1, 1, "dropped", None, None, None
            )
            return
        self._outbox[(pending.url, pending.kind)].append(pending)
        self._kick()

    def _kick(self) -> None:
        """Start a flusher for each URL with waiting notifications (when an event loop runs: a
        change made from synchronous code is sent on the next occasion that has one)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for key, items in self._outbox.items():
            if items and key not in self._flushers:
                self._flushers[key] = loop.create_task(self._flush(key))

    async def _flush(self, key: tuple[str, str]) -> None:
        try:
            await asyncio.sleep(self.settings.batch_window_seconds)
            items = self._outbox[key]
            while items:
                batch = items[: max(1, self.settings.max_batch)]
                del items[: len(batch)]
                task = asyncio.get_running_loop().create_task(self._deliver(key[0], key[1], batch))
                self._tasks.add(task)
                task.add_done_callback(self._done)
        finally:
            self._flushers.pop(key, None)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOG.error("notification delivery failed", exc_info=task.exception())

    async def _deliver(self, url: str, kind: str, batch: list[Pending]) -> None:
        settings = self.settings
        payload = json.dumps({"value": [p.item for p in batch]}, separators=(",", ":")).encode()
        counts = collections.Counter(p.subscription_id for p in batch)
        ids = tuple(counts)
        if settings.delay_seconds > 0:
            await asyncio.sleep(settings.delay_seconds)
        loop = asyncio.get_running_loop()
        started = loop.time()
        wait = max(0.0, settings.retry_initial_seconds)
        attempt = 0
        while True:
            attempt += 1
            began = time.monotonic()
            status, outcome, error = await self._post(url, payload)
            entry = self._append(kind, url, ids, len(batch), attempt, outcome, status, error, began)
            for sub_id, count in counts.items():
                stats = self.stats_for(sub_id)
                stats.attempts += 1
                stats.last_status, stats.last_outcome, stats.last_error = status, outcome, error
                stats.last_attempt_at = entry.at
                if outcome == "delivered":
                    if kind == "change":
                        stats.delivered += count
                    else:
                        stats.lifecycle_delivered += count
                else:
                    stats.failures += 1
            if outcome == "delivered":
                return
            if loop.time() - started + wait > settings.retry_for_seconds:
                self._append(kind, url, ids, len(batch), attempt, "gaveUp", status, error, None)
                for sub_id, count in counts.items():
                    self.stats_for(sub_id).dropped += count
                return
            await asyncio.sleep(wait)
            wait = min(max(wait * 2, 0.001), settings.retry_max_interval_seconds)

    async def _post(self, url: str, payload: bytes) -> tuple[int | None, str, str | None]:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    url,
                    data=payload,
                    headers={"Content-Type": "application/json; charset=utf-8"},
                    ssl=self.settings.verify_tls,
                ) as response,
            ):
                await response.read()
                status = response.status
        except TimeoutError:
            return None, "timeout", f"no answer within {self.settings.timeout_seconds:g} s"
        except aiohttp.ClientError as exc:
            return None, "error", str(exc) or type(exc).__name__
        return status, ("delivered" if 200 <= status < 300 else "failed"), None

    def _append(
        self,
        kind: str,
        url: str,
        ids: tuple[str, ...],
        notifications: int,
        attempt: int,
        outcome: str,
        status: int | None,
        error: str | None,
        began: float | None,
    ) -> DeliveryAttempt:
        entry = DeliveryAttempt(
            number=len(self.log) + 1,
            kind=kind,
            url=url,
            subscription_ids=ids,
            notifications=notifications,
            attempt=attempt,
            outcome=outcome,
            status=status,
            error=error,
            duration_ms=(time.monotonic() - began) * 1000 if began is not None else 0.0,
            at=self.clock.now(),
        )
        self.log.append(entry)
        return entry

    # -- waiting and stopping --------------------------------------------------------------------

    def busy(self) -> bool:
        return bool(self._tasks or self._flushers or any(self._outbox.values()))

    async def drain(self, seconds: float = 10.0) -> bool:
        """Wait until every queued notification was delivered or given up; False on timeout
        (a receiver that keeps failing is retried for hours unless the settings say otherwise)."""
        self._kick()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.busy():
            waiting: set[asyncio.Task[None]] = set(self._tasks) | set(self._flushers.values())
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if not waiting:  # items without a flusher: none can be left after _kick, but be safe
                self._kick()
                await asyncio.sleep(0.01)
                continue
            await asyncio.wait(waiting, timeout=remaining)
        return True

    def _cancel(self) -> list[asyncio.Task[None]]:
        tasks = [*self._tasks, *self._flushers.values()]
        for task in tasks:
            task.cancel()
        self._tasks.clear()
        self._flushers.clear()
        self._outbox.clear()
        return tasks

    def reset(self) -> None:
        self._cancel()
        self.log.clear()
        self.stats.clear()

    async def close(self) -> None:
        """Cancel pending deliveries and retries (the emulator is stopping)."""
        tasks = self._cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
