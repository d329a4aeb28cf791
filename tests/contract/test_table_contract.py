"""One contract for the TableStore port, run against the in-memory fake and against Azurite.

Every test takes the `store` fixture, parametrised over both; a test that passes on one and
fails on the other is a bug in the fake (or the adapter), which is the point of the suite.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from azure.data.tables.aio import TableServiceClient

from core.errors import AlreadyExists, NotFound, StaleEtag
from core.store.azure_table import AzureTableStore
from core.store.memory_table import MemoryTableStore
from core.store.records import Counter, Run, RunStatus
from core.store.repository import Repository
from core.store.runs import RunRepository
from core.store.table import Row, TableStore, Write
from tests.contract.samples import sample_records


@pytest.fixture(params=["memory", pytest.param("azurite", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, unique_name: str) -> AsyncIterator[TableStore]:
    """A fresh, empty table: a fake, or a new table in the session's Azurite."""
    if request.param == "memory":
        yield MemoryTableStore(unique_name)
        return
    connection_string = request.getfixturevalue("storage_connection_string")
    async with TableServiceClient.from_connection_string(connection_string) as service:
        table = AzureTableStore(service.get_table_client(unique_name))
        await table.create_if_missing()
        yield table
        await service.delete_table(unique_name)


async def rows(store: TableStore, *args, **kwargs) -> list[Row]:
    return [row async for row in store.query(*args, **kwargs)]


def keys(found: list[Row]) -> list[tuple[str, str]]:
    return [(row.partition_key, row.row_key) for row in found]


EVERY_TYPE = {
    "text": 'Ærlig talt, O\'Brien — 😀 "quoted" \n tab\t',
    "empty_text": "",
    "small": 42,
    "negative": -7,
    "int32_max": 2**31 - 1,
    "int32_min": -(2**31),
    "just_over_int32": 2**31,
    "just_under_int32": -(2**31) - 1,
    "int64_max": 2**63 - 1,
    "int64_min": -(2**63),
    "ratio": 0.125,
    "whole_float": 3.0,
    "yes": True,
    "no": False,
    "moment": datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC),
    "binary": bytes(range(256)),
    "json": '{"a":[1,2,{"b":null}],"c":"ø"}',
}


# --- round trip ----------------------------------------------------------------------------


async def test_given_every_column_type_when_inserted_then_get_returns_the_same_plain_values(store):
    inserted = await store.insert("p", "r", EVERY_TYPE)
    got = await store.get("p", "r")
    assert got is not None
    assert dict(got.data) == EVERY_TYPE
    assert got.etag == inserted.etag
    for name in ("int64_max", "int64_min", "just_over_int32", "small"):
        assert type(got.data[name]) is int, name  # never EntityProperty
    assert type(got.data["moment"]) is datetime
    assert got.data["moment"].tzinfo == UTC
    assert type(got.data["whole_float"]) is float


async def test_given_a_non_utc_or_naive_datetime_when_stored_then_it_reads_back_as_the_same_utc_instant(
    store,
):
    oslo = datetime(2024, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    await store.insert("p", "r", {"aware": oslo, "naive": datetime(2024, 6, 1, 10, 0)})
    got = await store.get("p", "r")
    assert got is not None
    assert got.data["aware"] == datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
    assert got.data["aware"].tzinfo == UTC
    assert got.data["naive"] == datetime(2024, 6, 1, 10, 0, tzinfo=UTC)  # naive is taken as UTC


async def test_given_none_values_when_stored_then_the_columns_are_absent(store):
    row = await store.insert("p", "r", {"kept": "x", "gone": None})
    got = await store.get("p", "r")
    assert got is not None
    assert dict(got.data) == {"kept": "x"} == dict(row.data)


async def test_given_no_row_when_get_then_none(store):
    assert await store.get("p", "missing") is None


# --- insert / update / upsert --------------------------------------------------------------


async def test_given_an_existing_row_when_inserted_again_then_already_exists_and_row_unchanged(store):
    await store.insert("p", "r", {"n": 1})
    with pytest.raises(AlreadyExists):
        await store.insert("p", "r", {"n": 2})
    got = await store.get("p", "r")
    assert got is not None
    assert got.data["n"] == 1


async def test_given_a_stale_etag_when_updating_then_stale_etag_is_raised_and_the_newer_write_survives(store):
    first = await store.insert("p", "r", {"n": 1})
    second = await store.update("p", "r", {"n": 2}, first.etag)
    with pytest.raises(StaleEtag):
        await store.update("p", "r", {"n": 3}, first.etag)
    got = await store.get("p", "r")
    assert got is not None
    assert got.data["n"] == 2
    assert got.etag == second.etag


async def test_given_a_deleted_row_when_updating_then_not_found(store):
    row = await store.insert("p", "r", {"n": 1})
    await store.delete("p", "r")
    with pytest.raises(NotFound):
        await store.update("p", "r", {"n": 2}, row.etag)
    assert await store.get("p", "r") is None  # update never creates


async def test_given_writes_when_each_lands_then_the_etag_changes_every_time(store):
    seen = [(await store.insert("p", "r", {"n": 1})).etag]
    seen.append((await store.update("p", "r", {"n": 1}, seen[-1])).etag)  # same content still changes it
    seen.append((await store.upsert("p", "r", {"n": 2})).etag)
    seen.append((await store.update("p", "r", {"n": 3}, seen[-1])).etag)
    assert len(set(seen)) == len(seen)
    got = await store.get("p", "r")
    assert got is not None
    assert got.etag == seen[-1]


async def test_given_a_row_when_updated_then_columns_are_replaced_not_merged(store):
    row = await store.insert("p", "r", {"a": 1, "b": 2})
    await store.update("p", "r", {"a": 10}, row.etag)
    got = await store.get("p", "r")
    assert got is not None
    assert dict(got.data) == {"a": 10}


async def test_given_upsert_then_it_creates_and_then_replaces_unconditionally(store):
    await store.upsert("p", "r", {"a": 1, "b": 2})
    await store.upsert("p", "r", {"a": 3})
    got = await store.get("p", "r")
    assert got is not None
    assert dict(got.data) == {"a": 3}


# --- delete --------------------------------------------------------------------------------


async def test_given_a_stale_etag_when_deleting_then_stale_etag_and_the_row_stays(store):
    first = await store.insert("p", "r", {"n": 1})
    await store.update("p", "r", {"n": 2}, first.etag)
    with pytest.raises(StaleEtag):
        await store.delete("p", "r", etag=first.etag)
    assert await store.get("p", "r") is not None


async def test_given_the_current_etag_when_deleting_then_the_row_is_gone(store):
    row = await store.insert("p", "r", {"n": 1})
    await store.delete("p", "r", etag=row.etag)
    assert await store.get("p", "r") is None


async def test_given_a_missing_row_when_deleting_without_etag_then_nothing_happens(store):
    await store.delete("p", "never-there")


async def test_given_a_missing_row_when_deleting_with_an_etag_then_not_found(store):
    row = await store.insert("p", "r", {"n": 1})
    await store.delete("p", "r")
    with pytest.raises(NotFound):
        await store.delete("p", "r", etag=row.etag)


# --- transactions ------------------------------------------------------------------------


async def test_given_inserts_and_updates_when_written_many_then_all_land_with_new_etags(store):
    first = await store.insert("p", "a", {"n": 1})
    second = await store.insert("p", "b", {"n": 2})
    written = await store.write_many(
        "p", [Write("a", {"n": 10}, first.etag), Write("b", {"n": 20}, second.etag), Write("c", {"n": 30})]
    )
    assert [(r.row_key, r.data["n"]) for r in written] == [("a", 10), ("b", 20), ("c", 30)]
    assert written[0].etag != first.etag
    stored = {row.row_key: row for row in await rows(store, "p")}
    assert {k: r.data["n"] for k, r in stored.items()} == {"a": 10, "b": 20, "c": 30}
    assert [stored[k].etag for k in "abc"] == [r.etag for r in written]  # the etags returned are current
    again = await store.write_many("p", [Write("a", {"n": 11}, written[0].etag)])
    assert again[0].data["n"] == 11


@pytest.mark.parametrize(
    ("failing", "error"),
    [("stale", StaleEtag), ("exists", AlreadyExists), ("gone", NotFound)],
)
async def test_given_one_failing_condition_when_written_many_then_nothing_is_written(store, failing, error):
    row = await store.insert("p", "a", {"n": 1})
    await store.insert("p", "taken", {"n": 1})
    await store.insert("p", "gone", {"n": 1})
    old = (await store.get("p", "gone")).etag
    await store.delete("p", "gone")
    stale = await store.update("p", "a", {"n": 2}, row.etag)
    bad = {
        "stale": Write("a", {"n": 99}, row.etag),
        "exists": Write("taken", {"n": 99}),
        "gone": Write("gone", {"n": 99}, old),
    }[failing]
    good = [Write("new", {"n": 5})] + ([Write("a", {"n": 6}, stale.etag)] if failing != "stale" else [])
    with pytest.raises(error):
        await store.write_many("p", [*good, bad])
    after = {r.row_key: r.data["n"] for r in await rows(store, "p")}
    assert after == {"a": 2, "taken": 1}


async def test_a_transaction_of_more_than_100_writes_or_a_row_twice_is_refused_before_any_io(store):
    with pytest.raises(ValueError, match="at most 100"):
        await store.write_many("p", [Write(f"r{i}", {"n": i}) for i in range(101)])
    with pytest.raises(ValueError, match="only once"):
        await store.write_many("p", [Write("r", {"n": 1}), Write("r", {"n": 2})])
    assert await rows(store, "p") == []
    written = await store.write_many("p", [Write(f"r{i:03d}", {"n": i}) for i in range(100)])
    assert len(written) == 100


async def test_given_records_of_one_partition_when_saved_many_then_etags_follow(store):
    counters = Repository(store, Counter)
    one = await counters.insert(Counter(name="outbox", scope="a", value=1))
    saved = await counters.save_many(
        [one.model_copy(update={"value": 2}), Counter(name="outbox", scope="b", value=7)]
    )
    assert [c.value for c in saved] == [2, 7]
    assert all(c.etag for c in saved)
    with pytest.raises(StaleEtag):
        await counters.save_many([one.model_copy(update={"value": 3})])  # `one`'s etag is stale now
    with pytest.raises(ValueError, match="share a partition"):
        await counters.save_many([Counter(name="a", scope="x"), Counter(name="b", scope="x")])


async def test_given_some_missing_rows_when_deleting_rows_then_only_existing_ones_are_counted(store):
    for rk in ("a", "b", "c"):
        await store.insert("p", rk, {"n": 1})
    await store.insert("other", "a", {"n": 1})
    assert await store.delete_rows("p", ["a", "missing", "c", "a"]) == 2
    assert keys(await rows(store)) == [("other", "a"), ("p", "b")]


async def test_given_a_partition_of_more_than_one_batch_when_deleted_then_all_rows_go_and_others_stay(store):
    await asyncio.gather(*(store.insert("p", f"{i:04d}", {"n": i}) for i in range(150)))
    await store.insert("q", "kept", {"n": 1})
    assert await store.delete_partition("p") == 150
    assert keys(await rows(store)) == [("q", "kept")]


# --- query ---------------------------------------------------------------------------------


ORDERED = [
    ("a", "1"),
    ("a", "10"),
    ("a", "2"),
    ("a", "B"),
    ("a", "b"),
    ("a", "\U0001f600"),  # a surrogate pair: sorts below U+FFFF by UTF-16 code units
    ("a", "\uffff"),
    ("b", "1"),
    ("b", "2"),
]


@pytest.fixture
async def filled(store):
    shuffled = ORDERED[:]
    random.Random(7).shuffle(shuffled)
    for index, (pk, rk) in enumerate(shuffled):
        await store.insert(pk, rk, {"name": f"{pk}{rk}", "n": index})
    return store


async def test_given_rows_inserted_in_any_order_when_queried_then_they_come_in_key_order(filled):
    assert keys(await rows(filled)) == ORDERED
    assert keys(await rows(filled, "b")) == [("b", "1"), ("b", "2")]


async def test_given_a_row_key_range_then_from_is_inclusive_and_to_exclusive(filled):
    found = await rows(filled, "a", row_key_from="10", row_key_to="b")
    assert keys(found) == [("a", "10"), ("a", "2"), ("a", "B")]
    across = await rows(filled, row_key_from="2")  # no partition: every partition's range
    assert keys(across) == [
        ("a", "2"),
        ("a", "B"),
        ("a", "b"),
        ("a", "\U0001f600"),
        ("a", "\uffff"),
        ("b", "2"),
    ]


async def test_given_a_limit_then_only_the_first_rows_come(filled):
    assert keys(await rows(filled, "a", limit=2)) == [("a", "1"), ("a", "10")]


async def test_given_where_with_a_quote_in_the_value_then_it_matches_exactly_that_value(store):
    await store.insert("p", "1", {"owner": "O'Brien", "n": 1})
    await store.insert("p", "2", {"owner": "O'Brien' or 'a' eq 'a", "n": 2})
    await store.insert("p", "3", {"owner": "OBrien", "n": 3})
    found = await rows(store, "p", where={"owner": "O'Brien"})
    assert keys(found) == [("p", "1")]
    injected = await rows(store, "p", where={"owner": "x' or RowKey ne 'x"})
    assert injected == []


async def test_given_where_on_typed_columns_then_equality_respects_the_type(store):
    moment = datetime(2024, 1, 1, 8, 30, 15, 250000, tzinfo=UTC)
    await store.insert("p", "1", {"big": 2**40, "mid": 3_000_000_000, "flag": True, "at": moment, "n": 1})
    await store.insert("p", "2", {"big": 2**40 + 1, "mid": 5, "flag": False, "at": moment, "n": 1})
    assert keys(await rows(store, "p", where={"big": 2**40})) == [("p", "1")]
    assert keys(await rows(store, "p", where={"mid": 3_000_000_000})) == [("p", "1")]
    assert keys(await rows(store, "p", where={"flag": False})) == [("p", "2")]
    assert keys(await rows(store, "p", where={"at": moment, "n": 1})) == [("p", "1"), ("p", "2")]
    assert keys(await rows(store, "p", where={"absent": "x"})) == []


async def test_given_a_partition_key_with_a_quote_then_query_and_get_find_it(store):
    await store.insert("O'Neil", "it's", {"n": 1})
    assert keys(await rows(store, "O'Neil")) == [("O'Neil", "it's")]
    assert await store.get("O'Neil", "it's") is not None


# --- validation (before any I/O, identical in both) -----------------------------------------

BAD_KEYS = ["a/b", "a\\b", "a#b", "a?b", "a\x00b", "line\nbreak", "del\x7f", "c1\x85", "", "x" * 513]


@pytest.mark.parametrize("bad", BAD_KEYS, ids=repr)
async def test_given_an_invalid_key_then_every_operation_raises_value_error(store, bad):
    calls = [
        lambda: store.get(bad, "r"),
        lambda: store.get("p", bad),
        lambda: store.insert(bad, "r", {}),
        lambda: store.insert("p", bad, {}),
        lambda: store.update("p", bad, {}, "etag"),
        lambda: store.upsert(bad, "r", {}),
        lambda: store.delete("p", bad),
        lambda: store.delete_rows("p", [bad]),
        lambda: rows(store, bad),
        lambda: rows(store, "p", row_key_from=bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"PartitionKey|RowKey|row_key_from"):
            await call()


async def test_given_keys_at_the_limit_then_they_are_accepted(store):
    await store.insert("p" * 512, "\U0001f600" * 256, {"n": 1})  # 512 UTF-16 units each
    assert await store.get("p" * 512, "\U0001f600" * 256) is not None
    with pytest.raises(ValueError, match="RowKey is 514 UTF-16 units"):
        await store.insert("p", "\U0001f600" * 257, {})


async def test_given_a_column_over_the_limits_then_value_error_names_it_without_its_content(store):
    await store.insert("p", "ok", {"body": "y" * 32 * 1024})
    with pytest.raises(ValueError, match="'body' is 32769 UTF-16") as too_long:
        await store.insert("p", "r", {"body": "y" * (32 * 1024 + 1)})
    assert "yyy" not in str(too_long.value)
    with pytest.raises(ValueError, match="'blob'"):
        await store.insert("p", "r", {"blob": b"\0" * (64 * 1024 + 1)})
    huge = {f"c{i}": "z" * 30_000 for i in range(20)}  # 20 columns of 60 KB: 1.2 MB in all
    with pytest.raises(ValueError, match="1048576"):
        await store.insert("p", "r", huge)
    with pytest.raises(ValueError, match="column name"):
        await store.insert("p", "r", {"bad-name": 1})
    with pytest.raises(ValueError, match="reserved"):
        await store.insert("p", "r", {"Timestamp": 1})
    with pytest.raises(TypeError, match="'items'"):
        await store.insert("p", "r", {"items": [1, 2]})
    with pytest.raises(ValueError, match="64-bit"):
        await store.insert("p", "r", {"n": 2**63})
    assert keys(await rows(store)) == [("p", "ok")]


# --- repository: optimistic concurrency ----------------------------------------------------


def increment(current: Counter | None) -> Counter:
    base = current or Counter(name="hits", scope="t1")
    return base.model_copy(update={"value": base.value + 1})


async def test_given_ten_concurrent_increments_when_mutating_then_all_ten_land(store):
    repo = Repository(store, Counter)
    pk, rk = Counter.key("hits", "t1")
    # Each lost race means another writer won, so N writers need at most N attempts.
    await asyncio.gather(*(repo.mutate(pk, rk, increment, attempts=10) for _ in range(10)))
    final = await repo.get(pk, rk)
    assert final is not None
    assert final.value == 10


class _ReadBarrier:
    """The real store, except that every `get` waits until `parties` readers have read: so
    concurrent writers all hold the same ETag before any of them writes, whatever the load."""

    def __init__(self, inner: Any, parties: int) -> None:
        self._inner = inner
        self._barrier = asyncio.Barrier(parties)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def get(self, partition_key: str, row_key: str) -> Any:
        row = await self._inner.get(partition_key, row_key)
        await self._barrier.wait()
        return row


async def test_given_writers_that_give_up_when_mutating_then_no_successful_write_is_lost(store):
    """GIVEN ten writers that all read the same version WHEN each tries once THEN exactly one
    wins, nine get StaleEtag, and the stored value is the winner's (no lost update)."""
    await Repository(store, Counter).insert(Counter(name="hits", scope="t1"))
    repo = Repository(_ReadBarrier(store, 10), Counter)
    pk, rk = Counter.key("hits", "t1")
    results = await asyncio.gather(
        *(repo.mutate(pk, rk, increment, attempts=1) for _ in range(10)), return_exceptions=True
    )
    succeeded = [r for r in results if isinstance(r, Counter)]
    assert all(isinstance(r, Counter | StaleEtag) for r in results), results
    assert len(succeeded) == 1
    final = await Repository(store, Counter).get(pk, rk)
    assert final is not None
    assert final.value == 1
    assert final.etag == succeeded[0].etag


async def test_given_a_record_read_twice_when_both_copies_are_saved_then_the_second_is_a_stale_etag(store):
    repo = Repository(store, Counter)
    created = await repo.insert(Counter(name="hits", scope="t1"))
    first = await repo.save(created.model_copy(update={"value": 1}))
    assert first.etag != created.etag
    with pytest.raises(StaleEtag):
        await repo.save(created.model_copy(update={"value": 2}))
    with pytest.raises(StaleEtag):
        await repo.delete(created)
    stored = await repo.get(*Counter.key("hits", "t1"))
    assert stored == first


async def test_given_an_unchanged_result_when_mutating_then_nothing_is_written(store):
    repo = Repository(store, Counter)
    created = await repo.insert(Counter(name="hits", scope="t1"))
    same = await repo.mutate(created.partition_key, created.row_key, lambda current: current or created)
    assert same.etag == created.etag


async def test_given_every_record_type_when_inserted_then_it_reads_back_equal(store):
    for record in sample_records():
        repo = Repository(store, type(record))
        stored = await repo.insert(record)
        got = await repo.get(record.partition_key, record.row_key)
        assert got == stored, type(record).__name__
        listed = [r async for r in repo.list(record.partition_key, row_key_from=record.row_key, limit=1)]
        assert listed == [stored]


# --- runs housekeeping ---------------------------------------------------------------------


async def test_given_runs_in_several_partitions_when_deleting_older_than_a_cutoff_then_only_older_go(store):
    runs = RunRepository(store)
    cutoff = datetime(2024, 5, 1, tzinfo=UTC)
    ages = [
        timedelta(days=-3),
        timedelta(0),
        timedelta(microseconds=-1),
        timedelta(days=-40),
        timedelta(hours=1),
    ]
    kept: set[str] = set()
    for scope in ("tenant-a", "tenant-b", "_system"):
        for index, age in enumerate(ages):
            run = Run(
                scope=scope,
                run_id=f"{scope}-{index}",
                function="calendar_down",
                status=RunStatus.SUCCEEDED,
                started_at=cutoff + age,
                counts={"events": index},
            )
            await runs.insert(run)
            if run.started_at >= cutoff:
                kept.add(run.run_id)
    # 150 extra old runs in one partition: more than one delete batch.
    await asyncio.gather(
        *(
            runs.insert(
                Run(
                    scope="tenant-a",
                    run_id=f"old-{i}",
                    function="f",
                    started_at=cutoff - timedelta(days=1, seconds=i),
                )
            )
            for i in range(150)
        )
    )
    deleted = await runs.delete_older_than(cutoff)
    assert deleted == 3 * 3 + 150
    remaining = [r.run_id async for r in runs.list()]
    assert set(remaining) == kept
    newest_first = [r.started_at async for r in runs.list("tenant-a")]
    assert newest_first == sorted(newest_first, reverse=True)
    assert await runs.delete_older_than(cutoff) == 0
