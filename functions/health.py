"""GET /api/v1/health: storage reachability and version."""

import azure.functions as func

from core.bootstrap import container
from core.health import check_health
from functions.http import endpoint, json_response

bp = func.Blueprint()


@bp.route(route="v1/health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@endpoint
async def health(req: func.HttpRequest) -> func.HttpResponse:
    app = await container(prepare=False)  # the tables probe prepares, and reports failure
    report = await check_health(app.settings.version, app.storage_probes())
    return json_response(report.to_dict(), status=200 if report.status == "ok" else 503)
