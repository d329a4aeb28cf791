"""A real webhook receiver on loopback for tests: records every POST (raw body and headers),
answers with a settable status, can be slow, and can be stopped and restarted on the same port
(connection refused in between), the way a host system goes down and comes back."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    status: int  # what the receiver answered

    @property
    def event_id(self) -> str:
        return self.headers["M365Bridge-Event-Id"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WebhookReceiver:
    """`answer(received) -> status` decides each response (default 200)."""

    port: int = field(default_factory=free_port)
    answer: Callable[[Received], int] = lambda _: 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/m365"

    @property
    def accepted(self) -> list[Received]:
        """Deliveries answered with 2xx, in arrival order."""
        return [r for r in self.received if 200 <= r.status < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        received = Received(body, dict(request.headers), 0)
        received.status = self.answer(received)
        self.received.append(received)
        if 300 <= received.status < 400:
            return web.Response(status=received.status, headers={"Location": "http://127.0.0.1:9/elsewhere"})
        return web.Response(status=received.status, text="ok" if received.status < 300 else "nope")

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hooks/m365", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> WebhookReceiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
