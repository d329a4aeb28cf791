"""`secret_name` builds valid Key Vault names, and different inputs never share one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.secrets import MAX_NAME_LENGTH, secret_name, split_secret_name, validate_secret_name

parts = st.lists(st.text(max_size=40), min_size=1, max_size=5).map(tuple)
# parts that look like what the app passes: words, GUIDs, mixed case and hyphens
realistic = st.lists(
    st.one_of(
        st.uuids().map(str),
        st.uuids().map(lambda u: str(u).upper()),
        st.from_regex(r"[a-zA-Z0-9-]{0,12}", fullmatch=True),
    ),
    min_size=1,
    max_size=4,
).map(tuple)


def test_readable_parts_stay_readable() -> None:
    tenant = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert secret_name("tenant", tenant, "client-secret") == f"tenant--{tenant}--client-secret"


def test_other_parts_are_escaped_so_nothing_collides() -> None:
    assert secret_name("a-", "b") != secret_name("a", "-b")
    assert secret_name("a--b") != secret_name("a", "b")
    assert secret_name("A") != secret_name("a")  # Key Vault names are case-insensitive
    assert secret_name("", "x") != secret_name("x") != secret_name("x", "")
    assert secret_name("user@contoso.com") == "-" + b"user@contoso.com".hex()


@given(parts)
def test_every_name_is_valid_lowercase_and_within_the_limit(p: tuple[str, ...]) -> None:
    name = secret_name(*p)
    assert validate_secret_name(name) == name
    assert name == name.lower()
    assert len(name) <= MAX_NAME_LENGTH


@given(st.one_of(parts, realistic))
def test_names_that_fit_decode_back_to_their_parts(p: tuple[str, ...]) -> None:
    """A left inverse exists, so the encoding is injective (also case-insensitively, as it
    only emits lower case)."""
    name = secret_name(*p)
    if "---z" not in name:
        assert split_secret_name(name) == p


@given(parts, parts)
def test_different_parts_give_different_names(a: tuple[str, ...], b: tuple[str, ...]) -> None:
    if a != b:
        assert secret_name(*a).lower() != secret_name(*b).lower()


def test_over_long_names_are_shortened_with_a_hash_and_stay_distinct() -> None:
    long_a = secret_name("tenant", "x" * 200)
    long_b = secret_name("tenant", "x" * 201)
    assert len(long_a) == MAX_NAME_LENGTH
    assert long_a.startswith("tenant--xxx")
    assert long_a != long_b
    assert validate_secret_name(long_a) == long_a
    with pytest.raises(ValueError, match="hash"):
        split_secret_name(long_a)


def test_no_parts_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        secret_name()
