"""Key helpers: escaping makes any value a legal key part, exactly reversibly; ordering helpers
sort the way the access patterns need."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.store.keys import (
    SEPARATOR,
    escape_key,
    inverted_timestamp,
    join_key,
    prefix_range,
    sequence_key,
    short_hash,
    split_key,
    unescape_key,
)
from core.store.limits import check_key, is_control

# utf-8: every character but lone surrogates, which no store can hold.
values = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60)


def test_given_forbidden_characters_when_escaped_then_they_are_percent_encoded():
    assert escape_key("a/b\\c#d?e%f|g") == "a%2Fb%5Cc%23d%3Fe%25f%7Cg"
    assert escape_key("tab\there\x85") == "tab%09here%C2%85"
    assert escape_key("Ærlig O'Brien 😀") == "Ærlig O'Brien 😀"  # everything else is kept


@given(values)
def test_property_any_value_escapes_to_a_valid_key_part_and_back(value: str):
    escaped = escape_key(value)
    assert not any(ch in "/\\#?" or is_control(ch) for ch in escaped)
    assert SEPARATOR not in escaped
    assert unescape_key(escaped) == value


@given(st.lists(values, min_size=1, max_size=4))
def test_property_a_composite_key_splits_back_into_exactly_its_parts(parts: list[str]):
    assert split_key(join_key(*parts)) == parts


def test_given_an_escaped_graph_id_then_it_is_a_valid_key():
    check_key("RowKey", escape_key("AAMkAGI2TG93AAA=/+x#y?z"))


def test_given_an_empty_part_then_escape_refuses_it():
    with pytest.raises(ValueError, match="empty"):
        escape_key("")


@given(values, values)
def test_property_prefix_range_selects_exactly_the_keys_with_that_prefix(prefix: str, rest: str):
    low, high = prefix_range(escape_key(prefix) + SEPARATOR)
    inside = escape_key(prefix) + SEPARATOR + escape_key(rest)
    assert low <= inside < high
    other = escape_key(prefix + "x") + SEPARATOR
    assert not (low <= other < high)


@given(
    # ten years below the end of datetime's range, so that `later` always exists
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9989, 1, 1), timezones=st.just(UTC)),
    st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=3650)),
)
def test_property_inverted_timestamps_sort_newest_first(moment: datetime, later_by: timedelta):
    later = moment + later_by
    assert len(inverted_timestamp(moment)) == 18
    assert inverted_timestamp(later) < inverted_timestamp(moment)


def test_given_a_time_before_1970_then_it_cannot_be_inverted():
    with pytest.raises(ValueError, match="1970"):
        inverted_timestamp(datetime(1969, 12, 31, tzinfo=UTC))


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))
def test_property_sequence_keys_sort_numerically(a: int, b: int):
    assert (sequence_key(a) < sequence_key(b)) == (a < b)


def test_given_a_long_value_then_short_hash_is_a_fixed_32_hex_characters():
    digest = short_hash("x" * 5000)
    assert len(digest) == 32
    assert int(digest, 16) >= 0
    assert short_hash("a") != short_hash("b")
