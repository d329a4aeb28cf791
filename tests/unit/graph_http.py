"""A scripted Graph at the network edge (`httpx.MockTransport`) for the real gateway's tests.

Everything above the transport is real: `GraphApiGateway`, the sender, msgraph-sdk's
`GraphRequestAdapter` with its auth provider and middleware, and httpx. The `GraphScript`
records every request as it left the process and counts requests in flight per mailbox.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
from azure.core.credentials import AccessToken

from core.graph.client import GraphClientOptions
from core.graph.gateway import GraphApiGateway, open_gateway
from core.graph.limits import MailboxLimiter
from core.graph.sender import RetryPolicy

BASE_URL = "https://graph.test/v1.0"
TOKEN = "eyJ0eXAi.unit-test-token.c2lnbmF0dXJl"  # distinctive, so a leak is unmistakable

Handler = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


class StaticCredential:
    """An async azure-identity credential that hands out one token and records the scopes."""

    def __init__(self, token: str = TOKEN, error: Exception | None = None) -> None:
        self.token = token
        self.error = error
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.error is not None:
            raise self.error
        return AccessToken(self.token, 2**31 - 1)

    async def close(self) -> None:
        return None


def mailbox_of(request: httpx.Request) -> str:
    parts = request.url.raw_path.decode().split("?")[0].split("/")
    return unquote(parts[parts.index("users") + 1]) if "users" in parts else ""


def graph_json(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body if body is not None else {}).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )


def graph_error(
    status: int, code: str, message: str = "", headers: dict[str, str] | None = None
) -> httpx.Response:
    return graph_json(status, {"error": {"code": code, "message": message}}, headers)


@dataclass
class GraphScript:
    handler: Handler
    latency: float = 0.0
    requests: list[httpx.Request] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    peak: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        mailbox = mailbox_of(request).casefold()
        self.in_flight[mailbox] += 1
        self.peak[mailbox] = max(self.peak[mailbox], self.in_flight[mailbox])
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            else:
                await asyncio.sleep(0)
            result = self.handler(request)
            if not isinstance(result, httpx.Response):
                result = await result
            return result
        finally:
            self.in_flight[mailbox] -= 1

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)


class SleepRecorder:
    """Replaces asyncio.sleep in the sender: records the waits, yields control, waits 0."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


def gateway_for(
    script: GraphScript,
    *,
    credential: StaticCredential | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    retry: RetryPolicy | None = None,
    limiter: MailboxLimiter | None = None,
    base_url: str = BASE_URL,
) -> GraphApiGateway:
    return open_gateway(
        credential or StaticCredential(),  # type: ignore[arg-type]
        GraphClientOptions(base_url=base_url),
        limiter=limiter,
        retry=retry,
        transport=script.transport,
        sleep=sleep or SleepRecorder(),
    )


class LazyBody(httpx.AsyncByteStream):
    """A response body produced piece by piece, never whole: `size` bytes of a repeating
    pattern in `piece`-byte pieces."""

    def __init__(self, size: int, piece: int = 64 * 1024) -> None:
        self.size = size
        self.piece = piece
        self.produced = 0

    _CYCLE = bytes(range(251)) * (1 + 1024 * 1024 // 251 + 1)

    @classmethod
    def pattern(cls, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length) of the body (a 251-byte cycle; length <= 1 MiB)."""
        start = offset % 251
        return cls._CYCLE[start : start + length]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.produced < self.size:
            length = min(self.piece, self.size - self.produced)
            yield self.pattern(self.produced, length)
            self.produced += length
            await asyncio.sleep(0)
