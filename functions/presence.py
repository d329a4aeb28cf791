"""Presence for a switchboard: settings (`…/presence/settings`), monitored users
(`…/presence/monitors/{email}`), what the switchboard asks (`GET …/presence?users=`), "Run now"
(`POST …/presence/refresh`), the read timer and the `presence` queue worker."""

import azure.functions as func

from core.bootstrap import container
from core.presence.config import PresenceService, presence_view, settings_view
from core.presence.monitor import PRESENCE_QUEUE, decode, fan_out
from core.tenants import TenantContext
from functions.http import json_response, read_json, tenant_endpoint

bp = func.Blueprint()

PRESENCE = "v1/tenants/{tenantId}/presence"
MONITORS = PRESENCE + "/monitors"
MONITOR = MONITORS + "/{email}"
# Every minute: each tenant is read when its own refreshMinutes have passed.
SCHEDULE = "15 * * * * *"


def _presence(ctx: TenantContext) -> PresenceService:
    return PresenceService(ctx.app.tables, ctx.app.presence_queue(), ctx.tenant, ctx.app.clock)


@bp.route(route=PRESENCE + "/settings", methods=["PUT"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def put_presence_settings(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    return json_response(settings_view(await _presence(ctx).put_settings(read_json(req))))


@bp.route(route=PRESENCE + "/settings", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_presence_settings(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    return json_response(settings_view(await _presence(ctx).settings()))


@bp.route(route=MONITOR, methods=["PUT"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def put_presence_monitor(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """Enable a user (201; read at once) or rename one (200)."""
    row, created = await _presence(ctx).put_monitor(req.route_params["email"], read_json(req, optional=True))
    return json_response(presence_view(row), status=201 if created else 200)


@bp.route(route=MONITOR, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_presence_monitor(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    return json_response(presence_view(await _presence(ctx).monitor(req.route_params["email"])))


@bp.route(route=MONITOR, methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def delete_presence_monitor(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    await _presence(ctx).delete_monitor(req.route_params["email"])
    return func.HttpResponse(status_code=204)


@bp.route(route=MONITORS, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def list_presence_monitors(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    return json_response({"monitors": [presence_view(r) for r in await _presence(ctx).monitors()]})


@bp.route(route=PRESENCE, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_presence(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """`?users=a@x,b@x`: those users' presence from stored state (no Graph call), with `until`."""
    return json_response({"users": await _presence(ctx).presence(req.params.get("users"))})


@bp.route(route=PRESENCE + "/refresh", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def refresh_presence(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """Read every monitored user now: 202 `{batches}` (getSchedule calls of up to 20 users)."""
    return json_response({"batches": await _presence(ctx).refresh()}, status=202)


@bp.timer_trigger(schedule=SCHEDULE, arg_name="timer", run_on_startup=False)
async def presence_fanout(timer: func.TimerRequest) -> None:
    """One `presence` poll per 20 monitored users of every tenant whose refresh is due."""
    app = await container()
    await fan_out(app.tables, app.presence_queue(), clock=app.clock)


@bp.queue_trigger(arg_name="msg", queue_name=PRESENCE_QUEUE, connection="AzureWebJobsStorage")
async def presence(msg: func.QueueMessage) -> None:
    """A read of up to 20 users, or a tick at one user's next change. A transient Graph
    failure fails the message, so the queue retries it (poison: `presence-poison`)."""
    message = decode(msg.get_body().decode("utf-8", "replace"))
    await (await container()).presence_monitor().run(message)
