"""Mail document import: a tenant's imports (`…/mail-imports/{id}`), "Run import" (`POST
…/mail-imports/{id}/run`), the fan-out timer and the `mail-import` queue worker."""

import azure.functions as func

from core.bootstrap import container
from core.mail.config import MailImportService, import_view
from core.mail.importer import MAIL_QUEUE, ImportRequest, fan_out, request_run
from core.tenants import TenantContext
from core.versions import public_etag
from functions.http import json_response, read_json, tenant_endpoint

bp = func.Blueprint()

IMPORTS = "v1/tenants/{tenantId}/mail-imports"
IMPORT = IMPORTS + "/{importId}"


def _imports(ctx: TenantContext) -> MailImportService:
    return MailImportService(ctx.app.tables, ctx.app.graphs, ctx.tenant, ctx.app.clock)


@bp.route(route=IMPORT, methods=["PUT"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def put_mail_import(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    config, created = await _imports(ctx).put(
        req.route_params["importId"],
        read_json(req),
        if_match=req.headers.get("If-Match"),
        if_none_match=req.headers.get("If-None-Match"),
    )
    await ctx.app.configuration_changed(ctx.tenant_id)
    etag = public_etag(config)
    return json_response(
        import_view(config, None), status=201 if created else 200, headers={"ETag": etag} if etag else None
    )


@bp.route(route=IMPORT, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def get_mail_import(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    config, state = await _imports(ctx).get(req.route_params["importId"])
    etag = public_etag(config)
    return json_response(import_view(config, state), headers={"ETag": etag} if etag else None)


@bp.route(route=IMPORT, methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def delete_mail_import(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    await _imports(ctx).delete(req.route_params["importId"], if_match=req.headers.get("If-Match"))
    await ctx.app.configuration_changed(ctx.tenant_id)
    return func.HttpResponse(status_code=204)


@bp.route(route=IMPORTS, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def list_mail_imports(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    configs = await _imports(ctx).list()
    return json_response({"mailImports": [import_view(c, None) for c in configs]})


@bp.route(route=IMPORT + "/run", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def run_mail_import(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """ "Run import": queue a run of this import now; 202 with the run id its worker records."""
    config, _ = await _imports(ctx).get(req.route_params["importId"])
    run_id = await request_run(ctx.app.import_queue(), config)
    return json_response({"runId": run_id}, status=202)


@bp.timer_trigger(schedule="%MAIL_IMPORT_SCHEDULE%", arg_name="timer", run_on_startup=False)
async def mail_import_fanout(timer: func.TimerRequest) -> None:
    """One queue message per enabled import of every enabled tenant."""
    app = await container()
    await fan_out(app.tables, app.import_queue(), clock=app.clock)


@bp.queue_trigger(arg_name="msg", queue_name=MAIL_QUEUE, connection="AzureWebJobsStorage")
async def mail_import(msg: func.QueueMessage) -> None:
    """Run one import. A failed run fails the message, so the queue retries it (the ledger
    makes that safe) and after maxDequeueCount parks it in `mail-import-poison`; a Retry-After
    longer than the queue's retry re-queues the request with that delay instead."""
    request = ImportRequest.parse(msg.get_body().decode("utf-8", "replace"))
    app = await container()
    await app.mail_importer().run_queued(request)
