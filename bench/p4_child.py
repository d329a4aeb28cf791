"""TARGETS P4: one cold process, started by `bench/p4_cold_start.py` (see there).

    python bench/p4_child.py product|baseline    # reads its spec (JSON) from stdin

A script of its own, run by path, so that nothing but the standard library loads before what
is measured: not the `bench` package and its imports (aiohttp, the emulator's client).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TENANT = "p4-bench"
RESOURCE = "tech-1"


def _work_order(index: int) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=2 + index)).replace(hour=9, minute=0, second=0, microsecond=0)
    return {
        "resourceId": RESOURCE,
        "hostAppointmentId": f"WO-{index}",
        "version": 1,
        "subject": f"Service visit {index}",
        "body": "Work order from the ERP",
        "location": "Storgata 1, Oslo",
        "start": start.strftime("%Y-%m-%dT%H:%M:%S"),
        "end": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
        "timeZone": "UTC",
    }


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _measured(
    started: float, imported: float, done: float, modules: int, ok: bool, answer: str
) -> dict[str, Any]:
    """What a child reports: its split (imports, the call), peak RSS and modules loaded."""
    return {
        "import_s": imported - started,
        "call_s": done - imported,
        "peak_mb": _peak_mb(),
        "modules_at_import": modules,
        "modules": len(sys.modules),
        "ok": ok,
        "answer": answer,
    }


# --- the children -----------------------------------------------------------------------------------


def child_product(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    import azure.functions as func

    import function_app

    imported = time.perf_counter()
    modules = len(sys.modules)
    [function] = [f for f in function_app.app.get_functions() if f.get_function_name() == "push_appointments"]
    handler = function.get_user_function()
    request = func.HttpRequest(
        method="POST",
        url=f"http://localhost/api/v1/tenants/{TENANT}/appointments",
        headers={"authorization": f"Bearer {spec['api_key']}", "content-type": "application/json"},
        params={},
        route_params={"tenantId": TENANT},
        body=json.dumps({"appointments": [_work_order(spec["index"])]}).encode(),
    )

    async def call() -> tuple[int, dict[str, Any], float]:
        from core import bootstrap

        response = await handler(request)
        done = time.perf_counter()
        await bootstrap.reset()  # closes the clients; not timed
        return response.status_code, json.loads(response.get_body()), done

    status, answer, done = asyncio.run(call())
    [item] = answer["appointments"]
    ok = status == 202 and item.get("result") == "created"
    return _measured(
        started, imported, done, modules, ok, f"HTTP {status} {item.get('status')}/{item.get('result')}"
    )


def child_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    import ssl

    import httpx
    from azure.identity.aio import ClientSecretCredential
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
    from msgraph.generated.models.event import Event
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.location import Location
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph.graph_service_client import GraphServiceClient
    from msgraph_core import GraphClientFactory  # type: ignore[import-untyped]

    imported = time.perf_counter()
    modules = len(sys.modules)
    order = _work_order(spec["index"])

    async def call() -> tuple[Any, float]:
        credential = ClientSecretCredential(
            spec["directory"],
            spec["client_id"],
            spec["secret"],
            authority=spec["authority"],
            disable_instance_discovery=True,
            connection_verify=spec["ca"],
        )
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=["https://graph.microsoft.com/.default"], allowed_hosts=["127.0.0.1"]
        )
        context = ssl.create_default_context(cafile=spec["ca"])
        http = GraphClientFactory.create_with_default_middleware(client=httpx.AsyncClient(verify=context))
        adapter = GraphRequestAdapter(auth, client=http)
        adapter.base_url = spec["graph_url"]
        client = GraphServiceClient(request_adapter=adapter)
        event = Event(
            subject=order["subject"],
            body=ItemBody(content_type=BodyType.Text, content=order["body"]),
            start=DateTimeTimeZone(date_time=order["start"], time_zone=order["timeZone"]),
            end=DateTimeTimeZone(date_time=order["end"], time_zone=order["timeZone"]),
            location=Location(display_name=order["location"]),
            transaction_id=f"p4-baseline-{spec['index']}",
        )
        created = await client.users.by_user_id(spec["upn"]).events.post(event)
        done = time.perf_counter()
        await http.aclose()
        await credential.close()
        return created, done

    created, done = asyncio.run(call())
    ok = created is not None and created.subject == order["subject"] and bool(created.id)
    return _measured(started, imported, done, modules, ok, "Event " + ("parsed" if ok else "missing"))


# What the product's first Graph-touching call cannot do without: the worker's library, the
# Table and Queue SDKs (aiohttp under their .aio clients), azure-identity, msgraph-sdk's request
# adapter with msgraph-core and kiota's middleware (httpx, httpcore with h2), pydantic.
LIBRARIES = (
    "azure.functions",
    "azure.data.tables.aio",
    "azure.storage.queue.aio",
    "azure.identity.aio",
    "msgraph.graph_request_adapter",
    "msgraph_core",
    "kiota_http.middleware",
    "httpx",
    "httpcore",
    "pydantic",
)


def child_libraries(spec: dict[str, Any]) -> dict[str, Any]:
    """The floor: only the libraries imported (and the one TLS context every HTTPS client
    builds, with the public roots), none of the bridge's code, no I/O."""
    import importlib
    import ssl

    started = time.perf_counter()
    for name in LIBRARIES:
        importlib.import_module(name)
    ssl.create_default_context()
    imported = time.perf_counter()
    return _measured(started, imported, imported, len(sys.modules), True, "imported")


def child_main(kind: str) -> int:
    spec = json.loads(sys.stdin.readline())
    child = {"product": child_product, "baseline": child_baseline, "libraries": child_libraries}[kind]
    result = child(spec)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project root
    sys.exit(child_main(sys.argv[1]))
