"""Delivery to host systems, end to end: the real `function_app` on the local Functions host
against Azurite, events emitted through the container's outbox, a real aiohttp webhook receiver
on loopback, and the pull feed over real HTTP.

Backoffs, the retry budget and the gap grace are set tiny through app settings (nothing in
core fakes time), so an outage and recovery plays out in seconds."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

import function_app
from core import bootstrap
from core.apikeys import new_key
from core.bootstrap import Container
from core.host import POISON_QUEUE
from core.host.delivery import FUNCTION as DELIVER
from core.host.records import DeliveryCursor, OutboxEntry
from core.host.store import OutboxStore
from core.secrets import secret_name
from core.store import next_sequence
from core.store.records import Run, RunStatus, Tenant
from core.store.sequences import OUTBOX
from devtools.funchost import FunctionHost
from tests.host_snippet import load_verifier
from tests.waiting import eventually
from tests.webhook_receiver import Received, WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
FAST = {
    "WEBHOOK_TIMEOUT_SECONDS": "2",
    "WEBHOOK_BACKOFF_BASE_SECONDS": "0.2",
    "WEBHOOK_BACKOFF_CAP_SECONDS": "1",
    "WEBHOOK_RETRY_BUDGET_SECONDS": "600",
    "OUTBOX_GAP_GRACE_SECONDS": "1",
}


@dataclass
class Stack:
    host: FunctionHost
    app: Container
    env: dict[str, str]


@dataclass
class HostTenant:
    tenant_id: str
    api_key: str
    signing_secret: str


@pytest.fixture
def start(
    storage_connection_string: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    @asynccontextmanager
    async def running(**settings: str) -> AsyncIterator[Stack]:
        env = {
            "AzureWebJobsStorage": storage_connection_string,
            "BRIDGE_TABLE_PREFIX": "t" + uuid.uuid4().hex[:10],
            "LOCAL_SECRETS_DIR": str(tmp_path / "secrets"),
            "HOUSEKEEPING_SCHEDULE": "0 0 0 1 1 *",
            "MAIL_IMPORT_SCHEDULE": "0 0 0 1 1 *",
            "GRAPH_SUBSCRIPTION_SCHEDULE": "0 0 0 1 1 *",
            "CALENDAR_SYNC_SCHEDULE": "0 0 0 1 1 *",
            **FAST,
            **settings,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        await bootstrap.reset()
        try:
            async with FunctionHost(function_app.app, host_json=ROOT / "host.json", port=0, env=env) as host:
                yield Stack(host, await bootstrap.container(), env)
        finally:
            await bootstrap.reset()

    return running


async def add_tenant(app: Container, webhook_url: str | None) -> HostTenant:
    tenant_id = "tb-" + uuid.uuid4().hex[:8]
    key = new_key(tenant_id, app.clock())
    signing = "whsec_" + secrets.token_urlsafe(24)
    name = secret_name("tenant", tenant_id, "webhook-signing")
    await app.secrets.set(name, signing)
    await app.tables.repo(Tenant).insert(
        Tenant(tenant_id=tenant_id, webhook_url=webhook_url, webhook_secret_name=name, api_keys=[key.entry])
    )
    return HostTenant(tenant_id, key.value, signing)


async def emit(app: Container, tenant: HostTenant, n: int, start: int = 0) -> list[str]:
    outbox = app.outbox()
    events = [await outbox.emit(tenant.tenant_id, "test.happened", {"n": i}) for i in range(start, start + n)]
    return [e.event_id for e in events]


async def head_attempts(app: Container, tenant: HostTenant, sequence: int) -> int:
    row = await OutboxStore(app.tables).get(tenant.tenant_id, sequence)
    return row.attempts if isinstance(row, OutboxEntry) else 0


def ids(received: list[Received]) -> list[str]:
    return [r.event_id for r in received]


# --- webhook delivery -------------------------------------------------------------------------


async def test_given_emitted_events_then_the_host_gets_each_once_in_order_and_the_readme_snippet_verifies_it(
    start: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with WebhookReceiver() as receiver, start() as stack:
        tenant = await add_tenant(stack.app, receiver.url)
        emitted = await emit(stack.app, tenant, 10)
        await eventually(lambda: len(receiver.received) >= 10, what="10 deliveries")
        await asyncio.sleep(0.5)  # room for a duplicate, which must not come
    assert ids(receiver.received) == emitted
    check = load_verifier()
    for seq, got in enumerate(receiver.received, start=1):
        assert got.headers["M365Bridge-Sequence"] == str(seq)
        assert got.headers["M365Bridge-Event-Type"] == "test.happened"
        assert json.loads(got.body)["id"] == got.event_id
        assert check(tenant.signing_secret, got.body, got.headers["M365Bridge-Signature"]) is True
    # the documented check rejects a tampered body, another secret, and the same delivery replayed later
    first = receiver.received[0]
    signature = first.headers["M365Bridge-Signature"]
    assert check(tenant.signing_secret, first.body.replace(b'"n":0', b'"n":9'), signature) is False
    assert check("whsec_guess", first.body, signature) is False
    later = time.time() + 301
    monkeypatch.setattr(time, "time", lambda: later)
    assert check(tenant.signing_secret, first.body, signature) is False


async def test_r8_given_the_host_down_then_up_then_every_event_arrives_once_in_order(
    start: Callable[..., Any], record_property: Callable[[str, Any], None]
) -> None:
    """TARGETS R8. GIVEN the receiver down (connection refused), events emitted, retries backing
    off; then the receiver up but answering 503, more events emitted; WHEN it answers 200 again
    THEN every event arrives exactly once, in emit order, and nothing was dead-lettered."""
    receiver = WebhookReceiver(answer=lambda _: 503)
    async with start() as stack:
        tenant = await add_tenant(stack.app, receiver.url)
        emitted = await emit(stack.app, tenant, 3)
        await eventually(lambda: head_attempts(stack.app, tenant, 1), what="a first refused attempt")
        await eventually(
            lambda: _at_least(head_attempts(stack.app, tenant, 1), 2), what="a retry of the refused head"
        )
        await receiver.start()  # up, but failing
        try:
            emitted += await emit(stack.app, tenant, 2, start=3)
            await eventually(lambda: len(receiver.received) >= 2, what="two 503 answers")
            receiver.answer = lambda _: 200
            await eventually(lambda: len(receiver.accepted) >= 5, what="all five delivered")
            await asyncio.sleep(0.5)
        finally:
            await receiver.stop()
        head = await OutboxStore(stack.app.tables).get(tenant.tenant_id, 1)
        assert isinstance(head, OutboxEntry)
        assert head.attempts >= 4
        assert head.delivered_at is not None
        cursor = await OutboxStore(stack.app.tables).cursors.get(*DeliveryCursor.key(tenant.tenant_id))
        assert cursor is not None
        assert cursor.settled_through == 5
        runs = [r async for r in stack.app.tables.runs().list(tenant.tenant_id) if r.function == DELIVER]
    accepted = ids(receiver.accepted)
    record_property("operations", len(emitted))
    record_property("faults_injected", head.attempts - 1)  # refused and 503 attempts, all of the head
    record_property("lost", len(set(emitted) - set(accepted)))
    record_property("duplicated", len(accepted) - len(set(accepted)))
    assert accepted == emitted
    assert all(r.event_id == emitted[0] for r in receiver.received if r.status == 503)
    assert sum(r.counts.get("delivered", 0) for r in runs) == 5
    assert not any(r.counts.get("dead_lettered") for r in runs)


class SteppedClock:
    """The app's clock (`Container.clock`), moved by the test: an hour passes in seconds."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


HOUR = 3600
STEP = 300  # five minutes of the app's time per step: the default backoff cap


async def test_r8_host_webhook_down_for_an_hour_then_events_queue_up_and_are_delivered_in_order_none_dropped(
    start: Callable[..., Any], storage_connection_string: str, record_property: Callable[[str, Any], None]
) -> None:
    """TARGETS R8 with the shipped retry settings (backoff 2 s doubling to a 300 s cap, a 24 h
    budget) and a controllable clock instead of real waiting. GIVEN the host's webhook down
    (connection refused) WHEN an event is emitted every five minutes for an hour, the delivery
    sweep timer fires and the dispatcher retries the head whenever its backoff is due THEN
    every event stays queued (the cursor does not move, nothing is dead-lettered, the feed
    holds them all); WHEN the webhook is back THEN every event arrives once, in emit order."""
    clock = SteppedClock()
    receiver = WebhookReceiver()  # not started: connection refused
    settings = {
        "WEBHOOK_BACKOFF_BASE_SECONDS": "2",
        "WEBHOOK_BACKOFF_CAP_SECONDS": str(STEP),
        "WEBHOOK_RETRY_BUDGET_SECONDS": "86400",
    }
    async with start(**settings) as stack:
        stack.app.clock = clock  # the container the host's functions use
        tenant = await add_tenant(stack.app, receiver.url)
        store = OutboxStore(stack.app.tables)
        down_at = clock()
        emitted = await emit(stack.app, tenant, 1)
        await eventually(lambda: head_attempts(stack.app, tenant, 1), what="a first refused attempt")
        for step in range(1, HOUR // STEP + 1):
            clock.advance(STEP)
            emitted += await emit(stack.app, tenant, 1, start=step)
            await stack.host.invoke_timer("deliver_sweep")

            async def retried(attempts: int = step + 1) -> bool:
                return await head_attempts(stack.app, tenant, 1) >= attempts

            await eventually(retried, what=f"the head retried at minute {step * STEP // 60}")
        await asyncio.sleep(0.5)
        attempts_while_down = await head_attempts(stack.app, tenant, 1)
        downtime = (clock() - down_at).total_seconds()
        cursor = await store.cursors.get(*DeliveryCursor.key(tenant.tenant_id))
        assert cursor is not None
        assert cursor.settled_through == 0  # queued up: nothing passed the head
        status, _, body = await get_events(
            stack, tenant.tenant_id, tenant.api_key, after="0", limit=str(len(emitted) + 10)
        )
        assert (status, [e["id"] for e in body["events"]]) == (200, emitted)

        await receiver.start()  # the host is back
        try:
            clock.advance(STEP)
            await stack.host.invoke_timer("deliver_sweep")
            await eventually(lambda: len(receiver.accepted) >= len(emitted), what="every event delivered")
            await asyncio.sleep(0.5)  # room for a duplicate, which must not come
        finally:
            await receiver.stop()
        cursor = await store.cursors.get(*DeliveryCursor.key(tenant.tenant_id))
        rows = [r async for r in store.rows_after(tenant.tenant_id, 0) if isinstance(r, OutboxEntry)]
        runs = [r async for r in stack.app.tables.runs().list(tenant.tenant_id) if r.function == DELIVER]
    async with QueueClient.from_connection_string(storage_connection_string, POISON_QUEUE) as poison:
        try:
            parked = [
                json.loads(base64.b64decode(m.content)) for m in await poison.peek_messages(max_messages=32)
            ]
        except ResourceNotFoundError:
            parked = []
    delivered = ids(receiver.accepted)
    record_property("operations", len(emitted))
    record_property("downtime_seconds", int(downtime))
    record_property("faults_injected", attempts_while_down)  # refused POSTs while down
    record_property("lost", len(set(emitted) - set(delivered)))
    record_property("duplicated", len(delivered) - len(set(delivered)))
    record_property("dead_lettered", sum(r.counts.get("dead_lettered", 0) for r in runs))
    assert downtime >= HOUR
    assert attempts_while_down >= HOUR // STEP + 1  # retried all along, never given up
    assert delivered == emitted  # each once, in emit order
    assert [r.event_id for r in receiver.received] == emitted  # and nothing else reached the host
    assert cursor is not None
    assert cursor.settled_through == len(emitted)
    assert all(r.delivered_at is not None and r.dead_lettered_at is None for r in rows)
    assert not any(r.counts.get("dead_lettered") for r in runs)
    assert [e for e in parked if e.get("tenantId") == tenant.tenant_id] == []


async def _at_least(value: Awaitable[int], n: int) -> bool:
    return await value >= n


async def test_given_the_retry_budget_spent_then_the_envelope_is_in_the_poison_queue_and_the_run_failed(
    start: Callable[..., Any], storage_connection_string: str
) -> None:
    """GIVEN a host that keeps failing one event, and a 3 s retry budget
    THEN that event's envelope lands in host-delivery-poison, the run that gave up is `failed`,
    and the events after it are still delivered, in order."""
    poisoned: list[str] = []
    receiver = WebhookReceiver(answer=lambda got: 500 if got.event_id in poisoned else 200)
    async with receiver, start(WEBHOOK_RETRY_BUDGET_SECONDS="3") as stack:
        tenant = await add_tenant(stack.app, receiver.url)
        first = await emit(stack.app, tenant, 1)
        poisoned += await emit(stack.app, tenant, 1, start=1)
        last = await emit(stack.app, tenant, 1, start=2)
        await eventually(lambda: len(receiver.accepted) >= 2, within=30, what="the events around it")

        async def failed_runs() -> list[Run]:
            runs = stack.app.tables.runs().list(tenant.tenant_id)
            return [r async for r in runs if r.function == DELIVER and r.status is RunStatus.FAILED]

        failed = await eventually(failed_runs, what="the failed run to be recorded")
        dead = await OutboxStore(stack.app.tables).get(tenant.tenant_id, 2)
    assert ids(receiver.accepted) == first + last
    assert isinstance(dead, OutboxEntry)
    assert dead.dead_lettered_at is not None
    assert dead.delivered_at is None
    assert len(failed) == 1
    assert (failed[0].error, failed[0].counts.get("dead_lettered")) == ("EventsDeadLettered", 1)
    async with QueueClient.from_connection_string(storage_connection_string, POISON_QUEUE) as poison:
        messages = [m async for m in poison.receive_messages(max_messages=32)]
    envelopes = [json.loads(base64.b64decode(m.content)) for m in messages]
    (envelope,) = [e for e in envelopes if e["id"] == poisoned[0]]
    assert envelope["tenantId"] == tenant.tenant_id
    assert set(envelope) == {"id", "type", "tenantId", "occurredAt", "data"}


async def test_given_two_dispatchers_racing_on_one_tenant_then_nothing_is_posted_twice_or_out_of_order(
    start: Callable[..., Any],
) -> None:
    async with WebhookReceiver(delay=0.02) as receiver, start() as stack:
        tenant = await add_tenant(stack.app, receiver.url)
        emitted = await emit(stack.app, tenant, 15)
        for _ in range(20):
            if len(receiver.received) >= 15:
                break
            await asyncio.gather(*(stack.app.dispatcher().dispatch(tenant.tenant_id) for _ in range(2)))
        await asyncio.sleep(0.5)  # and whatever the host's own trigger does meanwhile
    assert ids(receiver.received) == emitted


async def test_given_a_lost_nudge_then_the_safety_net_timer_delivers(start: Callable[..., Any]) -> None:
    async with WebhookReceiver() as receiver, start() as stack:
        tenant = await add_tenant(stack.app, receiver.url)
        # an event committed whose nudge never reached the queue
        sequence = await next_sequence(stack.app.tables.counters(), OUTBOX, tenant.tenant_id)
        entry = OutboxEntry(
            tenant_id=tenant.tenant_id,
            sequence=sequence,
            event_id="lost-nudge",
            type="test.happened",
            occurred_at=stack.app.clock(),
            created_at=stack.app.clock(),
        )
        await OutboxStore(stack.app.tables).events.insert(entry)
        await asyncio.sleep(0.5)
        assert receiver.received == []
        await stack.host.invoke_timer("deliver_sweep")
        await eventually(lambda: receiver.received, what="the swept delivery")
    assert ids(receiver.received) == ["lost-nudge"]


# --- the feed -----------------------------------------------------------------------------------


async def get_events(stack: Stack, tenant_id: str, key: str | None, **params: str) -> tuple[int, str, Any]:
    headers = {"x-functions-key": stack.host.function_key}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = f"{stack.host.base_url}/api/v1/tenants/{tenant_id}/events"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers, params=params) as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


async def test_the_feed_pages_every_event_in_order_delivered_or_not(start: Callable[..., Any]) -> None:
    async with WebhookReceiver() as receiver, start() as stack:
        tenant = await add_tenant(stack.app, receiver.url)
        emitted = await emit(stack.app, tenant, 3)
        await eventually(lambda: len(receiver.received) >= 3, what="three deliveries")
        await receiver.stop()  # the host goes down: the next two stay undelivered
        emitted += await emit(stack.app, tenant, 2, start=3)
        seen: list[dict[str, Any]] = []
        cursor = "0"
        for _ in range(10):
            status, _, body = await get_events(
                stack, tenant.tenant_id, tenant.api_key, after=cursor, limit="2"
            )
            assert status == 200
            if not body["events"]:
                break
            seen += body["events"]
            cursor = body["next"]
    assert [e["id"] for e in seen] == emitted
    assert cursor == "5"
    assert seen[0] == {
        "id": emitted[0],
        "type": "test.happened",
        "tenantId": tenant.tenant_id,
        "occurredAt": seen[0]["occurredAt"],
        "data": {"n": 0},
    }


async def test_the_feed_never_skips_an_event_whose_row_commits_late(start: Callable[..., Any]) -> None:
    """GIVEN event 2's sequence reserved but its row not written yet, and event 3 written
    WHEN the host pages THEN it stops at 1; once 2 lands, the next page returns 2 then 3."""
    async with start(OUTBOX_GAP_GRACE_SECONDS="60") as stack:
        tenant = await add_tenant(stack.app, None)
        (first,) = await emit(stack.app, tenant, 1)
        late = await next_sequence(stack.app.tables.counters(), OUTBOX, tenant.tenant_id)
        (third,) = await emit(stack.app, tenant, 1, start=2)
        status, _, body = await get_events(stack, tenant.tenant_id, tenant.api_key)
        assert (status, [e["id"] for e in body["events"]], body["next"]) == (200, [first], "1")
        entry = OutboxEntry(
            tenant_id=tenant.tenant_id,
            sequence=late,
            event_id="late",
            type="test.happened",
            occurred_at=stack.app.clock(),
            created_at=stack.app.clock(),
        )
        await OutboxStore(stack.app.tables).events.insert(entry)
        status, _, body = await get_events(stack, tenant.tenant_id, tenant.api_key, after=body["next"])
    assert (status, [e["id"] for e in body["events"]], body["next"]) == (200, ["late", third], "3")


@pytest.mark.parametrize("after", ["abc", "-1", "1e3", "99"])
async def test_a_bad_cursor_is_a_400_problem(start: Callable[..., Any], after: str) -> None:
    async with start() as stack:
        tenant = await add_tenant(stack.app, None)
        await emit(stack.app, tenant, 1)
        status, content_type, body = await get_events(stack, tenant.tenant_id, tenant.api_key, after=after)
    assert (status, content_type, body["status"]) == (400, "application/problem+json", 400)
    assert "'after'" in body["detail"]


async def test_another_tenants_key_gets_404_and_no_key_401(start: Callable[..., Any]) -> None:
    async with start() as stack:
        mine = await add_tenant(stack.app, None)
        theirs = await add_tenant(stack.app, None)
        await emit(stack.app, mine, 2)
        status, content_type, body = await get_events(stack, mine.tenant_id, theirs.api_key)
        assert (status, content_type) == (404, "application/problem+json")
        assert "events" not in body
        status, _, _ = await get_events(stack, mine.tenant_id, None)
        assert status == 401
        status, _, body = await get_events(stack, mine.tenant_id, mine.api_key)
        assert status == 200
        assert len(body["events"]) == 2
