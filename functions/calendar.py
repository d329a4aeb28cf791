"""Calendar sync down: the fan-out timer, the `calendar-sync` queue worker, and the host's
"Sync calendar" (`POST …/resources/{r}/sync`) with its status (`GET …/resources/{r}/sync`)."""

import logging
from datetime import timedelta

import azure.functions as func

from core.bootstrap import container
from core.calendar.fanout import fan_out, request_resource_sync
from core.calendar.requests import CALENDAR_QUEUE, parse_message
from core.calendar.status import sync_status
from core.calendar.sync import run_queued
from core.tenants import TenantContext
from functions.http import json_response, tenant_endpoint

bp = func.Blueprint()
log = logging.getLogger(__name__)

SYNC = "v1/tenants/{tenantId}/resources/{resourceId}/sync"


@bp.timer_trigger(schedule="%CALENDAR_SYNC_SCHEDULE%", arg_name="timer", run_on_startup=False)
async def calendar_sync_fanout(timer: func.TimerRequest) -> None:
    """The down-linked calendars of every enabled tenant, in batches of up to 100 per queue
    message."""
    app = await container()
    subscribed = app.settings.calendar_sync_subscribed_hours if app.notification_config().enabled else 0
    await fan_out(app.tables, app.sync_queue(), clock=app.clock, subscribed_poll=timedelta(hours=subscribed))


@bp.queue_trigger(arg_name="msg", queue_name=CALENDAR_QUEUE, connection="AzureWebJobsStorage")
async def calendar_sync(msg: func.QueueMessage) -> None:
    """Run one sync request or batch. A calendar that failed for a reason a retry may fix
    (throttling, Graph or storage unavailable) fails the message, so the queue retries it (and
    after maxDequeueCount parks it in `calendar-sync-poison`) — in a batch, each such calendar
    is queued again as a request of its own instead; one that needs a person (consent, a
    missing calendar) is recorded as a failed run and the message is done. Throttling with a
    Retry-After longer than the queue's retry re-queues the request with that delay."""
    request = parse_message(msg.get_body().decode("utf-8", "replace"))
    app = await container()
    await run_queued(app.calendar_sync(), app.sync_queue(), request)


@bp.route(route=SYNC, methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def sync_resource(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    requested = await request_resource_sync(
        ctx.app.tables, ctx.app.sync_queue(), ctx.tenant_id, req.route_params["resourceId"]
    )
    return json_response(
        {"runId": requested.run_id, "calendars": requested.calendars, "skipped": requested.skipped},
        status=202,
    )


@bp.route(route=SYNC, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_sync_status(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    return json_response(await sync_status(ctx.app.tables, ctx.tenant_id, req.route_params["resourceId"]))
