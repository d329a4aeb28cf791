"""Record key design: keys come from fields, are legal whatever the ids hold, and sort and group
the way each access pattern reads them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from core.store.catalog import memory_tables, table_name
from core.store.keys import SEPARATOR, split_key
from core.store.limits import check_keys
from core.store.records import (
    RECORD_TYPES,
    CalendarSyncState,
    Counter,
    Direction,
    EventMapEntry,
    LinkedAccount,
    MailLedgerEntry,
    OutboxEvent,
    Presence,
    ResourceLink,
    Run,
    Subscription,
    SubscriptionKind,
    Tenant,
    hash_client_state,
    subscription_target,
)
from core.store.runs import older_than_floor
from core.store.sequences import OUTBOX, next_sequence
from tests.contract.samples import ATTACHMENT_ID, GRAPH_ID, TENANT, sample_records


def test_given_every_sample_record_then_its_keys_are_legal_and_every_table_has_a_sample():
    samples = sample_records()
    for record in samples:
        check_keys(record.partition_key, record.row_key)
    assert {type(r) for r in samples} == set(RECORD_TYPES)


def test_given_table_names_then_they_are_prefixed_and_unique():
    names = [table_name("bridge", t) for t in RECORD_TYPES]
    assert table_name("bridge", Run) == "bridgeruns"
    assert len(set(names)) == len(names)
    with pytest.raises(ValueError, match="3-63"):
        table_name("x", type("Bad", (Run,), {"table": "has-dash"}))


def test_given_tenants_then_they_share_one_partition_keyed_by_tenant_id():
    assert Tenant.key(TENANT) == ("tenant", TENANT)
    assert Tenant(tenant_id=TENANT).partition_key == Tenant(tenant_id="other").partition_key


def test_given_addresses_in_any_case_then_keys_are_lower_cased():
    assert Presence(tenant_id="t", email="Per@X.example").row_key == "per@x.example"
    state = CalendarSyncState(tenant_id="t", resource_id="r", account="Anna@X.example", calendar="Room")
    assert state.row_key == CalendarSyncState.key("t", "r", "anna@x.example", "ROOM")[1]
    assert state.row_key != CalendarSyncState.key("t", "other", "anna@x.example", "room")[1]
    ledger = MailLedgerEntry(tenant_id="t", mailbox="Inv@X", message_id="m", step="archive")
    assert ledger.row_key == MailLedgerEntry.step_key("t", "inv@x", "m", "archive")[1]


def test_given_a_graph_id_with_slashes_then_the_event_map_key_escapes_it_and_groups_by_calendar():
    entry = EventMapEntry(tenant_id="t", resource_id="r/1", account="a@x", calendar="Cal", event_id=GRAPH_ID)
    assert "/" not in entry.row_key
    assert entry.partition_key == "t"
    scope, event = entry.row_key.split("|", 1)
    assert split_key(event) == [GRAPH_ID]
    low, high = EventMapEntry.calendar_range(scope)
    assert low <= entry.row_key < high
    other = EventMapEntry(tenant_id="t", resource_id="r/2", account="a@x", calendar="Cal", event_id=GRAPH_ID)
    assert not low <= other.row_key < high
    assert EventMapEntry.key("t", "r/1", "A@X", "cal", GRAPH_ID) == (entry.partition_key, entry.row_key)


def test_given_a_longest_resource_account_and_calendar_then_the_event_map_key_fits():
    entry = EventMapEntry(
        tenant_id="t",
        resource_id="/" * 256,
        account="a" * 64 + "@x.example",
        calendar="#" * 255,
        event_id=GRAPH_ID,
    )
    assert len(entry.row_key) < 512


def test_given_a_long_attachment_id_then_the_ledger_key_stays_short_and_groups_by_message():
    attachment = MailLedgerEntry(
        tenant_id=TENANT, mailbox="m@x", message_id=GRAPH_ID, attachment_id=ATTACHMENT_ID
    )
    step = MailLedgerEntry(tenant_id=TENANT, mailbox="m@x", message_id=GRAPH_ID, step="archive")
    other = MailLedgerEntry(tenant_id=TENANT, mailbox="m@x", message_id=GRAPH_ID + "x", step="archive")
    assert len(attachment.row_key) < 120 < len(ATTACHMENT_ID)
    low, high = MailLedgerEntry.message_range("M@x", GRAPH_ID)
    assert low <= attachment.row_key < high
    assert low <= step.row_key < high
    assert not low <= other.row_key < high
    assert attachment.row_key != step.row_key
    with pytest.raises(ValueError, match="attachment_id or a step"):
        _ = MailLedgerEntry(tenant_id="t", mailbox="m", message_id="x").row_key


def test_given_runs_then_newer_runs_have_smaller_row_keys_and_the_cutoff_floor_splits_them():
    cutoff = datetime(2024, 5, 1, tzinfo=UTC)
    older = Run(run_id="a", function="f", started_at=cutoff - timedelta(microseconds=1))
    at_cutoff = Run(run_id="b", function="f", started_at=cutoff)
    newer = Run(run_id="c", function="f", started_at=cutoff + timedelta(days=1))
    assert newer.row_key < at_cutoff.row_key < older.row_key
    floor = older_than_floor(cutoff)
    assert at_cutoff.row_key < floor <= older.row_key
    assert older.row_key.split(SEPARATOR)[1] == "a"


def test_given_outbox_sequences_then_row_order_is_delivery_order():
    keys = [OutboxEvent.key("t", n)[1] for n in (9, 10, 2**40)]
    assert keys == sorted(keys)
    assert keys[0] == "00000000000000000009"


def test_given_links_then_the_main_account_is_the_first_that_uploads():
    link = ResourceLink(
        tenant_id="t",
        resource_id="r",
        accounts=[
            LinkedAccount(account="a@x", direction=Direction.DOWN),
            LinkedAccount(account="b@x", direction=Direction.NONE),
            LinkedAccount(account="c@x", direction=Direction.BOTH),
            LinkedAccount(account="d@x", direction=Direction.UP),
        ],
    )
    assert link.main_account is not None
    assert link.main_account.account == "c@x"
    assert ResourceLink(tenant_id="t", resource_id="r").main_account is None


def test_given_a_subscription_then_only_the_hash_of_client_state_is_stored():
    sub = Subscription(
        tenant_id="t",
        target=subscription_target(SubscriptionKind.MAIL, "invoices"),
        kind=SubscriptionKind.MAIL,
        mailbox="x@y.example",
        subscription_id="s",
        resource="/users/x/events",
        expiration=datetime(2024, 1, 1, tzinfo=UTC),
        client_state_sha256=hash_client_state("the-secret"),
    )
    assert "the-secret" not in sub.model_dump_json()
    assert sub.client_state_matches("the-secret")
    assert not sub.client_state_matches("guess")
    assert not sub.model_copy(update={"client_state_sha256": ""}).client_state_matches("")


def test_given_a_stored_record_then_its_etag_is_not_part_of_its_dump():
    counter = Counter(name="n", scope="s", etag='W/"1"')
    assert "etag" not in counter.model_dump()


async def test_given_concurrent_allocations_then_sequence_numbers_are_unique_and_consecutive():
    tables = memory_tables()
    counters = tables.counters()
    firsts = [await next_sequence(counters, OUTBOX, "t", count=3)]
    firsts += await asyncio.gather(*(next_sequence(counters, OUTBOX, "t") for _ in range(12)))
    assert firsts[0] == 1
    assert sorted(firsts[1:]) == list(range(4, 16))
    assert await next_sequence(counters, OUTBOX, "other") == 1


async def test_given_memory_tables_then_each_record_type_has_its_repository():
    tables = memory_tables("demo")
    await tables.create_tables()
    assert tables.runs() is tables.repo(Run)
    assert tables.store(Tenant).name == "demotenants"
    await tables.close()
