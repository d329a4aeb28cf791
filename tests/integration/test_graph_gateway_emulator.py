"""Issue 3's acceptance for the Graph gateway, through the real production path: `open_gateway`
(msgraph-sdk's request adapter, auth provider and middleware over httpx) with a real
azure-identity `ClientSecretCredential`, against the Graph emulator on loopback HTTPS. No
hand-made HTTP: the tests act through the gateway and read the emulator's own state and
counters (what the server saw) through its Python control API.

One emulator serves the module; each test makes its own tenant and mailboxes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from core.bootstrap import Container, build_container
from core.graph import (
    ConsentMissing,
    Event,
    EventDraft,
    MailboxLimiter,
    Removed,
    SyncStateExpired,
    Throttled,
    TokenUnavailable,
    transaction_id,
)
from core.graph.client import connect
from core.graph.gateway import GraphApiGateway
from core.graph.sender import Call, GraphSender, RetryPolicy
from core.settings import Settings
from devtools.graph_emulator import GraphEmulator
from devtools.graph_emulator.mail_ops import file
from tests.contract.graph_world import EmulatedTenant

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

BASE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # a Monday, safely in the future
WINDOW = (BASE - timedelta(days=1), BASE + timedelta(days=30))


@pytest.fixture(scope="module")
async def emulator() -> AsyncIterator[GraphEmulator]:
    async with GraphEmulator(latency=0.0) as graph:
        yield graph


@pytest.fixture
async def tenant(emulator: GraphEmulator) -> AsyncIterator[EmulatedTenant]:
    limits = emulator.ctx.limits.to_json()
    yield EmulatedTenant.create(emulator)
    # Whatever a test changed on the shared server is put back.
    emulator.configure(**limits)
    emulator.clear_faults()


def _container(emulator: GraphEmulator, tmp_path: Path, **env: str) -> Container:
    """The app's composition root with the Graph settings pointing at the emulator."""
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "LOCAL_SECRETS_DIR": str(tmp_path / "secrets"),
            "GRAPH_BASE_URL": emulator.graph_url,
            "GRAPH_AUTHORITY_HOST": emulator.authority,
            "GRAPH_CA_BUNDLE": str(emulator.ca_cert),
            **env,
        }
    )
    return build_container(settings)


def _mailbox(tenant: EmulatedTenant, name: str = "adele") -> str:
    upn = f"{name}-{uuid.uuid4().hex[:8]}@{tenant.tenant.domain}"
    tenant.emulator.add_user(tenant.tenant.id, upn)
    return upn


def _draft(subject: str, day: int = 0) -> EventDraft:
    start = BASE + timedelta(days=day)
    return EventDraft(subject, start, start + timedelta(hours=1))


def _outlook_event(tenant: EmulatedTenant, mailbox: str, subject: str, day: int = 0) -> str:
    """Someone creates an event in Outlook (through the emulator's control API)."""
    start = BASE + timedelta(days=day)
    record, _ = tenant.emulator.calendar.create_event(
        mailbox,
        {
            "subject": subject,
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {
                "dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                "timeZone": "UTC",
            },
        },
    )
    return record.id


async def _round(
    gateway: GraphApiGateway, mailbox: str, link: str | None = None, page_size: int = 100
) -> tuple[list[Event | Removed], str, int]:
    """One delta round: (items, its delta link, pages)."""
    items: list[Event | Removed] = []
    pages = 0
    last = None
    async for page in gateway.calendar_delta(
        mailbox, None, start=WINDOW[0], end=WINDOW[1], delta_link=link, page_size=page_size
    ):
        pages += 1
        items.extend(page.items)
        last = page.delta_link
    assert last
    return items, last, pages


def _recording_sleep(slept: list[float]) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(seconds)

    return sleep


# --- delta -------------------------------------------------------------------------------------


async def test_given_a_full_round_when_outlook_changes_things_then_delta_returns_only_those_changes(
    tenant: EmulatedTenant,
) -> None:
    mailbox = _mailbox(tenant)
    ids = [_outlook_event(tenant, mailbox, f"e{i}", day=i) for i in range(5)]
    async with tenant.gateway() as gateway:
        items, link, pages = await _round(gateway, mailbox, page_size=2)
        assert {i.id for i in items} == set(ids)
        assert pages == 3  # 2 + 2 + 1: the first round is the whole page set

        added = _outlook_event(tenant, mailbox, "added", day=9)
        tenant.emulator.calendar.update_event(mailbox, ids[0], {"subject": "e0 renamed"})
        tenant.emulator.calendar.delete_event(mailbox, ids[1])
        changes, link, _ = await _round(gateway, mailbox, link, page_size=2)

        assert {i.id: i.subject for i in changes if isinstance(i, Event)} == {
            added: "added",
            ids[0]: "e0 renamed",
        }
        # The deleted event comes back as Removed (Graph's `@removed`), nothing else of it.
        assert [i.id for i in changes if isinstance(i, Removed)] == [ids[1]]
        assert (await _round(gateway, mailbox, link))[0] == []


async def test_given_an_expired_delta_link_when_followed_then_the_gateway_raises_sync_state_expired(
    tenant: EmulatedTenant,
) -> None:
    mailbox = _mailbox(tenant)
    _outlook_event(tenant, mailbox, "kept")
    async with tenant.gateway() as gateway:
        _, link, _ = await _round(gateway, mailbox)
        assert tenant.emulator.expire_delta_tokens(mailbox) >= 1
        with pytest.raises(SyncStateExpired) as expired:
            await _round(gateway, mailbox, link)
        assert (expired.value.status, expired.value.code) == (410, "SyncStateNotFound")
        assert expired.value.operation == "calendar_delta"
        items, _, _ = await _round(gateway, mailbox)  # a full round starts over
        assert [i.subject for i in items if isinstance(i, Event)] == ["kept"]


# --- throttling and the per-mailbox limit ----------------------------------------------------


async def test_given_one_gateway_when_eight_calls_race_then_the_emulator_never_sees_more_than_four(
    tenant: EmulatedTenant,
) -> None:
    mailbox = _mailbox(tenant)
    async with tenant.gateway() as gateway:
        await gateway.list_calendars(mailbox)  # the token first, then the race
        tenant.emulator.reset_counters(mailbox)
        tenant.emulator.latency = 0.1
        answers = await asyncio.gather(*(gateway.list_calendars(mailbox) for _ in range(8)))
    assert len(answers) == 8
    counters = tenant.emulator.counters(mailbox)
    assert (counters.requests, counters.max_concurrent, counters.throttled) == (8, 4, 0)


async def test_given_two_limiters_when_five_calls_race_then_the_fifth_gets_429_and_the_gateway_waits(
    tenant: EmulatedTenant,
) -> None:
    """Two gateways with their own limiters (as two processes would be) against one mailbox:
    together they send five requests at once, the emulator answers the fifth 429 with
    Retry-After, and the gateway that got it sleeps that long and then succeeds."""
    mailbox = _mailbox(tenant)
    slept: list[float] = []
    first = tenant.gateway(limiter=MailboxLimiter(), sleep=_recording_sleep(slept))
    second = tenant.gateway(limiter=MailboxLimiter(), sleep=_recording_sleep(slept))
    async with first as one, second as two:
        await asyncio.gather(one.list_calendars(mailbox), two.list_calendars(mailbox))  # tokens first
        tenant.emulator.reset_counters(mailbox)
        tenant.emulator.latency = 0.3  # long enough that all five overlap
        answers = await asyncio.gather(
            *(one.list_calendars(mailbox) for _ in range(3)), *(two.list_calendars(mailbox) for _ in range(2))
        )
    assert [sum(c.is_default for c in a) for a in answers] == [1] * 5  # all five returned
    counters = tenant.emulator.counters(mailbox)
    assert counters.throttled == 1  # the emulator served one 429 ...
    assert counters.max_concurrent == 4  # ... because a fifth concurrent request came
    assert counters.requests == 6  # five, and the retry
    assert slept == [1.0]  # the emulator's Retry-After, honoured


async def test_given_one_container_when_tenants_gateways_race_then_they_share_the_mailbox_budget(
    emulator: GraphEmulator, tenant: EmulatedTenant, tmp_path: Path
) -> None:
    """Settings → container → `graph_for`: every gateway the container opens uses the settings'
    Graph URL and CA and draws from the container's one mailbox limiter."""
    container = _container(emulator, tmp_path)
    mailbox = _mailbox(tenant)
    credential = tenant.credential()
    one, two = container.graph_for(credential), container.graph_for(credential)
    try:
        await asyncio.gather(one.list_calendars(mailbox), two.list_calendars(mailbox))
        emulator.reset_counters(mailbox)
        emulator.latency = 0.1
        answers = await asyncio.gather(*(gw.list_calendars(mailbox) for gw in [one, two] * 4))
        assert len(answers) == 8
        counters = emulator.counters(mailbox)
        assert (counters.max_concurrent, counters.throttled) == (4, 0)
        assert container.mailbox_limiter.idle
    finally:
        await asyncio.gather(one.close(), two.close())
        await credential.close()
        await container.close()


async def test_given_a_retry_after_beyond_the_retry_budget_then_the_caller_gets_throttled_at_once(
    emulator: GraphEmulator, tenant: EmulatedTenant, tmp_path: Path
) -> None:
    """A spent mailbox request budget answers 429 with the seconds until the window frees (10
    minutes here); past GRAPH_RETRY_BUDGET_SECONDS the gateway does not wait but hands the
    caller `Throttled(retry_after)` to requeue with."""
    container = _container(emulator, tmp_path, GRAPH_RETRY_BUDGET_SECONDS="5")
    mailbox = _mailbox(tenant)
    credential = tenant.credential()
    gateway = container.graph_for(credential)
    try:
        emulator.configure(budget=2, budgetWindowSeconds=600)
        await gateway.list_calendars(mailbox)
        await gateway.list_calendars(mailbox)
        started = time.monotonic()
        with pytest.raises(Throttled) as err:
            await gateway.list_calendars(mailbox)
        assert time.monotonic() - started < 2  # no waiting inside the gateway
    finally:
        await gateway.close()
        await credential.close()
        await container.close()
    assert err.value.retry_after is not None
    assert 590 <= err.value.retry_after <= 601
    assert (err.value.status, err.value.code) == (429, "ApplicationThrottled")
    assert emulator.counters(mailbox).throttled == 1  # asked once, not retried


# --- idempotent creation ------------------------------------------------------------------------


async def test_given_one_transaction_id_when_created_twice_then_graph_holds_one_event(
    tenant: EmulatedTenant,
) -> None:
    mailbox = _mailbox(tenant)
    tid = transaction_id("appt-42", 1)
    async with tenant.gateway() as gateway:
        first = await gateway.create_event(mailbox, None, _draft("Visit"), tid)
        second = await gateway.create_event(mailbox, None, _draft("Visit"), tid)
    assert second.id == first.id
    assert [r.id for r in tenant.emulator.calendar.events(mailbox)] == [first.id]


async def test_given_a_lost_response_when_the_gateway_retries_the_create_then_graph_holds_one_event(
    tenant: EmulatedTenant,
) -> None:
    """The emulator creates the event, then drops the connection before answering; the gateway
    retries the POST (idempotent by its transactionId) and gets the same event back."""
    mailbox = _mailbox(tenant)
    slept: list[float] = []

    async def no_wait(seconds: float) -> None:
        slept.append(seconds)

    async with tenant.gateway(sleep=no_wait) as gateway:
        await gateway.list_calendars(mailbox)
        tenant.emulator.reset_counters(mailbox)
        tenant.emulator.add_fault("drop_after", mailbox=mailbox, method="POST", path=r"/events$")
        created = await gateway.create_event(mailbox, None, _draft("Visit"), transaction_id("appt-43", 1))
    assert created.subject == "Visit"
    assert [r.id for r in tenant.emulator.calendar.events(mailbox)] == [created.id]
    counters = tenant.emulator.counters(mailbox)
    assert (counters.requests, counters.faults) == (2, 1)  # the dropped POST and its retry
    assert len(slept) == 1  # one backoff between them


# --- credentials and consent ----------------------------------------------------------------------


async def test_given_no_calendar_permission_when_reading_then_consent_missing_names_it(
    emulator: GraphEmulator,
) -> None:
    tenant = EmulatedTenant.create(emulator, permissions=["User.Read.All"])
    mailbox = _mailbox(tenant)
    async with tenant.gateway() as gateway:
        assert (await gateway.get_user(mailbox)).user_principal_name == mailbox  # the token works
        with pytest.raises(ConsentMissing) as read:
            await gateway.calendar_view(mailbox, None, *WINDOW)
        with pytest.raises(ConsentMissing) as write:
            await gateway.create_event(mailbox, None, _draft("x"), transaction_id("a", 1))
    assert (read.value.status, read.value.code, read.value.permission) == (
        403,
        "ErrorAccessDenied",
        "Calendars.Read",
    )
    assert "admin consent missing for Calendars.Read" in str(read.value)
    assert write.value.permission == "Calendars.ReadWrite"
    assert "Calendars.ReadWrite" in str(write.value)


async def test_given_a_wrong_client_secret_when_calling_then_the_gateway_raises_token_unavailable(
    tenant: EmulatedTenant,
) -> None:
    mailbox = _mailbox(tenant)
    async with tenant.gateway(secret="not-the-secret") as gateway:
        with pytest.raises(TokenUnavailable) as err:
            await gateway.list_calendars(mailbox)
    assert err.value.aad_code == "AADSTS7000215"  # Entra's "invalid client secret"
    assert err.value.operation == "list_calendars"
    assert "not-the-secret" not in str(err.value)
    assert err.value.__cause__ is None  # no transport exception (it holds the request) hangs off it
    assert err.value.__context__ is None
    assert tenant.emulator.counters(mailbox).requests == 0  # nothing reached Graph


# --- immutable ids ------------------------------------------------------------------------------


class _Recording(httpx.AsyncBaseTransport):
    """The network, with each exchange's Prefer and Preference-Applied headers noted."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: list[tuple[str, str, str]] = []  # (path, Prefer, Preference-Applied)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.seen.append(
            (
                request.url.path,
                request.headers.get("Prefer", ""),
                response.headers.get("Preference-Applied", ""),
            )
        )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_every_request_asks_for_immutable_ids_and_the_emulator_applies_it(
    tenant: EmulatedTenant,
) -> None:
    mailbox = _mailbox(tenant)
    _outlook_event(tenant, mailbox, "seen")
    transport = _Recording(httpx.AsyncHTTPTransport(verify=tenant.emulator.tls.client_context()))
    async with tenant.gateway(transport=transport) as gateway:
        created = await gateway.create_event(mailbox, None, _draft("mine"), transaction_id("b", 1))
        await gateway.get_event(mailbox, created.id)
        await _round(gateway, mailbox)
        await gateway.calendar_view(mailbox, None, *WINDOW)
    graph_calls = [s for s in transport.seen if s[0].startswith("/v1.0/")]
    assert len(graph_calls) == 4
    for path, prefer, applied in graph_calls:
        assert 'IdType="ImmutableId"' in prefer, path
        assert 'IdType="ImmutableId"' in applied, path


# --- attachments --------------------------------------------------------------------------------


async def test_a_large_mail_attachment_streams_in_chunks(tenant: EmulatedTenant) -> None:
    mailbox = _mailbox(tenant)
    data = bytes(range(256)) * (5 * 4096)  # 5 MiB: more than a POST may carry
    mail = tenant.emulator.module("mail").mail
    message_id = mail.deliver_mail(
        mailbox, "Inbox", subject="Invoice", attachments=[file("invoice.pdf", data, "application/pdf")]
    )
    chunk_size = 256 * 1024
    async with tenant.gateway() as gateway:
        (attachment,) = await gateway.list_attachments(mailbox, message_id)
        assert (attachment.name, attachment.size) == ("invoice.pdf", len(data))
        tenant.emulator.reset_counters(mailbox)
        chunks = [
            chunk
            async for chunk in gateway.stream_attachment(
                mailbox, message_id, attachment.id, chunk_size=chunk_size
            )
        ]
    assert b"".join(chunks) == data
    assert len(chunks) >= len(data) // chunk_size
    assert max(map(len, chunks)) <= chunk_size
    assert tenant.emulator.counters(mailbox).bytes_out >= len(data)  # it came from the emulator


async def test_a_large_event_attachment_streams_in_chunks(tenant: EmulatedTenant) -> None:
    """The gateway's streaming path (`GraphSender.stream`, what `stream_attachment` uses for
    mail) on an event attachment's `/$value`: the port itself reads mail attachments only."""
    mailbox = _mailbox(tenant)
    event_id = _outlook_event(tenant, mailbox, "with a big file")
    data = bytes(range(256)) * (5 * 4096)  # 5 MiB: more than a POST may carry
    attachment = tenant.emulator.calendar.add_attachment(mailbox, event_id, name="big.bin", data=data)
    credential = tenant.credential()
    connection = connect(credential, tenant.options())
    limiter = MailboxLimiter()
    sender = GraphSender(connection.adapter, connection.http, limiter, RetryPolicy())
    path = "/users/{}/events/{}/attachments/{}/$value".format(
        *(quote(part, safe="") for part in (mailbox, event_id, attachment.id))
    )
    call = Call("stream_attachment", mailbox, path=path, accept="*/*", permission="Calendars.Read")
    chunk_size = 256 * 1024
    tenant.emulator.reset_counters(mailbox)
    try:
        chunks = [chunk async for chunk in sender.stream(call, chunk_size)]
    finally:
        await connection.close()
        await credential.close()
    assert b"".join(chunks) == data
    assert len(chunks) >= len(data) // chunk_size
    assert max(map(len, chunks)) <= chunk_size
    assert tenant.emulator.counters(mailbox).bytes_out >= len(data)
    assert limiter.idle  # the slot held while streaming is released
