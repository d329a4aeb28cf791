"""Pydantic record <-> Table Storage columns.

Each field's annotation decides how it is stored, once per class:
- native: str, int, float, bool, datetime, bytes, enums (and unions/literals of those) become
  columns of the matching Edm type, so they can be filtered on (`where=`);
- text: UUID, date, time, timedelta, Decimal are stored as their JSON-mode string (pydantic
  parses them back), because Table Storage has no column type for them;
- json: everything else (lists, dicts, sets, nested models, Any) is one compact JSON string.
None is never stored (Table Storage has no null) and reads back as the field's default.
A record's `etag` is row metadata, not a column (records exclude it from dumps).
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum, StrEnum
from functools import cache
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel, ValidationError

from core.errors import StoreError
from core.store.limits import normalise_columns
from core.store.table import Scalar

M = TypeVar("M", bound=BaseModel)

# Columns are checked for size here with placeholder keys (the real keys are checked by the
# table store): one character each, so the entity total is the columns' own size.
_PLACEHOLDER_KEY = "k"


class Kind(StrEnum):
    NATIVE = "native"
    TEXT = "text"
    JSON = "json"


_NATIVE_TYPES: tuple[type, ...] = (str, int, float, bool, datetime, bytes, Enum)
_TEXT_TYPES: tuple[type, ...] = (UUID, date, time, timedelta, Decimal)


def kind_of(annotation: Any) -> Kind:
    """How a field with this annotation is stored (see the module docstring)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return kind_of(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        kinds = {kind_of(arg) for arg in get_args(annotation) if arg is not type(None)}
        # A union of one storage kind keeps it; a mix (int | list[int]) needs JSON to round-trip.
        return kinds.pop() if len(kinds) == 1 else Kind.JSON
    if origin is Literal:
        values = get_args(annotation)
        return Kind.NATIVE if all(isinstance(v, str | int | bool | Enum) for v in values) else Kind.JSON
    if isinstance(annotation, type):
        # datetime before date: datetime is a date subclass but has a native column type.
        if issubclass(annotation, _NATIVE_TYPES):
            return Kind.NATIVE
        if issubclass(annotation, _TEXT_TYPES):
            return Kind.TEXT
    return Kind.JSON


@cache
def plan(model: type[BaseModel]) -> Mapping[str, Kind]:
    """Field name -> storage kind, for every stored field of `model` (not `etag`)."""
    return types.MappingProxyType(
        {
            name: kind_of(field.annotation)
            for name, field in model.model_fields.items()
            if name != "etag" and not field.exclude
        }
    )


def encode(record: BaseModel) -> dict[str, Scalar]:
    """The columns for `record`. Raises ValueError naming a field that breaks a Table Storage
    limit (a string or JSON column over 32K characters, an entity over 1 MiB)."""
    fields = plan(type(record))
    as_json = record.model_dump(mode="json", include={n for n, k in fields.items() if k is not Kind.NATIVE})
    columns: dict[str, Any] = {}
    for name, kind in fields.items():
        value = getattr(record, name)
        if value is None:
            continue
        if kind is Kind.NATIVE:
            columns[name] = value
        elif kind is Kind.TEXT:
            columns[name] = as_json[name]
        else:
            # ensure_ascii=False: the limit counts characters, and \\u escapes would take six each.
            columns[name] = json.dumps(as_json[name], ensure_ascii=False, separators=(",", ":"))
    return normalise_columns(_PLACEHOLDER_KEY, _PLACEHOLDER_KEY, columns)


def decode(model: type[M], columns: Mapping[str, Any], **extra: Any) -> M:
    """The record for stored `columns` (plus `extra` values, e.g. the etag). Columns the model no
    longer has are ignored and missing ones take their defaults, so records can evolve. A row
    that does not fit raises StoreError naming the fields, not their content."""
    values: dict[str, Any] = {}
    for name, kind in plan(model).items():
        if name not in columns:
            continue
        value = columns[name]
        if kind is Kind.JSON and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise StoreError(f"{model.__name__}.{name}: stored value is not valid JSON") from None
        values[name] = value
    try:
        return model.model_validate({**values, **extra})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in exc.errors())
        raise StoreError(f"a stored {model.__name__} does not decode ({problems})") from None
