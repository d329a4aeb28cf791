"""What every module sees: the shared services of one emulator, and the per-request context.

`EmulatorContext` is handed to each module when the emulator starts (see routing.py for the
module protocol). Per request, the middlewares store a `GraphCall` on the aiohttp request; a
handler gets it with `graph_call(request)` and finds there who is calling (`auth`), which mailbox
the path names (`mailbox`), and the parsed `Prefer` header.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devtools.graph_emulator.clock import Clock
from devtools.graph_emulator.directory import Directory, User
from devtools.graph_emulator.errors import GraphError, access_denied, bad_request, invalid_user
from devtools.graph_emulator.hooks import ChangeHooks
from devtools.graph_emulator.sync_state import SyncStates
from devtools.graph_emulator.throttling import Counters, Faults, Limits, ThrottleState
from devtools.graph_emulator.tokens import TokenSigner

if TYPE_CHECKING:
    from devtools.graph_emulator.uploads import UploadSessions

GRAPH_VERSION = "v1.0"


@dataclass(frozen=True)
class AuthContext:
    """The caller, from a validated access token."""

    tenant_id: str
    client_id: str
    app_display_name: str
    user_id: str | None  # set for delegated (user) tokens
    roles: frozenset[str]  # application permissions (app-only tokens)
    scopes: frozenset[str]  # delegated permissions (`scp`)
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def delegated(self) -> bool:
        return self.user_id is not None


@dataclass(frozen=True)
class Permissions:
    """Which application roles or delegated scopes let a caller use an endpoint (any one is enough)."""

    application: frozenset[str]
    delegated: frozenset[str]

    @classmethod
    def of(cls, *names: str, delegated: tuple[str, ...] | None = None) -> Permissions:
        return cls(frozenset(names), frozenset(names if delegated is None else delegated))

    def allows(self, auth: AuthContext) -> bool:
        granted = auth.scopes if auth.delegated else auth.roles
        return bool(granted & (self.delegated if auth.delegated else self.application))

    def check(self, auth: AuthContext) -> None:
        if not self.allows(auth):
            raise access_denied()


@dataclass(frozen=True)
class Prefer:
    """The parts of `Prefer` headers Graph honours here."""

    max_page_size: int | None = None
    time_zone: str | None = None
    immutable_ids: bool = False
    raw: tuple[str, ...] = ()

    @classmethod
    def parse(cls, request: web.Request) -> Prefer:
        parts: list[str] = []
        for header in request.headers.getall("Prefer", []):
            parts.extend(p.strip() for p in header.split(",") if p.strip())
        size: int | None = None
        tz: str | None = None
        immutable = False
        for part in parts:
            name, _, value = part.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "odata.maxpagesize":
                try:
                    size = max(1, int(value))
                except ValueError:
                    raise bad_request(f"Invalid odata.maxpagesize '{value}'.") from None
            elif name == "outlook.timezone":
                tz = value or None
            elif name == "idtype":
                immutable = value.lower() == "immutableid"
        return cls(size, tz, immutable, tuple(parts))


@dataclass
class GraphCall:
    """Per-request context the middlewares build (request ids, caller, mailbox, Prefer)."""

    request_id: str
    client_request_id: str
    prefer: Prefer
    auth: AuthContext | None = None
    mailbox_key: str | None = None  # as written in the path ("me" for /me)
    mailbox: User | None = None  # resolved in the caller's tenant; None if unknown
    applied_preferences: list[str] = field(default_factory=list)
    # Set by the envelope: records the request in the mailbox counters. A streamed response
    # calls it before its body goes out, so a client that has read the last byte never sees
    # counters that do not include its request yet.
    count: Callable[[web.StreamResponse | None], None] | None = None
    counted: bool = False

    @property
    def caller(self) -> AuthContext:
        if self.auth is None:  # the auth middleware guarantees this on Graph routes
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        return self.auth

    def user(self) -> User:
        """The mailbox the path names; 404 ErrorInvalidUser if there is no such user."""
        if self.mailbox is None:
            raise invalid_user(self.mailbox_key or "")
        return self.mailbox

    def apply(self, preference: str) -> None:
        """Record a preference honoured, for the `Preference-Applied` response header."""
        if preference not in self.applied_preferences:
            self.applied_preferences.append(preference)


CALL = web.RequestKey("graph_call", GraphCall)


def graph_call(request: web.Request) -> GraphCall:
    return request[CALL]


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or Graph's 400 for anything else."""
    raw = await request.read()
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GraphError(
            400,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload "
            "is of valid JSON format.",
        )
    return body


def action_parameters(body: dict[str, Any]) -> dict[str, Any]:
    """An action's parameters with lower-case names. Graph matches action parameter names
    case-insensitively, and msgraph-sdk writes them in PascalCase ("Schedules", "AttachmentItem")."""
    return {key.lower(): value for key, value in body.items()}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


class EmulatorContext:
    """Shared services of one running emulator. Modules keep a reference from `setup`."""

    def __init__(self, base_url: Callable[[], str]) -> None:
        self._base_url = base_url
        self.clock = Clock()
        self.directory = Directory()
        self.signer = TokenSigner()
        self.hooks = ChangeHooks()
        self.sync_states = SyncStates()
        self.limits = Limits()
        self.counters = Counters()
        self.faults = Faults()
        self.throttle = ThrottleState()
        self.uploads: UploadSessions  # set by the emulator right after construction
        self.modules: dict[str, Any] = {}
        # A plain-HTTP loopback listener on the same application (set once it runs): what
        # `$batch` sends its requests to; None until then (and then the HTTPS one is used).
        self.internal_url: str | None = None

    @property
    def base_url(self) -> str:
        """e.g. https://127.0.0.1:53211 (no trailing slash)."""
        return self._base_url()

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/{GRAPH_VERSION}"

    def issuer(self, tenant_id: str) -> str:
        """The `iss` of v2 tokens for a tenant, like https://login.microsoftonline.com/{tid}/v2.0."""
        return f"{self.base_url}/{tenant_id}/v2.0"

    def resolve_user(self, key: str) -> User:
        """A user of any tenant by id or UPN (the control API's way to name a mailbox)."""
        user = self.directory.any_user(key)
        if user is None:
            raise invalid_user(key)
        return user
