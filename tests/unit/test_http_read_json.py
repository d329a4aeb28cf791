"""`functions.http.read_json`: what the API reads as a JSON request body, and the 400 for what
it cannot (called directly, no host)."""

from __future__ import annotations

import azure.functions as func
import pytest

from core.request_errors import MalformedRequest
from functions.http import read_json


def request(body: bytes) -> func.HttpRequest:
    return func.HttpRequest(method="POST", url="http://localhost/api/v1/x", headers={}, body=body)


def test_numbers_within_a_doubles_range_are_read() -> None:
    assert read_json(request(b'{"a": 1.5e308, "b": -2.5, "c": 18446744073709551616}')) == {
        "a": 1.5e308,
        "b": -2.5,
        "c": 2**64,
    }


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" * 400 + b".0"])
def test_a_number_beyond_a_doubles_range_is_a_400_not_infinity(number: bytes) -> None:
    """Python reads 1e400 as infinity, which no answer, event or table can carry as JSON (the
    R4 fuzzing found a reservation answering 201 with `Infinity` in its body)."""
    with pytest.raises(MalformedRequest, match="too large"):
        read_json(request(b'{"fields": {"x": ' + number + b"}}"))


@pytest.mark.parametrize("body", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b"{", b"\xff"])
def test_what_is_not_json_is_a_400(body: bytes) -> None:
    with pytest.raises(MalformedRequest, match="not valid JSON"):
        read_json(request(body))
