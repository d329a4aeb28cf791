"""The real `function_app` on the local Functions host against Azurite: what a host system
and an operator see of the foundation (health, the housekeeping timer, a bad setting)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

import function_app
from core import __version__, bootstrap
from core.housekeeping import FUNCTION as HOUSEKEEPING
from core.settings import Settings
from core.store import open_tables
from core.store.records import SYSTEM_SCOPE, Run, RunStatus
from devtools.funchost import FunctionHost

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def app_env(
    storage_connection_string: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[dict[str, str]]:
    env = {
        "AzureWebJobsStorage": storage_connection_string,
        "BRIDGE_TABLE_PREFIX": "t" + uuid.uuid4().hex[:10],
        "LOCAL_SECRETS_DIR": str(tmp_path / "secrets"),
        "HOUSEKEEPING_SCHEDULE": "0 0 0 1 1 *",
        "MAIL_IMPORT_SCHEDULE": "0 0 0 1 1 *",
        "GRAPH_SUBSCRIPTION_SCHEDULE": "0 0 0 1 1 *",
        "CALENDAR_SYNC_SCHEDULE": "0 0 0 1 1 *",
        "RUN_RETENTION_DAYS": "30",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    await bootstrap.reset()
    yield env
    await bootstrap.reset()


@pytest.fixture
async def host(app_env: dict[str, str]) -> AsyncIterator[FunctionHost]:
    async with FunctionHost(function_app.app, host_json=ROOT / "host.json", port=0, env=app_env) as running:
        yield running


async def get(host: FunctionHost, path: str, key: str | None) -> tuple[int, str, dict[str, object]]:
    headers = {"x-functions-key": key} if key else {}
    async with aiohttp.ClientSession() as http, http.get(host.base_url + path, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


async def test_given_the_local_stack_when_health_is_called_then_every_storage_service_is_reachable(
    host: FunctionHost,
) -> None:
    status, content_type, body = await get(host, "/api/v1/health", host.function_key)
    assert status == 200
    assert content_type == "application/json"
    assert body["status"] == "ok"
    assert body["version"] == __version__
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert set(checks) == {"tables", "queues", "blobs"}
    assert all(check["ok"] for check in checks.values())


async def test_given_no_functions_key_when_health_is_called_then_401(host: FunctionHost) -> None:
    status, _, _ = await get(host, "/api/v1/health", None)
    assert status == 401


async def test_given_unreachable_storage_when_health_is_called_then_503_names_each_failed_service(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a port nothing listens on: every storage call fails to connect
    dead = "http://127.0.0.1:9/devstoreaccount1"
    conn = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint={dead};QueueEndpoint={dead};TableEndpoint={dead};"
    )
    env = {**app_env, "AzureWebJobsStorage": conn}
    monkeypatch.setenv("AzureWebJobsStorage", conn)
    async with FunctionHost(function_app.app, host_json=ROOT / "host.json", port=0, env=env) as down:
        status, _, body = await get(down, "/api/v1/health", down.function_key)
    assert status == 503
    assert body["status"] == "degraded"
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert {name for name, check in checks.items() if not check["ok"]} == {"tables", "queues", "blobs"}
    assert "a2V5" not in str(body)


async def test_given_a_missing_setting_when_an_endpoint_runs_then_a_problem_names_it(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUN_RETENTION_DAYS", "soon")
    async with FunctionHost(function_app.app, host_json=ROOT / "host.json", port=0, env=app_env) as host:
        status, content_type, body = await get(host, "/api/v1/health", host.function_key)
    assert status == 503
    assert content_type == "application/problem+json"
    assert body["title"] == "Service misconfigured"
    assert "RUN_RETENTION_DAYS" in str(body["detail"])


async def test_given_old_and_recent_runs_when_housekeeping_runs_on_demand_then_only_old_ones_go(
    host: FunctionHost, app_env: dict[str, str]
) -> None:
    settings = Settings.from_env(app_env)
    now = datetime.now(UTC)
    async with open_tables(settings.storage, settings.table_prefix) as tables:
        await tables.create_tables()
        runs = tables.runs()
        old = [
            Run(scope="tenant-a", run_id=f"old{i}", function="x", started_at=now - timedelta(days=31 + i))
            for i in range(3)
        ]
        recent = Run(scope="tenant-a", run_id="recent", function="x", started_at=now - timedelta(days=29))
        for run in [*old, recent]:
            await runs.insert(run)

        # the admin API, as an operator (or the demo) would trigger it
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{host.base_url}/admin/functions/housekeeping",
                json={"input": ""},
                headers={"x-functions-key": host.master_key},
            ) as resp,
        ):
            assert resp.status == 202
        await host.invoke_timer("housekeeping")  # and in process: returns once it has run

        left = [r async for r in runs.list("tenant-a")]
        assert [r.run_id for r in left] == ["recent"]
        mine = [r async for r in runs.list(SYSTEM_SCOPE) if r.function == HOUSEKEEPING]
        assert len(mine) == 2
        assert all(r.status is RunStatus.SUCCEEDED for r in mine)
        assert sum(r.counts["runs_pruned"] for r in mine) == 3
