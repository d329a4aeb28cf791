"""The pure parts of the emulator's JSON batching: payload checks, dependency cycles, which
sub-requests are mailbox requests, and how bodies are encoded both ways."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from devtools.graph_emulator.batch import _decode_body, _encode_body, mailbox_of, parse_batch
from devtools.graph_emulator.errors import GraphError


def req(ident: str, **extra: Any) -> dict[str, Any]:
    return {"id": ident, "method": "GET", "url": "/users/u1/events", **extra}


def test_a_valid_batch_parses_with_bodies_and_dependencies() -> None:
    steps = parse_batch(
        {
            "requests": [
                req("1", method="post", body={"a": 1}, headers={"Content-Type": "application/json"}),
                req("2", dependsOn=["1"]),
                {"id": 3, "method": "DELETE", "url": "users/u1/events/e1"},
            ]
        }
    )
    assert [(s.id, s.method, s.depends_on, s.has_body) for s in steps] == [
        ("1", "POST", (), True),
        ("2", "GET", ("1",), False),
        ("3", "DELETE", (), False),
    ]
    assert steps[0].header("content-type") == "application/json"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"requests": {}},
        {"requests": []},
        {"requests": [req(str(i)) for i in range(21)]},
        {"requests": [req("a"), req("A")]},  # ids are case-insensitive
        {"requests": [req("1", dependsOn=["2"])]},
        {"requests": [req("1", dependsOn=["2"]), req("2", dependsOn=["3"]), req("3", dependsOn=["1"])]},
        {"requests": [req("1", dependsOn=["1"])]},
        {"requests": [{"id": "1", "url": "/me"}]},
        {"requests": [{"id": "1", "method": "TRACE", "url": "/me"}]},
        {"requests": [{"method": "GET", "url": "/me"}]},
        {"requests": [req("1", headers=["x"])]},
    ],
)
def test_malformed_batches_are_400(body: dict[str, Any]) -> None:
    with pytest.raises(GraphError) as caught:
        parse_batch(body)
    assert (caught.value.status, caught.value.code) == (400, "BadRequest")


def test_twenty_requests_are_allowed() -> None:
    assert len(parse_batch({"requests": [req(str(i)) for i in range(20)]})) == 20


@pytest.mark.parametrize(
    ("url", "mailbox"),
    [
        ("/users/u1/events", ("users", "u1")),
        ("users/adele%40contoso.com/calendar", ("users", "adele@contoso.com")),
        ("/me/events?$top=1", ("me", "")),
        ("/me", ("me", "")),
        ("/users/u1", None),  # a directory read, not a mailbox request
        ("/users?$select=id", None),
        ("/subscriptions", None),
    ],
)
def test_mailbox_of(url: str, mailbox: tuple[str, str] | None) -> None:
    assert mailbox_of(url) == mailbox


def test_bodies_json_or_base64_each_way() -> None:
    assert _encode_body({"a": 1}, "application/json") == b'{"a":1}'
    raw = bytes(range(256))
    assert _encode_body(base64.urlsafe_b64encode(raw).decode().rstrip("="), "application/octet-stream") == raw
    with pytest.raises(ValueError, match="base64"):
        _encode_body("not base64!", "image/png")
    assert _decode_body(b'{"a":1}', "application/json", "utf-8") == {"a": 1}
    assert _decode_body(b"hello", "text/plain", "utf-8") == "hello"
    assert _decode_body(raw, "application/octet-stream", "utf-8") == base64.b64encode(raw).decode()
