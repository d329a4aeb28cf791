"""Booking: a tenant's booking calendars (`…/booking-calendars/{id}`) and the slots a form
shows (`GET …/booking-calendars/{id}/slots?from=&to=`)."""

import azure.functions as func

from core.booking.config import BookingCalendarService, booking_view
from core.booking.slots import list_slots, slot_view, window
from core.tenants import TenantContext
from core.versions import public_etag
from functions.http import json_response, read_json, tenant_endpoint

bp = func.Blueprint()

CALENDARS = "v1/tenants/{tenantId}/booking-calendars"
CALENDAR = CALENDARS + "/{bookingCalendarId}"


def _calendars(ctx: TenantContext) -> BookingCalendarService:
    return BookingCalendarService(ctx.app.tables, ctx.app.graphs, ctx.tenant, ctx.app.clock)


@bp.route(route=CALENDAR, methods=["PUT"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def put_booking_calendar(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    config, created = await _calendars(ctx).put(
        req.route_params["bookingCalendarId"],
        read_json(req),
        if_match=req.headers.get("If-Match"),
        if_none_match=req.headers.get("If-None-Match"),
    )
    etag = public_etag(config)
    return json_response(
        booking_view(config), status=201 if created else 200, headers={"ETag": etag} if etag else None
    )


@bp.route(route=CALENDAR, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_booking_calendar(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    config = await _calendars(ctx).get(req.route_params["bookingCalendarId"])
    etag = public_etag(config)
    return json_response(booking_view(config), headers={"ETag": etag} if etag else None)


@bp.route(route=CALENDAR, methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def delete_booking_calendar(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    await _calendars(ctx).delete(req.route_params["bookingCalendarId"], if_match=req.headers.get("If-Match"))
    return func.HttpResponse(status_code=204)


@bp.route(route=CALENDARS, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def list_booking_calendars(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    return json_response({"bookingCalendars": [booking_view(c) for c in await _calendars(ctx).list()]})


@bp.route(route=CALENDAR + "/slots", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_slots(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    config = await _calendars(ctx).get(req.route_params["bookingCalendarId"])
    now = ctx.app.clock()
    start, end = window(config, req.params.get("from") or None, req.params.get("to") or None, now)
    slots = await list_slots(ctx.app.tables, ctx.app.graphs, ctx.tenant, config, start, end, now)
    return json_response(
        {
            "bookingCalendarId": config.booking_id,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "slots": [slot_view(s, config) for s in slots],
        }
    )
