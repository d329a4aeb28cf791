"""The per-mailbox limiter: at most N in flight, first come first served, no leaks."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from core.graph.limits import MailboxLimiter


async def test_no_more_than_the_limit_hold_a_mailbox_at_once_and_the_limit_is_used() -> None:
    limiter = MailboxLimiter(4)
    active = peak = 0

    async def work() -> None:
        nonlocal active, peak
        async with limiter.slot("Kari@Contoso.example"):
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.005)
            active -= 1

    await asyncio.gather(*(work() for _ in range(12)))
    assert peak == 4
    assert limiter.idle


async def test_mailboxes_are_independent_and_keys_ignore_case() -> None:
    limiter = MailboxLimiter(1)
    async with limiter.slot("kari@contoso.example"):
        # another mailbox is not blocked ...
        await asyncio.wait_for(_hold(limiter, "ola@contoso.example"), 1)
        # ... but the same mailbox in other case is
        blocked = asyncio.create_task(_hold(limiter, "KARI@contoso.example"))
        await asyncio.sleep(0.01)
        assert not blocked.done()
        assert limiter.waiting("kari@contoso.example") == 1
    await asyncio.wait_for(blocked, 1)
    assert limiter.idle


async def _hold(limiter: MailboxLimiter, mailbox: str, seconds: float = 0.0) -> None:
    async with limiter.slot(mailbox):
        await asyncio.sleep(seconds)


async def test_waiters_get_slots_first_come_first_served_without_barging() -> None:
    limiter = MailboxLimiter(1)
    order: list[int] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with limiter.slot("m"):
            await release.wait()

    async def waiter(n: int) -> None:
        async with limiter.slot("m"):
            order.append(n)
            await asyncio.sleep(0)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(waiter(n)) for n in range(5)]
    await asyncio.sleep(0)
    release.set()
    await first
    late = asyncio.create_task(waiter(99))  # arrives after the release: must queue behind
    await asyncio.gather(*waiters, late)
    assert order == [0, 1, 2, 3, 4, 99]
    assert limiter.idle


async def test_a_waiter_cancelled_in_the_queue_leaves_no_trace() -> None:
    limiter = MailboxLimiter(1)
    async with limiter.slot("m"):
        queued = asyncio.create_task(_hold(limiter, "m"))
        await asyncio.sleep(0)
        queued.cancel()
        await asyncio.gather(queued, return_exceptions=True)
        assert limiter.waiting("m") == 0
    assert limiter.idle


async def test_a_waiter_cancelled_just_after_being_handed_the_slot_passes_it_on() -> None:
    limiter = MailboxLimiter(1)
    got: list[str] = []
    gate = asyncio.Event()

    async def holder() -> None:
        async with limiter.slot("m"):
            await gate.wait()

    async def second() -> None:
        async with limiter.slot("m"):
            got.append("second")

    async def third() -> None:
        async with limiter.slot("m"):
            got.append("third")

    h = asyncio.create_task(holder())
    await asyncio.sleep(0)
    s = asyncio.create_task(second())
    t = asyncio.create_task(third())
    await asyncio.sleep(0)
    gate.set()
    await asyncio.sleep(0)  # the holder leaves and hands the slot to `second` ...
    await h
    s.cancel()  # ... which is cancelled before it could run
    await asyncio.gather(s, return_exceptions=True)
    await asyncio.wait_for(t, 1)
    assert got == ["third"]
    assert limiter.idle


async def test_an_exception_inside_the_slot_releases_it() -> None:
    limiter = MailboxLimiter(1)
    for _ in range(3):
        try:
            async with limiter.slot("m"):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
    assert limiter.idle


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 3), st.booleans(), st.integers(0, 3)),
        min_size=1,
        max_size=30,
    ),
    st.integers(1, 4),
)
def test_under_any_interleaving_of_work_and_cancellation_the_limit_holds_and_nothing_leaks(
    plan: list[tuple[str, int, bool, int]], limit: int
) -> None:
    """GIVEN tasks that hold a mailbox for a few scheduler turns, some cancelled after a few
    turns, THEN no mailbox ever has more than `limit` holders and the limiter ends idle."""

    async def run() -> None:
        limiter = MailboxLimiter(limit)
        holders = {"a": 0, "b": 0}
        worst = 0

        async def task(mailbox: str, turns: int) -> None:
            nonlocal worst
            async with limiter.slot(mailbox):
                holders[mailbox] += 1
                worst = max(worst, holders[mailbox])
                try:
                    for _ in range(turns):
                        await asyncio.sleep(0)
                finally:
                    holders[mailbox] -= 1

        tasks = []
        for mailbox, turns, cancel, cancel_after in plan:
            t = asyncio.create_task(task(mailbox, turns))
            tasks.append((t, cancel, cancel_after))
        for turn in range(4):
            for t, cancel, cancel_after in tasks:
                if cancel and cancel_after == turn:
                    t.cancel()
            await asyncio.sleep(0)
        await asyncio.gather(*(t for t, _, _ in tasks), return_exceptions=True)
        assert worst <= limit
        assert limiter.idle

    asyncio.run(run())
