"""Delivery to host webhooks: the delivery-queue trigger and the safety-net timer."""

import logging

import azure.functions as func

from core.bootstrap import container
from core.host import DELIVERY_QUEUE, nudge_due_tenants, parse_nudge
from core.host.sweep import SCHEDULE

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.queue_trigger(arg_name="msg", queue_name=DELIVERY_QUEUE, connection="AzureWebJobsStorage")
async def deliver(msg: func.QueueMessage) -> None:
    """A nudge `{"tenantId": …}`: deliver what is due for that tenant. A message that is not one
    fails (and after maxDequeueCount lands in the poison queue, for the operator to see)."""
    tenant_id = parse_nudge(msg.get_body().decode("utf-8", "replace"))
    app = await container()
    await app.dispatcher().dispatch(tenant_id)


@bp.timer_trigger(schedule=SCHEDULE, arg_name="timer", run_on_startup=False)
async def deliver_sweep(timer: func.TimerRequest) -> None:
    """Every minute: nudge tenants whose due events lost their nudge."""
    app = await container()
    await nudge_due_tenants(app.tables, app.delivery_queue(), clock=app.clock)
