"""Calendar push up: `POST …/appointments` (host → Outlook), where one appointment stands
(`GET …/resources/{r}/appointments/{id}`), and the `calendar-push` queue worker."""

import azure.functions as func

from core.bootstrap import container
from core.calendar.changes import plausible_appointment
from core.calendar.push import row_view
from core.calendar.push_queue import PUSH_QUEUE, ApplyRequest, decode
from core.request_errors import ItemNotFound
from core.store.records import HostAppointment
from core.tenants import TenantContext
from functions.http import json_response, read_json, tenant_endpoint

bp = func.Blueprint()

APPOINTMENTS = "v1/tenants/{tenantId}/appointments"
APPOINTMENT = "v1/tenants/{tenantId}/resources/{resourceId}/appointments/{hostAppointmentId}"


@bp.route(route=APPOINTMENTS, methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def push_appointments(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    accepted = await ctx.app.appointment_push().accept(ctx.tenant, read_json(req))
    return json_response(accepted.to_dict(), status=202)


@bp.route(route=APPOINTMENT, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_appointment(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    resource_id, host_id = req.route_params["resourceId"], req.route_params["hostAppointmentId"]
    row = (
        await ctx.app.tables.repo(HostAppointment).get(
            *HostAppointment.key(ctx.tenant_id, resource_id, host_id)
        )
        if plausible_appointment(resource_id, host_id)
        else None
    )
    if row is None:
        raise ItemNotFound(f"No appointment '{host_id}' was pushed for resource '{resource_id}'.")
    return json_response(row_view(row))


@bp.queue_trigger(arg_name="msg", queue_name=PUSH_QUEUE, connection="AzureWebJobsStorage")
async def calendar_push(msg: func.QueueMessage) -> None:
    """Apply host appointments (or clean up after an unlink). A failure fails the message, so
    the queue retries it and after maxDequeueCount parks it in `calendar-push-poison`; the run
    with the message's tracking id says what failed. A Retry-After longer than the queue's
    retry re-queues the message with that delay instead."""
    message = decode(msg.get_body().decode("utf-8", "replace"))
    push = (await container()).appointment_push()
    if isinstance(message, ApplyRequest):
        await push.run_queued(message)
    else:
        await push.clean_up(message)
