"""The demo's onboarding jobs: the API document a host integrates against, "Test settings" on the
demo tenant, and a user connecting their own calendar to a tenant in delegated mode."""

from __future__ import annotations

import json
import ssl
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from devtools.demo_support import DemoReceiver, as_check, say, wait_for


async def job_openapi(http: aiohttp.ClientSession, host: Any) -> None:
    """A host developer fetches the API document with the Functions key and checks it."""
    from openapi_spec_validator import OpenAPIV31SpecValidator

    url = f"{host.base_url}/api/v1/openapi.json"
    async with http.get(url, headers={"x-functions-key": host.function_key}) as resp:
        document = await resp.json(content_type=None)
        status = resp.status
    errors = list(OpenAPIV31SpecValidator(document).iter_errors())
    operations = sum(len(methods) for methods in document["paths"].values())
    mark = "✓" if status == 200 and not errors else "✗"
    say(
        f"{mark} job openapi: GET /api/v1/openapi.json (HTTP {status}) "
        f"→ OpenAPI {document['openapi']}, {operations} operations on {len(document['paths'])} paths, "
        f"{'valid' if not errors else f'{len(errors)} errors'} (openapi-spec-validator)"
    )


def _summary(report: dict[str, Any]) -> str:
    counts = Counter(line["status"] for line in report["checks"])
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


async def job_test_settings(http: aiohttp.ClientSession, host: Any, tenant_key: dict[str, str]) -> None:
    """The guides' "Test settings" button: the host monitors an address that has no mailbox,
    presses it and reads the one failed line's fix; without that address, all is green."""
    base = host.base_url + "/api/v1/tenants/contoso-demo"
    ghost = "ghost@contoso-demo.onmicrosoft.com"
    async with http.put(f"{base}/presence/monitors/{ghost}", json={}, headers=tenant_key) as resp:
        assert resp.status == 201, await resp.text()
    async with http.post(f"{base}/test", headers=tenant_key) as resp:
        broken = await resp.json(content_type=None)
    failed = next((line for line in broken["checks"] if line["status"] == "failed"), None)
    async with http.delete(f"{base}/presence/monitors/{ghost}", headers=tenant_key) as resp:
        assert resp.status == 204, await resp.text()
    async with http.post(f"{base}/test", headers=tenant_key) as resp:
        fixed = await resp.json(content_type=None)
        status = resp.status
    checks = sorted(
        {line["check"] for line in fixed["checks"]}, key=[c["check"] for c in fixed["checks"]].index
    )
    mark = "✓" if failed and fixed["ok"] else "✗"
    said = (
        f"{failed['check']} {failed['target']}: fix {failed['fix'][:60]!r}…" if failed else "nothing failed"
    )
    say(
        f"{mark} job test settings: POST …/test with an address that has no mailbox monitored → "
        f"ok={broken['ok']} ({_summary(broken)}); {said}; without it (HTTP {status}) ok={fixed['ok']} "
        f"({_summary(fixed)}: {', '.join(checks)})"
    )


async def job_connect(
    http: aiohttp.ClientSession, host: Any, demo: Any, operator_key: str, receiver: DemoReceiver
) -> None:
    """Delegated mode: an operator onboards a tenant whose users connect their own calendars;
    the host sends Grady to the Microsoft sign-in, his browser comes back to the bridge, and his
    calendar syncs to the host with his own token."""
    graph = demo.graph
    app = graph.add_app(demo.tenant.id, delegated_permissions=["Calendars.ReadWrite", "User.Read"])
    fkey = {"x-functions-key": host.function_key}
    body = {
        "id": "contoso-self",
        "displayName": "Contoso (each user connects)",
        "graph": {"tenantId": demo.tenant.id, "clientId": app.client_id, "credentialMode": "delegated"},
        "host": {"webhookUrl": receiver.url},
        "defaults": {"language": "nb", "timeZone": "Europe/Oslo"},
    }
    operator = {**fkey, "Authorization": f"Bearer {operator_key}"}
    async with http.post(f"{host.base_url}/api/v1/operator/tenants", json=body, headers=operator) as resp:
        created = await resp.json(content_type=None)
        assert resp.status == 201, created
    key = {**fkey, "Authorization": f"Bearer {created['apiKey']}"}
    base = host.base_url + "/api/v1/tenants/contoso-self"
    grady = demo.grady.user_principal_name
    query = {
        "resourceId": "grady-desk",
        "account": grady,
        "returnUrl": "https://erp.contoso.example/connected",
    }
    async with http.get(f"{base}/connect/start", params=query, headers=key, allow_redirects=False) as resp:
        sign_in = resp.headers["Location"]
    browser_tls = ssl.create_default_context(cafile=str(graph.ca_cert))
    async with http.get(sign_in, allow_redirects=False, ssl=browser_tls) as resp:  # Microsoft's sign-in
        back = resp.headers["Location"]
    async with http.get(back, allow_redirects=False) as resp:  # the bridge's callback, no key
        landed = resp.headers.get("Location", "")
    async with http.post(f"{base}/resources/grady-desk/sync", headers=key) as resp:
        run_id = (await resp.json(content_type=None))["runId"]

    def synced() -> list[dict[str, Any]]:
        events = (json.loads(b) for b, _ in receiver.received)
        return [e for e in events if e["tenantId"] == "contoso-self" and e["type"] == "appointment.upserted"]

    await wait_for("job connect (sync)", as_check(synced))
    async with http.get(f"{base}/connect/accounts", headers=key) as resp:
        accounts = (await resp.json(content_type=None))["accounts"]
    async with http.post(f"{base}/test", headers=key) as resp:
        report = await resp.json(content_type=None)
    token = next(line for line in report["checks"] if line["check"] == "token")
    challenge = parse_qs(urlsplit(sign_in).query).get("code_challenge_method", ["-"])[0]
    say(
        f"✓ job connect: delegated tenant contoso-self; GET …/connect/start → Microsoft sign-in (PKCE "
        f"{challenge}) → callback → {landed.split('?')[0]}?{urlsplit(landed).query.split('&')[0]}; "
        f"run {run_id[:8]}… brought {len(synced())} appointment(s) of {grady} with his own token; "
        f"GET …/connect/accounts → {[(a['account'].split('@')[0], a['status']) for a in accounts]}; "
        f"test settings: token {token['target']} {token['status']}"
    )
