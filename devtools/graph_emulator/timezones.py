"""Time-zone names and Graph's `dateTimeTimeZone` wire format.

Graph accepts Windows time-zone names ("W. Europe Standard Time") and IANA names
("Europe/Oslo") in `start.timeZone`, `end.timeZone`, `recurrence.range.recurrenceTimeZone` and
`Prefer: outlook.timezone`, and echoes the name it was given. Python's `zoneinfo` only knows IANA
names, so Windows names are mapped through the CLDR table (`core/timezones.py`).

Graph writes local times with seven fractional digits and no offset
("2016-12-09T20:30:00.0000000"); the zone is in the sibling `timeZone` field.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.timezones import WINDOWS_TO_IANA

UTC = dt.UTC

# The one Windows → IANA table of the project (CLDR windowsZones.xml, territory 001).
_BY_LOWER = {name.lower(): iana for name, iana in WINDOWS_TO_IANA.items()}


class UnknownTimeZone(ValueError):
    """A time-zone name neither Windows nor IANA; Graph answers 400 TimeZoneNotSupportedException."""

    def __init__(self, name: str) -> None:
        super().__init__(
            "A valid TimeZone value must be specified. The following TimeZone value is not "
            f"supported: '{name}'."
        )
        self.name = name


def zone(name: str | None) -> ZoneInfo:
    """The zone a Graph time-zone name means; `None` or "" mean UTC like Graph's default."""
    if not name:
        return ZoneInfo("UTC")
    iana = _BY_LOWER.get(name.strip().lower(), name.strip())
    # zoneinfo would also accept relative paths; Graph names never contain "..".
    if ".." in iana or iana.startswith("/"):
        raise UnknownTimeZone(name)
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimeZone(name) from None


def parse_local(value: str) -> dt.datetime:
    """A Graph `dateTime` string as a naive local time. A value carrying an offset or "Z" (which
    Graph also tolerates) is converted to UTC first, then made naive."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def parse_instant(value: str, default_zone: ZoneInfo | None = None) -> dt.datetime:
    """An ISO 8601 instant as an aware UTC datetime. Without an offset the value is read in
    `default_zone` (UTC if not given): calendarView's startDateTime/endDateTime are UTC unless they
    carry an offset, whatever `Prefer: outlook.timezone` says."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_zone or UTC)
    return parsed.astimezone(UTC)


def to_utc(local: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """A naive wall-clock time in `tz` as aware UTC. In a DST gap the wall time does not exist;
    like Outlook we take the pre-transition offset (fold=0), which moves it forward by the gap."""
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


def from_utc(instant: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """An aware instant as a naive wall-clock time in `tz`."""
    return instant.astimezone(tz).replace(tzinfo=None)


def format_local(local: dt.datetime) -> str:
    """Graph's seven-fractional-digit local format, e.g. 2016-12-09T20:30:00.0000000."""
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond:06d}0"


def format_instant(instant: dt.datetime) -> str:
    """A DateTimeOffset the way Graph writes them in UTC: 2014-01-01T00:00:00Z (fractions if any)."""
    utc = instant.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def date_time_time_zone(instant: dt.datetime, tz_name: str | None) -> dict[str, str]:
    """A `dateTimeTimeZone` object for `instant` shown in `tz_name` (UTC when not given)."""
    name = tz_name or "UTC"
    return {"dateTime": format_local(from_utc(instant, zone(name))), "timeZone": name}
