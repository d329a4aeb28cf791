"""A tenant's host resources and their linked Microsoft 365 accounts
(`/api/v1/tenants/{tenantId}/resources/…`), behind the tenant guard."""

import azure.functions as func

from core.calendar.push import cleanup_flag, request_cleanup
from core.links import MAX_LIST, LinkService, link_view
from core.store.records import ResourceLink
from core.tenants import TenantContext
from core.validators import query_int
from core.versions import public_etag
from functions.http import json_response, read_json, tenant_endpoint

bp = func.Blueprint()

RESOURCES = "v1/tenants/{tenantId}/resources"
RESOURCE = RESOURCES + "/{resourceId}"
ACCOUNT = RESOURCE + "/accounts/{account}"


def _links(ctx: TenantContext) -> LinkService:
    return LinkService(ctx.app.tables.repo(ResourceLink), ctx.tenant_id, ctx.app.clock)


async def _link_response(ctx: TenantContext, link: ResourceLink, status: int = 200) -> func.HttpResponse:
    etag = public_etag(link)
    view = link_view(link, await ctx.app.connect().connections(ctx.tenant))
    return json_response(view, status=status, headers={"ETag": etag} if etag else None)


@bp.route(route=RESOURCE, methods=["PUT"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def put_resource(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    link, created = await _links(ctx).put(
        req.route_params["resourceId"],
        read_json(req),
        if_match=req.headers.get("If-Match"),
        if_none_match=req.headers.get("If-None-Match"),
    )
    await ctx.app.configuration_changed(ctx.tenant_id)
    return await _link_response(ctx, link, status=201 if created else 200)


@bp.route(route=RESOURCE, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_resource(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    return await _link_response(ctx, await _links(ctx).get(req.route_params["resourceId"]))


async def _unlinked(
    ctx: TenantContext, cleanup: bool, resource_id: str, accounts: list[str]
) -> func.HttpResponse:
    await ctx.app.configuration_changed(ctx.tenant_id)
    if not cleanup or not accounts:
        return func.HttpResponse(status_code=204)
    tracking_id = await request_cleanup(ctx.app.push_queue(), ctx.tenant_id, resource_id, accounts)
    return json_response({"trackingId": tracking_id, "cleanup": accounts}, status=202)


@bp.route(route=RESOURCE, methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def delete_resource(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """Unlink the resource. With `?cleanup=true`, the events the bridge created in its accounts
    are deleted too (202 with the cleanup's tracking id)."""
    cleanup = cleanup_flag(req.params.get("cleanup"))
    resource_id = req.route_params["resourceId"]
    link = await _links(ctx).delete(resource_id, if_match=req.headers.get("If-Match"))
    return await _unlinked(ctx, cleanup, resource_id, [a.account for a in link.accounts])


@bp.route(route=ACCOUNT, methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def unlink_account(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """Unlink one account of the resource; `?cleanup=true` deletes the events the bridge created
    in it (202 with the cleanup's tracking id)."""
    cleanup = cleanup_flag(req.params.get("cleanup"))
    resource_id, account = req.route_params["resourceId"], req.route_params["account"]
    _, removed = await _links(ctx).remove_account(resource_id, account, if_match=req.headers.get("If-Match"))
    return await _unlinked(ctx, cleanup, resource_id, [removed])


@bp.route(route=RESOURCES, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def list_resources(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    limit = query_int("limit", req.params.get("limit"), default=100, low=1, high=MAX_LIST)
    page, after = await _links(ctx).list(after=req.params.get("after") or None, limit=limit)
    connections = await ctx.app.connect().connections(ctx.tenant)
    return json_response({"resources": [link_view(link, connections) for link in page], "next": after})
