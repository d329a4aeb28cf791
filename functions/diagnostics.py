"""Test settings (`POST …/tenants/{tenantId}/test`): the guides' button that checks a tenant's
set-up against Microsoft Graph and answers one line per check, with the fix for each failure."""

import azure.functions as func

from core.diagnostics import TenantDiagnostics
from core.tenants import TenantContext
from functions.http import json_response, tenant_endpoint

bp = func.Blueprint()


@bp.route(route="v1/tenants/{tenantId}/test", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@tenant_endpoint
async def check_settings(req: func.HttpRequest, ctx: TenantContext) -> func.HttpResponse:
    """200 with the report `{tenantId, ok, checkedAt, truncated, checks}`, whatever it found."""
    diagnostics = TenantDiagnostics(
        ctx.app.tables, ctx.app.graphs, authority=ctx.app.settings.graph_authority_host, clock=ctx.app.clock
    )
    report = await diagnostics.run(ctx.tenant)
    return json_response(report.to_dict(), headers={"Cache-Control": "no-store"})
