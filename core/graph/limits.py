"""At most N requests in flight per mailbox, across every caller in the process.

Exchange Online allows 4 concurrent requests per app and mailbox and answers the fifth with
429 (FACTS); TARGETS P2 counts every moment above 4. One `MailboxLimiter` is shared by every
gateway in the process (the composition root builds it), and the gateway holds a slot only
while a request is on the wire — never while it sleeps on Retry-After — so a throttled caller
does not block the others.

Fair: slots go to waiters first-come, first-served, and a released slot is handed straight to
the next waiter (no barging by a newcomer). Cancellation never leaks a slot: a waiter cancelled
before it got one leaves the queue; one cancelled just after being handed one passes it on.
Idle mailboxes leave no state behind.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

# Exchange Online's documented per-mailbox concurrency for an app.
MAILBOX_CONCURRENCY = 4


class _Gate:
    __slots__ = ("active", "waiters")

    def __init__(self) -> None:
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


class MailboxLimiter:
    def __init__(self, limit: int = MAILBOX_CONCURRENCY) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._gates: dict[str, _Gate] = {}

    @staticmethod
    def key(mailbox: str) -> str:
        # UPNs and addresses are case-insensitive; ids are GUIDs. A mailbox addressed once by
        # UPN and once by id counts twice: callers use one form per mailbox (the link's).
        return mailbox.casefold()

    @asynccontextmanager
    async def slot(self, mailbox: str) -> AsyncIterator[None]:
        """Hold one of the mailbox's slots for the body of the `async with`."""
        key = self.key(mailbox)
        await self._acquire(key)
        try:
            yield
        finally:
            self._release(key)

    async def _acquire(self, key: str) -> None:
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = _Gate()
        if gate.active < self.limit and not gate.waiters:
            gate.active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gate.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over, but this task was cancelled before it resumed:
                # give the slot to the next waiter instead of dropping it.
                self._release(key)
            else:
                with suppress(ValueError):
                    gate.waiters.remove(waiter)
                self._forget_if_idle(key, gate)
            raise

    def _release(self, key: str) -> None:
        gate = self._gates[key]
        while gate.waiters:
            waiter = gate.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter: `active` is unchanged
                return
        gate.active -= 1
        self._forget_if_idle(key, gate)

    def _forget_if_idle(self, key: str, gate: _Gate) -> None:
        if gate.active == 0 and not gate.waiters and self._gates.get(key) is gate:
            del self._gates[key]

    # --- introspection (diagnostics and tests) ---------------------------------------------

    def in_flight(self, mailbox: str) -> int:
        gate = self._gates.get(self.key(mailbox))
        return gate.active if gate else 0

    def waiting(self, mailbox: str) -> int:
        gate = self._gates.get(self.key(mailbox))
        return sum(1 for w in gate.waiters if not w.done()) if gate else 0

    @property
    def idle(self) -> bool:
        """True when no mailbox has a request in flight or waiting (and no state is kept)."""
        return not self._gates
