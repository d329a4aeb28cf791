"""Delegated access: a user connects their own calendar (credential mode `delegated`).

Connecting. `start` makes the Microsoft sign-in URL (authorization code with PKCE, S256): a
random `state` names a `ConnectState` row (tenant, resource, account, direction, where to
return, expiry), kept only as a hash, and the PKCE verifier waits in the secrets port. The
browser comes back to `callback` with a code; the state is taken (deleted with its ETag: once
only), the code redeemed with the verifier, the signed-in account checked against the one asked
for, the refresh token stored in the secrets port, the grant recorded (`DelegatedGrant`) and the
account linked to the resource.

Using it. A delegated tenant's gateway routes every call by its mailbox (every port operation
names it first) to that account's own gateway, whose credential redeems the account's refresh
token (and stores the rotated one). Entra ID answering `invalid_grant` — the user revoked the
grant, an admin reset it, it expired — marks the grant `reconnect_required` and tells the host
(`account.reconnect_required`) once; calls for that mailbox then fail in plain words
(`GrantRevoked`) until the user connects again.

The app registration is a public client (the redirect URI registered under "Mobile and desktop
applications": PKCE, no secret) unless the tenant has a client secret, which is then sent too
(a confidential client, redirect URI under "Web").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import inspect
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from core.errors import NotFound, StaleEtag
from core.graph.errors import GrantRevoked, GraphError, GraphUnavailable, TokenUnavailable
from core.graph.model import DeltaPage, DeltaStart, Event
from core.graph.port import GraphGateway
from core.graph_access import unverified_claims
from core.host import Emission
from core.request_errors import EditConflict, FieldProblem, InvalidInput, ItemNotFound, MalformedRequest
from core.runs import Clock
from core.secrets import SecretStore
from core.secrets.names import secret_name
from core.store import Tables
from core.store.keys import escape_key, short_hash
from core.store.records import (
    ConnectState,
    CredentialMode,
    DelegatedGrant,
    Direction,
    GrantStatus,
    LinkedAccount,
    ResourceLink,
    Tenant,
)
from core.validators import valid_account, valid_host_id, valid_webhook_url

log = logging.getLogger(__name__)

SIGN_IN_SCOPES = ("offline_access", "openid", "profile", "User.Read")
# A refresh asks for everything the user consented to for the app, no more.
REFRESH_SCOPES = ("https://graph.microsoft.com/.default", "offline_access")
STATE_LIFETIME = timedelta(minutes=10)
RECONNECT = "account.reconnect_required"
CONNECT_DIRECTIONS = (Direction.DOWN, Direction.UP, Direction.BOTH)

# The port's operations that are async generators (`def … -> AsyncIterator`), not coroutines:
# a per-mailbox gateway must iterate those instead of awaiting them.
_STREAMS = frozenset(
    name
    for name, member in vars(GraphGateway).items()
    if not name.startswith("_") and inspect.isfunction(member) and not inspect.iscoroutinefunction(member)
)


def refresh_token_name(tenant_id: str, account: str) -> str:
    return secret_name("tenant", tenant_id, "delegated", short_hash(account.lower()))


def _verifier_name(state_hash: str) -> str:
    return secret_name("connect", state_hash[:40])


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode("ascii")).hexdigest()


def scopes_for(direction: Direction) -> tuple[str, ...]:
    """What a user is asked to consent to: reading their calendar for a link down, writing it
    for up or both."""
    calendars = "Calendars.ReadWrite" if direction.uploads else "Calendars.Read"
    return (*SIGN_IN_SCOPES, calendars)


def connect_route(tenant_id: str, account: str) -> str:
    """Where a host sends a user to connect (again)."""
    return f"GET /api/v1/tenants/{tenant_id}/connect/start?account={account}&resourceId=<the resource>"


@dataclass(frozen=True, slots=True)
class AppClient:
    """The tenant's app registration as Entra ID's token endpoint sees it."""

    directory: str
    client_id: str
    secret: str | None = None  # a confidential client's; None for a public client (PKCE only)


class TokenEndpoint:
    """Entra ID's authorize and token endpoints (`GRAPH_AUTHORITY_HOST`)."""

    def __init__(self, authority: str, ca_bundle: str | None) -> None:
        self._authority = authority.rstrip("/")
        self._ca_bundle = ca_bundle

    def authorize_url(self, directory: str) -> str:
        return f"{self._authority}/{directory}/oauth2/v2.0/authorize"

    async def redeem(self, client: AppClient, fields: dict[str, str]) -> dict[str, Any]:
        """POST the grant; the token response. Entra ID's refusal is `GrantRevoked` for
        `invalid_grant` (only the user can fix that), else `TokenUnavailable`, each with the
        AADSTS code."""
        import httpx

        form = {**fields, "client_id": client.client_id}
        if client.secret:
            form["client_secret"] = client.secret
        verify: Any = True
        if self._ca_bundle:
            # trusted in addition to the public roots, as for Graph (core.graph.client)
            verify = httpx.create_ssl_context()
            verify.load_verify_locations(cafile=self._ca_bundle)
        url = f"{self._authority}/{client.directory}/oauth2/v2.0/token"
        try:
            async with httpx.AsyncClient(verify=verify, timeout=30) as http:
                response = await http.post(url, data=form)
        except httpx.HTTPError:
            raise TokenUnavailable("the Microsoft sign-in could not be reached", operation="token") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            return body
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        codes = body.get("error_codes") if isinstance(body, dict) else None
        code = (
            f"AADSTS{codes[0]}" if isinstance(codes, list) and codes and isinstance(codes[0], int) else None
        )
        kind = GrantRevoked if error == "invalid_grant" else TokenUnavailable
        said = error if error.isidentifier() else f"HTTP {response.status_code}"
        raise kind(
            f"Entra ID refused the grant ({said}" + (f", {code})" if code else ")"),
            aad_code=code,
            operation="token",
        )


async def app_client(tenant: Tenant, secrets_store: SecretStore) -> AppClient:
    """The tenant's app registration for delegated sign-in; TokenUnavailable when not set up."""
    if tenant.credential_mode is not CredentialMode.DELEGATED:
        raise TokenUnavailable(f"tenant {tenant.tenant_id!r} is not in delegated mode", operation="token")
    if not tenant.graph_client_id or not tenant.graph_tenant_id:
        raise TokenUnavailable(
            f"tenant {tenant.tenant_id!r}: the Microsoft Entra tenant id and client id are not set",
            operation="token",
        )
    secret = await secrets_store.get(tenant.client_secret_name) if tenant.client_secret_name else None
    return AppClient(tenant.graph_tenant_id, tenant.graph_client_id, secret or None)


def grant_view(grant: DelegatedGrant) -> dict[str, Any]:
    out: dict[str, Any] = {
        "account": grant.account,
        "status": grant.status.value,
        "scopes": list(grant.scopes),
        "connectedAt": grant.connected_at.isoformat() if grant.connected_at else None,
        "updatedAt": grant.updated_at.isoformat() if grant.updated_at else None,
    }
    if grant.error:
        out["error"] = grant.error
    return out


class ConnectService:
    """`GET …/connect/start`, `GET /api/v1/connect/callback`, and the tenant's connected
    accounts (`…/connect/accounts`)."""

    def __init__(
        self,
        tables: Tables,
        secrets_store: SecretStore,
        endpoint: TokenEndpoint,
        clock: Clock,
    ) -> None:
        self._tables = tables
        self._secrets = secrets_store
        self._endpoint = endpoint
        self._clock = clock

    async def start(
        self,
        tenant: Tenant,
        resource_id: str | None,
        account: str | None,
        return_url: str | None,
        callback_url: str,
        direction: str | None = None,
    ) -> tuple[str, datetime]:
        """The sign-in URL for `account` to connect its calendar to `resource_id` (linked with
        `direction`, default both), and when the offer expires."""
        problems: list[FieldProblem] = []
        resource = mailbox = ""
        try:
            resource = valid_host_id(resource_id or "")
        except ValueError as exc:
            problems.append(FieldProblem("resourceId", str(exc)))
        try:
            mailbox = valid_account(account or "")
        except ValueError as exc:
            problems.append(FieldProblem("account", str(exc)))
        if return_url:
            try:
                return_url = valid_webhook_url(return_url)
            except ValueError as exc:
                problems.append(FieldProblem("returnUrl", str(exc)))
        wanted = Direction.BOTH
        if direction:
            try:
                wanted = Direction(direction)
            except ValueError:
                wanted = Direction.NONE
            if wanted not in CONNECT_DIRECTIONS:
                problems.append(FieldProblem("direction", "must be down, up or both"))
        if problems:
            raise InvalidInput(problems)
        try:
            client = await app_client(tenant, self._secrets)
        except TokenUnavailable:
            raise EditConflict(
                "The tenant is not set up for delegated sign-in: set graph.credentialMode to delegated "
                "with the app registration's clientId and the Entra tenantId."
            ) from None
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        now = self._clock()
        expires = now + STATE_LIFETIME
        state_hash = _hash(state)
        await self._secrets.set(_verifier_name(state_hash), verifier)
        await self._tables.repo(ConnectState).insert(
            ConnectState(
                state_hash=state_hash,
                tenant_id=tenant.tenant_id,
                resource_id=resource,
                account=mailbox,
                direction=wanted,
                redirect_uri=callback_url,
                return_url=return_url or None,
                expires_at=expires,
            )
        )
        query = {
            "client_id": client.client_id,
            "response_type": "code",
            "redirect_uri": callback_url,
            "response_mode": "query",
            "scope": " ".join(scopes_for(wanted)),
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": mailbox,
            "prompt": "select_account",
        }
        return f"{self._endpoint.authorize_url(client.directory)}?{urlencode(query)}", expires

    async def callback(
        self, code: str | None, state: str | None, error: str | None
    ) -> tuple[DelegatedGrant, str | None]:
        """Finish a sign-in: the grant and where the browser goes next (or None)."""
        if not state or len(state) > 200 or not state.isascii():
            raise MalformedRequest("The sign-in came back without a valid state; start again.")
        states = self._tables.repo(ConnectState)
        found = await states.get(*ConnectState.key(_hash(state)))
        if found is None:
            raise InvalidInput.one("state", "is unknown or was used already; start the connection again")
        try:
            await states.delete(found)  # with its ETag: a state is used once
        except (StaleEtag, NotFound):
            raise InvalidInput.one("state", "was used already; start the connection again") from None
        verifier = await self._secrets.get(_verifier_name(found.state_hash))
        await self._secrets.delete(_verifier_name(found.state_hash))
        if found.expires_at < self._clock():
            raise InvalidInput.one("state", "has expired; start the connection again")
        if error or not code:
            said = error if error and error.isidentifier() else "no code"
            raise InvalidInput.one("code", f"the sign-in did not complete ({said[:64]})")
        tenant = await self._tables.repo(Tenant).get(*Tenant.key(found.tenant_id))
        try:
            client = await app_client(tenant, self._secrets) if tenant is not None else None
        except TokenUnavailable:
            client = None
        if tenant is None or client is None or verifier is None:
            raise InvalidInput.one("state", "belongs to a tenant that is no longer set up; start again")
        fields = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": found.redirect_uri,
            "code_verifier": verifier,
            "scope": " ".join(scopes_for(found.direction)),
        }
        try:
            tokens = await self._endpoint.redeem(client, fields)
        except TokenUnavailable as exc:
            raise InvalidInput.one("code", str(exc)) from None
        claims = unverified_claims(str(tokens.get("access_token", "")))
        who = {str(claims.get(name, "")).lower() for name in ("upn", "preferred_username", "oid")} - {""}
        if found.account not in who:
            raise EditConflict(
                f"Signed in as another account than {found.account}; sign in with that account."
            )
        refresh = tokens.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise InvalidInput.one("code", "the sign-in granted no refresh token (offline_access)")
        await self._secrets.set(refresh_token_name(tenant.tenant_id, found.account), refresh)
        now = self._clock()
        grant = DelegatedGrant(
            tenant_id=tenant.tenant_id,
            account=found.account,
            status=GrantStatus.CONNECTED,
            scopes=str(claims.get("scp", "")).split(),
            connected_at=now,
            updated_at=now,
        )
        grant = await self._tables.repo(DelegatedGrant).upsert(grant)
        await self._link(tenant.tenant_id, found, now)
        log.info("account connected (delegated)", extra={"resource_id": found.resource_id})
        return grant, found.return_url

    async def _link(self, tenant_id: str, found: ConnectState, now: datetime) -> None:
        def linked(current: ResourceLink | None) -> ResourceLink:
            link = current or ResourceLink(
                tenant_id=tenant_id, resource_id=found.resource_id, display_name=found.resource_id
            )
            if any(a.account == found.account for a in link.accounts):
                return link
            added = LinkedAccount(account=found.account, direction=found.direction)
            return link.model_copy(update={"accounts": [*link.accounts, added], "updated_at": now})

        await self._tables.repo(ResourceLink).mutate(*ResourceLink.key(tenant_id, found.resource_id), linked)

    async def accounts(self, tenant_id: str) -> list[DelegatedGrant]:
        """The tenant's connected accounts, in account order."""
        return [g async for g in self._tables.repo(DelegatedGrant).list(escape_key(tenant_id))]

    async def connections(self, tenant: Tenant) -> dict[str, str] | None:
        """A delegated tenant's grant status by lower-cased account, for showing on its links
        (None for the other modes, whose links need no user's grant)."""
        if tenant.credential_mode is not CredentialMode.DELEGATED:
            return None
        return {g.account.lower(): g.status.value for g in await self.accounts(tenant.tenant_id)}

    async def account(self, tenant_id: str, account: str) -> DelegatedGrant:
        try:
            wanted = valid_account(account)
        except ValueError:
            wanted = None
        found = wanted and await self._tables.repo(DelegatedGrant).get(*DelegatedGrant.key(tenant_id, wanted))
        if not found:
            raise ItemNotFound(f"No account {account[:256]!r} has connected a calendar.")
        return found

    async def disconnect(self, tenant_id: str, account: str) -> None:
        """Forget an account's grant: its refresh token leaves the secrets port and its grant
        row goes, so the bridge can no longer act as the user (the links stay; their syncs fail
        in plain words until the user connects again)."""
        grant = await self.account(tenant_id, account)
        await self._secrets.delete(refresh_token_name(tenant_id, grant.account))
        with contextlib.suppress(NotFound):  # disconnected twice at once: gone either way
            await self._tables.repo(DelegatedGrant).delete(grant.model_copy(update={"etag": None}))
        log.info("account disconnected (delegated)")


class RefreshTokenCredential:
    """An account's delegated credential: redeems its refresh token for access tokens, keeps the
    rotated refresh token, and on `invalid_grant` marks the grant for reconnecting. Failures are
    the port's own errors (the gateway passes them through): `GrantRevoked` when the user must
    connect again, `TokenUnavailable` otherwise."""

    def __init__(
        self,
        tenant: Tenant,
        account: str,
        tables: Tables,
        secrets_store: SecretStore,
        endpoint: TokenEndpoint,
        emit: Callable[[str, Emission], Awaitable[Any]],
        clock: Clock,
    ) -> None:
        self._tenant = tenant
        self._account = account
        self._tables = tables
        self._secrets = secrets_store
        self._endpoint = endpoint
        self._emit = emit
        self._clock = clock
        self._token: Any = None

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        if self._token is not None and self._token.expires_on - 60 > time.time():
            return self._token
        name = refresh_token_name(self._tenant.tenant_id, self._account)
        invalidate = getattr(self._secrets, "invalidate", None)
        if invalidate is not None:
            invalidate(name)  # a reconnect elsewhere replaced it: never redeem a cached old one
        refresh = await self._secrets.get(name)
        if not refresh:
            raise GrantRevoked(
                f"{self._account} has not connected their calendar: send them to "
                f"{connect_route(self._tenant.tenant_id, self._account)}",
                operation="token",
                mailbox=self._account,
            )
        client = await app_client(self._tenant, self._secrets)
        fields = {"grant_type": "refresh_token", "refresh_token": refresh, "scope": " ".join(REFRESH_SCOPES)}
        try:
            tokens = await self._endpoint.redeem(client, fields)
        except GrantRevoked as exc:
            refused = exc
        else:
            rotated = tokens.get("refresh_token")
            if isinstance(rotated, str) and rotated and rotated != refresh:
                await self._secrets.set(name, rotated)
            lifetime = int(tokens.get("expires_in", 3600))
            self._token = AccessToken(str(tokens["access_token"]), int(time.time()) + lifetime)
            return self._token
        await self._revoked(str(refused))
        raise GrantRevoked(
            f"{refused}; {self._account} must connect their calendar again: send them to "
            f"{connect_route(self._tenant.tenant_id, self._account)}",
            aad_code=refused.aad_code,
            operation="token",
            mailbox=self._account,
        )

    async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        token = await self.get_token(*scopes)
        return AccessTokenInfo(token.token, token.expires_on)

    async def _revoked(self, reason: str) -> None:
        now = self._clock()
        grants = self._tables.repo(DelegatedGrant)

        def needs_reconnect(current: DelegatedGrant | None) -> DelegatedGrant:
            base = current or DelegatedGrant(tenant_id=self._tenant.tenant_id, account=self._account)
            return base.model_copy(
                update={"status": GrantStatus.RECONNECT_REQUIRED, "error": reason[:500], "updated_at": now}
            )

        before = await grants.get(*DelegatedGrant.key(self._tenant.tenant_id, self._account))
        await grants.mutate(*DelegatedGrant.key(self._tenant.tenant_id, self._account), needs_reconnect)
        if before is None or before.status is not GrantStatus.RECONNECT_REQUIRED:
            # once per connection: the event id names the grant's connection time
            stamp = before.connected_at.isoformat() if before and before.connected_at else ""
            event = Emission(
                RECONNECT,
                {"account": self._account, "reason": reason[:500]},
                "reconnect-" + short_hash(f"{self._tenant.tenant_id}\n{self._account}\n{stamp}"),
            )
            await self._emit(self._tenant.tenant_id, event)
        log.warning("delegated grant refused; the account must connect again")

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> RefreshTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class PerMailboxGateway:
    """The gateway of a delegated tenant: each call goes to the gateway of the mailbox it names
    (every port operation names its mailbox first)."""

    def __init__(self, gateway_for: Callable[[str], Awaitable[Any]]) -> None:
        self._for = gateway_for

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in _STREAMS:

            async def stream(mailbox: str, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                gateway = await self._for(mailbox)
                async for item in getattr(gateway, name)(mailbox, *args, **kwargs):
                    yield item

            return stream

        async def call(mailbox: str, *args: Any, **kwargs: Any) -> Any:
            gateway = await self._for(mailbox)
            return await getattr(gateway, name)(mailbox, *args, **kwargs)

        return call

    async def first_delta_pages(self, starts: Sequence[DeltaStart]) -> list[DeltaPage[Event] | GraphError]:
        """Each user's calendars through that user's own gateway (a batch carries one token)."""
        results: list[DeltaPage[Event] | GraphError | None] = [None] * len(starts)
        by_mailbox: dict[str, list[int]] = {}
        for index, start in enumerate(starts):
            by_mailbox.setdefault(start.mailbox.casefold(), []).append(index)

        async def one(indexes: list[int]) -> None:
            try:
                gateway = await self._for(starts[indexes[0]].mailbox)
                pages = await gateway.first_delta_pages([starts[i] for i in indexes])
            except GraphError as exc:
                pages = [exc] * len(indexes)
            for index, page in zip(indexes, pages, strict=True):
                results[index] = page

        await asyncio.gather(*(one(indexes) for indexes in by_mailbox.values()))
        return [r if r is not None else GraphUnavailable("no answer") for r in results]

    async def close(self) -> None:
        return None
