"""The Graph emulator expands `patternedRecurrence` the way Outlook does: each pattern type, each
range type, weeks counted from `firstDayOfWeek`, month-end clamping, and wall-clock times that
stay put across a DST change (their UTC time moves)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from devtools.graph_emulator.recurrence import (
    RecurrenceError,
    expand,
    is_occurrence,
    occurrence_dates,
    parse_recurrence,
)

UTC = dt.UTC


def rec(pattern: dict[str, Any], range_: dict[str, Any]) -> Any:
    return parse_recurrence({"pattern": pattern, "range": range_})


def dates(r: Any, until: str | None = None) -> list[str]:
    return [d.isoformat() for d in occurrence_dates(r, dt.date.fromisoformat(until) if until else None)]


def test_daily_every_second_day_numbered() -> None:
    r = rec(
        {"type": "daily", "interval": 2},
        {"type": "numbered", "startDate": "2024-01-30", "numberOfOccurrences": 4},
    )
    assert dates(r) == ["2024-01-30", "2024-02-01", "2024-02-03", "2024-02-05"]


def test_weekly_several_days_every_other_week_until_end_date() -> None:
    r = rec(
        {"type": "weekly", "interval": 2, "daysOfWeek": ["monday", "friday"], "firstDayOfWeek": "monday"},
        {"type": "endDate", "startDate": "2024-01-03", "endDate": "2024-01-29"},
    )
    # The week of Wed 3 Jan starts Mon 1 Jan (before the start date: skipped); then every 2nd week.
    assert dates(r) == ["2024-01-05", "2024-01-15", "2024-01-19", "2024-01-29"]


def test_weekly_weeks_are_counted_from_first_day_of_week() -> None:
    start = {"type": "numbered", "startDate": "2024-01-07", "numberOfOccurrences": 4}  # a Sunday
    days = ["monday", "sunday"]
    sunday_weeks = rec(
        {"type": "weekly", "interval": 2, "daysOfWeek": days, "firstDayOfWeek": "sunday"}, start
    )
    monday_weeks = rec(
        {"type": "weekly", "interval": 2, "daysOfWeek": days, "firstDayOfWeek": "monday"}, start
    )
    assert dates(sunday_weeks) == ["2024-01-07", "2024-01-08", "2024-01-21", "2024-01-22"]
    assert dates(monday_weeks) == ["2024-01-07", "2024-01-15", "2024-01-21", "2024-01-29"]


def test_absolute_monthly_day_31_falls_on_the_last_day_of_short_months() -> None:
    r = rec(
        {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 31},
        {"type": "numbered", "startDate": "2024-01-01", "numberOfOccurrences": 4},
    )
    assert dates(r) == ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"]


def test_relative_monthly_last_friday_and_first_weekend_day() -> None:
    last_friday = rec(
        {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"], "index": "last"},
        {"type": "numbered", "startDate": "2024-01-01", "numberOfOccurrences": 3},
    )
    first_weekend_day = rec(
        {"type": "relativeMonthly", "interval": 2, "daysOfWeek": ["saturday", "sunday"], "index": "first"},
        {"type": "numbered", "startDate": "2024-01-01", "numberOfOccurrences": 3},
    )
    assert dates(last_friday) == ["2024-01-26", "2024-02-23", "2024-03-29"]
    assert dates(first_weekend_day) == ["2024-01-06", "2024-03-02", "2024-05-04"]


def test_absolute_yearly_and_relative_yearly() -> None:
    leap_day = rec(
        {"type": "absoluteYearly", "interval": 1, "dayOfMonth": 29, "month": 2},
        {"type": "numbered", "startDate": "2024-01-01", "numberOfOccurrences": 2},
    )
    thanksgiving = rec(
        {"type": "relativeYearly", "interval": 1, "daysOfWeek": ["thursday"], "index": "fourth", "month": 11},
        {"type": "endDate", "startDate": "2024-01-01", "endDate": "2026-12-31"},
    )
    assert dates(leap_day) == ["2024-02-29", "2025-02-28"]
    assert dates(thanksgiving) == ["2024-11-28", "2025-11-27", "2026-11-26"]


def test_no_end_series_is_cut_only_by_the_window() -> None:
    r = rec({"type": "daily", "interval": 1}, {"type": "noEnd", "startDate": "2020-01-01"})
    assert dates(r, until="2020-01-03") == ["2020-01-01", "2020-01-02", "2020-01-03"]
    found = expand(
        r,
        dt.datetime(2020, 1, 1, 10, 0),
        dt.timedelta(hours=1),
        ZoneInfo("UTC"),
        dt.datetime(2030, 6, 1, tzinfo=UTC),
        dt.datetime(2030, 6, 3, tzinfo=UTC),
    )
    assert [o.start for o in found] == [
        dt.datetime(2030, 6, 1, 10, tzinfo=UTC),
        dt.datetime(2030, 6, 2, 10, tzinfo=UTC),
    ]


def test_weekly_meeting_keeps_its_oslo_wall_time_across_the_dst_change() -> None:
    """GIVEN a Monday 09:00-10:00 meeting in Europe/Oslo WHEN the clocks go forward on 31 March
    2024 THEN it is 08:00 UTC before and 07:00 UTC after, still an hour long."""
    r = rec(
        {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
        {"type": "noEnd", "startDate": "2024-03-18", "recurrenceTimeZone": "Europe/Oslo"},
    )
    found = expand(
        r,
        dt.datetime(2024, 3, 18, 9, 0),
        dt.timedelta(hours=1),
        ZoneInfo("Europe/Oslo"),
        dt.datetime(2024, 3, 18, tzinfo=UTC),
        dt.datetime(2024, 4, 9, tzinfo=UTC),
    )
    assert [(o.start.isoformat(), o.end.isoformat()) for o in found] == [
        ("2024-03-18T08:00:00+00:00", "2024-03-18T09:00:00+00:00"),
        ("2024-03-25T08:00:00+00:00", "2024-03-25T09:00:00+00:00"),
        ("2024-04-01T07:00:00+00:00", "2024-04-01T08:00:00+00:00"),
        ("2024-04-08T07:00:00+00:00", "2024-04-08T08:00:00+00:00"),
    ]


def test_expand_returns_occurrences_overlapping_the_window_only() -> None:
    r = rec(
        {"type": "daily", "interval": 1},
        {"type": "numbered", "startDate": "2024-01-01", "numberOfOccurrences": 5},
    )
    found = expand(
        r,
        dt.datetime(2024, 1, 1, 23, 0),
        dt.timedelta(hours=2),  # each occurrence runs past midnight
        ZoneInfo("UTC"),
        dt.datetime(2024, 1, 3, 0, 30, tzinfo=UTC),
        dt.datetime(2024, 1, 3, 23, 0, tzinfo=UTC),
    )
    # The 2 Jan occurrence ends 01:00 on the 3rd (overlaps); the 3 Jan one starts at 23:00,
    # the window's end, so it is excluded.
    assert [o.start.day for o in found] == [2]


def test_is_occurrence_recognises_only_real_original_starts() -> None:
    r = rec(
        {"type": "weekly", "interval": 1, "daysOfWeek": ["tuesday"]},
        {"type": "numbered", "startDate": "2024-01-02", "numberOfOccurrences": 3},
    )
    tz = ZoneInfo("Europe/Berlin")
    first = dt.datetime(2024, 1, 2, 14, 0)
    assert is_occurrence(r, first, tz, dt.datetime(2024, 1, 9, 13, 0, tzinfo=UTC))
    assert not is_occurrence(r, first, tz, dt.datetime(2024, 1, 9, 14, 0, tzinfo=UTC))  # wrong time
    assert not is_occurrence(r, first, tz, dt.datetime(2024, 1, 23, 13, 0, tzinfo=UTC))  # past the 3rd


@pytest.mark.parametrize(
    ("pattern", "range_"),
    [
        ({"type": "hourly"}, {"type": "noEnd", "startDate": "2024-01-01"}),
        ({"type": "weekly", "interval": 1}, {"type": "noEnd", "startDate": "2024-01-01"}),
        ({"type": "daily", "interval": 0}, {"type": "noEnd", "startDate": "2024-01-01"}),
        ({"type": "absoluteMonthly", "dayOfMonth": 32}, {"type": "noEnd", "startDate": "2024-01-01"}),
        ({"type": "daily"}, {"type": "endDate", "startDate": "2024-01-02", "endDate": "2024-01-01"}),
        ({"type": "daily"}, {"type": "numbered", "startDate": "2024-01-01", "numberOfOccurrences": 0}),
        ({"type": "weekly", "daysOfWeek": ["funday"]}, {"type": "noEnd", "startDate": "2024-01-01"}),
    ],
)
def test_invalid_recurrences_are_refused(pattern: dict[str, Any], range_: dict[str, Any]) -> None:
    with pytest.raises(RecurrenceError):
        rec(pattern, range_)


def test_to_graph_echoes_every_field() -> None:
    r = rec({"type": "weekly", "daysOfWeek": ["monday"]}, {"type": "noEnd", "startDate": "2024-01-01"})
    assert r.to_graph() == {
        "pattern": {
            "type": "weekly",
            "interval": 1,
            "month": 0,
            "dayOfMonth": 0,
            "daysOfWeek": ["monday"],
            "firstDayOfWeek": "sunday",
            "index": "first",
        },
        "range": {
            "type": "noEnd",
            "startDate": "2024-01-01",
            "endDate": "0001-01-01",
            "recurrenceTimeZone": "",
            "numberOfOccurrences": 0,
        },
    }
