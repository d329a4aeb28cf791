"""The tenant's events: the pull feed (`GET …/events?after=<cursor>&limit=<n>`) and a test event
a host sends itself to check its receiver end to end (`POST …/events/test`)."""

from datetime import timedelta

import azure.functions as func

from core.host import BadFeedQuery, parse_cursor, parse_limit, read_feed
from core.host.test_event import TEST_EVENT, idempotent_test_event_id
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


@bp.route(route="v1/tenants/{tenantId}/events/test", methods=["POST"])
@tenant_endpoint
async def send_test_event(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """Emit a `bridge.test` event to the tenant's own outbox: it is delivered to the webhook
    (signed, in order) and appears in the feed, like every other event. An `Idempotency-Key`
    header makes a retried request emit one event."""
    event = await ctx.app.outbox().emit(
        ctx.tenant.tenant_id,
        TEST_EVENT,
        {"message": "Test event requested by the host system."},
        event_id=idempotent_test_event_id(ctx.tenant.tenant_id, req.headers.get("Idempotency-Key")),
    )
    return json_response({"id": event.event_id, "type": event.type, "sequence": event.sequence}, status=202)
