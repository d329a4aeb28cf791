"""The real gateway — msgraph-sdk's request adapter, auth provider and middleware, httpx — with a
scripted Graph at the network edge: what leaves the process, and what the gateway makes of
each answer."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError

from core.graph import (
    BadRequest,
    Conflict,
    ConsentMissing,
    Event,
    EventChanges,
    EventDraft,
    GraphUnavailable,
    MalformedResponse,
    NotFound,
    OutgoingMail,
    Removed,
    SyncStateExpired,
    Throttled,
    TokenUnavailable,
    transaction_id,
)
from core.graph.limits import MailboxLimiter
from core.graph.sender import RetryPolicy
from tests.unit.graph_http import (
    BASE_URL,
    TOKEN,
    GraphScript,
    SleepRecorder,
    StaticCredential,
    gateway_for,
    graph_error,
    graph_json,
)

MAILBOX = "kari@contoso.example"
START = datetime(2030, 1, 7, 9, tzinfo=UTC)
EVENT = {
    "id": "AAMkAD/+evt=",
    "changeKey": "CK1",
    "subject": "Service visit",
    "type": "singleInstance",
    "sensitivity": "normal",
    "showAs": "busy",
    "transactionId": "tid",
    "start": {"dateTime": "2030-01-07T09:00:00.0000000", "timeZone": "UTC"},
    "end": {"dateTime": "2030-01-07T10:00:00.0000000", "timeZone": "UTC"},
}
USER = {"id": "u-1", "displayName": "Kari", "mail": MAILBOX, "userPrincipalName": MAILBOX}


def _query(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(request.url)).query)


def _prefer(request: httpx.Request) -> list[str]:
    return [p.strip() for p in request.headers.get("prefer", "").split(",")]


def _draft() -> EventDraft:
    return EventDraft("Service visit", START, START + timedelta(hours=1))


# --- what every request carries --------------------------------------------------------------


async def test_every_request_carries_immutable_ids_the_token_and_goes_to_the_base_url() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/$value"):
            return httpx.Response(200, content=b"%PDF-1.7")
        if path.endswith("/sendMail"):
            return httpx.Response(202)
        if path.endswith("/createForward"):
            return graph_json(201, {"id": "d1", "subject": "FW: s", "hasAttachments": False, "isDraft": True})
        if request.method == "DELETE":
            return httpx.Response(204)
        if path.endswith("/getSchedule"):
            return graph_json(
                body={"value": [{"scheduleId": "ola@contoso.example", "availabilityView": "0"}]}
            )
        if path.endswith("/attachments"):
            return graph_json(body={"value": []})
        if path.endswith("/move"):
            return graph_json(body={"id": "m1", "subject": "s", "hasAttachments": False})
        if path.endswith("/delta"):
            return graph_json(
                body={"value": [], "@odata.deltaLink": f"{BASE_URL}/users/x/calendarView/delta?$deltatoken=1"}
            )
        if "/events" in path:
            return graph_json(201 if request.method == "POST" else 200, EVENT)
        return graph_json(body=USER)

    script = GraphScript(answer)
    gateway = gateway_for(script)
    await gateway.get_user(MAILBOX)
    [p async for p in gateway.calendar_delta(MAILBOX, None, start=START, end=START + timedelta(days=1))]
    await gateway.create_event(MAILBOX, None, _draft(), transaction_id("a", 1))
    await gateway.update_event(MAILBOX, "AAMkAD/+evt=", EventChanges(subject="x"), if_match="CK1")
    await gateway.delete_event(MAILBOX, "AAMkAD/+evt=")
    await gateway.get_schedule(MAILBOX, ["ola@contoso.example"], START, START + timedelta(hours=1))
    await gateway.list_attachments(MAILBOX, "m1")
    assert b"".join([c async for c in gateway.stream_attachment(MAILBOX, "m1", "a1")]) == b"%PDF-1.7"
    await gateway.move_message(MAILBOX, "m1", "archive-id")
    assert (await gateway.create_forward(MAILBOX, "m1", ["erp@customer.example"])).is_draft
    await gateway.send_mail(MAILBOX, OutgoingMail("s", "b", ("host@customer.example",)))
    await gateway.close()

    assert len(script.requests) == 11
    for request in script.requests:
        assert str(request.url).startswith(BASE_URL + "/users/kari%40contoso.example")
        assert 'IdType="ImmutableId"' in _prefer(request)
        assert request.headers["authorization"] == f"Bearer {TOKEN}"


async def test_ids_are_percent_encoded_in_the_path_and_select_lists_keep_their_commas() -> None:
    script = GraphScript(lambda r: graph_json(body=EVENT))
    gateway = gateway_for(script)
    await gateway.get_event(MAILBOX, "AAMkAD/+evt=")
    await gateway.get_user(MAILBOX)
    event_request, user_request = script.requests
    assert (
        event_request.url.raw_path.decode() == "/v1.0/users/kari%40contoso.example/events/AAMkAD%2F%2Bevt%3D"
    )
    assert _query(user_request)["$select"] == ["id,displayName,mail,userPrincipalName"]


async def test_delta_asks_for_page_size_utc_times_and_the_window() -> None:
    link = f"{BASE_URL}/users/kari@contoso.example/calendarView/delta?$deltatoken=abc"
    script = GraphScript(lambda r: graph_json(body={"value": [], "@odata.deltaLink": link}))
    gateway = gateway_for(script)
    pages = [
        p
        async for p in gateway.calendar_delta(
            MAILBOX, "cal/1", start=START, end=START + timedelta(days=30), page_size=50
        )
    ]
    (request,) = script.requests
    assert request.url.path == "/v1.0/users/kari@contoso.example/calendars/cal/1/calendarView/delta"
    assert request.url.raw_path.decode().startswith(
        "/v1.0/users/kari%40contoso.example/calendars/cal%2F1/calendarView/delta?"
    )
    assert _query(request) == {
        "startDateTime": ["2030-01-07T09:00:00Z"],
        "endDateTime": ["2030-02-06T09:00:00Z"],
    }
    assert _prefer(request) == ['IdType="ImmutableId"', "odata.maxpagesize=50", 'outlook.timezone="UTC"']
    assert pages[-1].delta_link == link


async def test_create_event_posts_the_draft_in_utc_with_its_transaction_id() -> None:
    script = GraphScript(lambda r: graph_json(201, EVENT))
    gateway = gateway_for(script)
    tid = transaction_id("appt-1", 2)
    oslo = START.astimezone(ZoneInfo("Europe/Oslo"))
    created = await gateway.create_event(
        MAILBOX, "cal-1", EventDraft("Visit", oslo, oslo + timedelta(hours=1)), tid
    )
    (request,) = script.requests
    body = json.loads(request.content)
    assert request.method == "POST"
    assert request.url.path == "/v1.0/users/kari@contoso.example/calendars/cal-1/events"
    assert body["transactionId"] == tid
    assert body["start"] == {"dateTime": "2030-01-07T09:00:00", "timeZone": "UTC"}
    assert request.headers["content-type"] == "application/json"
    assert isinstance(created, Event)
    assert created.id == EVENT["id"]


async def test_update_sends_the_change_key_as_a_weak_etag() -> None:
    script = GraphScript(lambda r: graph_json(body=EVENT))
    gateway = gateway_for(script)
    await gateway.update_event(MAILBOX, "e1", EventChanges(subject="x"), if_match="CK1")
    assert script.requests[0].headers["if-match"] == 'W/"CK1"'
    assert json.loads(script.requests[0].content) == {"subject": "x"}


@pytest.mark.parametrize(
    ("given", "sent"),
    [("W/abc+DwAAAB", 'W/"W/abc+DwAAAB"'), ('W/"CK1"', 'W/"CK1"'), ('"CK1"', '"CK1"')],
)
async def test_a_change_key_that_begins_like_an_etag_is_still_wrapped(given: str, sent: str) -> None:
    # base64 change keys can begin with "W/"; only a quoted value is already an ETag
    script = GraphScript(lambda r: graph_json(body=EVENT))
    await gateway_for(script).update_event(MAILBOX, "e1", EventChanges(subject="x"), if_match=given)
    assert script.requests[0].headers["if-match"] == sent


# --- retries ---------------------------------------------------------------------------------


async def test_a_429_with_retry_after_is_waited_out_and_then_succeeds() -> None:
    answers = iter(
        [graph_error(429, "ApplicationThrottled", headers={"Retry-After": "2"}), graph_json(body=USER)]
    )
    script = GraphScript(lambda r: next(answers))
    sleep = SleepRecorder()
    user = await gateway_for(script, sleep=sleep).get_user(MAILBOX)
    assert user.id == "u-1"
    assert sleep.waits == [2.0]
    assert len(script.requests) == 2


async def test_a_retry_after_beyond_the_wait_budget_raises_throttled_with_the_advice() -> None:
    script = GraphScript(lambda r: graph_error(429, "ApplicationThrottled", headers={"Retry-After": "120"}))
    sleep = SleepRecorder()
    gateway = gateway_for(script, sleep=sleep, retry=RetryPolicy(max_total_wait=60))
    with pytest.raises(Throttled) as caught:
        await gateway.get_user(MAILBOX)
    assert caught.value.retry_after == 120
    assert sleep.waits == []
    assert len(script.requests) == 1


async def test_throttling_that_never_ends_gives_up_after_max_attempts() -> None:
    script = GraphScript(lambda r: graph_error(429, "ApplicationThrottled", headers={"Retry-After": "1"}))
    sleep = SleepRecorder()
    with pytest.raises(Throttled):
        await gateway_for(script, sleep=sleep, retry=RetryPolicy(max_attempts=3)).get_user(MAILBOX)
    assert len(script.requests) == 3
    assert sleep.waits == [1.0, 1.0]


async def test_a_503_is_retried_for_a_read_but_never_for_send_mail() -> None:
    answers = iter([graph_error(503, "ServiceUnavailable"), graph_json(body=USER)])
    script = GraphScript(lambda r: next(answers))
    sleep = SleepRecorder()
    assert (await gateway_for(script, sleep=sleep).get_user(MAILBOX)).id == "u-1"
    assert len(sleep.waits) == 1
    assert 0.5 <= sleep.waits[0] <= 1.0

    script = GraphScript(lambda r: graph_error(503, "ServiceUnavailable"))
    with pytest.raises(GraphUnavailable):
        await gateway_for(script).send_mail(MAILBOX, OutgoingMail("s", "b", ("host@customer.example",)))
    assert len(script.requests) == 1  # Graph may have sent it: the mail ledger decides


async def test_a_429_on_send_mail_is_retried_because_graph_did_not_execute_it() -> None:
    answers = iter(
        [graph_error(429, "MailboxConcurrency", headers={"Retry-After": "1"}), httpx.Response(202)]
    )
    script = GraphScript(lambda r: next(answers))
    await gateway_for(script).send_mail(MAILBOX, OutgoingMail("s", "b", ("host@customer.example",)))
    assert len(script.requests) == 2


async def test_timeouts_are_retried_for_reads_and_named_without_leaking_the_request() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return graph_json(body=USER)

    assert (await gateway_for(GraphScript(flaky)).get_user(MAILBOX)).id == "u-1"

    def always(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    script = GraphScript(always)
    with pytest.raises(GraphUnavailable) as caught:
        await gateway_for(script).create_forward(MAILBOX, "m1", ["erp@customer.example"])
    assert len(script.requests) == 1  # a repeated createForward would be a second draft
    # Raised outside the handler: no transport exception (whose request holds the token) hangs
    # off the named error.
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None
    assert TOKEN not in repr(caught.value)


async def test_the_mailbox_slot_is_released_while_sleeping_on_retry_after() -> None:
    """GIVEN one request to a mailbox sleeping on Retry-After, WHEN four more are sent to that
    mailbox, THEN they all complete during the sleep (kiota's RetryHandler would hold the slot)."""
    first = {"throttled": False}

    def answer(request: httpx.Request) -> httpx.Response:
        if not first["throttled"]:
            first["throttled"] = True
            return graph_error(429, "ApplicationThrottled", headers={"Retry-After": "5"})
        return graph_json(body=USER)

    release = asyncio.Event()
    sleeping = asyncio.Event()

    async def sleep(seconds: float) -> None:
        sleeping.set()
        await release.wait()

    limiter = MailboxLimiter()
    gateway = gateway_for(GraphScript(answer), sleep=sleep, limiter=limiter)
    throttled = asyncio.create_task(gateway.get_user(MAILBOX))
    await sleeping.wait()
    assert limiter.in_flight(MAILBOX) == 0
    others = await asyncio.wait_for(asyncio.gather(*(gateway.get_user(MAILBOX) for _ in range(4))), 5)
    assert len(others) == 4
    release.set()
    assert (await throttled).id == "u-1"
    assert limiter.idle


# --- named errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (410, "SyncStateNotFound", SyncStateExpired),
        (400, "SyncStateNotFound", SyncStateExpired),
        (404, "ErrorItemNotFound", NotFound),
        (409, "ErrorIrresolvableConflict", Conflict),
        (412, "ErrorIrresolvableConflict", Conflict),
        (400, "ErrorInvalidRequest", BadRequest),
        (500, "generalException", GraphUnavailable),
        (403, "ErrorAccessDenied", ConsentMissing),
        (401, "InvalidAuthenticationToken", ConsentMissing),
    ],
)
async def test_statuses_become_named_errors(status: int, code: str, error: type[Exception]) -> None:
    script = GraphScript(lambda r: graph_error(status, code, "secret subject: salary talk with Ola"))
    with pytest.raises(error) as caught:
        await gateway_for(script).get_event(MAILBOX, "e1")
    message = str(caught.value)
    assert "salary" not in message  # Graph's free text is never repeated
    assert code in message
    assert str(status) in message
    assert "get_event" in message
    assert TOKEN not in message


async def test_an_expired_delta_link_raises_sync_state_expired() -> None:
    script = GraphScript(lambda r: graph_error(410, "SyncStateNotFound"))
    link = f"{BASE_URL}/users/kari@contoso.example/calendarView/delta?$deltatoken=old"
    with pytest.raises(SyncStateExpired):
        async for _ in gateway_for(script).calendar_delta(
            MAILBOX, None, start=START, end=START, delta_link=link
        ):
            pass
    assert str(script.requests[0].url) == link


async def test_a_stored_delta_link_for_another_endpoint_means_a_full_round() -> None:
    script = GraphScript(lambda r: graph_json(body={}))
    old = "https://graph.microsoft.com/v1.0/users/kari@contoso.example/calendarView/delta?$deltatoken=x"
    with pytest.raises(SyncStateExpired, match="another Graph endpoint"):
        gateway_for(script).calendar_delta(MAILBOX, None, start=START, end=START, delta_link=old)
    assert script.requests == []


async def test_forbidden_names_the_missing_permission() -> None:
    script = GraphScript(lambda r: graph_error(403, "ErrorAccessDenied", "Access is denied."))
    with pytest.raises(ConsentMissing) as caught:
        await gateway_for(script).create_event(MAILBOX, None, _draft(), transaction_id("a", 1))
    assert caught.value.permission == "Calendars.ReadWrite"
    assert "admin consent missing for Calendars.ReadWrite" in str(caught.value)


async def test_a_credential_that_cannot_get_a_token_is_named_and_not_retried() -> None:
    credential = StaticCredential(
        error=ClientAuthenticationError("AADSTS7000215: Invalid client secret provided. Trace ID: x")
    )
    script = GraphScript(lambda r: graph_json(body=USER))
    with pytest.raises(TokenUnavailable) as caught:
        await gateway_for(script, credential=credential).get_user(MAILBOX)
    assert caught.value.aad_code == "AADSTS7000215"
    assert script.requests == []
    assert len(credential.scopes) == 1


async def test_a_success_whose_body_is_not_json_is_a_malformed_response() -> None:
    script = GraphScript(lambda r: httpx.Response(200, content=b"<html>proxy</html>"))
    with pytest.raises(MalformedResponse, match="get_user"):
        await gateway_for(script).get_user(MAILBOX)


# --- paging ----------------------------------------------------------------------------------


async def test_delta_follows_next_links_until_the_delta_link() -> None:
    def page(n: int, last: bool) -> dict[str, object]:
        items: list[dict[str, object]] = [
            {**EVENT, "id": f"e{n}"},
            {"id": f"gone{n}", "@removed": {"reason": "deleted"}},
        ]
        link = f"{BASE_URL}/users/kari@contoso.example/calendarView/delta?$skiptoken={n + 1}"
        return {"value": items, ("@odata.deltaLink" if last else "@odata.nextLink"): link}

    answers = iter(
        [graph_json(body=page(0, False)), graph_json(body=page(1, False)), graph_json(body=page(2, True))]
    )
    script = GraphScript(lambda r: next(answers))
    pages = [
        p
        async for p in gateway_for(script).calendar_delta(
            MAILBOX, None, start=START, end=START + timedelta(1)
        )
    ]
    assert [p.is_last for p in pages] == [False, False, True]
    assert [type(i) for i in pages[1].items] == [Event, Removed]
    assert [str(r.url) for r in script.requests[1:]] == [
        f"{BASE_URL}/users/kari@contoso.example/calendarView/delta?$skiptoken=1",
        f"{BASE_URL}/users/kari@contoso.example/calendarView/delta?$skiptoken=2",
    ]
    assert all("odata.maxpagesize=100" in _prefer(r) for r in script.requests)


async def test_a_next_link_to_another_host_is_refused_and_never_requested() -> None:
    script = GraphScript(
        lambda r: graph_json(
            body={"value": [], "@odata.nextLink": "https://evil.test/v1.0/users/x/events?p=2"}
        )
    )
    with pytest.raises(MalformedResponse, match="outside"):
        await gateway_for(script).calendar_view(MAILBOX, None, START, START + timedelta(days=1))
    assert [r.url.host for r in script.requests] == ["graph.test"]


# --- the per-mailbox limit -------------------------------------------------------------------


async def test_five_concurrent_calls_to_one_mailbox_never_have_more_than_four_in_flight() -> None:
    script = GraphScript(lambda r: graph_json(body=USER), latency=0.02)
    gateway = gateway_for(script)
    other = "ola@contoso.example"
    await asyncio.gather(
        *(gateway.get_user(MAILBOX) for _ in range(5)), *(gateway.get_user(other) for _ in range(5))
    )
    assert script.peak[MAILBOX] == 4
    assert script.peak[other] == 4  # per mailbox, not per process


# --- event attachments -----------------------------------------------------------------------

UPLOAD_URL = (
    "https://outlook.test/api/v2.0/Users('u-1@t-1')/Events('AAMkAD%2Fevt%3D')"
    "/AttachmentSessions('AAMkS1')?authtoken=pre-authenticated"
)
LOCATION = (
    "https://outlook.test/api/v2.0/Users('u-1@t-1')/Events('AAMkAD%2Fevt%3D')/Attachments('AAMkAT/+1=')"
)
KIB_320 = 320 * 1024


class UploadServer:
    """Graph's side of an upload session: createUploadSession, the ranged PUTs (answered the
    way Microsoft's example does, in the Outlook REST casing), and the attachment list.
    `faults` are answers served instead of handling the next PUTs."""

    def __init__(
        self,
        size: int,
        *,
        upload_url: str = UPLOAD_URL,
        location: str = LOCATION,
        listed_id: str = "AAMkAT/+1=",
    ) -> None:
        self.size = size
        self.upload_url = upload_url
        self.location = location
        self.listed_id = listed_id
        self.received = bytearray()
        self.faults: list[httpx.Response] = []
        self.expect_next: list[int] = []  # override the next "NextExpectedRanges" answers

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/createUploadSession"):
            return graph_json(
                201,
                {
                    "uploadUrl": self.upload_url,
                    "expirationDateTime": "2030-01-07T09:15:00Z",
                    "nextExpectedRanges": ["0-"],
                },
            )
        if request.method == "PUT":
            if self.faults:
                return self.faults.pop(0)
            span, _, total = request.headers["content-range"].removeprefix("bytes ").partition("/")
            start, _, end = span.partition("-")
            assert int(total) == self.size
            assert int(start) == len(self.received)
            assert int(end) == int(start) + len(request.content) - 1
            self.received.extend(request.content)
            if len(self.received) < self.size:
                nxt = self.expect_next.pop(0) if self.expect_next else len(self.received)
                del self.received[nxt:]
                return graph_json(
                    200, {"ExpirationDateTime": "2030-01-07T09:15:00Z", "NextExpectedRanges": [str(nxt)]}
                )
            return httpx.Response(201, headers={"Location": self.location})
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.method == "GET" and request.url.path.endswith("/attachments"):
            return graph_json(
                body={
                    "value": [
                        {
                            "@odata.type": "#microsoft.graph.fileAttachment",
                            "id": "other",
                            "name": "a.pdf",
                            "size": 3,
                        },
                        {
                            "@odata.type": "#microsoft.graph.fileAttachment",
                            "id": self.listed_id,
                            "name": "scan.tiff",
                            "contentType": "image/tiff",
                            "size": self.size,
                            "isInline": False,
                        },
                    ]
                }
            )
        return graph_error(400, "UnexpectedRequest")


def _puts(script: GraphScript) -> list[httpx.Request]:
    return [r for r in script.requests if r.method == "PUT"]


async def test_a_large_attachment_is_put_in_ranges_to_the_upload_url_without_the_token() -> None:
    """GIVEN an 8 MB file WHEN it is attached THEN the session is created with the token, then
    the bytes go to the uploadUrl in order, in ranges of a multiple of 320 KiB under 4 MiB
    (the last one the rest) with matching Content-Range and no Authorization header; the
    attachment returned is the listed one the Location names."""
    data = bytes(range(256)) * (8 * 1024 * 1024 // 256)
    server = UploadServer(len(data))
    limiter = MailboxLimiter()
    slots_held: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            slots_held.append(limiter.in_flight(MAILBOX))
        return server(request)

    script = GraphScript(answer)
    added = await gateway_for(script, limiter=limiter).add_event_attachment(
        MAILBOX, "AAMkAD/evt=", name="scan.tiff", content_type="image/tiff", content=data
    )
    create = script.requests[0]
    assert create.url.raw_path.decode() == (
        "/v1.0/users/kari%40contoso.example/events/AAMkAD%2Fevt%3D/attachments/createUploadSession"
    )
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(create.content) == {
        "AttachmentItem": {
            "attachmentType": "file",
            "name": "scan.tiff",
            "size": len(data),
            "contentType": "image/tiff",
        }
    }
    puts = _puts(script)
    assert [len(p.content) for p in puts] == [12 * KIB_320, 12 * KIB_320, len(data) - 24 * KIB_320]
    assert [p.headers["content-range"] for p in puts] == [
        f"bytes 0-{12 * KIB_320 - 1}/{len(data)}",
        f"bytes {12 * KIB_320}-{24 * KIB_320 - 1}/{len(data)}",
        f"bytes {24 * KIB_320}-{len(data) - 1}/{len(data)}",
    ]
    for put in puts:
        assert str(put.url) == UPLOAD_URL
        assert "authorization" not in put.headers
        assert TOKEN not in str(put.headers)
        assert put.headers["content-type"] == "application/octet-stream"
        assert len(put.content) <= 4 * 1024 * 1024
    assert bytes(server.received) == data
    listing = script.requests[-1]
    assert listing.method == "GET"
    assert _query(listing)["$select"] == ["id,name,contentType,size,isInline"]
    assert slots_held == [1, 1, 1]  # each PUT holds a slot of the mailbox while on the wire
    assert (added.id, added.name, added.size, added.content_type) == (
        "AAMkAT/+1=",
        "scan.tiff",
        len(data),
        "image/tiff",
    )
    assert limiter.idle


async def test_the_next_range_starts_where_the_upload_session_says() -> None:
    """GIVEN a server that kept only the first 1,000,000 bytes of the first range WHEN the
    upload goes on THEN the next range starts at byte 1,000,000, and the file arrives whole."""
    data = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    server = UploadServer(len(data))
    server.expect_next = [1_000_000]
    script = GraphScript(server)
    await gateway_for(script).add_event_attachment(
        MAILBOX, "e1", name="scan.tiff", content_type="image/tiff", content=data
    )
    starts = [int(p.headers["content-range"][6:].split("-")[0]) for p in _puts(script)]
    assert starts == [0, 1_000_000, 1_000_000 + 12 * KIB_320]
    assert bytes(server.received) == data


async def test_a_throttled_range_is_sent_again_after_retry_after() -> None:
    data = bytes(4 * 1024 * 1024)
    server = UploadServer(len(data))
    server.faults = [graph_error(429, "ApplicationThrottled", headers={"Retry-After": "3"})]
    script = GraphScript(server)
    sleep = SleepRecorder()
    added = await gateway_for(script, sleep=sleep).add_event_attachment(
        MAILBOX, "e1", name="scan.tiff", content_type="image/tiff", content=data
    )
    assert [p.headers["content-range"].split("/")[0] for p in _puts(script)] == [
        f"bytes 0-{12 * KIB_320 - 1}",
        f"bytes 0-{12 * KIB_320 - 1}",  # Graph did not take it: the same range again
        f"bytes {12 * KIB_320}-{len(data) - 1}",
    ]
    assert sleep.waits == [3.0]
    assert added.size == len(data)


async def test_a_range_whose_connection_never_opened_is_sent_again() -> None:
    data = bytes(4 * 1024 * 1024)
    server = UploadServer(len(data))
    refused = {"once": False}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and not refused["once"]:
            refused["once"] = True
            raise httpx.ConnectError("connection refused", request=request)  # nothing was sent
        return server(request)

    script = GraphScript(answer)
    await gateway_for(script).add_event_attachment(
        MAILBOX, "e1", name="scan.tiff", content_type="image/tiff", content=data
    )
    ranges = [p.headers["content-range"] for p in _puts(script)]
    assert ranges[0] == ranges[1]
    assert len(ranges) == 3
    assert bytes(server.received) == data


@pytest.mark.parametrize(
    "failure",
    [
        graph_error(503, "ServiceUnavailable"),
        httpx.ReadTimeout("timed out"),
    ],
    ids=["503", "read-timeout"],
)
async def test_a_range_that_may_have_landed_is_not_sent_again_and_the_session_is_cancelled(
    failure: httpx.Response | Exception,
) -> None:
    """GIVEN a PUT that fails ambiguously (5xx, or a timeout after the bytes left) WHEN adding
    a large attachment THEN GraphUnavailable after that one PUT, and the session is cancelled
    (DELETE on the uploadUrl, also without the token), so it can never complete later."""
    data = bytes(4 * 1024 * 1024)
    server = UploadServer(len(data))

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method != "PUT":
            return server(request)
        if isinstance(failure, Exception):
            raise failure
        return failure

    script = GraphScript(answer)
    with pytest.raises(GraphUnavailable) as caught:
        await gateway_for(script).add_event_attachment(
            MAILBOX, "e1", name="scan.tiff", content_type="image/tiff", content=data
        )
    assert len(_puts(script)) == 1
    (cancel,) = [r for r in script.requests if r.method == "DELETE"]
    assert str(cancel.url) == UPLOAD_URL
    assert "authorization" not in cancel.headers
    assert "pre-authenticated" not in str(caught.value)  # the upload URL's token is never shown
    assert caught.value.__context__ is None


@pytest.mark.parametrize(
    "upload_url",
    [
        "http://outlook.test/api/v2.0/AttachmentSessions('s')?authtoken=x",
        "https://someone:pw@outlook.test/api/v2.0/AttachmentSessions('s')",
        "file:///etc/passwd",
        "/api/v2.0/AttachmentSessions('s')",
    ],
)
async def test_an_upload_url_that_is_not_https_is_never_sent_the_bytes(upload_url: str) -> None:
    server = UploadServer(4 * 1024 * 1024, upload_url=upload_url)
    script = GraphScript(server)
    with pytest.raises(MalformedResponse, match="not https"):
        await gateway_for(script).add_event_attachment(
            MAILBOX, "e1", name="scan.tiff", content_type="image/tiff", content=bytes(server.size)
        )
    assert [r.method for r in script.requests] == ["POST"]


async def test_a_loopback_http_upload_url_is_accepted_for_local_tests() -> None:
    server = UploadServer(
        4 * 1024 * 1024, upload_url="http://127.0.0.1:10000/api/v2.0/AttachmentSessions('s')?a=1"
    )
    script = GraphScript(server)
    await gateway_for(script).add_event_attachment(
        MAILBOX, "e1", name="scan.tiff", content_type="image/tiff", content=bytes(server.size)
    )
    assert {p.url.host for p in _puts(script)} == {"127.0.0.1"}


async def test_when_the_location_names_another_id_form_the_new_attachment_is_found_by_name_and_size() -> None:
    """GIVEN a Location whose attachment id is not one Graph lists (real Graph's Location is on
    the Outlook REST host and may carry the REST form of the id) WHEN the upload completes
    THEN the attachment returned is the listed one with the file's name and size."""
    data = bytes(4 * 1024 * 1024)
    server = UploadServer(
        len(data), location=LOCATION.replace("AAMkAT/+1=", "REST-form-id"), listed_id="AAkALg="
    )
    added = await gateway_for(GraphScript(server)).add_event_attachment(
        MAILBOX, "e1", name="scan.tiff", content_type="image/tiff", content=data
    )
    assert added.id == "AAkALg="


async def test_a_small_attachment_is_one_post_of_its_bytes_never_retried_on_a_5xx() -> None:
    posted = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "id": "AAMkAT=",
        "name": "summary.pdf",
        "contentType": "application/pdf",
        "size": 8,
        "isInline": False,
        "contentBytes": "JVBERi0xLjc=",
    }
    script = GraphScript(lambda r: graph_json(201, posted))
    added = await gateway_for(script).add_event_attachment(
        MAILBOX, "e1", name="summary.pdf", content_type="application/pdf", content=b"%PDF-1.7"
    )
    (request,) = script.requests
    assert request.method == "POST"
    assert request.url.path == "/v1.0/users/kari@contoso.example/events/e1/attachments"
    assert json.loads(request.content) == {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "summary.pdf",
        "contentType": "application/pdf",
        "contentBytes": "JVBERi0xLjc=",
    }
    assert (added.id, added.size) == ("AAMkAT=", 8)

    script = GraphScript(lambda r: graph_error(503, "ServiceUnavailable"))
    with pytest.raises(GraphUnavailable):
        await gateway_for(script).add_event_attachment(
            MAILBOX, "e1", name="summary.pdf", content_type="application/pdf", content=b"%PDF-1.7"
        )
    assert len(script.requests) == 1  # it may have been attached: the caller lists to decide


async def test_event_attachment_consent_hints_name_the_least_permission() -> None:
    script = GraphScript(lambda r: graph_error(403, "ErrorAccessDenied"))
    gateway = gateway_for(script)
    with pytest.raises(ConsentMissing) as listing:
        await gateway.list_event_attachments(MAILBOX, "e1")
    assert listing.value.permission == "Calendars.Read"
    with pytest.raises(ConsentMissing) as deleting:
        await gateway.delete_event_attachment(MAILBOX, "e1", "a1")
    assert deleting.value.permission == "Calendars.ReadWrite"
    with pytest.raises(ConsentMissing) as adding:
        await gateway.add_event_attachment(
            MAILBOX, "e1", name="a.txt", content_type="text/plain", content=b"x"
        )
    assert adding.value.permission == "Calendars.ReadWrite"
