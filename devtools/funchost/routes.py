"""HTTP route templates and function keys, matched the way the real host's ASP.NET routing does.

A template is compiled to one anchored regex. Literal segments match case-insensitively (as
ASP.NET routing does) while parameter values keep the caller's case. Constraints are checked
after the regex match where a pattern cannot express them (int ranges). Routes are tried in
ASP.NET precedence order, so `items/new` wins over `items/{id}` regardless of declaration order.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from devtools.funchost.settings import FunctionHostError

_PARAM = re.compile(r"^(?P<catchall>\*{1,2})?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>.*)$")
_GUID = re.compile(
    r"^(?:\{)?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}(?:\})?$"
)


def _is_int32(value: str) -> bool:
    try:
        return -(2**31) <= int(value) < 2**31
    except ValueError:
        return False


def _is_int64(value: str) -> bool:
    try:
        return -(2**63) <= int(value) < 2**63
    except ValueError:
        return False


def _is_guid(value: str) -> bool:
    if not _GUID.match(value):
        return False
    try:
        uuid.UUID(value.strip("{}"))
    except ValueError:
        return False
    return True


# Constraint name -> (regex fragment for the segment, extra check on the captured value).
_CONSTRAINTS: dict[str, tuple[str, Callable[[str], bool]]] = {
    "int": (r"-?\d+", _is_int32),
    "long": (r"-?\d+", _is_int64),
    "guid": (r"[^/]+", _is_guid),
    "alpha": (r"[A-Za-z]+", str.isascii),
    "bool": (r"(?i:true|false)", lambda _: True),
}

# Precedence ranks for sorting routes, lower first: literals beat parameters, constrained
# parameters beat plain ones, and catch-alls come last (ASP.NET's RoutePrecedence, simplified).
_RANK_LITERAL, _RANK_CONSTRAINED, _RANK_PARAM, _RANK_OPTIONAL, _RANK_CATCHALL = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class _Param:
    name: str
    constraint: str | None
    optional: bool
    default: str | None
    catch_all: bool


def _parse_param(body: str, template: str) -> _Param:
    match = _PARAM.match(body)
    if not match:
        raise FunctionHostError(f"route '{template}': invalid parameter '{{{body}}}'")
    rest = match["rest"]
    default: str | None = None
    optional = False
    if "=" in rest:
        rest, default = rest.split("=", 1)
    if rest.endswith("?"):
        optional, rest = True, rest[:-1]
    constraint: str | None = None
    if rest:
        if not rest.startswith(":"):
            raise FunctionHostError(f"route '{template}': invalid parameter '{{{body}}}'")
        constraint = rest[1:].lower()
        if constraint not in _CONSTRAINTS:
            known = ", ".join(sorted(_CONSTRAINTS))
            raise FunctionHostError(
                f"route '{template}': constraint '{constraint}' is not supported here (known: {known})"
            )
    return _Param(
        name=match["name"],
        constraint=constraint,
        optional=optional or default is not None,
        default=default,
        catch_all=bool(match["catchall"]),
    )


@dataclass(frozen=True)
class RouteTemplate:
    """A compiled route template: `RouteTemplate.parse("items/{id:int}").match("items/7")`."""

    template: str
    regex: re.Pattern[str]
    params: tuple[_Param, ...]
    precedence: tuple[int, ...] = field(compare=False)

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        text = template.strip().strip("/")
        segments = text.split("/") if text else []
        pattern = ""
        params: list[_Param] = []
        ranks: list[int] = []
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            if not segment:
                raise FunctionHostError(f"route '{template}': empty segment")
            if segment.startswith("{") and segment.endswith("}") and segment.count("{") == 1:
                param = _parse_param(segment[1:-1], template)
                params.append(param)
                if param.catch_all:
                    if not last:
                        raise FunctionHostError(f"route '{template}': a catch-all must be the last segment")
                    # a catch-all also matches nothing at all, as in ASP.NET
                    pattern += rf"(?:/(?P<{param.name}>.*))?"
                    ranks.append(_RANK_CATCHALL)
                    continue
                inner = _CONSTRAINTS[param.constraint][0] if param.constraint else r"[^/]+"
                if param.optional:
                    pattern += rf"(?:/(?P<{param.name}>{inner}))?"
                    ranks.append(_RANK_OPTIONAL)
                else:
                    pattern += rf"/(?P<{param.name}>{inner})"
                    ranks.append(_RANK_CONSTRAINED if param.constraint else _RANK_PARAM)
                continue
            if "{" in segment or "}" in segment:
                # complex segments ("{a}.{b}") are rare in Functions apps; refuse them loudly
                raise FunctionHostError(
                    f"route '{template}': segment '{segment}' mixes text and parameters, "
                    "which the local host does not support"
                )
            pattern += "/" + re.escape(segment)
            ranks.append(_RANK_LITERAL)
        # an optional parameter followed by a required segment could never be left out
        seen_optional = False
        for param in params:
            if seen_optional and not param.optional and not param.catch_all:
                raise FunctionHostError(f"route '{template}': an optional parameter must come last")
            seen_optional = seen_optional or param.optional
        names = [p.name.lower() for p in params]
        if len(set(names)) != len(names):
            raise FunctionHostError(f"route '{template}': a parameter name is used twice")
        try:
            # \Z, not $: `$` also matches before a final newline ("boom\n" is not "boom")
            regex = re.compile(f"^{pattern}/?\\Z", re.IGNORECASE)
        except re.error as err:
            raise FunctionHostError(f"route '{template}': {err}") from None
        return cls(template=text, regex=regex, params=tuple(params), precedence=tuple(ranks))

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for `path` (relative to the route prefix), or None if it does not match.

        A parameter left out (optional, or an empty catch-all) is absent from the result unless
        it has a default, as ASP.NET leaves it out of the route values.
        """
        found = self.regex.match("/" + path.strip("/") if path.strip("/") else "")
        if not found:
            return None
        values: dict[str, str] = {}
        for param in self.params:
            value = found.group(param.name)
            if value is None or (param.catch_all and value == ""):
                if param.default is not None:
                    values[param.name] = param.default
                continue
            if param.constraint and not _CONSTRAINTS[param.constraint][1](value):
                return None
            values[param.name] = value
        return values

    def format(self, **values: object) -> str:
        """The path for these parameter values; for printing URLs of routes at start."""
        parts = []
        for segment in self.template.split("/") if self.template else []:
            if segment.startswith("{"):
                param = _parse_param(segment[1:-1], self.template)
                if param.name in values:
                    parts.append(str(values[param.name]))
                elif param.optional or param.catch_all:
                    continue
                else:
                    parts.append(segment)
            else:
                parts.append(segment)
        return "/".join(parts)


class AuthLevel(StrEnum):
    """The `authLevel` of an HTTP trigger (the real host's names)."""

    ANONYMOUS = "anonymous"
    FUNCTION = "function"
    ADMIN = "admin"


def parse_auth_level(value: object, *, what: str) -> AuthLevel:
    text = str(getattr(value, "value", value) or "function").lower()
    try:
        return AuthLevel(text)
    except ValueError:
        raise FunctionHostError(f"{what}: unknown authLevel {text!r}") from None


def provided_key(query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The key a caller sent: the `code` query parameter, else the `x-functions-key` header."""
    return query.get("code") or headers.get("x-functions-key") or None


def _same(a: str, b: str) -> bool:
    # constant time, so response timing does not reveal how much of a guessed key was right
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def key_allows(level: AuthLevel, key: str | None, *, function_key: str, master_key: str) -> bool:
    """Whether `key` grants access at `level`: the master key opens everything."""
    if level is AuthLevel.ANONYMOUS:
        return True
    if not key:
        return False
    is_master = _same(key, master_key)
    if level is AuthLevel.ADMIN:
        return is_master
    # evaluate both comparisons so the time taken does not depend on which key was sent
    is_function = _same(key, function_key)
    return is_master or is_function
