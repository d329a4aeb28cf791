"""When to try a failed delivery again, and when to give up: pure, tested with plain values.

Exponential backoff with full jitter (a uniform wait between 0 and min(cap, base·2^(n-1)) after
the n-th failure), so a host coming back is not hit by every tenant at once. The retry budget
counts from when the event was written: an event not delivered within it is dead-lettered
after its next failed attempt (every event gets at least one), and no retry is scheduled past
the budget's end, so the last attempt falls on it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.settings import Settings

Uniform = Callable[[float, float], float]


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 2.0
    cap_seconds: float = 300.0
    budget_seconds: float = 86_400.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            base_seconds=settings.webhook_backoff_base_seconds,
            cap_seconds=settings.webhook_backoff_cap_seconds,
            budget_seconds=settings.webhook_retry_budget_seconds,
        )

    def ceiling(self, failures: int) -> float:
        """The longest wait after the `failures`-th failure (1-based)."""
        exponent = min(max(failures, 1) - 1, 62)  # 2**62 already dwarfs any cap
        return min(self.cap_seconds, self.base_seconds * 2.0**exponent)


@dataclass(frozen=True)
class RetryAt:
    at: datetime


@dataclass(frozen=True)
class DeadLetter:
    pass


def after_failure(
    policy: RetryPolicy,
    *,
    failures: int,
    created_at: datetime,
    now: datetime,
    uniform: Uniform = random.uniform,
) -> RetryAt | DeadLetter:
    """What to do after the `failures`-th failed attempt of an event written at `created_at`."""
    deadline = created_at + timedelta(seconds=policy.budget_seconds)
    if now >= deadline:
        return DeadLetter()
    wait = uniform(0.0, policy.ceiling(failures))
    return RetryAt(min(now + timedelta(seconds=wait), deadline))
