"""The identity platform part: what azure-identity and MSAL need to get Graph tokens.

Endpoints (all per tenant, `{tenant}` = tenant id or domain):
- `GET  /{tenant}/v2.0/.well-known/openid-configuration` - MSAL's tenant discovery (with
  `disable_instance_discovery=True` it asks nothing else);
- `POST /{tenant}/oauth2/v2.0/token` - grant types `client_credentials` (client secret, or a
  client assertion checked against the app's federated credentials), `authorization_code` and
  `refresh_token` (delegated: tokens carry `scp` instead of `roles`);
- `GET  /{tenant}/oauth2/v2.0/authorize` - a sign-in that succeeds at once for the user named by
  `login_hint` (or the tenant's only user) and redirects back with a code; a `code_challenge`
  (PKCE, S256 or plain) binds the code to its verifier, which redeeming it must then present;
- `GET  /msi/token` - an App Service style managed-identity endpoint (`IDENTITY_ENDPOINT` /
  `IDENTITY_HEADER`) issuing `api://AzureADTokenExchange` tokens for a tenant's managed
  identities: the assertion a federated credential accepts.

Errors use Entra's shape and AADSTS codes (a wrong secret is 401 invalid_client AADSTS7000215).
Token expiry is judged by the real clock because clients cache tokens by it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from devtools.graph_emulator.context import json_response
from devtools.graph_emulator.directory import TOKEN_EXCHANGE_AUDIENCE, App, Tenant, User
from devtools.graph_emulator.routing import ControlRouter, GraphRouter, ModuleBase
from devtools.graph_emulator.tokens import TokenError, decode_unverified

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class OAuthError(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description


@dataclass
class IssuedToken:
    """A record of a token the emulator issued (tests assert on these)."""

    grant_type: str
    tenant_id: str
    client_id: str
    user_id: str | None
    roles: tuple[str, ...]
    scopes: tuple[str, ...]
    audience: str
    at: float = field(default_factory=time.time)


@dataclass
class _Grant:
    tenant_id: str
    client_id: str
    user_id: str
    scopes: tuple[str, ...]
    redirect_uri: str | None = None
    code_challenge: str | None = None  # PKCE (RFC 7636)
    code_challenge_method: str = "plain"


def _pkce_matches(grant: _Grant, verifier: str) -> bool:
    if grant.code_challenge is None:
        return True
    if grant.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        verifier = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return bool(verifier) and hmac.compare_digest(verifier, grant.code_challenge)


class IdentityPlatform(ModuleBase):
    name = "identity"

    def __init__(self) -> None:
        self.token_lifetime_seconds = 3599
        self.identity_header = secrets.token_urlsafe(16)  # what IDENTITY_HEADER must say
        self.issued: list[IssuedToken] = []
        self.next_token_number = 0  # each access token's `xms_emu_n` (see Pipeline.validate)
        self._codes: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, _Grant] = {}

    def reset(self) -> None:
        self.issued.clear()
        self._codes.clear()
        self._refresh_tokens.clear()

    def graph_routes(self, router: GraphRouter) -> None:
        router.add_raw("GET", "/{tenant}/v2.0/.well-known/openid-configuration", self._openid_configuration)
        router.add_raw("POST", "/{tenant}/oauth2/v2.0/token", self._token)
        router.add_raw("GET", "/{tenant}/oauth2/v2.0/authorize", self._authorize)
        router.add_raw("GET", "/{tenant}/discovery/v2.0/keys", self._keys)
        router.add_raw("GET", "/msi/token", self._managed_identity_token)

    def control_routes(self, router: ControlRouter) -> None:
        return None  # the emulator's control module exposes authorize/revoke

    # -- Python API --------------------------------------------------------------------------

    def authorize(
        self,
        tenant_id: str,
        client_id: str,
        user: str,
        scopes: list[str],
        redirect_uri: str,
        *,
        code_challenge: str | None = None,
        code_challenge_method: str = "plain",
    ) -> str:
        """What a browser sign-in plus consent would produce: an authorization code for `user`
        (bound to a PKCE challenge when one is given)."""
        if code_challenge_method not in ("plain", "S256"):
            raise OAuthError(
                400, "invalid_request", 50148, "The code_challenge_method must be 'plain' or 'S256'."
            )
        tenant = self._tenant(tenant_id)
        app = self._app(tenant, client_id)
        found = self.ctx.directory.user(tenant.id, user)
        if found is None:
            raise OAuthError(
                400, "invalid_request", 50034, f"The user account {user} does not exist in the directory."
            )
        granted = self._delegated_scopes(app, scopes)
        code = "0.A" + secrets.token_urlsafe(48)
        self._codes[code] = _Grant(
            tenant.id, app.client_id, found.id, granted, redirect_uri, code_challenge, code_challenge_method
        )
        return code

    def issue_exchange_token(self, managed_identity_client_id: str) -> str:
        """An `api://AzureADTokenExchange` token for a managed identity (what `/msi/token` returns)."""
        mi = self.ctx.directory.managed_identity(managed_identity_client_id)
        if mi is None:
            raise OAuthError(
                400, "invalid_request", 700016, f"No managed identity {managed_identity_client_id}."
            )
        now = int(time.time())
        claims = {
            "aud": TOKEN_EXCHANGE_AUDIENCE,
            "iss": self.ctx.issuer(mi.tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime_seconds,
            "sub": mi.principal_id,
            "oid": mi.principal_id,
            "azp": mi.client_id,
            "tid": mi.tenant_id,
            "ver": "2.0",
            "uti": secrets.token_urlsafe(16),
        }
        self.issued.append(
            IssuedToken("managed_identity", mi.tenant_id, mi.client_id, None, (), (), TOKEN_EXCHANGE_AUDIENCE)
        )
        return self.ctx.signer.encode(claims)

    # -- handlers ----------------------------------------------------------------------------

    async def _openid_configuration(self, request: web.Request) -> web.StreamResponse:
        try:
            tenant = self._tenant(request.match_info["tenant"])
        except OAuthError as err:
            return self._oauth_error(err)
        base = f"{self.ctx.base_url}/{tenant.id}"
        return json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": self.ctx.issuer(tenant.id),
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{self.ctx.graph_url}/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "nonce",
                    "name",
                    "tid",
                    "oid",
                    "preferred_username",
                ],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
            }
        )

    async def _keys(self, request: web.Request) -> web.StreamResponse:
        # Tokens are HS256 with a private key (tokens.py): there is no public key to publish.
        return json_response({"keys": []})

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        basic = _basic_auth(request.headers.get("Authorization", ""))
        if basic is not None:
            fields.setdefault("client_id", basic[0])
            fields.setdefault("client_secret", basic[1])
        try:
            tenant = self._tenant(request.match_info["tenant"])
            grant = fields.get("grant_type", "")
            if grant == "client_credentials":
                body = self._client_credentials(tenant, fields)
            elif grant == "authorization_code":
                body = self._authorization_code(tenant, fields)
            elif grant == "refresh_token":
                body = self._refresh(tenant, fields)
            else:
                raise OAuthError(
                    400,
                    "unsupported_grant_type",
                    70003,
                    f"The app requested an unsupported grant type '{grant}'.",
                )
        except OAuthError as err:
            return self._oauth_error(err)
        return json_response(body, headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            tenant = self._tenant(request.match_info["tenant"])
            redirect_uri = q.get("redirect_uri", "")
            if not redirect_uri:
                raise OAuthError(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'redirect_uri'.",
                )
            hint = q.get("login_hint")
            if not hint:
                if len(tenant.users) != 1:
                    raise OAuthError(
                        400, "invalid_request", 50058, "No user is signed in; pass login_hint=<upn>."
                    )
                hint = next(iter(tenant.users.values())).user_principal_name
            code = self.authorize(
                tenant.id,
                q.get("client_id", ""),
                hint,
                q.get("scope", "").split(),
                redirect_uri,
                code_challenge=q.get("code_challenge") or None,
                code_challenge_method=q.get("code_challenge_method", "plain"),
            )
        except OAuthError as err:
            return self._oauth_error(err)
        params = {"code": code, "session_state": str(uuid.uuid4())}
        if "state" in q:
            params["state"] = q["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return web.Response(status=302, headers={"Location": f"{redirect_uri}{separator}{urlencode(params)}"})

    async def _managed_identity_token(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return json_response(
                {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong."}, 401
            )
        resource = request.query.get("resource", "")
        client_id = request.query.get("client_id")
        if client_id is None:
            all_mis = [m for t in self.ctx.directory.tenants.values() for m in t.managed_identities.values()]
            if len(all_mis) != 1:
                return json_response(
                    {"statusCode": 400, "message": "client_id is required (more than one identity)."}, 400
                )
            client_id = all_mis[0].client_id
        if resource.rstrip("/") != TOKEN_EXCHANGE_AUDIENCE:
            return json_response(
                {
                    "statusCode": 400,
                    "message": f"The emulator only issues {TOKEN_EXCHANGE_AUDIENCE} tokens, not {resource}.",
                },
                400,
            )
        try:
            token = self.issue_exchange_token(client_id)
        except OAuthError as err:
            return json_response({"statusCode": 400, "message": err.description}, 400)
        return json_response(
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + self.token_lifetime_seconds),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            }
        )

    # -- grants ------------------------------------------------------------------------------

    def _client_credentials(self, tenant: Tenant, fields: dict[str, str]) -> dict[str, Any]:
        app = self._app(tenant, fields.get("client_id", ""))
        acr = self._authenticate_client(tenant, app, fields, required=True)
        resource = _app_only_resource(fields.get("scope", ""))
        roles = tuple(sorted(app.application_permissions))
        now = int(time.time())
        claims = self._base_claims(tenant, app, now, acr)
        claims.update({"idtyp": "app", "oid": app.service_principal_id, "sub": app.service_principal_id})
        if roles:
            claims["roles"] = list(roles)
        self.issued.append(
            IssuedToken("client_credentials", tenant.id, app.client_id, None, roles, (), resource)
        )
        return {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime_seconds,
            "ext_expires_in": self.token_lifetime_seconds,
            "access_token": self.ctx.signer.encode(claims),
        }

    def _authorization_code(self, tenant: Tenant, fields: dict[str, str]) -> dict[str, Any]:
        app = self._app(tenant, fields.get("client_id", ""))
        acr = self._authenticate_client(tenant, app, fields, required=bool(app.secrets))
        grant = self._codes.pop(fields.get("code", ""), None)
        if grant is None or grant.client_id != app.client_id or grant.tenant_id != tenant.id:
            raise OAuthError(
                400,
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity.",
            )
        if grant.redirect_uri and fields.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError(
                400,
                "invalid_grant",
                50148,
                "The redirect_uri does not match the one the code was issued for.",
            )
        if not _pkce_matches(grant, fields.get("code_verifier", "")):
            raise OAuthError(
                400,
                "invalid_grant",
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            )
        return self._delegated_response(
            tenant, app, grant, "authorization_code", acr, fields.get("scope", "")
        )

    def _refresh(self, tenant: Tenant, fields: dict[str, str]) -> dict[str, Any]:
        app = self._app(tenant, fields.get("client_id", ""))
        acr = self._authenticate_client(tenant, app, fields, required=bool(app.secrets))
        grant = self._refresh_tokens.get(fields.get("refresh_token", ""))
        if grant is None or grant.client_id != app.client_id or grant.tenant_id != tenant.id:
            raise OAuthError(
                400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
            )
        return self._delegated_response(tenant, app, grant, "refresh_token", acr, fields.get("scope", ""))

    def revoke_refresh_tokens(self, user_id: str | None = None) -> int:
        doomed = [t for t, g in self._refresh_tokens.items() if user_id is None or g.user_id == user_id]
        for token in doomed:
            del self._refresh_tokens[token]
        return len(doomed)

    def _delegated_response(
        self, tenant: Tenant, app: App, grant: _Grant, grant_type: str, acr: str, requested: str
    ) -> dict[str, Any]:
        user = self.ctx.directory.user(tenant.id, grant.user_id)
        if user is None:
            raise OAuthError(400, "invalid_grant", 50034, "The user account does not exist in the directory.")
        # Consent may have changed since the code was issued; a token never has more than both allow.
        scopes = tuple(s for s in grant.scopes if s in app.delegated_permissions)
        if requested.strip():
            scopes = tuple(s for s in self._delegated_scopes(app, requested.split()) if s in scopes) or scopes
        now = int(time.time())
        claims = self._base_claims(tenant, app, now, acr)
        claims.update(
            {
                "idtyp": "user",
                "oid": user.id,
                "sub": base64.urlsafe_b64encode(f"{app.client_id}:{user.id}".encode()).decode()[:43],
                "scp": " ".join(scopes),
                "upn": user.user_principal_name,
                "unique_name": user.user_principal_name,
                "name": user.display_name,
                "amr": ["pwd"],
            }
        )
        refresh = "1.A" + secrets.token_urlsafe(64)
        self._refresh_tokens[refresh] = _Grant(tenant.id, app.client_id, user.id, grant.scopes)
        self.issued.append(
            IssuedToken(grant_type, tenant.id, app.client_id, user.id, (), scopes, GRAPH_RESOURCE)
        )
        client_info = base64.urlsafe_b64encode(
            json.dumps({"uid": user.id, "utid": tenant.id}).encode()
        ).decode()
        return {
            "token_type": "Bearer",
            "scope": " ".join(f"{GRAPH_RESOURCE}/{s}" for s in scopes),
            "expires_in": self.token_lifetime_seconds,
            "ext_expires_in": self.token_lifetime_seconds,
            "access_token": self.ctx.signer.encode(claims),
            "refresh_token": refresh,
            "id_token": self._id_token(tenant, app, user, now),
            "client_info": client_info.rstrip("="),
        }

    def _id_token(self, tenant: Tenant, app: App, user: User, now: int) -> str:
        return self.ctx.signer.encode(
            {
                "aud": app.client_id,
                "iss": self.ctx.issuer(tenant.id),
                "iat": now,
                "nbf": now,
                "exp": now + self.token_lifetime_seconds,
                "name": user.display_name,
                "oid": user.id,
                "preferred_username": user.user_principal_name,
                "sub": user.id,
                "tid": tenant.id,
                "ver": "2.0",
            }
        )

    def _number(self) -> int:
        self.next_token_number += 1
        return self.next_token_number - 1

    def _base_claims(self, tenant: Tenant, app: App, now: int, acr: str) -> dict[str, Any]:
        return {
            "aud": GRAPH_RESOURCE,
            "iss": f"https://sts.windows.net/{tenant.id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime_seconds,
            "app_displayname": app.display_name,
            "appid": app.client_id,
            "appidacr": acr,
            "idp": f"https://sts.windows.net/{tenant.id}/",
            "tid": tenant.id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
            "xms_emu_n": self._number(),
        }

    # -- client authentication -----------------------------------------------------------------

    def _authenticate_client(
        self, tenant: Tenant, app: App, fields: dict[str, str], *, required: bool
    ) -> str:
        """ "1" for a secret, "2" for an assertion, "0" for a public client (the `appidacr` claim)."""
        secret = fields.get("client_secret")
        assertion = fields.get("client_assertion")
        if secret is not None:
            if secret not in app.secrets:
                raise OAuthError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the "
                    "client "
                    f"secret value, not the client secret ID, for a secret added to app '{app.client_id}'.",
                )
            return "1"
        if assertion is not None:
            if fields.get("client_assertion_type") != JWT_BEARER:
                raise OAuthError(400, "invalid_request", 50027, "client_assertion_type must be jwt-bearer.")
            self._check_assertion(tenant, app, assertion)
            return "2"
        if required:
            raise OAuthError(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' "
                "grant type.",
            )
        return "0"

    def _check_assertion(self, tenant: Tenant, app: App, assertion: str) -> None:
        try:
            _, claims = decode_unverified(assertion)
        except TokenError as exc:
            raise OAuthError(401, "invalid_client", 50027, f"Invalid JWT token. {exc}") from None
        issuer, subject, audience = (
            str(claims.get("iss", "")),
            str(claims.get("sub", "")),
            claims.get("aud", ""),
        )
        if issuer == self.ctx.issuer(tenant.id):
            # One of ours (a managed identity's exchange token): its signature can be checked.
            try:
                self.ctx.signer.decode(assertion)
            except TokenError:
                raise OAuthError(
                    401, "invalid_client", 700027, "Client assertion failed signature validation."
                ) from None
        if issuer == subject == app.client_id:
            raise OAuthError(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation (certificate credentials are not emulated).",
            )
        now = time.time()
        if int(claims.get("exp", 0)) <= now or int(claims.get("nbf", 0)) > now + 300:
            raise OAuthError(
                401, "invalid_client", 700024, "Client assertion is not within its valid time range."
            )
        audiences = audience if isinstance(audience, list) else [audience]
        by_issuer = [f for f in app.federated_credentials if f.issuer == issuer]
        hint = (
            "Please check your federated identity credential Subject, Audience and Issuer against the "
            "presented assertion."
        )
        record = "No matching federated identity record found for presented assertion"
        if not by_issuer:
            raise OAuthError(
                401,
                "invalid_client",
                700211,
                f"{record} issuer '{issuer}'. {hint}",
            )
        by_subject = [f for f in by_issuer if f.subject == subject]
        if not by_subject:
            raise OAuthError(
                401,
                "invalid_client",
                700213,
                f"{record} subject '{subject}'. {hint}",
            )
        if not any(a in f.audiences for f in by_subject for a in audiences):
            raise OAuthError(
                401,
                "invalid_client",
                700212,
                f"{record} audience '{audience}'. {hint}",
            )

    # -- lookups -------------------------------------------------------------------------------

    def _tenant(self, key: str) -> Tenant:
        tenant = self.ctx.directory.tenant(key)
        if tenant is None:
            raise OAuthError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{key}' not found. Check to make sure you have the correct tenant ID and are "
                "signing into the correct cloud.",
            )
        return tenant

    def _app(self, tenant: Tenant, client_id: str) -> App:
        app = tenant.apps.get(client_id.lower())
        if app is None:
            raise OAuthError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant.name}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant. You may have sent "
                "your authentication request to the wrong tenant.",
            )
        return app

    def _delegated_scopes(self, app: App, requested: list[str]) -> tuple[str, ...]:
        wanted: list[str] = []
        for scope in requested:
            if scope.lower() in OIDC_SCOPES:
                continue
            name = scope
            for prefix in (f"{GRAPH_RESOURCE}/", f"{GRAPH_APP_ID}/"):
                if scope.startswith(prefix):
                    name = scope[len(prefix) :]
            if name == ".default":
                return tuple(sorted(app.delegated_permissions))
            wanted.append(name)
        missing = [s for s in wanted if s not in app.delegated_permissions]
        if missing:
            raise OAuthError(
                400,
                "invalid_grant",
                65001,
                "The user or administrator has not consented to use the application with ID "
                f"'{app.client_id}' named '{app.display_name}'. Send an interactive authorization request "
                "for this user and resource.",
            )
        return tuple(wanted)

    def _oauth_error(self, err: OAuthError) -> web.Response:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return json_response(
            {
                "error": err.error,
                "error_description": f"AADSTS{err.code}: {err.description}\r\nTrace ID: {trace}\r\n"
                f"Correlation ID: {correlation}\r\nTimestamp: {stamp}",
                "error_codes": [err.code],
                "timestamp": stamp,
                "trace_id": trace,
                "correlation_id": correlation,
                "error_uri": f"{self.ctx.base_url}/error?code={err.code}",
            },
            err.status,
        )


def _app_only_resource(scope: str) -> str:
    scopes = scope.split()
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise OAuthError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
            "value "
            "with /.default suffixed to the resource identifier (application ID URI).",
        )
    resource = scopes[0][: -len("/.default")]
    if resource.rstrip("/") not in (GRAPH_RESOURCE, GRAPH_APP_ID):
        raise OAuthError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant. This emulator only issues "
            "Microsoft Graph tokens.",
        )
    return GRAPH_RESOURCE


def _basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return None
    return user, password
