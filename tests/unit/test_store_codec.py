"""The codec: which fields become which columns, and that every record survives the round trip."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, create_model

from core.errors import StoreError
from core.store import codec
from core.store.codec import Kind
from core.store.repository import Record


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Level(IntEnum):
    LOW = 1
    HIGH = 2**40


class Plain(Enum):
    A = "a"


class Inner(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    when: datetime | None = None
    tags: list[str] = Field(default_factory=list)


class Everything(Record):
    table: ClassVar[str] = "everything"

    key: str
    text: str | None = None
    count: int = 0
    big: int | None = None
    ratio: float | None = None
    flag: bool = False
    at: datetime | None = None
    raw: bytes | None = None
    colour: Colour = Colour.RED
    level: Level | None = None
    plain: Plain | None = None
    choice: Literal["x", "y"] = "x"
    ident: UUID | None = None
    day: date | None = None
    amount: Decimal | None = None
    items: list[int] = Field(default_factory=list)
    mapping: dict[str, Any] = Field(default_factory=dict)
    inner: Inner | None = None
    inners: list[Inner] = Field(default_factory=list)
    labels: frozenset[str] = frozenset()
    either: int | list[int] | None = None
    note: Annotated[str | None, Field(max_length=100_000)] = None

    @property
    def partition_key(self) -> str:
        return "p"

    @property
    def row_key(self) -> str:
        return self.key


def test_given_field_annotations_then_each_maps_to_the_expected_storage_kind():
    plan = codec.plan(Everything)
    assert "etag" not in plan
    native = {
        "key",
        "text",
        "count",
        "big",
        "ratio",
        "flag",
        "at",
        "raw",
        "colour",
        "level",
        "plain",
        "choice",
    }
    text = {"ident", "day", "amount"}
    assert {n for n, k in plan.items() if k is Kind.NATIVE} == native | {"note"}
    assert {n for n, k in plan.items() if k is Kind.TEXT} == text
    assert {n for n, k in plan.items() if k is Kind.JSON} == {
        "items",
        "mapping",
        "inner",
        "inners",
        "labels",
        "either",
    }


def test_given_a_record_when_encoded_then_scalars_are_columns_structures_are_json_and_none_is_absent():
    record = Everything(
        key="k",
        count=3,
        big=2**40,
        at=datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=1))),
        colour=Colour.BLUE,
        level=Level.HIGH,
        ident=UUID(int=1),
        items=[1, 2],
        inner=Inner(name="ø"),
        etag='W/"x"',
    )
    columns = codec.encode(record)
    assert columns["count"] == 3
    assert columns["big"] == 2**40
    assert columns["at"] == datetime(2024, 1, 1, 11, tzinfo=UTC)
    assert columns["colour"] == "blue"
    assert columns["level"] == 2**40
    assert columns["ident"] == "00000000-0000-0000-0000-000000000001"
    assert columns["items"] == "[1,2]"
    assert json.loads(str(columns["inner"])) == {"name": "ø", "when": None, "tags": []}
    assert "text" not in columns
    assert "raw" not in columns
    assert "etag" not in columns  # row metadata, not a column
    assert "key" in columns


def test_given_columns_of_another_version_when_decoded_then_extra_are_ignored_and_missing_defaulted():
    record = codec.decode(Everything, {"key": "k", "dropped_field": "old"}, etag="e1")
    assert record == Everything(key="k", etag="e1")
    assert record.etag == "e1"


def test_given_a_row_that_does_not_fit_when_decoded_then_store_error_names_the_field_not_the_value():
    with pytest.raises(StoreError, match="count") as caught:
        codec.decode(Everything, {"key": "k", "count": "secret-ish-value"})
    assert "secret-ish-value" not in str(caught.value)
    with pytest.raises(StoreError, match=r"Everything\.items"):
        codec.decode(Everything, {"key": "k", "items": "not json"})


def test_given_a_column_over_the_limits_when_encoded_then_value_error_names_the_field_without_content():
    with pytest.raises(ValueError, match="'note' is 40000 UTF-16") as caught:
        codec.encode(Everything(key="k", note="q" * 40_000))
    assert "qqq" not in str(caught.value)
    # A structure is one JSON column, so the same limit applies to its serialised form.
    with pytest.raises(ValueError, match="'items'"):
        codec.encode(Everything(key="k", items=list(range(10_000))))
    # Characters outside the BMP count twice, as the service counts UTF-16 units.
    with pytest.raises(ValueError, match="'text' is 32770 UTF-16"):
        codec.encode(Everything(key="k", text="\U0001f600" * 16_385))
    columns: dict[str, Any] = {f"c{i}": (str, "") for i in range(40)}
    wide = create_model("Wide", __base__=Everything, **columns)
    with pytest.raises(ValueError, match=r"1048576 \(largest column: 'c\d+'\)"):
        codec.encode(wide(key="k", **{f"c{i}": "w" * 30_000 for i in range(40)}))
    big_but_ok = Everything(key="k", mapping={"v": "é" * 30_000})
    assert codec.decode(Everything, codec.encode(big_but_ok)) == big_but_ok


# --- the property: any record round-trips ---------------------------------------------------

# utf-8: every character but lone surrogates, which no store can hold.
texts = st.text(st.characters(codec="utf-8"), max_size=40)
aware = st.datetimes(
    min_value=datetime(1601, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | texts
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
inners = st.builds(Inner, name=texts, when=st.none() | aware, tags=st.lists(texts, max_size=3))

records = st.builds(
    Everything,
    key=st.just("k"),
    text=st.none() | texts,
    count=int64,
    big=st.none() | int64,
    ratio=st.none() | st.floats(allow_nan=False),
    flag=st.booleans(),
    at=st.none() | aware,
    raw=st.none() | st.binary(max_size=64),
    colour=st.sampled_from(Colour),
    level=st.none() | st.sampled_from(Level),
    plain=st.none() | st.sampled_from(Plain),
    choice=st.sampled_from(["x", "y"]),
    ident=st.none() | st.uuids(),
    day=st.none() | st.dates(),
    amount=st.none() | st.decimals(allow_nan=False, allow_infinity=False, places=4, max_value=10**12),
    items=st.lists(int64, max_size=5),
    mapping=st.dictionaries(texts, json_values, max_size=4),
    inner=st.none() | inners,
    inners=st.lists(inners, max_size=3),
    labels=st.frozensets(texts, max_size=4),
    either=st.none() | int64 | st.lists(int64, max_size=3),
    note=st.none() | texts,
)


@given(records)
def test_property_any_record_round_trips_through_the_codec(record: Everything):
    columns = codec.encode(record)
    assert all(value is not None for value in columns.values())
    decoded = codec.decode(Everything, columns, etag=None)
    # Equal as values: aware datetimes compare by instant, whatever zone they were given in;
    # the column itself always comes back in UTC.
    assert decoded == record
    if decoded.at is not None:
        assert decoded.at.tzinfo == UTC
