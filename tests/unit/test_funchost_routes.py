"""Route templates and function keys of the local Functions host (no network)."""

from __future__ import annotations

import uuid

import pytest

from devtools.funchost.routes import (
    AuthLevel,
    RouteTemplate,
    key_allows,
    parse_auth_level,
    provided_key,
)
from devtools.funchost.settings import FunctionHostError


def match(template: str, path: str) -> dict[str, str] | None:
    return RouteTemplate.parse(template).match(path)


def test_literal_segments_match_in_any_case_and_values_keep_theirs():
    assert match("Orders/{id}/Lines", "orders/AbC/LINES") == {"id": "AbC"}
    assert match("orders/{id}/lines", "orders/abc") is None
    assert match("orders/{id}", "orders/abc/extra") is None


def test_a_final_newline_is_part_of_the_path_not_an_end_of_line():
    """ASP.NET matches the whole decoded path: `boom%0A` is not `boom`, and a parameter keeps
    the newline it was sent with (the app's validation decides about it)."""
    assert match("boom", "boom\n") is None
    assert match("orders/{id}/lines", "orders/7/lines\n") is None
    assert match("orders/{id}", "orders/7\n") == {"id": "7\n"}


def test_a_trailing_slash_is_ignored_and_an_empty_template_matches_the_root():
    assert match("orders/{id}", "orders/7/") == {"id": "7"}
    assert match("", "") == {}
    assert match("", "x") is None


@pytest.mark.parametrize(
    ("value", "matches"),
    [("42", True), ("-3", True), ("2147483647", True), ("2147483648", False), ("4x", False), ("", False)],
)
def test_int_constraint_takes_32_bit_integers_only(value, matches):
    assert (match("items/{id:int}", f"items/{value}") is not None) is matches


def test_long_constraint_takes_64_bit_integers():
    assert match("items/{id:long}", "items/2147483648") == {"id": "2147483648"}
    assert match("items/{id:long}", "items/9223372036854775808") is None


def test_guid_constraint_accepts_guids_in_the_usual_forms_only():
    value = uuid.uuid4()
    assert match("u/{id:guid}", f"u/{value}") == {"id": str(value)}
    assert match("u/{id:guid}", f"u/{value.hex.upper()}") is not None
    assert match("u/{id:guid}", f"u/{{{value}}}") is not None
    assert match("u/{id:guid}", "u/not-a-guid") is None
    assert match("u/{id:guid}", f"u/{value}0") is None


def test_alpha_and_bool_constraints():
    assert match("n/{name:alpha}", "n/Ada") == {"name": "Ada"}
    assert match("n/{name:alpha}", "n/Ada1") is None
    assert match("n/{name:alpha}", "n/Adé") is None  # ASCII letters only, as in ASP.NET
    assert match("f/{on:bool}", "f/True") == {"on": "True"}
    assert match("f/{on:bool}", "f/yes") is None


def test_optional_parameters_may_be_left_out_and_are_then_absent():
    template = RouteTemplate.parse("hello/{name}/{n:int?}")
    assert template.match("hello/ada/3") == {"name": "ada", "n": "3"}
    assert template.match("hello/ada") == {"name": "ada"}
    assert template.match("hello/ada/x") is None  # present but violating its constraint
    assert template.match("hello") is None


def test_a_default_value_fills_a_left_out_parameter():
    assert match("page/{n:int=1}", "page") == {"n": "1"}
    assert match("page/{n:int=1}", "page/5") == {"n": "5"}


def test_catch_all_takes_the_rest_of_the_path_or_nothing():
    assert match("files/{*path}", "files/a/b/c.txt") == {"path": "a/b/c.txt"}
    assert match("files/{*path}", "files") == {}
    assert match("files/{**path}", "files/x/y") == {"path": "x/y"}
    assert match("FILES/{*path}", "files/Q") == {"path": "Q"}


def test_more_specific_routes_sort_first():
    templates = ["items/{*rest}", "items/{id?}", "items/{id}", "items/{id:int}", "items/new"]
    ordered = sorted((RouteTemplate.parse(t) for t in templates), key=lambda r: r.precedence)
    assert [r.template for r in ordered] == [
        "items/new",
        "items/{id:int}",
        "items/{id}",
        "items/{id?}",
        "items/{*rest}",
    ]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("items/{id:regex(x)}", "not supported"),
        ("items/{id:money}", "not supported"),
        ("files/{*path}/more", "catch-all must be the last"),
        ("items/{a}.{b}", "mixes text and parameters"),
        ("items/{id?}/{name}", "optional parameter must come last"),
        ("a/{id}/b/{ID}", "used twice"),
        ("a//b", "empty segment"),
        ("a/{1x}", "invalid parameter"),
    ],
)
def test_unsupported_or_invalid_templates_fail_at_start_up(template, message):
    with pytest.raises(FunctionHostError, match=message):
        RouteTemplate.parse(template)


def test_format_fills_parameters_and_drops_left_out_optional_ones():
    template = RouteTemplate.parse("hello/{name:alpha}/{n:int?}")
    assert template.format(name="Ada", n=3) == "hello/Ada/3"
    assert template.format(name="Ada") == "hello/Ada"
    assert template.format() == "hello/{name:alpha}"


# -- keys ----------------------------------------------------------------------------------------

FK, MK = "function-key", "master-key"


@pytest.mark.parametrize(
    ("level", "key", "allowed"),
    [
        (AuthLevel.ANONYMOUS, None, True),
        (AuthLevel.ANONYMOUS, "anything", True),
        (AuthLevel.FUNCTION, None, False),
        (AuthLevel.FUNCTION, "", False),
        (AuthLevel.FUNCTION, "wrong", False),
        (AuthLevel.FUNCTION, FK[:-1], False),
        (AuthLevel.FUNCTION, FK, True),
        (AuthLevel.FUNCTION, MK, True),
        (AuthLevel.ADMIN, FK, False),
        (AuthLevel.ADMIN, MK, True),
        (AuthLevel.ADMIN, None, False),
    ],
)
def test_key_allows(level, key, allowed):
    assert key_allows(level, key, function_key=FK, master_key=MK) is allowed


def test_the_key_comes_from_code_or_the_x_functions_key_header():
    assert provided_key({"code": "a"}, {"x-functions-key": "b"}) == "a"
    assert provided_key({}, {"x-functions-key": "b"}) == "b"
    assert provided_key({"code": ""}, {}) is None


def test_auth_level_parsing_accepts_enums_and_defaults_to_function():
    class FakeEnum:
        value = "ADMIN"

    assert parse_auth_level(FakeEnum(), what="f") is AuthLevel.ADMIN
    assert parse_auth_level(None, what="f") is AuthLevel.FUNCTION
    with pytest.raises(FunctionHostError, match="unknown authLevel"):
        parse_auth_level("system", what="f")
