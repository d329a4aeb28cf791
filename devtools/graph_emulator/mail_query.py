"""The OData query options the mail endpoints take, evaluated on rendered Graph JSON.

- `$filter`: comparisons (`eq ne gt ge lt le`) of a property path (`isRead`,
  `from/emailAddress/address`, `receivedDateTime`) with a literal ('string', true/false, null,
  numbers, unquoted DateTimeOffsets), combined with `and`/`or`/`not` and parentheses, plus
  `startswith(prop,'x')` and `contains(prop,'x')`. String comparisons ignore case, as Exchange's
  do. Anything else is refused with Graph's 400 rather than silently mis-evaluated.
- `$orderby`: one or more `prop [asc|desc]`.
- `$expand`: `attachments` (optionally `attachments($select=...)`), and on an attachment
  `microsoft.graph.itemattachment/item`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devtools.graph_emulator.errors import GraphError
from devtools.graph_emulator.timezones import parse_instant

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<lparen>\()
      | (?P<rparen>\))
      | (?P<comma>,)
      | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_/.@]*)
    )""",
    re.VERBOSE,
)
_COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
_FUNCTIONS = ("startswith", "endswith", "contains")


def invalid_filter(detail: str) -> GraphError:
    return GraphError(400, "BadRequest", f"Invalid filter clause: {detail}")


@dataclass
class _Token:
    kind: str
    text: str


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise invalid_filter(f"unexpected '{text[pos:].strip()[:20]}'")
        kind = match.lastgroup or ""
        out.append(_Token(kind, match.group(kind)))
        pos = match.end()
    return out


def lookup(item: dict[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("/"):
        if not isinstance(value, dict):
            return None
        # Property names are case-insensitive in Graph's query options.
        value = next((v for k, v in value.items() if k.lower() == part.lower()), None)
    return value


def _normalise(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}T[0-9:.]+(Z|[+-]\d{2}:\d{2})?", value):
            try:
                return parse_instant(value)
            except ValueError:
                return value.casefold()
        return value.casefold()
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    a, b = _normalise(left), _normalise(right)
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    if a is None or b is None:
        return False
    try:
        if op == "gt":
            return bool(a > b)
        if op == "ge":
            return bool(a >= b)
        if op == "lt":
            return bool(a < b)
        return bool(a <= b)
    except TypeError:
        return False


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None) -> _Token:
        token = self.peek()
        if token is None or (kind is not None and token.kind != kind):
            raise invalid_filter("the expression is incomplete")
        self.pos += 1
        return token

    def is_word(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text.lower() in words

    def parse(self) -> Predicate:
        predicate = self.or_expr()
        if self.peek() is not None:
            raise invalid_filter(f"unexpected '{self.peek().text}'")  # type: ignore[union-attr]
        return predicate

    def or_expr(self) -> Predicate:
        left = self.and_expr()
        while self.is_word("or"):
            self.take()
            right = self.and_expr()
            left = (lambda a, b: lambda item: a(item) or b(item))(left, right)
        return left

    def and_expr(self) -> Predicate:
        left = self.unary()
        while self.is_word("and"):
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda item: a(item) and b(item))(left, right)
        return left

    def unary(self) -> Predicate:
        if self.is_word("not"):
            self.take()
            inner = self.unary()
            return lambda item: not inner(item)
        token = self.peek()
        if token is not None and token.kind == "lparen":
            self.take()
            inner = self.or_expr()
            self.take("rparen")
            return inner
        if token is not None and token.kind == "word" and token.text.lower() in _FUNCTIONS:
            return self.function()
        return self.comparison()

    def function(self) -> Predicate:
        name = self.take().text.lower()
        self.take("lparen")
        path = self.take("word").text
        self.take("comma")
        needle = self.literal()
        self.take("rparen")
        if not isinstance(needle, str):
            raise invalid_filter(f"{name} takes a string")
        wanted = needle.casefold()

        def test(item: dict[str, Any]) -> bool:
            value = lookup(item, path)
            if not isinstance(value, str):
                return False
            text = value.casefold()
            if name == "startswith":
                return text.startswith(wanted)
            if name == "endswith":
                return text.endswith(wanted)
            return wanted in text

        return test

    def comparison(self) -> Predicate:
        path = self.take("word").text
        op = self.take("word").text.lower()
        if op not in _COMPARISONS:
            raise invalid_filter(f"unsupported operator '{op}'")
        value = self.literal()
        return lambda item: _compare(op, lookup(item, path), value)

    def literal(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return token.text[1:-1].replace("''", "'")
        if token.kind == "number":
            return float(token.text) if "." in token.text else int(token.text)
        if token.kind == "datetime":
            try:
                return parse_instant(token.text if "T" in token.text else token.text + "T00:00:00Z")
            except ValueError:
                raise invalid_filter(f"bad date-time '{token.text}'") from None
        if token.kind == "word" and token.text.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token.text.lower()]
        raise invalid_filter(f"expected a literal, found '{token.text}'")


def parse_filter(text: str) -> Predicate:
    return _Parser(_tokens(text)).parse()


def apply_filter(items: list[dict[str, Any]], text: str | None) -> list[dict[str, Any]]:
    if not text:
        return items
    predicate = parse_filter(text)
    return [item for item in items if predicate(item)]


def parse_orderby(text: str) -> list[tuple[str, bool]]:
    """[(property path, descending)]."""
    out: list[tuple[str, bool]] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise GraphError(400, "BadRequest", f"Invalid $orderby clause '{text}'.")
        out.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return out


def apply_orderby(items: list[dict[str, Any]], clauses: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    # Stable sorts from the last key to the first; missing values sort first ascending.
    for path, descending in reversed(clauses):
        present = [i for i in items if lookup(i, path) is not None]
        missing = [i for i in items if lookup(i, path) is None]
        present.sort(key=lambda i, p=path: _normalise(lookup(i, p)), reverse=descending)  # type: ignore[misc]
        items = present + missing if descending else missing + present
    return items


def parse_expand(text: str | None) -> tuple[str, ...] | None:
    """For messages: the attachments' `$select` when `$expand=attachments` was asked (() for all
    properties), None when attachments are not expanded. Other navigations are refused."""
    if not text:
        return None
    match = re.fullmatch(r"\s*attachments\s*(?:\(\s*\$select\s*=\s*([^)]*)\))?\s*", text, re.IGNORECASE)
    if match is None:
        raise GraphError(
            400, "BadRequest", f"The emulator expands only 'attachments' on messages, not '{text}'."
        )
    select = match.group(1)
    return tuple(s.strip() for s in select.split(",") if s.strip()) if select else ()


def expands_item(text: str | None) -> bool:
    """`$expand=microsoft.graph.itemattachment/item` on an attachment."""
    if not text:
        return False
    if text.strip().lower() in ("microsoft.graph.itemattachment/item", "item"):
        return True
    raise GraphError(
        400, "BadRequest", f"The emulator expands only 'microsoft.graph.itemattachment/item', not '{text}'."
    )
