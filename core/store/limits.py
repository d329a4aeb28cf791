"""Table Storage's rules for keys, column names, values and sizes, checked before any I/O.

Both table adapters call these, so the in-memory fake rejects exactly what the real service
would, plus two things it accepts that are always bugs here: empty keys and NaN.
Messages name the key or column and the limit, never the content: rows can hold personal data.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from core.store.table import MAX_TRANSACTION, Scalar, Write

# The service measures strings in UTF-16 code units (2 bytes each).
MAX_KEY_UNITS = 512  # PartitionKey / RowKey: 1 KiB
MAX_STRING_UNITS = 32 * 1024  # a string column: 64 KiB
MAX_BINARY_BYTES = 64 * 1024
MAX_ENTITY_BYTES = 1024 * 1024
MAX_COLUMNS = 252  # 255 properties minus PartitionKey, RowKey, Timestamp
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Edm.DateTime starts at 1601-01-01 (Windows FILETIME epoch); earlier values are refused.
MIN_DATETIME = datetime(1601, 1, 1, tzinfo=UTC)

# the forbidden characters and the control characters (is_control), found in one C-level scan
_BAD_KEY_CHAR = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_RESERVED_COLUMNS = frozenset({"partitionkey", "rowkey", "timestamp", "etag"})


def utf16_units(text: str) -> int:
    """Length as the service counts it. Lone surrogates cannot be sent at all."""
    if text.isascii():  # one unit per character, and no surrogates: the common case, in C
        return len(text)
    try:
        return len(text.encode("utf-16-le")) // 2
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate, which cannot be stored") from None


def is_control(ch: str) -> bool:
    code = ord(ch)
    return code <= 0x1F or 0x7F <= code <= 0x9F


def check_key(kind: str, value: str) -> None:
    """`kind` is 'PartitionKey' or 'RowKey'. Empty keys are refused too: the service accepts
    them, but here an empty key always means a missing value."""
    if not isinstance(value, str):
        raise TypeError(f"{kind} must be a str, not {type(value).__name__}")
    if value == "":
        raise ValueError(f"{kind} is empty")
    if (bad := _BAD_KEY_CHAR.search(value)) is not None:
        raise ValueError(
            f"{kind} contains {bad.group()!r}; Table Storage forbids / \\ # ? and control characters "
            "(build keys with core.store.keys.escape_key)"
        )
    try:
        units = utf16_units(value)
    except ValueError as exc:
        raise ValueError(f"{kind} {exc}") from None
    if units > MAX_KEY_UNITS:
        raise ValueError(f"{kind} is {units} UTF-16 units long; Table Storage allows {MAX_KEY_UNITS}")


def check_keys(partition_key: str, row_key: str) -> None:
    check_key("PartitionKey", partition_key)
    check_key("RowKey", row_key)


def check_column_name(name: str) -> None:
    if (problem := _column_name_problem(name)) is not None:
        raise ValueError(problem)


@functools.lru_cache(maxsize=4096)
def _column_name_problem(name: str) -> str | None:
    """Why `name` cannot be a column, or None. Cached: a table has a few dozen column names,
    checked on every write of every row."""
    if not isinstance(name, str) or not _COLUMN_NAME.fullmatch(name):
        return f"column name {name!r} is not a valid Table Storage property name"
    if name.lower() in _RESERVED_COLUMNS:
        return f"column name {name!r} is reserved"
    return None


def normalise_value(name: str, value: Any) -> Scalar:
    """One column value as the store keeps it: enums become their value, naive datetimes are
    taken as UTC (the SDK would silently take them as local time), every datetime is aware UTC."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"column {name!r} holds an integer outside the 64-bit range")
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        try:
            utf16_units(value)
        except ValueError as exc:
            raise ValueError(f"column {name!r} {exc}") from None
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if aware < MIN_DATETIME:
            raise ValueError(f"column {name!r} holds a datetime before 1601-01-01 (Table Storage's minimum)")
        # A plain datetime, whatever subclass came in (the SDK returns its own subclass).
        return datetime.combine(aware.date(), aware.time(), tzinfo=UTC)
    raise TypeError(
        f"column {name!r} has type {type(value).__name__}; a column holds str, int, float, bool, "
        "datetime or bytes (encode structured values as JSON first)"
    )


def value_size(value: Scalar) -> int:
    """Bytes a value counts towards the 1 MiB entity limit (the service's published formula)."""
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return 8  # every int is written as an Edm.Int64 (see azure_table.py)
    if isinstance(value, float | datetime):
        return 8
    if isinstance(value, bytes):
        return 4 + len(value)
    return 4 + 2 * utf16_units(value)


def normalise_columns(partition_key: str, row_key: str, data: Mapping[str, Any]) -> dict[str, Scalar]:
    """Validate keys and columns and return the columns to store (None values dropped:
    Table Storage has no null). Raises ValueError/TypeError naming the offending column."""
    check_keys(partition_key, row_key)
    out: dict[str, Scalar] = {}
    for name, raw in data.items():
        check_column_name(name)
        if raw is None:
            continue
        value = normalise_value(name, raw)
        if isinstance(value, str) and (units := utf16_units(value)) > MAX_STRING_UNITS:
            raise ValueError(
                f"column {name!r} is {units} UTF-16 characters; Table Storage allows {MAX_STRING_UNITS} "
                "(keep large content in Blob Storage)"
            )
        if isinstance(value, bytes) and len(value) > MAX_BINARY_BYTES:
            raise ValueError(
                f"column {name!r} is {len(value)} bytes; Table Storage allows {MAX_BINARY_BYTES}"
            )
        if isinstance(value, float) and math.isnan(value):
            # NaN can be stored but never matches anything, including itself: refuse it early.
            raise ValueError(f"column {name!r} is NaN")
        out[name] = value
    if len(out) > MAX_COLUMNS:
        raise ValueError(f"an entity has {len(out)} columns; Table Storage allows {MAX_COLUMNS}")
    size = 4 + 2 * utf16_units(partition_key) + 2 * utf16_units(row_key)
    size += sum(8 + 2 * len(name) + value_size(value) for name, value in out.items())
    if size > MAX_ENTITY_BYTES:
        largest = max(out, key=lambda n: value_size(out[n]))
        raise ValueError(
            f"an entity would be {size} bytes; Table Storage allows {MAX_ENTITY_BYTES} "
            f"(largest column: {largest!r})"
        )
    return out


def normalise_where(where: Mapping[str, Any] | None) -> dict[str, Scalar]:
    """Equality conditions for `query`: same names and values a column may hold; None is refused
    because a missing column can never be matched by equality in Table Storage."""
    out: dict[str, Scalar] = {}
    for name, raw in (where or {}).items():
        check_column_name(name)
        if raw is None:
            raise ValueError(f"where[{name!r}] is None; Table Storage has no null to compare with")
        value = normalise_value(name, raw)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"where[{name!r}] must be a finite number")
        out[name] = value
    return out


def check_range(row_key_from: str | None, row_key_to: str | None, limit: int | None) -> None:
    """Bounds follow the key rules: a bound holding a character no key can hold is a caller's bug
    (an unescaped value), so it fails loudly instead of silently matching nothing."""
    for kind, bound in (("row_key_from", row_key_from), ("row_key_to", row_key_to)):
        if bound is not None:
            check_key(kind, bound)
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")


def check_writes(partition_key: str, writes: Sequence[Write]) -> list[dict[str, Scalar]]:
    """Each write's columns, normalised, before any I/O: ValueError for more than
    `MAX_TRANSACTION` writes or a row written twice (a transaction touches a row once)."""
    if len(writes) > MAX_TRANSACTION:
        raise ValueError(f"a transaction holds at most {MAX_TRANSACTION} writes, not {len(writes)}")
    if len({w.row_key for w in writes}) != len(writes):
        raise ValueError("a transaction may write each row only once")
    return [normalise_columns(partition_key, w.row_key, w.data) for w in writes]
