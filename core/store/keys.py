"""Building PartitionKey/RowKey values from user and Graph values.

Graph ids are base64 (they contain '/'), e-mail local parts may contain '#' or '?', and host ids
are anything a host chose: every such value goes through `escape_key` so a key never holds a
character Table Storage forbids. Composite keys join escaped parts with `SEPARATOR`, which
`escape_key` always encodes, so a composite key splits back into exactly its parts.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from core.store.limits import is_control

SEPARATOR = "|"
# '%' must be encoded so every '%' in a key is an escape and unescaping is exact.
_ESCAPED = frozenset("/\\#?%" + SEPARATOR)


def escape_key(value: str) -> str:
    """Percent-encode (UTF-8, like URLs) the characters keys cannot hold, '%' and the separator.
    Everything else is kept, so keys stay readable and sort like the original values."""
    if not value:
        raise ValueError("a key part is empty")
    return "".join(
        "".join(f"%{byte:02X}" for byte in ch.encode("utf-8")) if ch in _ESCAPED or is_control(ch) else ch
        for ch in value
    )


def unescape_key(value: str) -> str:
    """The inverse of `escape_key`."""
    raw = bytearray()
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "%":
            raw.append(int(value[i + 1 : i + 3], 16))
            i += 3
            continue
        if raw:
            out.append(raw.decode("utf-8"))
            raw.clear()
        out.append(value[i])
        i += 1
    if raw:
        out.append(raw.decode("utf-8"))
    return "".join(out)


def join_key(*parts: str) -> str:
    """A composite key: each part escaped, joined by SEPARATOR."""
    return SEPARATOR.join(escape_key(part) for part in parts)


def split_key(key: str) -> list[str]:
    """The parts of a key made by `join_key`."""
    return [unescape_key(part) for part in key.split(SEPARATOR)]


def prefix_range(prefix: str) -> tuple[str, str]:
    """(row_key_from, row_key_to) selecting exactly the keys that start with `prefix`:
    the upper bound is the prefix with its last character incremented (half-open range)."""
    if not prefix:
        raise ValueError("prefix is empty")
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def short_hash(value: str) -> str:
    """A fixed-length stand-in (128 bits, hex) for a value too long to put in a key whole,
    such as a Graph attachment id. The full value is kept in a column."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


# Microseconds since the Unix epoch fit 18 digits until after the year 9999.
_INVERT_BASE = 10**18 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch (naive datetimes are taken as UTC)."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    delta = aware - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def inverted_timestamp(moment: datetime) -> str:
    """18 zero-padded digits that sort newest first (Table Storage only sorts ascending)."""
    value = _INVERT_BASE - micros(moment)
    if not 0 <= value <= _INVERT_BASE:
        raise ValueError("timestamp is before 1970 and cannot be inverted")
    return f"{value:018d}"


def sequence_key(sequence: int) -> str:
    """20 zero-padded digits (any non-negative int64), so row order is numeric order."""
    if not 0 <= sequence < 2**63:
        raise ValueError("sequence must be a non-negative 64-bit integer")
    return f"{sequence:020d}"
