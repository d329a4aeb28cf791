"""Delegated sign-in ("connect your calendar"): `GET …/tenants/{t}/connect/start` sends the
user to the Microsoft sign-in; Microsoft sends the browser back to `GET /api/v1/connect/callback`,
which is anonymous at the Functions level (a browser carries no key) and verified by its
single-use `state`. `…/connect/accounts` lists the accounts users connected and forgets one."""

from urllib.parse import urlencode, urlsplit

import azure.functions as func

from core.bootstrap import container
from core.delegated import grant_view
from core.tenants import TenantContext
from functions.http import endpoint, json_response, tenant_endpoint

bp = func.Blueprint()

CALLBACK = "v1/connect/callback"
ACCOUNTS = "v1/tenants/{tenantId}/connect/accounts"


def _callback_url(req: func.HttpRequest, public_url: str | None) -> str:
    if public_url:
        return public_url.rstrip("/") + "/api/" + CALLBACK
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}/api/{CALLBACK}"


@bp.route(route="v1/tenants/{tenantId}/connect/start", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def connect_start(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """`?resourceId=&account=&direction=&returnUrl=`: 302 to the Microsoft sign-in for
    `account` (also in the body as `authorizeUrl`, for a host that hands it to the user's
    browser itself)."""
    callback = _callback_url(req, ctx.app.settings.bridge_public_url)
    url, expires = await ctx.app.connect().start(
        ctx.tenant,
        req.params.get("resourceId"),
        req.params.get("account"),
        req.params.get("returnUrl"),
        callback,
        req.params.get("direction"),
    )
    body = {"authorizeUrl": url, "expiresAt": expires.isoformat()}
    return json_response(body, status=302, headers={"Location": url, "Cache-Control": "no-store"})


@bp.route(route=CALLBACK, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint
async def connect_callback(req: func.HttpRequest) -> func.HttpResponse:
    """Where the sign-in comes back: stores the grant and links the account; 302 to the
    `returnUrl` given at start (with `status=connected`), else 200 with the grant."""
    app = await container()
    grant, return_url = await app.connect().callback(
        req.params.get("code"), req.params.get("state"), req.params.get("error")
    )
    await app.configuration_changed(grant.tenant_id)  # the account was linked
    body = {"status": grant.status.value, "account": grant.account}
    if return_url:
        separator = "&" if "?" in return_url else "?"
        location = return_url + separator + urlencode({"status": "connected", "account": grant.account})
        return json_response(body, status=302, headers={"Location": location})
    return json_response(body)


@bp.route(route=ACCOUNTS, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def list_connected_accounts(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """Every account a user connected: `connected`, or `reconnect_required` with the reason."""
    grants = await ctx.app.connect().accounts(ctx.tenant.tenant_id)
    return json_response({"accounts": [grant_view(g) for g in grants]})


@bp.route(route=ACCOUNTS + "/{account}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_connected_account(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    grant = await ctx.app.connect().account(ctx.tenant.tenant_id, req.route_params["account"])
    return json_response(grant_view(grant))


@bp.route(route=ACCOUNTS + "/{account}", methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def disconnect_account(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """Forget the account's grant (its refresh token is deleted); 204."""
    await ctx.app.connect().disconnect(ctx.tenant.tenant_id, req.route_params["account"])
    return func.HttpResponse(status_code=204)
