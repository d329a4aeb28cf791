"""Errors a caller of the bridge's API can cause and fix: bad input, a missing item, a lost
race, a missing or wrong key. The HTTP boundary (`functions/http.py`) turns each into one
problem+json status; core code raises them without knowing about HTTP.

No message here ever quotes a submitted value: a value in the wrong field may be a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from core.errors import BridgeError

# Where problem types are named: `type` is this plus a slug (`…/not-found`), or about:blank.
PROBLEM_TYPE_BASE = "https://m365-bridge.dev/problems/"


@dataclass(frozen=True)
class FieldProblem:
    """One bad field: its JSON path (`graph.tenantId`, `accounts[2].account`) and what is wrong."""

    field: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "detail": self.detail}


class RequestError(BridgeError):
    """Base of the errors the API answers with a 4xx problem."""


class MalformedRequest(RequestError):
    """The request cannot be read at all (not JSON, not an object): 400."""


class InvalidInput(RequestError):
    """The request is readable but fields are wrong (422). `problems` names each one."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{p.field}: {p.detail}" if p.field else p.detail for p in self.problems))

    @classmethod
    def one(cls, field: str, detail: str) -> InvalidInput:
        return cls([FieldProblem(field, detail)])


class ItemNotFound(RequestError):
    """The addressed item does not exist (404). The message is safe to show."""


class EditConflict(RequestError):
    """The item exists already, or changed while the request was applied (409)."""


class ItemGone(RequestError):
    """The addressed item existed but was deleted, e.g. a slot removed in Outlook (410)."""


class PreconditionFailed(RequestError):
    """The request's If-Match names a version that is no longer current (412)."""


class UpstreamUnavailable(RequestError):
    """A service the request needs (Microsoft Graph) is unavailable or throttling: 503."""


class Unauthenticated(RequestError):
    """No key, or a key that is not valid (401)."""


class TenantInaccessible(RequestError):
    """The tenant does not exist, or the key belongs to another tenant (404). Both look the
    same to the caller, so tenant ids cannot be probed with a key of another tenant."""


class TenantDisabled(RequestError):
    """The tenant's own key, but the operator disabled the tenant (403)."""


def field_path(loc: Sequence[int | str]) -> str:
    """`("accounts", 2, "account")` -> `accounts[2].account`; `()` -> `` (the body itself)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# pydantic's messages for these types quote nothing, but say it in the API's words.
_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
}


def invalid_input(exc: ValidationError, *, prefix: Sequence[int | str] = ()) -> InvalidInput:
    """An `InvalidInput` naming each field pydantic rejected. pydantic's `input` (the submitted
    value) is dropped: it may be a secret."""
    problems: list[FieldProblem] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [*prefix, *(p for p in err["loc"] if not _is_union_tag(p))]
        message = _MESSAGES.get(err["type"], _message(err))
        problems.append(FieldProblem(field_path(loc), message))
    return InvalidInput(problems)


def _message(err: Any) -> str:
    msg = str(err.get("msg", "is invalid"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg[:1].lower() + msg[1:]


def _is_union_tag(part: int | str) -> bool:
    # pydantic adds the member type's name for unions (e.g. "function-after[...]"): not a field
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "list", "dict"})
