"""One contract for the host-webhook port, run against the fake and against the real aiohttp
sender posting to a real receiver on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from core.host.webhook import (
    AiohttpWebhookSender,
    InMemoryWebhookSender,
    Posted,
    WebhookError,
    WebhookMisconfigured,
    WebhookRejected,
    WebhookSender,
    WebhookTimeout,
    WebhookUnreachable,
)
from tests.webhook_receiver import Received, WebhookReceiver, free_port

BODY = '{"id":"e1","data":{"x":"æ"}}'.encode()
HEADERS = {"M365Bridge-Event-Id": "e1", "Content-Type": "application/json; charset=utf-8"}


@dataclass
class Host:
    """What a contract test controls: the sender, the host's URL, its answer, what it got."""

    sender: WebhookSender
    url: str
    unreachable_url: str
    statuses: list[int]
    bodies: list[tuple[bytes, dict[str, str]]]

    def answer(self, status: int) -> None:
        self.statuses[:] = [status]


@pytest.fixture(params=["fake", "aiohttp"])
async def host(request: pytest.FixtureRequest) -> AsyncIterator[Host]:
    statuses = [200]
    bodies: list[tuple[bytes, dict[str, str]]] = []
    dead = f"http://127.0.0.1:{free_port()}/hooks"
    if request.param == "fake":

        def behave(post: Posted) -> int | WebhookError:
            if post.url == dead:
                return WebhookUnreachable("refused")
            bodies.append((post.body, post.headers))
            return statuses[0]

        yield Host(InMemoryWebhookSender(behave), "https://host.example/hooks", dead, statuses, bodies)
        return

    def answer(received: Received) -> int:
        bodies.append((received.body, received.headers))
        return statuses[0]

    sender = AiohttpWebhookSender(timeout_seconds=2)
    async with WebhookReceiver(answer=answer) as receiver:
        yield Host(sender, receiver.url, dead, statuses, bodies)
    await sender.close()


async def test_a_2xx_returns_the_status_and_the_host_gets_the_exact_body_and_headers(host: Host) -> None:
    for status in (200, 202, 204):
        host.answer(status)
        assert await host.sender.post(host.url, BODY, HEADERS) == status
    body, headers = host.bodies[-1]
    assert body == BODY
    assert headers["M365Bridge-Event-Id"] == "e1"


@pytest.mark.parametrize("status", [400, 404, 410, 500, 503, 302])
async def test_any_other_status_is_rejected_naming_it(host: Host, status: int) -> None:
    host.answer(status)
    with pytest.raises(WebhookRejected) as err:
        await host.sender.post(host.url, BODY, HEADERS)
    assert err.value.status == status
    assert "nope" not in str(err.value)  # the host's answer is never quoted
    assert len(host.bodies) == 1  # a redirect is not followed


async def test_a_closed_port_is_unreachable(host: Host) -> None:
    with pytest.raises(WebhookUnreachable):
        await host.sender.post(host.unreachable_url, BODY, HEADERS)


@pytest.mark.parametrize("url", ["http://host.example/hooks", "ftp://host.example/x", "not a url"])
async def test_plain_http_off_loopback_is_refused_before_sending(host: Host, url: str) -> None:
    with pytest.raises(WebhookMisconfigured):
        await host.sender.post(url, BODY, HEADERS)
    assert host.bodies == []


async def test_the_real_sender_gives_up_after_its_timeout() -> None:
    sender = AiohttpWebhookSender(timeout_seconds=0.3)
    async with WebhookReceiver(delay=1) as receiver:
        with pytest.raises(WebhookTimeout):
            await sender.post(receiver.url, BODY, HEADERS)
    await sender.close()
