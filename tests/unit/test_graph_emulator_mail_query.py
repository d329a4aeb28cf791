"""The OData options the mail endpoints evaluate (mail_query.py): `$filter` comparisons, paths,
functions and boolean logic on rendered JSON; `$orderby`; `$expand`; and Graph's 400 for what is
not understood."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.graph_emulator.errors import GraphError
from devtools.graph_emulator.mail_query import (
    apply_filter,
    apply_orderby,
    expands_item,
    parse_expand,
    parse_orderby,
)

ITEMS: list[dict[str, Any]] = [
    {
        "subject": "Invoice 7",
        "isRead": False,
        "hasAttachments": True,
        "receivedDateTime": "2024-06-03T10:00:00Z",
        "from": {"emailAddress": {"address": "Billing@Fabrikam.example"}},
        "displayName": "O'Brien",
    },
    {
        "subject": "Lunch?",
        "isRead": True,
        "hasAttachments": False,
        "receivedDateTime": "2024-06-04T09:30:00Z",
        "from": {"emailAddress": {"address": "megan@contoso.example"}},
        "displayName": "Invoices",
    },
]


def _subjects(expression: str) -> list[str]:
    return [i["subject"] for i in apply_filter(ITEMS, expression)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("displayName eq 'invoices'", ["Lunch?"]),  # case-insensitive, as Exchange compares
        ("displayName eq 'O''Brien'", ["Invoice 7"]),  # '' escapes a quote
        ("isRead eq false", ["Invoice 7"]),
        ("hasAttachments eq true and isRead eq false", ["Invoice 7"]),
        ("receivedDateTime ge 2024-06-04T00:00:00Z", ["Lunch?"]),
        ("receivedDateTime lt 2024-06-04", ["Invoice 7"]),
        ("from/emailAddress/address eq 'billing@fabrikam.example'", ["Invoice 7"]),
        ("startswith(subject,'inv') or (isRead eq true)", ["Invoice 7", "Lunch?"]),
        ("not contains(subject,'lunch')", ["Invoice 7"]),
        ("subject ne 'Lunch?'", ["Invoice 7"]),
    ],
)
def test_filter(expression: str, expected: list[str]) -> None:
    assert _subjects(expression) == expected


@pytest.mark.parametrize(
    "expression", ["subject like 'x'", "subject eq", "(isRead eq true", "isRead eq true )"]
)
def test_filter_refuses_what_it_does_not_understand(expression: str) -> None:
    with pytest.raises(GraphError) as refused:
        apply_filter(ITEMS, expression)
    assert refused.value.status == 400


def test_orderby_and_expand() -> None:
    newest_first = apply_orderby(ITEMS, parse_orderby("receivedDateTime desc"))
    assert [i["subject"] for i in newest_first] == ["Lunch?", "Invoice 7"]
    assert [i["subject"] for i in apply_orderby(ITEMS, parse_orderby("subject"))] == ["Invoice 7", "Lunch?"]
    with pytest.raises(GraphError):
        parse_orderby("subject sideways")
    assert parse_expand(None) is None
    assert parse_expand("attachments") == ()
    assert parse_expand("attachments($select=id,name,size)") == ("id", "name", "size")
    with pytest.raises(GraphError):
        parse_expand("extensions")
    assert expands_item("microsoft.graph.itemattachment/item") is True
    assert expands_item(None) is False
