"""The pull feed: `GET /api/v1/tenants/{tenantId}/events?after=<cursor>&limit=<n>`."""

from datetime import timedelta

import azure.functions as func

from core.host import BadFeedQuery, parse_cursor, parse_limit, read_feed
from core.request_errors import MalformedRequest
from core.tenants import TenantContext
from functions.http import json_response, tenant_endpoint

bp = func.Blueprint()


@bp.route(route="v1/tenants/{tenantId}/events", methods=["GET"])
@tenant_endpoint
async def list_events(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """The tenant's events after `after` (delivered or not), in order, and the next cursor."""
    try:
        after = parse_cursor(req.params.get("after"))
        limit = parse_limit(req.params.get("limit"))
        page = await read_feed(
            ctx.app.tables,
            ctx.tenant.tenant_id,
            after=after,
            limit=limit,
            grace=timedelta(seconds=ctx.app.settings.outbox_gap_grace_seconds),
            clock=ctx.app.clock,
        )
    except BadFeedQuery as exc:
        raise MalformedRequest(str(exc)) from None
    return json_response(page.to_dict())
