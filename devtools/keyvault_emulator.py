"""A small Azure Key Vault (secrets) emulator, served over HTTPS on loopback.

It speaks enough of the Key Vault secrets REST API (any api-version, 7.x or dated) for the
real `azure-keyvault-secrets` client: set, get (latest or a version), list properties and
versions (with `nextLink` paging), soft delete, get/list deleted, recover and purge, with the
service's error bodies (`{"error": {"code": ..., "message": ..., "innererror": ...}}`).

Authentication works like the real service's challenge protocol: a request without a bearer
token gets 401 and a `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com
/<tenant>", resource="<resource>"` challenge; the SDK's challenge policy answers it by asking
its credential for a token for `<resource>/.default`. Only the tokens the emulator was built
with are accepted; any other token gets 401 too.

The challenge resource. The SDK checks (`_validate_challenge_resource` in
`azure/keyvault/secrets/_shared/challenge_auth_policy.py`) that the request's authority ends
with "." + the resource's authority - the relation `vault.azure.net` has to
`myvault.vault.azure.net`. For a vault at `https://127.0.0.1:PORT` the emulator therefore names
the resource `https://0.0.1:PORT`, the dot-suffix of its own authority, so the SDK's check runs
and passes unmodified and the adapter never needs `verify_challenge_resource=False`. (Pass
`resource=` to make the emulator misbehave and see the check refuse to send the token.)

Use it as `async with KeyVaultEmulator({"token"}) as kv: ...` (clients pass
`connection_verify=str(kv.ca_cert)`), or standalone:
`python -m devtools.keyvault_emulator --dir .local/kv`, which prints its URL, CA path and token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from azure.core.credentials import AccessToken

from devtools.tls import TlsFiles
from devtools.tls_server import LoopbackTlsServer

DEFAULT_TENANT_ID = "00000000-0000-4000-8000-00000000c0de"
MAX_VALUE_BYTES = 25 * 1024  # the service's limit for a secret value
MAX_PAGE_SIZE = 25  # the service's maximum (and default) for `maxresults`
_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_API_VERSION = re.compile(r"\d+\.\d+(-preview(\.\d+)?)?|\d{4}-\d{2}-\d{2}(-preview)?")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_AUTHORIZED = web.RequestKey("authorized", bool)


@dataclass
class _Version:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    enabled: bool
    not_before: int | None
    expires: int | None
    created: int
    updated: int


@dataclass
class _Secret:
    name: str  # as first written: the service keeps the case it was created with
    versions: list[_Version] = field(default_factory=list)  # oldest first

    @property
    def latest(self) -> _Version:
        return self.versions[-1]


@dataclass
class _Deleted:
    secret: _Secret
    deleted_date: int
    scheduled_purge_date: int


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator saw it (tests assert on these). Bodies are not kept."""

    method: str
    path: str
    authorized: bool
    status: int


@dataclass
class _Fault:
    status: int
    code: str
    message: str
    echo_body: bool


class KeyVaultEmulator(LoopbackTlsServer):
    """A stateful in-memory Key Vault on `https://127.0.0.1:<port>/`.

    `accepted_tokens` is the set of bearer tokens it accepts (mutable: tests may revoke one).
    `tls` reuses certificates from `devtools.tls.generate_tls`; otherwise fresh ones are written
    to `directory` (or a temporary directory removed on stop).
    """

    def __init__(
        self,
        accepted_tokens: Iterable[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsFiles | None = None,
        directory: Path | None = None,
        tenant_id: str = DEFAULT_TENANT_ID,
        resource: str | None = None,
        recoverable_days: int = 90,
    ) -> None:
        super().__init__(host=host, port=port, tls=tls, directory=directory)
        self.accepted_tokens: set[str] = set(accepted_tokens)
        self.tenant_id = tenant_id
        self.recoverable_days = recoverable_days
        self.requests: list[RecordedRequest] = []
        self._resource_override = resource
        self._secrets: dict[str, _Secret] = {}  # keyed by lower-case name: names are case-insensitive
        self._deleted: dict[str, _Deleted] = {}
        self._faults: list[_Fault] = []

    # -- lifecycle ---------------------------------------------------------------------------

    kind = "Key Vault emulator"

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record, self._authenticate, self._inject_faults])
        self._add_routes(app)
        return app

    # -- what clients need -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The vault URL, e.g. `https://127.0.0.1:53211/` (what `SecretClient` takes)."""
        return f"{super().url}/"

    @property
    def resource(self) -> str:
        """The resource named in the challenge (see the module doc for why it looks odd)."""
        if self._resource_override is not None:
            return self._resource_override
        host = self.host if ":" not in self.host else f"[{self.host}]"
        _, dot, parent = host.partition(".")
        if not dot:
            raise RuntimeError(
                f"cannot derive a challenge resource for host {self.host!r}: the SDK needs the vault "
                "host to be a dotted name; use 127.0.0.1 or pass resource="
            )
        return f"https://{parent}:{self.port}"

    @property
    def scope(self) -> str:
        """The scope the SDK asks its credential for after the challenge."""
        return f"{self.resource}/.default"

    # -- test hooks --------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        code: str,
        message: str = "Injected failure",
        *,
        count: int = 1,
        echo_body: bool = False,
    ) -> None:
        """Answer the next `count` authorized requests with this error. `echo_body=True` puts
        the request body into the error message, like a careless service would - tests use it
        to prove the adapter never repeats what a server says about a value."""
        self._faults.extend(_Fault(status, code, message, echo_body) for _ in range(count))

    def reset(self) -> None:
        self._secrets.clear()
        self._deleted.clear()
        self._faults.clear()
        self.requests.clear()

    # -- middlewares -------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        self.requests.append(
            RecordedRequest(request.method, request.path, request.get(_AUTHORIZED, False), response.status)
        )
        if isinstance(response, web.HTTPException):
            raise response
        return response

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        if token.strip() not in self.accepted_tokens:
            return self._challenge("AKV10032: The bearer token was not issued for this vault.")
        request[_AUTHORIZED] = True
        return await handler(request)

    @web.middleware
    async def _inject_faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._faults:
            return await handler(request)
        fault = self._faults.pop(0)
        message = fault.message
        if fault.echo_body:
            message += " Request body: " + (await request.text())
        return _error(fault.status, fault.code, message)

    def _challenge(self, message: str) -> web.Response:
        response = _error(401, "Unauthorized", message)
        response.headers["WWW-Authenticate"] = (
            f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
            f'resource="{self.resource}"'
        )
        return response

    # -- routes ------------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/secrets", self._list_secrets)
        r.add_put("/secrets/{name}", self._set_secret)
        r.add_delete("/secrets/{name}", self._delete_secret)
        r.add_get("/secrets/{name}", self._get_secret)
        r.add_get("/secrets/{name}/", self._get_secret)
        r.add_get("/secrets/{name}/versions", self._list_versions)
        r.add_get("/secrets/{name}/{version}", self._get_secret)
        r.add_get("/deletedsecrets", self._list_deleted)
        r.add_get("/deletedsecrets/{name}", self._get_deleted)
        r.add_delete("/deletedsecrets/{name}", self._purge_deleted)
        r.add_post("/deletedsecrets/{name}/recover", self._recover_deleted)

    async def _set_secret(self, request: web.Request) -> web.StreamResponse:
        _api_version(request)  # checked, then ignored: these shapes are the same in every version
        name = _name(request)
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            return _bad_parameter("The request body must be a JSON object with a string 'value'.")
        value: str = body["value"]
        if len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
            return _bad_parameter(f"Secret value exceeds the maximum size of {MAX_VALUE_BYTES} bytes.")
        key = name.lower()
        if key in self._deleted:
            return _error(
                409,
                "Conflict",
                f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be "
                "reused; in this state, the secret can only be recovered or purged.",
                inner="ObjectIsDeletedButRecoverable",
            )
        attributes = body.get("attributes") or {}
        now = int(time.time())
        version = _Version(
            version=uuid.uuid4().hex,
            value=value,
            content_type=body.get("contentType"),
            tags=body.get("tags"),
            enabled=bool(attributes.get("enabled", True)),
            not_before=attributes.get("nbf"),
            expires=attributes.get("exp"),
            created=now,
            updated=now,
        )
        secret = self._secrets.setdefault(key, _Secret(name))
        secret.versions.append(version)
        return _json(self._bundle(secret, version, with_value=True))

    async def _get_secret(self, request: web.Request) -> web.StreamResponse:
        _api_version(request)
        name = _name(request)
        wanted = request.match_info.get("version") or ""
        secret = self._secrets.get(name.lower())
        version = None
        if secret is not None:
            version = (
                secret.latest
                if not wanted
                else next((v for v in secret.versions if v.version == wanted), None)
            )
        if secret is None or version is None:
            shown = f"{name}/{wanted}" if wanted else name
            return _not_found(
                f"A secret with (name/id) {shown} was not found in this key vault. If you recently deleted "
                "this secret you may be able to recover it using the correct recovery command."
            )
        if not version.enabled:
            return _error(403, "Forbidden", "Operation get is not allowed on a disabled secret.")
        return _json(self._bundle(secret, version, with_value=True))

    async def _list_secrets(self, request: web.Request) -> web.StreamResponse:
        rows = [(key, self._unversioned_item(s)) for key, s in sorted(self._secrets.items())]
        return self._page(request, "/secrets", rows)

    async def _list_versions(self, request: web.Request) -> web.StreamResponse:
        _api_version(request)
        name = _name(request)
        secret = self._secrets.get(name.lower())
        if secret is None:
            return _not_found(f"A secret with (name/id) {name} was not found in this key vault.")
        rows = [(v.version, self._item(secret, v)) for v in sorted(secret.versions, key=lambda v: v.version)]
        return self._page(request, f"/secrets/{secret.name}/versions", rows)

    async def _delete_secret(self, request: web.Request) -> web.StreamResponse:
        _api_version(request)
        name = _name(request)
        secret = self._secrets.pop(name.lower(), None)
        if secret is None:
            return _not_found(f"A secret with (name/id) {name} was not found in this key vault.")
        now = int(time.time())
        deleted = _Deleted(secret, now, now + self.recoverable_days * 86_400)
        self._deleted[name.lower()] = deleted
        return _json(self._deleted_bundle(deleted))

    async def _get_deleted(self, request: web.Request) -> web.StreamResponse:
        _api_version(request)
        name = _name(request)
        deleted = self._deleted.get(name.lower())
        if deleted is None:
            return _not_found(f"Deleted Secret not found: {name}")
        return _json(self._deleted_bundle(deleted))

    async def _list_deleted(self, request: web.Request) -> web.StreamResponse:
        rows = [(k, self._deleted_bundle(d, item=True)) for k, d in sorted(self._deleted.items())]
        return self._page(request, "/deletedsecrets", rows)

    async def _purge_deleted(self, request: web.Request) -> web.StreamResponse:
        _api_version(request)
        name = _name(request)
        if self._deleted.pop(name.lower(), None) is None:
            return _not_found(f"Deleted Secret not found: {name}")
        return web.Response(status=204)

    async def _recover_deleted(self, request: web.Request) -> web.StreamResponse:
        _api_version(request)
        name = _name(request)
        deleted = self._deleted.pop(name.lower(), None)
        if deleted is None:
            return _not_found(f"Deleted Secret not found: {name}")
        self._secrets[name.lower()] = deleted.secret
        # The service answers with the recovered secret's bundle, without its value.
        return _json(self._bundle(deleted.secret, deleted.secret.latest, with_value=False))

    # -- shapes ------------------------------------------------------------------------------

    @property
    def _base(self) -> str:
        return super().url

    def _attributes(self, v: _Version) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "enabled": v.enabled,
            "created": v.created,
            "updated": v.updated,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": self.recoverable_days,
        }
        if v.not_before is not None:
            attrs["nbf"] = v.not_before
        if v.expires is not None:
            attrs["exp"] = v.expires
        return attrs

    def _bundle(self, s: _Secret, v: _Version, *, with_value: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"{self._base}/secrets/{s.name}/{v.version}",
            "attributes": self._attributes(v),
        }
        if with_value:
            out["value"] = v.value
        if v.content_type is not None:
            out["contentType"] = v.content_type
        if v.tags is not None:
            out["tags"] = v.tags
        return out

    def _item(self, s: _Secret, v: _Version) -> dict[str, Any]:
        # Secret listings name the secret (no version); version listings name each version.
        return self._bundle(s, v, with_value=False)

    def _unversioned_item(self, s: _Secret) -> dict[str, Any]:
        out = self._bundle(s, s.latest, with_value=False)
        out["id"] = f"{self._base}/secrets/{s.name}"
        return out

    def _deleted_bundle(self, d: _Deleted, *, item: bool = False) -> dict[str, Any]:
        out = (
            self._unversioned_item(d.secret)
            if item
            else self._bundle(d.secret, d.secret.latest, with_value=False)
        )
        out["recoveryId"] = f"{self._base}/deletedsecrets/{d.secret.name}"
        out["deletedDate"] = d.deleted_date
        out["scheduledPurgeDate"] = d.scheduled_purge_date
        return out

    def _page(self, request: web.Request, path: str, rows: list[tuple[str, dict[str, Any]]]) -> web.Response:
        api_version = _api_version(request)
        try:
            size = int(request.query.get("maxresults") or MAX_PAGE_SIZE)
        except ValueError:
            return _bad_parameter("maxresults must be an integer")
        if not 1 <= size <= MAX_PAGE_SIZE:
            return _bad_parameter(f"maxresults must be between 1 and {MAX_PAGE_SIZE}")
        # The skip token is the (hex-encoded) sort key of the last row served: stable when rows
        # are added or removed between pages, and free of characters that need URL escaping.
        token = request.query.get("$skiptoken")
        after = bytes.fromhex(token).decode() if token else None
        remaining = [row for key, row in rows if after is None or key > after]
        keys = [key for key, _ in rows if after is None or key > after]
        page = remaining[:size]
        next_link = None
        if len(remaining) > size:
            next_token = keys[size - 1].encode().hex()
            next_link = (
                f"{self._base}{path}?api-version={api_version}&$skiptoken={next_token}&maxresults={size}"
            )
        return _json({"value": page, "nextLink": next_link})


# -- helpers -----------------------------------------------------------------------------------


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _error(status: int, code: str, message: str, inner: str | None = None) -> web.Response:
    err: dict[str, Any] = {"code": code, "message": message}
    if inner is not None:
        err["innererror"] = {"code": inner}
    return _json({"error": err}, status)


def _not_found(message: str) -> web.Response:
    return _error(404, "SecretNotFound", message)


def _bad_parameter(message: str) -> web.Response:
    return _error(400, "BadParameter", message)


def _api_version(request: web.Request) -> str:
    version = request.query.get("api-version", "")
    if not _API_VERSION.fullmatch(version):
        raise web.HTTPBadRequest(
            text=json.dumps(
                {"error": {"code": "BadParameter", "message": "The api-version is missing or invalid."}}
            ),
            content_type="application/json",
        )
    return version


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not _NAME.fullmatch(name):
        raise web.HTTPBadRequest(
            text=json.dumps(
                {"error": {"code": "BadParameter", "message": "The request URI contains an invalid name."}}
            ),
            content_type="application/json",
        )
    return name


class StaticTokenCredential:
    """An `azure.core.credentials_async.AsyncTokenCredential` that always returns one token.

    This is the edge the tests fake: in Azure the token comes from the managed identity; here
    the emulator was told to accept this token. It records the scopes and tenants it was asked
    for, so tests can check what the challenge made the SDK request.
    """

    def __init__(self, token: str, expires_in: int = 3600) -> None:
        self._token = token
        self._expires_in = expires_in
        self.requests: list[tuple[tuple[str, ...], str | None]] = []

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.requests.append((scopes, tenant_id))
        return AccessToken(self._token, int(time.time()) + self._expires_in)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        return None

    def __repr__(self) -> str:
        return "StaticTokenCredential(<token hidden>)"


async def _serve(token: str, host: str, port: int, directory: Path) -> None:
    async with KeyVaultEmulator({token}, host=host, port=port, directory=directory) as kv:
        print(f"Key Vault emulator: {kv.url}", flush=True)
        print(f"CA certificate:     {kv.ca_cert}   (connection_verify=..., or SSL_CERT_FILE=...)", flush=True)
        print(f"Accepted token:     {token}", flush=True)
        print(f"Challenge scope:    {kv.scope}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dir", default=".local/kv", help="where the CA and server certificate are written")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--token", help="the bearer token to accept (default: a random one, printed)")
    args = parser.parse_args(argv)
    token = args.token or secrets.token_urlsafe(24)
    # absolute: the printed CA path must work from any working directory
    asyncio.run(_serve(token, args.host, args.port, Path(args.dir).absolute()))


if __name__ == "__main__":
    main()
