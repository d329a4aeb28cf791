"""Outlook's limits and the emulator's faults and counters, seen through the real msgraph-sdk:
the fifth concurrent request to one mailbox gets 429 ApplicationThrottled/MailboxConcurrency with
Retry-After (and the SDK's retry then succeeds), a spent request budget refills when time passes,
injected 503/429/latency/dropped connections, and per-mailbox request and byte counters."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from tests.integration.graph_clients import Seed, config, event, native, seeded

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def seed(tmp_path: Path) -> AsyncIterator[Seed]:
    async with seeded(tmp_path / "graph") as s:
        yield s


async def test_fifth_concurrent_request_to_a_mailbox_gets_429_with_retry_after(seed: Seed) -> None:
    seed.graph.latency = 0.3  # long enough that five requests overlap
    await seed.credential.get_token("https://graph.microsoft.com/.default")  # token first, then the race
    calendar = seed.user_client(seed.adele.id).calendar
    responses = await asyncio.gather(
        *(native(calendar.get(request_configuration=config(native=True, retries=0))) for _ in range(5))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 200, 429]
    throttled = next(r for r in responses if r.status_code == 429)
    assert int(throttled.headers["Retry-After"]) >= 1
    error = throttled.json()["error"]
    assert error["code"] == "ApplicationThrottled"
    assert error["message"] == "Application is over its MailboxConcurrency limit."
    assert error["innerError"]["code"] == "MailboxConcurrency"
    counters = seed.graph.counters(seed.adele.user_principal_name)
    assert (counters.requests, counters.max_concurrent, counters.throttled) == (5, 4, 1)
    # Another mailbox has its own four slots.
    assert seed.graph.counters(seed.megan.id).requests == 0


async def test_the_sdk_waits_out_the_429_and_every_request_succeeds(seed: Seed) -> None:
    seed.graph.latency = 0.2
    await seed.credential.get_token("https://graph.microsoft.com/.default")
    calendar = seed.user_client(seed.adele.id).calendar
    started = time.monotonic()
    results = await asyncio.gather(*(calendar.get() for _ in range(5)))
    assert all(r is not None and r.is_default_calendar for r in results)
    assert time.monotonic() - started >= 1.0  # the retry honoured Retry-After: 1
    counters = seed.graph.counters(seed.adele.id)
    assert counters.throttled == 1
    assert counters.requests == 6


async def test_a_spent_request_budget_refills_when_the_window_passes(seed: Seed) -> None:
    seed.graph.configure(budget=3, budget_window_seconds=600)
    user = seed.user_client(seed.adele.id)
    for _ in range(3):
        await user.calendar.get()
    refused = await native(user.calendar.get(request_configuration=config(native=True, retries=0)))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    assert refused.json()["error"]["innerError"]["code"] == "MailboxRequests"
    other = await seed.user_client(seed.megan.id).calendar.get()  # the budget is per mailbox
    assert other is not None
    seed.graph.advance(dt.timedelta(minutes=10))
    assert await user.calendar.get() is not None


async def test_injected_faults_503_then_retry_latency_and_a_dropped_connection(seed: Seed) -> None:
    graph = seed.graph
    user = seed.user_client(seed.adele.id)
    graph.add_fault(status=503, retry_after=1, mailbox=seed.adele.user_principal_name)
    assert await user.calendar.get() is not None  # the SDK waited a second and retried
    assert graph.counters(seed.adele.id).faults == 1

    graph.add_fault(status=504, path=r"/calendar$")
    raw = await native(user.calendar.get(request_configuration=config(native=True, retries=0)))
    assert raw.status_code == 504
    assert raw.json()["error"]["code"] == "gatewayTimeout"

    graph.add_fault(status=429, retry_after=7, method="GET")
    raw = await native(user.calendar.get(request_configuration=config(native=True, retries=0)))
    assert raw.status_code == 429
    assert raw.headers["Retry-After"] == "7"

    graph.add_fault("latency", latency_seconds=0.3)
    started = time.monotonic()
    await user.calendar.get()
    assert time.monotonic() - started >= 0.3

    graph.add_fault("drop", mailbox=seed.megan.id)
    assert await user.calendar.get() is not None  # another mailbox: not affected
    with pytest.raises(httpx.RemoteProtocolError):
        await seed.user_client(seed.megan.id).calendar.get()
    assert graph.ctx.faults.pending() == []


async def test_counters_count_requests_and_the_bytes_each_way(seed: Seed) -> None:
    """The counters agree with what the client sent and received, byte for byte."""
    sent: list[int] = []
    received: list[int] = []

    async def on_request(request: httpx.Request) -> None:
        if "/users/" in request.url.path:
            sent.append(len(request.content))

    async def on_response(response: httpx.Response) -> None:
        if "/users/" in response.request.url.path:
            received.append(len(await response.aread()))

    seed.http.event_hooks = {"request": [on_request], "response": [on_response]}
    user = seed.user_client(seed.adele.user_principal_name)
    created = await user.events.post(event("counted", "2024-05-01T09:00:00", "2024-05-01T10:00:00"))
    assert created is not None
    assert created.id
    await user.events.by_event_id(created.id).get()
    with pytest.raises(ODataError):
        await user.events.by_event_id("AAMkADdoesnotexist").get()
    counters = seed.graph.counters(seed.adele.id)
    assert counters.requests == 3
    assert counters.bytes_in == sum(sent) > 0
    assert counters.bytes_out == sum(received) > 0
    assert counters.user_principal_name == seed.adele.user_principal_name
    seed.graph.reset_counters()
    assert seed.graph.counters(seed.adele.id).requests == 0
