"""`make demo`: the whole local stack on a demo tenant, every built job run end to end.

Starts Azurite and the local Functions host with the real `function_app`, then drives the app
the way its users do — a host system over HTTPS with the function key, an operator through the
admin API — printing one line per job. It keeps serving until Ctrl-C (or SIGTERM), then stops
every process it started. `--once` stops after the jobs (used by the test of this script).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from devtools.azurite import Azurite

ROOT = Path(__file__).resolve().parent.parent
DEMO_TENANT = "demo-tenant"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def say(line: str = "") -> None:
    print(line, flush=True)


async def job_health(http: aiohttp.ClientSession, base_url: str, key: str) -> None:
    async with http.get(f"{base_url}/api/v1/health", headers={"x-functions-key": key}) as resp:
        body: dict[str, Any] = await resp.json(content_type=None)
    checks = ", ".join(
        f"{name} {'ok' if c['ok'] else 'FAILED: ' + str(c['error'])} ({c['latency_ms']} ms)"
        for name, c in body["checks"].items()
    )
    mark = "✓" if resp.status == 200 else "✗"
    say(f"{mark} job health: HTTP {resp.status} {body['status']}, version {body['version']}: {checks}")
    if resp.status != 200:
        raise SystemExit(1)


async def job_housekeeping(http: aiohttp.ClientSession, base_url: str, master_key: str) -> None:
    from core.bootstrap import container
    from core.housekeeping import FUNCTION
    from core.store.records import SYSTEM_SCOPE, Run, RunStatus

    app = await container()
    runs = app.tables.runs()
    now = datetime.now(UTC)
    retention = app.settings.run_retention_days
    # The demo tenant's history: two runs past retention, one inside it.
    for days, run_id in ((retention + 5, "demo-old-1"), (retention + 1, "demo-old-2"), (1, "demo-recent")):
        await runs.upsert(
            Run(scope=DEMO_TENANT, run_id=run_id, function="demo", started_at=now - timedelta(days=days))
        )

    started = datetime.now(UTC)
    async with http.post(
        f"{base_url}/admin/functions/{FUNCTION}", json={"input": ""}, headers={"x-functions-key": master_key}
    ) as resp:
        accepted = resp.status
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = [
            r
            async for r in runs.list(SYSTEM_SCOPE)
            if r.function == FUNCTION and r.started_at >= started and r.status is not RunStatus.RUNNING
        ]
        if done:
            run = done[0]
            left = [r.run_id async for r in runs.list(DEMO_TENANT)]
            say(
                f"✓ job housekeeping: admin API HTTP {accepted}, run {run.run_id} {run.status.value}, "
                f"pruned {run.counts.get('runs_pruned', 0)} runs older than {retention} days; "
                f"{DEMO_TENANT} keeps {left}"
            )
            return
        await asyncio.sleep(0.1)
    say("✗ job housekeeping: no finished run within 30 s")
    raise SystemExit(1)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--port", type=int, default=7071, help="host port (0: any free port)")
    parser.add_argument("--once", action="store_true", help="stop after the jobs instead of serving")
    args = parser.parse_args(argv)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    demo_dir = ROOT / ".local" / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    with Azurite() as azurite:
        say("m365-bridge demo — local stack")
        for service, port in sorted(azurite.ports.items()):
            say(f"  Azurite {service:<5} http://127.0.0.1:{port}/devstoreaccount1")
        env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "BRIDGE_TABLE_PREFIX": "demo",
            "SECRETS_PROVIDER": "local",
            "LOCAL_SECRETS_DIR": str(demo_dir / "secrets"),
            "HOUSEKEEPING_SCHEDULE": os.environ.get("HOUSEKEEPING_SCHEDULE", "0 17 3 * * *"),
            "RUN_RETENTION_DAYS": "30",
        }
        os.environ.update(env)  # the app reads its settings from the process environment

        import function_app
        from core import bootstrap
        from devtools.funchost import FunctionHost

        port = args.port if args.port == 0 or _port_free(args.port) else 0
        async with FunctionHost(function_app.app, host_json=ROOT / "host.json", port=port, env=env) as host:
            for line in host.describe():
                say(line)
            say()
            async with aiohttp.ClientSession() as http:
                await job_health(http, host.base_url, host.function_key)
                await job_housekeeping(http, host.base_url, host.master_key)
            if not args.once:
                say()
                say(f"ready: serving {host.base_url} — Ctrl-C stops every process")
                await stop.wait()
            await bootstrap.reset()
        say("stopped: functions host")
    say("stopped: Azurite")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        sys.exit(130)
