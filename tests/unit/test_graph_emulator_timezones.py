"""The Graph emulator reads and writes `dateTimeTimeZone` like Graph: Windows and IANA zone
names, seven fractional digits, offsets tolerated on input, UTC when no zone is named."""

from __future__ import annotations

import datetime as dt

import pytest

from devtools.graph_emulator.timezones import (
    UnknownTimeZone,
    date_time_time_zone,
    format_instant,
    format_local,
    parse_instant,
    parse_local,
    to_utc,
    zone,
)

UTC = dt.UTC


@pytest.mark.parametrize(
    ("name", "iana"),
    [
        ("UTC", "UTC"),
        ("W. Europe Standard Time", "Europe/Berlin"),
        ("w. europe standard time", "Europe/Berlin"),
        ("Romance Standard Time", "Europe/Paris"),
        ("Europe/Oslo", "Europe/Oslo"),
        ("Europe/Copenhagen", "Europe/Copenhagen"),
        ("Europe/Berlin", "Europe/Berlin"),
        (None, "UTC"),
    ],
)
def test_windows_and_iana_names_resolve(name: str | None, iana: str) -> None:
    assert zone(name).key == iana


@pytest.mark.parametrize("name", ["Mars Standard Time", "../etc/passwd", "Europe/Atlantis"])
def test_unknown_zone_names_are_refused_with_graphs_message(name: str) -> None:
    with pytest.raises(UnknownTimeZone, match="The following TimeZone value is not supported"):
        zone(name)


def test_local_times_parse_with_seven_digits_offsets_or_z() -> None:
    assert parse_local("2024-05-01T09:30:00.0000000") == dt.datetime(2024, 5, 1, 9, 30)
    assert parse_local("2024-05-01T09:30:00Z") == dt.datetime(2024, 5, 1, 9, 30)
    assert parse_local("2024-05-01T09:30:00+02:00") == dt.datetime(2024, 5, 1, 7, 30)


def test_instants_without_offset_are_utc() -> None:
    assert parse_instant("2024-05-01T09:30:00") == dt.datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    assert parse_instant("2024-05-01T09:30:00+02:00") == dt.datetime(2024, 5, 1, 7, 30, tzinfo=UTC)


def test_formats_match_graph() -> None:
    assert format_local(dt.datetime(2016, 12, 9, 20, 30)) == "2016-12-09T20:30:00.0000000"
    assert format_instant(dt.datetime(2014, 1, 1, tzinfo=UTC)) == "2014-01-01T00:00:00Z"


def test_conversion_between_zones_follows_dst() -> None:
    summer = dt.datetime(2024, 7, 1, 10, 0, tzinfo=UTC)
    winter = dt.datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    assert date_time_time_zone(summer, "W. Europe Standard Time") == {
        "dateTime": "2024-07-01T12:00:00.0000000",
        "timeZone": "W. Europe Standard Time",
    }
    assert date_time_time_zone(winter, "Europe/Oslo")["dateTime"] == "2024-01-01T11:00:00.0000000"
    assert date_time_time_zone(winter, None) == {"dateTime": "2024-01-01T10:00:00.0000000", "timeZone": "UTC"}


def test_a_wall_time_in_the_spring_gap_moves_forward_by_the_gap() -> None:
    # 02:30 on 31 March 2024 does not exist in Oslo; read with the pre-transition offset (+01:00).
    assert to_utc(dt.datetime(2024, 3, 31, 2, 30), zone("Europe/Oslo")) == dt.datetime(
        2024, 3, 31, 1, 30, tzinfo=UTC
    )
