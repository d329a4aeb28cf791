"""The control API over HTTP, under `/_emulator` (no authentication; loopback clients only).

Each route calls the `GraphEmulator` Python method of the same meaning, so the two never drift:

  POST   /_emulator/reset                               forget everything
  GET    /_emulator/state                               the directory (tenants, apps, users)
  POST   /_emulator/tenants                             {id?, name?, domain?}
  POST   /_emulator/tenants/{tenant}/apps               {clientId?, displayName?, secrets?,
         applicationPermissions?, delegatedPermissions?, federatedCredentials?: [{issuer, subject,
         audiences?, name?}], redirectUris?}
  PATCH  /_emulator/tenants/{tenant}/apps/{clientId}    same fields, each replaces the current value
  POST   /_emulator/tenants/{tenant}/users              {userPrincipalName, displayName?, id?, mail?}
  POST   /_emulator/tenants/{tenant}/managedIdentities  {clientId?, principalId?, federateWith?: clientId}
  POST   /_emulator/tenants/{tenant}/authorize          {clientId, user, scopes, redirectUri} -> {code}
  POST   /_emulator/tokens/revoke                       {refreshTokens?: bool}
  GET    /_emulator/identity                            {identityEndpoint, identityHeader, authority}
  GET|PATCH /_emulator/settings                         {latencySeconds, concurrency, budget, ...}
  GET|POST|DELETE /_emulator/faults                     POST {kind, status, count, retryAfter,
                                                        latencySeconds, mailbox, path, method}
  GET|DELETE /_emulator/counters, GET|DELETE /_emulator/counters/{user}
  GET|POST /_emulator/clock                             POST {now?: ISO, freeze?: bool,
                                                        advanceSeconds?: number, reset?: bool}
  POST   /_emulator/delta/expire                        {user?}
Calendar routes (act as a person in Outlook) are in calendar_module.py.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devtools.graph_emulator.context import EmulatorContext, json_response, read_json
from devtools.graph_emulator.directory import DirectoryError, FederatedCredential
from devtools.graph_emulator.errors import GraphError, bad_request
from devtools.graph_emulator.identity import OAuthError
from devtools.graph_emulator.routing import ControlRouter, GraphRouter
from devtools.graph_emulator.timezones import format_instant, parse_instant

if TYPE_CHECKING:
    from devtools.graph_emulator.server import GraphEmulator


def _strings(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{key} must be a list of strings.")
    return value


def _federated(body: dict[str, Any]) -> list[FederatedCredential] | None:
    value = body.get("federatedCredentials")
    if value is None:
        return None
    out = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict) or not item.get("issuer") or not item.get("subject"):
            raise bad_request("federatedCredentials items need issuer and subject.")
        audiences = tuple(item.get("audiences") or ("api://AzureADTokenExchange",))
        out.append(
            FederatedCredential(
                str(item["issuer"]), str(item["subject"]), audiences, str(item.get("name", "federated"))
            )
        )
    return out


class ControlModule:
    name = "control"

    def __init__(self, emulator: GraphEmulator) -> None:
        self.emulator = emulator

    def setup(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx

    def reset(self) -> None:
        return None

    def graph_routes(self, router: GraphRouter) -> None:
        return None

    def control_routes(self, router: ControlRouter) -> None:
        r = router.add
        r("POST", "/reset", self._reset)
        r("GET", "/state", self._state)
        r("POST", "/tenants", self._add_tenant)
        r("POST", "/tenants/{tenant}/apps", self._add_app)
        r("PATCH", "/tenants/{tenant}/apps/{client}", self._update_app)
        r("POST", "/tenants/{tenant}/users", self._add_user)
        r("POST", "/tenants/{tenant}/managedIdentities", self._add_managed_identity)
        r("POST", "/tenants/{tenant}/authorize", self._authorize)
        r("POST", "/tokens/revoke", self._revoke_tokens)
        r("GET", "/identity", self._identity)
        r("GET", "/settings", self._settings)
        r("PATCH", "/settings", self._update_settings)
        r("GET", "/faults", self._faults)
        r("POST", "/faults", self._add_fault)
        r("DELETE", "/faults", self._clear_faults)
        r("GET", "/counters", self._counters)
        r("DELETE", "/counters", self._reset_counters)
        r("GET", "/counters/{user}", self._counters)
        r("DELETE", "/counters/{user}", self._reset_counters)
        r("GET", "/clock", self._clock)
        r("POST", "/clock", self._set_clock)
        r("POST", "/delta/expire", self._expire_delta)

    # -- handlers ------------------------------------------------------------------------------

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        self.emulator.reset()
        return web.Response(status=204)

    async def _state(self, request: web.Request) -> web.StreamResponse:
        return json_response({"tenants": [t.to_json() for t in self.ctx.directory.tenants.values()]})

    async def _add_tenant(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        try:
            tenant = self.emulator.add_tenant(
                body.get("id"), str(body.get("name") or "Contoso"), body.get("domain")
            )
        except DirectoryError as exc:
            raise GraphError(409, "Conflict", str(exc)) from None
        return json_response(tenant.to_json(), 201)

    async def _add_app(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        try:
            app = self.emulator.add_app(
                request.match_info["tenant"],
                client_id=body.get("clientId"),
                display_name=str(body.get("displayName") or "m365-bridge"),
                secrets=_strings(body, "secrets"),
                application_permissions=_strings(body, "applicationPermissions") or (),
                delegated_permissions=_strings(body, "delegatedPermissions") or (),
                federated_credentials=_federated(body),
                redirect_uris=_strings(body, "redirectUris"),
            )
        except DirectoryError as exc:
            raise GraphError(409, "Conflict", str(exc)) from None
        return json_response(app.to_json(), 201)

    async def _update_app(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        try:
            app = self.emulator.app(request.match_info["tenant"], request.match_info["client"])
        except KeyError as exc:
            raise GraphError(404, "NotFound", str(exc)) from None
        if (secrets := _strings(body, "secrets")) is not None:
            app.secrets = secrets
        if (roles := _strings(body, "applicationPermissions")) is not None:
            app.application_permissions = set(roles)
        if (scopes := _strings(body, "delegatedPermissions")) is not None:
            app.delegated_permissions = set(scopes)
        if (federated := _federated(body)) is not None:
            app.federated_credentials = federated
        if (uris := _strings(body, "redirectUris")) is not None:
            app.redirect_uris = uris
        return json_response(app.to_json())

    async def _add_user(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        upn = body.get("userPrincipalName")
        if not isinstance(upn, str) or "@" not in upn:
            raise bad_request("userPrincipalName is required.")
        try:
            user = self.emulator.add_user(
                request.match_info["tenant"],
                upn,
                display_name=body.get("displayName"),
                user_id=body.get("id"),
                mail=body.get("mail"),
            )
        except DirectoryError as exc:
            raise GraphError(409, "Conflict", str(exc)) from None
        return json_response(user.to_graph(), 201)

    async def _add_managed_identity(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        tenant = request.match_info["tenant"]
        try:
            mi = self.emulator.add_managed_identity(
                tenant, client_id=body.get("clientId"), principal_id=body.get("principalId")
            )
            if body.get("federateWith"):
                self.emulator.federate(tenant, str(body["federateWith"]), mi)
        except (DirectoryError, KeyError) as exc:
            raise GraphError(404, "NotFound", str(exc)) from None
        return json_response(mi.to_json(), 201)

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        try:
            code = self.emulator.authorize(
                request.match_info["tenant"],
                str(body.get("clientId", "")),
                str(body.get("user", "")),
                _strings(body, "scopes") or [],
                str(body.get("redirectUri", "")),
            )
        except OAuthError as exc:
            raise GraphError(400, exc.error, exc.description) from None
        return json_response({"code": code})

    async def _revoke_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request) if request.can_read_body else {}
        self.emulator.revoke_tokens(refresh_tokens=bool(body.get("refreshTokens")))
        return web.Response(status=204)

    async def _identity(self, request: web.Request) -> web.StreamResponse:
        e = self.emulator
        return json_response(
            {
                "authority": e.authority,
                "graphUrl": e.graph_url,
                "caCert": str(e.ca_cert),
                "identityEndpoint": e.identity_endpoint,
                "identityHeader": e.identity_header,
            }
        )

    async def _settings(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.ctx.limits.to_json())

    async def _update_settings(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        try:
            self.emulator.configure(**body)
        except (ValueError, TypeError) as exc:
            raise bad_request(str(exc)) from None
        return json_response(self.ctx.limits.to_json())

    async def _faults(self, request: web.Request) -> web.StreamResponse:
        return json_response({"value": [f.to_json() for f in self.ctx.faults.pending()]})

    async def _add_fault(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        try:
            fault = self.emulator.add_fault(
                body.get("kind", "status"),
                status=int(body.get("status", 503)),
                count=int(body.get("count", 1)),
                retry_after=int(body["retryAfter"]) if body.get("retryAfter") is not None else None,
                latency_seconds=float(body.get("latencySeconds", 0.0)),
                mailbox=body.get("mailbox"),
                path=body.get("path"),
                method=body.get("method"),
            )
        except (ValueError, TypeError) as exc:
            raise bad_request(str(exc)) from None
        return json_response(fault.to_json(), 201)

    async def _clear_faults(self, request: web.Request) -> web.StreamResponse:
        self.emulator.clear_faults()
        return web.Response(status=204)

    async def _counters(self, request: web.Request) -> web.StreamResponse:
        user = request.match_info.get("user")
        if user is not None:
            return json_response(self.emulator.counters(user).to_json())
        return json_response({"value": [c.to_json() for c in self.emulator.all_counters().values()]})

    async def _reset_counters(self, request: web.Request) -> web.StreamResponse:
        self.emulator.reset_counters(request.match_info.get("user"))
        return web.Response(status=204)

    async def _clock(self, request: web.Request) -> web.StreamResponse:
        return json_response({"now": format_instant(self.emulator.now())})

    async def _set_clock(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        try:
            if body.get("reset"):
                self.ctx.clock.reset()
            if body.get("now"):
                self.emulator.set_now(parse_instant(str(body["now"])), freeze=bool(body.get("freeze")))
            if body.get("advanceSeconds"):
                self.emulator.advance(dt.timedelta(seconds=float(body["advanceSeconds"])))
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return json_response({"now": format_instant(self.emulator.now())})

    async def _expire_delta(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request) if request.can_read_body else {}
        user = body.get("user")
        return json_response({"expired": self.emulator.expire_delta_tokens(str(user) if user else None)})
