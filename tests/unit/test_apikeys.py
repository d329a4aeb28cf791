"""Tenant API keys and the operator key: made random, stored as hashes, verified in constant
time, rotated with a grace period."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import apikeys
from core.operator_auth import check_operator_key, digest, new_operator_key
from core.request_errors import Unauthenticated

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def test_given_a_new_key_then_it_names_its_tenant_and_only_its_hash_is_kept() -> None:
    key = apikeys.new_key("contoso", NOW)
    assert key.value.startswith("m365b_contoso_")
    assert len(key.value) == len("m365b_contoso_") + 43
    assert apikeys.key_tenant(key.value) == "contoso"
    assert key.entry.sha256 == hashlib.sha256(key.value.encode()).hexdigest()
    assert key.value not in repr(key)
    assert key.value not in key.entry.model_dump_json()
    assert key.entry.created_at == NOW
    assert key.entry.expires_at is None
    assert apikeys.new_key("contoso", NOW).value != key.value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "m365b_",
        "m365b_contoso_short",
        "Bearer m365b_contoso_" + "a" * 43,
        "m365b_Contoso_" + "a" * 43,
        "x" * 60,
    ],
)
def test_given_text_that_is_not_a_key_then_it_names_no_tenant(text: str) -> None:
    assert apikeys.key_tenant(text) is None


def test_given_a_tenant_id_with_a_hyphen_and_a_secret_with_underscores_then_the_tenant_is_read_right() -> (
    None
):
    assert apikeys.key_tenant("m365b_a-b_" + "_-" * 21 + "x") == "a-b"


def test_given_entries_then_only_a_live_matching_one_verifies() -> None:
    key = apikeys.new_key("t", NOW)
    other = apikeys.new_key("t", NOW)
    assert apikeys.verify([other.entry, key.entry], key.value, NOW)
    assert not apikeys.verify([other.entry], key.value, NOW)
    assert not apikeys.verify([], key.value, NOW)
    expiring = key.entry.model_copy(update={"expires_at": NOW + timedelta(seconds=1)})
    assert apikeys.verify([expiring], key.value, NOW)
    assert not apikeys.verify([expiring], key.value, NOW + timedelta(seconds=1))


def test_given_a_rotation_then_old_keys_end_after_the_grace_and_expired_ones_are_dropped() -> None:
    first = apikeys.new_key("t", NOW)
    second = apikeys.new_key("t", NOW + timedelta(hours=1))
    entries = apikeys.rotate([first.entry], second.entry, NOW + timedelta(hours=1), timedelta(hours=24))
    assert [e.key_id for e in entries] == [first.entry.key_id, second.entry.key_id]
    assert entries[0].expires_at == NOW + timedelta(hours=25)
    assert entries[1].expires_at is None
    # a second rotation never extends an earlier expiry, and drops what has expired
    third = apikeys.new_key("t", NOW + timedelta(hours=30))
    later = apikeys.rotate(entries, third.entry, NOW + timedelta(hours=30), timedelta(hours=24))
    assert [e.key_id for e in later] == [second.entry.key_id, third.entry.key_id]
    assert later[0].expires_at == NOW + timedelta(hours=54)
    # grace 0 revokes at once
    fourth = apikeys.new_key("t", NOW + timedelta(hours=31))
    assert [e.key_id for e in apikeys.rotate(later, fourth.entry, NOW, timedelta(0))] == [fourth.entry.key_id]


@given(st.integers(min_value=1, max_value=30))
def test_given_many_rotations_within_the_grace_then_at_most_max_keys_stay_and_the_newest_is_last(
    n: int,
) -> None:
    entries = [apikeys.new_key("t", NOW).entry]
    for _ in range(n):
        fresh = apikeys.new_key("t", NOW).entry
        entries = apikeys.rotate(entries, fresh, NOW, timedelta(hours=24))
        assert entries[-1] == fresh
    assert len(entries) == min(n + 1, apikeys.MAX_KEYS)


def test_given_the_operator_key_then_only_its_digest_is_configured_and_it_verifies() -> None:
    key, key_digest = new_operator_key()
    assert key.startswith("m365op_")
    assert key_digest == digest(key)
    assert key not in key_digest
    check_operator_key([digest("older"), key_digest], key)
    for presented in (None, "", "wrong", key + " "):
        with pytest.raises(Unauthenticated):
            check_operator_key([key_digest], presented)


def test_given_no_operator_digest_configured_then_every_call_is_refused_naming_the_setting() -> None:
    with pytest.raises(Unauthenticated, match="BRIDGE_OPERATOR_KEY_SHA256"):
        check_operator_key([], "anything")
