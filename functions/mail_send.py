"""Sending mail for host systems: sender profiles (`…/mail-senders/{id}`), the mail a host
hands over (`POST …/mail-senders/{id}/messages`), where it stands (`GET …/messages/{messageId}`)
and the `mail-send` queue worker that sends it."""

import azure.functions as func

from core.bootstrap import container
from core.mail.outgoing import SEND_QUEUE, decode_send, message_view
from core.mail.senders import SenderService, sender_view
from core.tenants import TenantContext
from core.versions import public_etag
from functions.http import json_response, read_json, tenant_endpoint

bp = func.Blueprint()

SENDERS = "v1/tenants/{tenantId}/mail-senders"
SENDER = SENDERS + "/{senderId}"
MESSAGES = SENDER + "/messages"


def _senders(ctx: TenantContext) -> SenderService:
    return SenderService(ctx.app.tables, ctx.tenant, ctx.app.clock)


@bp.route(route=SENDER, methods=["PUT"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def put_mail_sender(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    sender, created = await _senders(ctx).put(
        req.route_params["senderId"],
        read_json(req),
        if_match=req.headers.get("If-Match"),
        if_none_match=req.headers.get("If-None-Match"),
    )
    etag = public_etag(sender)
    return json_response(
        sender_view(sender), status=201 if created else 200, headers={"ETag": etag} if etag else None
    )


@bp.route(route=SENDER, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_mail_sender(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    sender = await _senders(ctx).get(req.route_params["senderId"])
    etag = public_etag(sender)
    return json_response(sender_view(sender), headers={"ETag": etag} if etag else None)


@bp.route(route=SENDER, methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def delete_mail_sender(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    await _senders(ctx).delete(req.route_params["senderId"], if_match=req.headers.get("If-Match"))
    return func.HttpResponse(status_code=204)


@bp.route(route=SENDERS, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def list_mail_senders(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    return json_response({"mailSenders": [sender_view(s) for s in await _senders(ctx).list()]})


@bp.route(route=MESSAGES, methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def send_message(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """202 with the message's id and status; the same idempotencyKey again answers the same."""
    sender = await _senders(ctx).get(req.route_params["senderId"])
    row, _ = await ctx.app.outgoing(ctx.tenant).submit(sender, read_json(req))
    collection = MESSAGES.format(tenantId=ctx.tenant_id, senderId=sender.sender_id)
    location = f"/api/{collection}/{row.message_id}"
    return json_response(message_view(row), status=202, headers={"Location": location})


@bp.route(route=MESSAGES + "/{messageId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_message(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    sender = await _senders(ctx).get(req.route_params["senderId"])
    row = await ctx.app.outgoing(ctx.tenant).get(sender, req.route_params["messageId"])
    return json_response(message_view(row))


@bp.queue_trigger(arg_name="msg", queue_name=SEND_QUEUE, connection="AzureWebJobsStorage")
async def mail_send(msg: func.QueueMessage) -> None:
    """Send one accepted mail. A transient failure fails the message so the queue retries it;
    the fifth delivery fails the mail for good instead (the host hears `mail.failed`)."""
    tenant_id, message_id = decode_send(msg.get_body().decode("utf-8"))
    app = await container()
    await app.mail_send_worker().run(tenant_id, message_id, delivery=msg.dequeue_count or 1)
