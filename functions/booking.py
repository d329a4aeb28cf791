"""Booking: a tenant's booking calendars (`…/booking-calendars/{id}`), the slots a form shows
(`GET …/booking-calendars/{id}/slots?from=&to=`), reservations (`…/reservations`) and the
`booking-reservations` queue worker."""

import azure.functions as func

from core.booking.config import BookingCalendarService, booking_view
from core.booking.queue import BOOKING_QUEUE, ReservationMessage
from core.booking.reservations import ReservationService, reservation_view
from core.booking.slots import list_slots, slot_view, window
from core.bootstrap import container
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


RESERVATIONS = CALENDAR + "/reservations"
RESERVATION = RESERVATIONS + "/{reservationId}"


def _reservations(ctx: TenantContext) -> ReservationService:
    app = ctx.app
    return ReservationService(
        app.tables, app.graphs, app.documents(), app.reservation_queue(), ctx.tenant, app.clock
    )


@bp.route(route=RESERVATIONS, methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def reserve_slot(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """Claim a slot: 201 with the reservation (its worker then books it in Outlook), 200 for a
    repeated idempotency key, 409 if the slot is taken or changed, 410 if it was deleted."""
    config = await _calendars(ctx).get(req.route_params["bookingCalendarId"])
    reservation, created = await _reservations(ctx).reserve(config, read_json(req))
    return json_response(reservation_view(reservation), status=201 if created else 200)


@bp.route(route=RESERVATIONS, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def list_reservations(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    config = await _calendars(ctx).get(req.route_params["bookingCalendarId"])
    rows = await _reservations(ctx).list(config)
    return json_response({"reservations": [reservation_view(r) for r in rows]})


@bp.route(route=RESERVATION, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_reservation(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    config = await _calendars(ctx).get(req.route_params["bookingCalendarId"])
    reservation = await _reservations(ctx).get(config, req.route_params["reservationId"])
    return json_response(reservation_view(reservation))


@bp.route(route=RESERVATION, methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def cancel_reservation(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """Cancel: 202 while the worker restores the slot (`booking.cancelled` tells the host)."""
    config = await _calendars(ctx).get(req.route_params["bookingCalendarId"])
    reservation = await _reservations(ctx).cancel(config, req.route_params["reservationId"])
    return json_response(reservation_view(reservation), status=202)


@bp.queue_trigger(arg_name="msg", queue_name=BOOKING_QUEUE, connection="AzureWebJobsStorage")
async def booking_reservation(msg: func.QueueMessage) -> None:
    """Finish a reservation in Outlook, or undo it. A transient failure fails the message, so
    the queue retries it (the row makes that safe); on the last delivery the booking fails
    for good instead: the slot is released and the host told."""
    message = ReservationMessage.decode(msg.get_body().decode("utf-8", "replace"))
    app = await container()
    await app.reservation_worker().run(message, delivery=msg.dequeue_count or 1)
