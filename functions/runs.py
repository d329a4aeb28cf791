"""`GET /api/v1/tenants/{tenantId}/runs`: the tenant's recent runs, newest first; `function=`
narrows them to one job, `runId=` to the runs of one request (a push's or a sync's tracking id)."""

import azure.functions as func

from core.run_history import parse_query, parse_run_id, recent_runs, run_view
from core.tenants import TenantContext
from functions.http import json_response, tenant_endpoint

bp = func.Blueprint()


@bp.route(route="v1/tenants/{tenantId}/runs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def list_runs(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    function, limit = parse_query(req.params.get("function"), req.params.get("limit"))
    run_id = parse_run_id(req.params.get("runId"))
    runs = await recent_runs(
        ctx.app.tables.runs(), ctx.tenant_id, function=function, run_id=run_id, limit=limit
    )
    return json_response({"runs": [run_view(run) for run in runs]})
