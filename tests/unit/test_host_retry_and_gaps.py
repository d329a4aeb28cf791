"""The pure parts of delivery: backoff with full jitter and the retry budget, and reading an
outbox partition without stepping over a sequence still being written. Plain values only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from core.host.gaps import PagePlan, plan_page
from core.host.records import OutboxEntry, OutboxGap, OutboxRow
from core.host.retry import DeadLetter, RetryAt, RetryPolicy, after_failure

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=10)


def highest(lo: float, hi: float) -> float:
    return hi


# --- retry -------------------------------------------------------------------------------------


def test_the_backoff_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    policy = RetryPolicy(base_seconds=2, cap_seconds=60, budget_seconds=86_400)
    assert [policy.ceiling(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert policy.ceiling(10_000) == 60  # no overflow


@given(failures=st.integers(1, 200), draw=st.floats(0, 1))
def test_full_jitter_waits_between_zero_and_the_ceiling(failures: int, draw: float) -> None:
    policy = RetryPolicy(base_seconds=1, cap_seconds=300, budget_seconds=10**6)
    decision = after_failure(
        policy, failures=failures, created_at=T0, now=T0, uniform=lambda lo, hi: lo + (hi - lo) * draw
    )
    assert isinstance(decision, RetryAt)
    assert T0 <= decision.at <= T0 + timedelta(seconds=policy.ceiling(failures))


def test_given_an_event_inside_its_budget_then_the_retry_never_lands_past_the_budget() -> None:
    policy = RetryPolicy(base_seconds=100, cap_seconds=100, budget_seconds=60)
    decision = after_failure(
        policy, failures=1, created_at=T0, now=T0 + timedelta(seconds=30), uniform=highest
    )
    assert decision == RetryAt(T0 + timedelta(seconds=60))


def test_given_an_event_past_its_budget_then_it_is_dead_lettered() -> None:
    policy = RetryPolicy(budget_seconds=86_400)
    assert after_failure(policy, failures=1, created_at=T0, now=T0 + timedelta(days=1)) == DeadLetter()
    # however many attempts it took, the budget counts from when the event was written
    assert isinstance(
        after_failure(policy, failures=500, created_at=T0, now=T0 + timedelta(hours=23)), RetryAt
    )


def test_the_default_budget_outlasts_an_hour_long_host_outage_r8() -> None:
    from core.settings import Settings

    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    policy = RetryPolicy.from_settings(settings)
    assert policy.budget_seconds >= 12 * 3600
    assert policy.cap_seconds <= 600  # a host back up waits minutes at most for the next try


# --- gaps --------------------------------------------------------------------------------------


def event(seq: int, age: float = 60.0) -> OutboxEntry:
    return OutboxEntry(
        tenant_id="t",
        sequence=seq,
        event_id=f"e{seq}",
        type="test.event",
        occurred_at=T0,
        created_at=T0 - timedelta(seconds=age),
    )


def gap(seq: int, age: float = 60.0) -> OutboxGap:
    return OutboxGap(tenant_id="t", sequence=seq, closed_at=T0 - timedelta(seconds=age))


def plan(rows: list[OutboxRow], after: int = 0, limit: int = 100) -> PagePlan:
    return plan_page(rows, after, limit=limit, now=T0, grace=GRACE)


def test_given_contiguous_rows_then_every_event_is_taken_and_gap_rows_are_passed() -> None:
    result = plan([event(1), gap(2), event(3)])
    assert [e.sequence for e in result.events] == [1, 3]
    assert (result.last, result.close, result.blocked) == (3, [], False)


def test_given_a_limit_then_the_page_stops_after_that_many_events() -> None:
    result = plan([event(4), event(5), event(6)], after=3, limit=2)
    assert [e.sequence for e in result.events] == [4, 5]
    assert result.last == 5


def test_given_a_missing_sequence_followed_by_a_young_row_then_the_reader_stops_before_it() -> None:
    """GIVEN 1 and 3 written, 2 reserved but not yet written, 3 written 2 s ago
    THEN the page ends at 1: a cursor past 2 could skip it when it lands."""
    result = plan([event(1), event(3, age=2)])
    assert [e.sequence for e in result.events] == [1]
    assert (result.last, result.blocked, result.close) == (1, True, [])


def test_given_a_missing_sequence_followed_by_an_old_row_then_it_is_to_be_closed() -> None:
    result = plan([event(1), event(5, age=11)])
    assert [e.sequence for e in result.events] == [1]
    assert (result.last, result.close) == (1, [2, 3, 4])


def test_given_a_gap_right_after_the_cursor_then_nothing_is_taken() -> None:
    assert plan([event(9, age=1)], after=7).blocked
    assert plan([event(9, age=1)], after=7).last == 7


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 30)), max_size=30), st.integers(0, 5))
def test_a_page_never_passes_a_missing_sequence_that_is_not_closed_first(
    spec: list[tuple[bool, float]], skip_every: int
) -> None:
    """Property: whatever rows exist, `last` is only ever a sequence whose every predecessor
    above `after` is present (or listed to be closed)."""
    rows: list[OutboxRow] = [
        event(i + 1, age)
        for i, (present, age) in enumerate(spec)
        if present or (skip_every and (i + 1) % skip_every)
    ]
    result = plan(rows)
    present = {r.sequence for r in rows}
    assert all(s in present for s in range(1, result.last + 1))
    assert all(s not in present for s in result.close)
