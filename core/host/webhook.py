"""The host webhook port: POST one signed body, get the status or a named error.

`AiohttpWebhookSender` is the real one (one session per process, a total timeout per POST,
no redirects: a signed event goes to the configured URL or nowhere); `InMemoryWebhookSender`
is its fake. Both pass tests/contract/test_webhook_contract.py. Errors carry the status or the
kind of failure, never the response body (a host's error page may echo anything).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from core.errors import BridgeError
from core.settings import is_loopback_host


class WebhookError(BridgeError):
    """A delivery attempt failed; the event stays at the head and is retried."""


class WebhookRejected(WebhookError):
    """The host answered with a status other than 2xx."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"the host answered HTTP {status}")


class WebhookUnreachable(WebhookError):
    """No answer: connection refused or reset, DNS, TLS."""


class WebhookTimeout(WebhookError):
    """The host did not answer within the timeout."""


class WebhookMisconfigured(WebhookError):
    """The tenant's webhook cannot be used as configured (URL, signing secret)."""


def check_webhook_url(url: str) -> None:
    """https only; plain http only on loopback (local tests)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if (
        not host
        or parts.scheme not in ("https", "http")
        or (parts.scheme == "http" and not is_loopback_host(host))
    ):
        raise WebhookMisconfigured("the webhook URL must be an https:// URL (http:// only on loopback)")


class WebhookSender(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST `body`; return the 2xx status, or raise a WebhookError."""
        ...

    async def close(self) -> None: ...


class AiohttpWebhookSender:
    def __init__(
        self, timeout_seconds: float = 10.0, *, connect_timeout_seconds: float | None = None
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_seconds, connect=min(timeout_seconds, connect_timeout_seconds or timeout_seconds)
        )
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # made on first use, inside the running loop (aiohttp requires one)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"User-Agent": "m365-bridge"}
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        check_webhook_url(url)
        try:
            async with self._client().post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as resp:
                status = resp.status
                await resp.read()  # drain, so the connection can be reused; never looked at
        except TimeoutError:
            raise WebhookTimeout("the host did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise WebhookUnreachable(f"the host could not be reached ({type(exc).__name__})") from None
        if not 200 <= status < 300:
            raise WebhookRejected(status)
        return status

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


@dataclass
class Posted:
    url: str
    body: bytes
    headers: dict[str, str]


Behaviour = Callable[[Posted], int | WebhookError]


@dataclass
class InMemoryWebhookSender:
    """The fake: `behaviour` maps each POST to a status or an error to raise (default 200), and
    every POST is recorded in `posts`. `delay` makes each POST take that long."""

    behaviour: Behaviour = field(default=lambda _: 200)
    delay: float = 0.0
    posts: list[Posted] = field(default_factory=list)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        check_webhook_url(url)
        posted = Posted(url, body, dict(headers))
        self.posts.append(posted)
        await asyncio.sleep(self.delay)
        outcome = self.behaviour(posted)
        if isinstance(outcome, WebhookError):
            raise outcome
        if not 200 <= outcome < 300:
            raise WebhookRejected(outcome)
        return outcome

    async def close(self) -> None:
        return None
