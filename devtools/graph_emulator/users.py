"""Directory reads on the Graph surface: `GET /users/{id|upn}`, `GET /me`, `GET /users`.

A user is found by object id or by UPN/mail, case-insensitively, and only in the caller's tenant.
These are directory requests, not mailbox requests: the path parameter is named `{id}` (not
`{user}`) so the pipeline neither counts nor throttles them per mailbox.
"""

from __future__ import annotations

from aiohttp import web

from devtools.graph_emulator.context import Permissions, graph_call, json_response
from devtools.graph_emulator.errors import GraphError
from devtools.graph_emulator.odata import collection, offset_page, select
from devtools.graph_emulator.routing import ControlRouter, GraphRouter, ModuleBase

READ_USERS = Permissions.of(
    "User.Read.All",
    "User.ReadWrite.All",
    "User.ReadBasic.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    delegated=("User.Read", "User.ReadBasic.All", "User.Read.All", "Directory.Read.All"),
)


class UsersModule(ModuleBase):
    name = "users"

    def graph_routes(self, router: GraphRouter) -> None:
        router.add("GET", "/users", self._list, permissions=READ_USERS)
        router.add("GET", "/users/{id}", self._get, permissions=READ_USERS)
        router.add("GET", "/me", self._me, permissions=READ_USERS)

    def control_routes(self, router: ControlRouter) -> None:
        return None

    async def _get(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        key = request.match_info["id"]
        user = self.ctx.directory.user(call.caller.tenant_id, key)
        if user is None:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{key}' does not exist or one of its queried reference-property objects are "
                "not present.",
            )
        body = {"@odata.context": f"{self.ctx.graph_url}/$metadata#users/$entity", **user.to_graph()}
        return json_response(select([body], request)[0])

    async def _me(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        body = {"@odata.context": f"{self.ctx.graph_url}/$metadata#users/$entity", **call.user().to_graph()}
        return json_response(select([body], request)[0])

    async def _list(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        tenant = self.ctx.directory.tenant(call.caller.tenant_id)
        users = sorted(tenant.users.values(), key=lambda u: u.user_principal_name.lower()) if tenant else []
        page, next_link = offset_page(
            request, call, self.ctx.base_url, [u.to_graph() for u in users], default_size=100, max_size=999
        )
        return json_response(
            collection(
                select(page, request), context=f"{self.ctx.graph_url}/$metadata#users", next_link=next_link
            )
        )
