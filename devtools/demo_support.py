"""What the demo's jobs share: printing a line, waiting for something to happen, and the host
system's webhook receiver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def say(line: str = "") -> None:
    print(line, flush=True)


class DemoReceiver:
    """The demo host system's webhook endpoint: records what it receives and checks each
    signature with the snippet from the README (docs/webhook_verification.py)."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.arrived = asyncio.Event()
        self._runner: aiohttp.web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        from aiohttp import web

        async def hook(request: web.Request) -> web.Response:
            self.received.append((await request.read(), dict(request.headers)))
            self.arrived.set()
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hooks/m365", hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hooks/m365"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def wait_for(what: str, done: Callable[[], Awaitable[bool]], seconds: float = 60) -> None:
    """Poll `done` until it says so; after `seconds`, the job failed: say so and stop the demo."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await done():
            return
        await asyncio.sleep(0.2)
    say(f"✗ {what}: not done within {seconds:.0f} s")
    raise SystemExit(1)


def as_check(check: Callable[[], object]) -> Callable[[], Awaitable[bool]]:
    """A plain condition as something `wait_for` can poll."""

    async def run() -> bool:
        return bool(check())

    return run


async def run_function(http: aiohttp.ClientSession, host: Any, name: str) -> int:
    """Run a timer or queue function now through the Functions host's admin API (the master
    key); the HTTP status (202: started)."""
    async with http.post(
        f"{host.base_url}/admin/functions/{name}",
        json={"input": ""},
        headers={"x-functions-key": host.master_key},
    ) as resp:
        return resp.status
