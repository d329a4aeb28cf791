"""GET /api/v1/openapi.json: the OpenAPI 3.1 document of this API (`core/openapi.py`), built on
the first request and kept for the process."""

import functools
import json

import azure.functions as func

from core.bootstrap import container
from functions.http import endpoint

bp = func.Blueprint()


@functools.cache
def _document(version: str) -> str:
    # Imported here, not at module level: the catalog is not needed to start the app (cold
    # start), only by the first request for the document. Serialised once per process too.
    from core.openapi import build_openapi

    return json.dumps(build_openapi(version), ensure_ascii=False)


@bp.route(route="v1/openapi.json", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@endpoint
async def get_openapi(req: func.HttpRequest) -> func.HttpResponse:
    app = await container(prepare=False)  # the version, from where health reads it
    return func.HttpResponse(_document(app.settings.version), mimetype="application/json", charset="utf-8")
