"""Outlook's per-app, per-mailbox limits, injected faults, and per-mailbox counters.

Limits (Graph docs, "Outlook service limits"): at most 4 concurrent requests per app per mailbox
(the fifth gets 429 ApplicationThrottled, inner code MailboxConcurrency) and 10,000 requests per
10 minutes per app per mailbox; both answer with `Retry-After`. The budget window runs on the
emulator clock, so a test can spend a small budget and then advance time instead of waiting.

Counters are kept per mailbox (all apps together): requests, request and response body bytes, the
highest number of requests seen in flight at once, and 429 answers of any cause.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal["status", "latency", "drop", "drop_after"]


@dataclass
class Limits:
    concurrency: int = 4
    budget: int = 10_000
    budget_window_seconds: float = 600.0
    # What Retry-After says when the concurrency limit bites: the slot frees as soon as one of the
    # four running requests ends, so a short wait is right.
    concurrency_retry_after: int = 1
    latency_seconds: float = 0.0  # added to every Graph request (benchmarks use 0.1)

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "budget": self.budget,
            "budgetWindowSeconds": self.budget_window_seconds,
            "concurrencyRetryAfter": self.concurrency_retry_after,
            "latencySeconds": self.latency_seconds,
        }

    def update(self, values: dict[str, Any]) -> None:
        names = {
            "concurrency": "concurrency",
            "budget": "budget",
            "budgetWindowSeconds": "budget_window_seconds",
            "concurrencyRetryAfter": "concurrency_retry_after",
            "latencySeconds": "latency_seconds",
        }
        for key, value in values.items():
            attr = names.get(key, key)
            if attr not in {f.name for f in dataclasses.fields(self)}:
                raise ValueError(f"unknown setting {key}")
            setattr(self, attr, type(getattr(self, attr))(value))


@dataclass
class MailboxCounters:
    mailbox: str  # user id (or the path's key, lower-cased, for an unknown user)
    user_principal_name: str | None = None
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    max_concurrent: int = 0
    throttled: int = 0  # 429 responses, whatever the cause
    faults: int = 0  # injected faults served
    upload_sessions: int = 0  # createUploadSession calls that made a session (messages and events)

    def to_json(self) -> dict[str, Any]:
        return {
            "mailbox": self.mailbox,
            "userPrincipalName": self.user_principal_name,
            "requests": self.requests,
            "bytesIn": self.bytes_in,
            "bytesOut": self.bytes_out,
            "maxConcurrent": self.max_concurrent,
            "throttled": self.throttled,
            "faults": self.faults,
            "uploadSessions": self.upload_sessions,
        }


class Counters:
    def __init__(self) -> None:
        self._by_mailbox: dict[str, MailboxCounters] = {}

    def mailbox(self, key: str, upn: str | None = None) -> MailboxCounters:
        counters = self._by_mailbox.get(key)
        if counters is None:
            counters = self._by_mailbox[key] = MailboxCounters(key, upn)
        elif upn and counters.user_principal_name is None:
            counters.user_principal_name = upn
        return counters

    def get(self, key: str) -> MailboxCounters:
        """A copy of one mailbox's counters (zeros if it saw no request)."""
        return dataclasses.replace(self._by_mailbox.get(key) or MailboxCounters(key))

    def snapshot(self) -> dict[str, MailboxCounters]:
        return {k: dataclasses.replace(v) for k, v in self._by_mailbox.items()}

    def reset(self, key: str | None = None) -> None:
        if key is None:
            self._by_mailbox.clear()
        else:
            self._by_mailbox.pop(key, None)


@dataclass
class Fault:
    """Serve the next `count` matching Graph requests badly.

    kind "status": answer `status` (429, 503, 504, ...) with a Graph error body and, if given,
    `Retry-After`; "latency": delay by `latency_seconds`, then handle normally; "drop": close the
    connection without any response; "drop_after": handle the request (its effects happen), then
    close the connection without the response - the lost-response case that makes clients retry
    a POST that already succeeded. Filters: `mailbox` (a user id, lower case), `path` (a regex
    searched in the request path), `method`.
    """

    kind: FaultKind = "status"
    status: int = 503
    count: int = 1
    retry_after: int | None = None
    latency_seconds: float = 0.0
    mailbox: str | None = None
    path: str | None = None
    method: str | None = None
    id: int = 0
    _pattern: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("status", "latency", "drop", "drop_after"):
            raise ValueError(f"unknown fault kind {self.kind}")
        if self.count < 1:
            raise ValueError("count must be at least 1")
        self._pattern = re.compile(self.path) if self.path else None

    def matches(self, method: str, path: str, mailbox: str | None) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.mailbox is not None and self.mailbox != mailbox:
            return False
        return self._pattern is None or self._pattern.search(path) is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "count": self.count,
            "retryAfter": self.retry_after,
            "latencySeconds": self.latency_seconds,
            "mailbox": self.mailbox,
            "path": self.path,
            "method": self.method,
        }


class Faults:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._next_id = 1

    def add(self, fault: Fault) -> Fault:
        fault.id = self._next_id
        self._next_id += 1
        self._faults.append(fault)
        return fault

    def take(self, method: str, path: str, mailbox: str | None) -> Fault | None:
        """The first pending fault matching this request, with one use consumed."""
        for fault in self._faults:
            if fault.matches(method, path, mailbox):
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def pending(self) -> list[Fault]:
        return list(self._faults)

    def clear(self) -> None:
        self._faults.clear()


class ThrottleState:
    """Requests in flight and the request budget's sliding window, per (app, mailbox)."""

    def __init__(self) -> None:
        self.in_flight: collections.Counter[tuple[str, str]] = collections.Counter()
        self.mailbox_in_flight: collections.Counter[str] = collections.Counter()
        self.recent: dict[tuple[str, str], collections.deque[float]] = {}

    def spend(self, key: tuple[str, str], now: float, limits: Limits) -> int | None:
        """Record one request against the budget; the seconds to wait if it is exhausted."""
        window = self.recent.setdefault(key, collections.deque())
        while window and window[0] <= now - limits.budget_window_seconds:
            window.popleft()
        if len(window) >= limits.budget:
            return int(window[0] + limits.budget_window_seconds - now) + 1
        window.append(now)
        return None

    def reset(self) -> None:
        # Only the budget: requests still in flight will decrement their own counts when they end.
        self.recent.clear()
