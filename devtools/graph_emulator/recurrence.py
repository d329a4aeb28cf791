"""Graph's `patternedRecurrence`, parsed and expanded into occurrence dates and instants.

Pure functions, no emulator state: the calendar store asks "which occurrences of this series
overlap this window?" and the unit tests check each pattern type directly.

Semantics follow the Graph docs for `recurrencePattern` and `recurrenceRange`:
- daily: every `interval` days; weekly: on `daysOfWeek` every `interval` weeks, weeks starting on
  `firstDayOfWeek` (default sunday), counted from the week that holds the range's startDate;
- absoluteMonthly/absoluteYearly: on `dayOfMonth` (of `month`); a day past the month's end falls on
  its last day, as Outlook does for "day 31 of every month";
- relativeMonthly/relativeYearly: the `index` (first..fourth, last) day among `daysOfWeek` of the
  month (of `month`);
- range endDate (inclusive), noEnd, numbered (`numberOfOccurrences` counted from startDate).
Occurrences keep the series' wall-clock start time and wall-clock duration in the recurrence time
zone, so a 09:00 meeting stays at 09:00 local across a DST change (its UTC time moves).
"""

from __future__ import annotations

import calendar as _calendar
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from devtools.graph_emulator.timezones import to_utc

DAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
PATTERN_TYPES = ("daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly")
RANGE_TYPES = ("endDate", "noEnd", "numbered")
INDEXES = ("first", "second", "third", "fourth", "last")
# A series never expands past this many occurrences in one call: a guard against a window of
# centuries over a daily noEnd series, not a Graph limit.
MAX_OCCURRENCES = 50_000


class RecurrenceError(ValueError):
    """The recurrence object is invalid (Graph answers 400)."""


@dataclass(frozen=True)
class Pattern:
    type: str
    interval: int = 1
    days_of_week: tuple[int, ...] = ()  # Python weekday numbers, monday = 0
    first_day_of_week: int = 6  # sunday
    day_of_month: int = 0
    month: int = 0
    index: str = "first"


@dataclass(frozen=True)
class Range:
    type: str
    start_date: dt.date
    end_date: dt.date | None = None
    number_of_occurrences: int = 0
    time_zone: str | None = None


@dataclass(frozen=True)
class Recurrence:
    pattern: Pattern
    range: Range

    def to_graph(self) -> dict[str, Any]:
        """The object as Graph returns it: every field present, unset ones zero/defaults."""
        p, r = self.pattern, self.range
        return {
            "pattern": {
                "type": p.type,
                "interval": p.interval,
                "month": p.month,
                "dayOfMonth": p.day_of_month,
                "daysOfWeek": [DAYS[d] for d in p.days_of_week],
                "firstDayOfWeek": DAYS[p.first_day_of_week],
                "index": p.index,
            },
            "range": {
                "type": r.type,
                "startDate": r.start_date.isoformat(),
                "endDate": (r.end_date or dt.date(1, 1, 1)).isoformat(),
                "recurrenceTimeZone": r.time_zone or "",
                "numberOfOccurrences": r.number_of_occurrences,
            },
        }


@dataclass(frozen=True)
class Occurrence:
    """One expanded occurrence: `original_start` identifies it (an exception keeps the
    original start of the occurrence it replaced), `start`/`end` are aware UTC."""

    original_start: dt.datetime
    start: dt.datetime
    end: dt.datetime


def _day(name: Any) -> int:
    if not isinstance(name, str) or name.lower() not in DAYS:
        raise RecurrenceError(f"'{name}' is not a valid day of the week.")
    return DAYS.index(name.lower())


def _date(value: Any, field: str) -> dt.date:
    if not isinstance(value, str):
        raise RecurrenceError(f"recurrence.range.{field} is required.")
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise RecurrenceError(f"recurrence.range.{field} '{value}' is not a valid date.") from None


def _int(obj: dict[str, Any], key: str, default: int) -> int:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecurrenceError(f"recurrence.pattern.{key} must be an integer.")
    return value


def parse_recurrence(obj: Any) -> Recurrence:
    """Validate a Graph `patternedRecurrence` JSON object."""
    if not isinstance(obj, dict):
        raise RecurrenceError("recurrence must be an object with pattern and range.")
    p, r = obj.get("pattern"), obj.get("range")
    if not isinstance(p, dict) or not isinstance(r, dict):
        raise RecurrenceError("recurrence must have both pattern and range.")
    ptype = p.get("type")
    if ptype not in PATTERN_TYPES:
        raise RecurrenceError(f"recurrence.pattern.type '{ptype}' is not supported.")
    interval = _int(p, "interval", 1)
    if interval < 1:
        raise RecurrenceError("recurrence.pattern.interval must be at least 1.")
    days = tuple(sorted({_day(d) for d in (p.get("daysOfWeek") or [])}))
    if ptype in ("weekly", "relativeMonthly", "relativeYearly") and not days:
        raise RecurrenceError(f"recurrence.pattern.daysOfWeek is required for a {ptype} pattern.")
    first_day = _day(p.get("firstDayOfWeek") or "sunday")
    day_of_month = _int(p, "dayOfMonth", 0)
    if ptype in ("absoluteMonthly", "absoluteYearly") and not 1 <= day_of_month <= 31:
        raise RecurrenceError(f"recurrence.pattern.dayOfMonth must be 1-31 for a {ptype} pattern.")
    month = _int(p, "month", 0)
    if ptype in ("absoluteYearly", "relativeYearly") and not 1 <= month <= 12:
        raise RecurrenceError(f"recurrence.pattern.month must be 1-12 for a {ptype} pattern.")
    index = p.get("index") or "first"
    if index not in INDEXES:
        raise RecurrenceError(f"recurrence.pattern.index '{index}' is not valid.")

    rtype = r.get("type")
    if rtype not in RANGE_TYPES:
        raise RecurrenceError(f"recurrence.range.type '{rtype}' is not supported.")
    start_date = _date(r.get("startDate"), "startDate")
    end_date: dt.date | None = None
    count = 0
    if rtype == "endDate":
        end_date = _date(r.get("endDate"), "endDate")
        if end_date < start_date:
            raise RecurrenceError("recurrence.range.endDate must not be before startDate.")
    elif rtype == "numbered":
        count = r.get("numberOfOccurrences") or 0
        if not isinstance(count, int) or count < 1:
            raise RecurrenceError("recurrence.range.numberOfOccurrences must be at least 1.")
    tz = r.get("recurrenceTimeZone") or None
    return Recurrence(
        Pattern(ptype, interval, days, first_day, day_of_month, month, index),
        Range(rtype, start_date, end_date, count, tz),
    )


def _month_day(year: int, month: int, day: int) -> dt.date:
    return dt.date(year, month, min(day, _calendar.monthrange(year, month)[1]))


def _relative_day(year: int, month: int, days: tuple[int, ...], index: str) -> dt.date:
    last = _calendar.monthrange(year, month)[1]
    matches = [
        dt.date(year, month, d) for d in range(1, last + 1) if dt.date(year, month, d).weekday() in days
    ]
    return matches[-1] if index == "last" else matches[INDEXES.index(index)]


def _months(start: dt.date, step: int) -> Iterator[tuple[int, int]]:
    index = start.year * 12 + start.month - 1
    while True:
        yield divmod(index, 12)[0], divmod(index, 12)[1] + 1
        index += step


def _pattern_dates(p: Pattern, start: dt.date) -> Iterator[dt.date]:
    """Dates the pattern produces from `start` on, ascending, unbounded (callers stop)."""
    if p.type == "daily":
        day = start
        while True:
            yield day
            day += dt.timedelta(days=p.interval)
    elif p.type == "weekly":
        week_start = start - dt.timedelta(days=(start.weekday() - p.first_day_of_week) % 7)
        offsets = sorted((d - p.first_day_of_week) % 7 for d in p.days_of_week)
        while True:
            for offset in offsets:
                yield week_start + dt.timedelta(days=offset)
            week_start += dt.timedelta(weeks=p.interval)
    elif p.type == "absoluteMonthly":
        for year, month in _months(start, p.interval):
            yield _month_day(year, month, p.day_of_month)
    elif p.type == "relativeMonthly":
        for year, month in _months(start, p.interval):
            yield _relative_day(year, month, p.days_of_week, p.index)
    elif p.type == "absoluteYearly":
        year = start.year
        while True:
            yield _month_day(year, p.month, p.day_of_month)
            year += p.interval
    elif p.type == "relativeYearly":
        year = start.year
        while True:
            yield _relative_day(year, p.month, p.days_of_week, p.index)
            year += p.interval
    else:  # parse_recurrence rejects anything else
        raise RecurrenceError(f"unsupported pattern type {p.type}")


def occurrence_dates(rec: Recurrence, until: dt.date | None = None) -> Iterator[dt.date]:
    """The series' occurrence dates in order, ending at the range's end or after `until`."""
    r = rec.range
    produced = 0
    for day in _pattern_dates(rec.pattern, r.start_date):
        if day < r.start_date:
            continue
        if r.end_date is not None and day > r.end_date:
            return
        if until is not None and day > until:
            return
        yield day
        produced += 1
        if r.type == "numbered" and produced >= r.number_of_occurrences:
            return
        if produced >= MAX_OCCURRENCES:
            return


def expand(
    rec: Recurrence,
    first_start: dt.datetime,
    duration: dt.timedelta,
    tz: ZoneInfo,
    window_start: dt.datetime,
    window_end: dt.datetime,
) -> list[Occurrence]:
    """Occurrences overlapping [window_start, window_end) (aware UTC). `first_start` is the series'
    naive wall-clock start in `tz` (only its time of day is used); `duration` is wall-clock."""
    # Local dates can be a day either side of UTC dates; one day of slack covers every offset.
    until = (window_end + dt.timedelta(days=1)).date()
    out: list[Occurrence] = []
    for day in occurrence_dates(rec, until):
        local_start = dt.datetime.combine(day, first_start.time())
        start = to_utc(local_start, tz)
        if start >= window_end:
            break
        end = to_utc(local_start + duration, tz)
        if end > window_start or (end == start and start >= window_start):
            out.append(Occurrence(start, start, end))
    return out


def is_occurrence(
    rec: Recurrence, first_start: dt.datetime, tz: ZoneInfo, original_start: dt.datetime
) -> bool:
    """Whether `original_start` (aware UTC) is the start of one of the series' occurrences."""
    until = (original_start + dt.timedelta(days=2)).date()
    return any(
        to_utc(dt.datetime.combine(day, first_start.time()), tz) == original_start
        for day in occurrence_dates(rec, until)
    )
