"""The operator API: create, read, update, delete and re-key tenants (`/api/v1/operator/…`).

Every route needs the Functions key and the operator key (`operator_endpoint`). Secrets and API
keys are write-only: a create returns the tenant's first API key (and a generated webhook
signing secret) once, a rotation returns the new key once, and nothing else ever shows them.
"""

from datetime import timedelta

import azure.functions as func

from core.bootstrap import Container
from core.store.records import Tenant
from core.tenant_schema import tenant_view
from core.tenants import IssuedTenant, TenantService
from core.versions import public_etag
from functions.http import json_response, operator_endpoint, read_json

bp = func.Blueprint()

TENANTS = "v1/operator/tenants"
TENANT = TENANTS + "/{tenantId}"


def _service(app: Container) -> TenantService:
    return TenantService(
        app.tables, app.secrets, app.clock, grace=timedelta(hours=app.settings.api_key_grace_hours)
    )


def _tenant_response(
    app: Container, issued: Tenant | IssuedTenant, status: int = 200, **headers: str
) -> func.HttpResponse:
    tenant = issued.tenant if isinstance(issued, IssuedTenant) else issued
    body = tenant_view(tenant, app.clock(), admin_consent_url=app.graphs.admin_consent_url(tenant))
    if isinstance(issued, IssuedTenant):
        body["apiKey"] = issued.api_key
        if issued.webhook_secret is not None:
            body["webhookSecret"] = issued.webhook_secret
    etag = public_etag(tenant)
    all_headers = {**headers, **({"ETag": etag} if etag else {})}
    # a response carrying a key or secret must not be kept by any cache on the way
    if isinstance(issued, IssuedTenant):
        all_headers["Cache-Control"] = "no-store"
    return json_response(body, status=status, headers=all_headers)


@bp.route(route=TENANTS, methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@operator_endpoint
async def create_tenant(req: func.HttpRequest, app: Container) -> func.HttpResponse:
    issued = await _service(app).create(read_json(req))
    location = f"/api/{TENANTS}/{issued.tenant.tenant_id}"
    return _tenant_response(app, issued, status=201, Location=location)


@bp.route(route=TENANTS, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@operator_endpoint
async def list_tenants(req: func.HttpRequest, app: Container) -> func.HttpResponse:
    now = app.clock()
    tenants = await _service(app).list()
    views = [tenant_view(t, now, admin_consent_url=app.graphs.admin_consent_url(t)) for t in tenants]
    return json_response({"tenants": views})


@bp.route(route=TENANT, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@operator_endpoint
async def get_tenant(req: func.HttpRequest, app: Container) -> func.HttpResponse:
    return _tenant_response(app, await _service(app).get(req.route_params["tenantId"]))


@bp.route(route=TENANT, methods=["PATCH"], auth_level=func.AuthLevel.FUNCTION)
@operator_endpoint
async def update_tenant(req: func.HttpRequest, app: Container) -> func.HttpResponse:
    tenant = await _service(app).update(
        req.route_params["tenantId"], read_json(req), if_match=req.headers.get("If-Match")
    )
    return _tenant_response(app, tenant)


@bp.route(route=TENANT, methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@operator_endpoint
async def delete_tenant(req: func.HttpRequest, app: Container) -> func.HttpResponse:
    await _service(app).delete(req.route_params["tenantId"], if_match=req.headers.get("If-Match"))
    return func.HttpResponse(status_code=204)


@bp.route(route=TENANT + "/keys/rotate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@operator_endpoint
async def rotate_tenant_key(req: func.HttpRequest, app: Container) -> func.HttpResponse:
    issued = await _service(app).rotate_key(req.route_params["tenantId"], read_json(req, optional=True))
    return _tenant_response(app, issued)
