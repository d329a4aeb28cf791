"""Waiting for something the local stack does in the background, without fixed sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(
    check: Callable[[], Any], *, within: float = 20.0, what: str = "condition", interval: float = 0.05
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy, and return that; fail
    naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(interval)
