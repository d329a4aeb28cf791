"""Change notifications: `POST /api/v1/graph/notifications` (anonymous at the Functions level —
Graph carries no key — and checked by each subscription's clientState), the
`graph-subscriptions` queue worker (reconcile a tenant's subscriptions, handle a lifecycle
event) and the timer that renews them."""

import azure.functions as func

from core.bootstrap import container
from core.store.records import Tenant
from core.subscriptions import (
    SUBSCRIPTIONS_QUEUE,
    Lifecycle,
    accept,
    decode,
    parse_notifications,
    request_reconciles,
    validation_token,
)
from functions.http import endpoint

bp = func.Blueprint()


@bp.route(route="v1/graph/notifications", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint
async def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    """The validation handshake (`?validationToken=` echoed as text/plain), or notifications:
    checked and queued within Graph's 3 seconds, then 202 whatever they were."""
    token = validation_token(req.params.get("validationToken"))
    if token is not None:
        return func.HttpResponse(token, mimetype="text/plain", headers={"X-Content-Type-Options": "nosniff"})
    app = await container()
    queues = (app.sync_queue(), app.import_queue(), app.subscription_queue())
    notifications = parse_notifications(req.get_body())
    await accept(app.tables, queues, req.params.get("tenantId"), req.params.get("target"), notifications)
    return func.HttpResponse(status_code=202)


@bp.queue_trigger(arg_name="msg", queue_name=SUBSCRIPTIONS_QUEUE, connection="AzureWebJobsStorage")
async def graph_subscriptions(msg: func.QueueMessage) -> None:
    """Reconcile one tenant's subscriptions, or handle one lifecycle event. A failure a retry
    may fix fails the message, so the queue retries it."""
    message = decode(msg.get_body().decode("utf-8"))
    app = await container()
    tenant = await app.tables.repo(Tenant).get(*Tenant.key(message.tenant_id))
    if tenant is None:
        return  # deleted: its rows went with it; Graph's subscriptions run out on their own
    manager = app.subscriptions()
    if isinstance(message, Lifecycle):
        await manager.lifecycle(tenant, message.target, message.event)
    else:
        await manager.reconcile(tenant)


@bp.timer_trigger(schedule="%GRAPH_SUBSCRIPTION_SCHEDULE%", arg_name="timer", run_on_startup=False)
async def graph_subscriptions_timer(timer: func.TimerRequest) -> None:
    """One reconcile per tenant: renewals before expiry, and anything a lost message left."""
    app = await container()
    await request_reconciles(app.tables, app.subscription_queue())
