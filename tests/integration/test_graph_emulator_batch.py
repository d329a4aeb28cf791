"""JSON batching through the real msgraph-sdk's request adapter (auth provider, middleware): each
sub-request is authenticated, permission-checked and throttled on its own inside a 200 envelope,
`dependsOn` orders requests and turns a failed dependency into 424, more than 20 requests is a
400, and Outlook's "at most 4 of a batch in parallel per mailbox" shows on the counters.

msgraph-sdk's `BatchRequestContent` / `client.batch` need the `Deprecated` package, which is not
installed here, so the batch body goes out as a raw `RequestInformation` through the SDK's adapter.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_service_client import GraphServiceClient

from tests.integration.graph_clients import Seed, seeded

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def seed(tmp_path: Path) -> AsyncIterator[Seed]:
    async with seeded(tmp_path / "graph") as s:
        yield s


async def send_batch(client: GraphServiceClient, requests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """POST /$batch through the SDK's adapter; the responses by id."""
    adapter = client.request_adapter
    info = RequestInformation(Method.POST)
    info.url = f"{adapter.base_url}/$batch"
    info.headers.try_add("Accept", "application/json")
    info.set_stream_content(json.dumps({"requests": requests}).encode(), "application/json")
    raw: Any = await adapter.send_primitive_async(info, "bytes", {"XXX": ODataError})
    assert isinstance(raw, bytes)
    body = json.loads(raw)
    return {r["id"]: r for r in body["responses"]}


def new_event(subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": "2024-05-01T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2024-05-01T10:00:00", "timeZone": "UTC"},
        **extra,
    }


async def test_three_requests_three_responses_with_their_ids_and_statuses(seed: Seed) -> None:
    user = f"/users/{seed.adele.id}"
    responses = await send_batch(
        seed.client,
        [
            {"id": "a", "method": "GET", "url": f"{user}/calendar"},
            {
                "id": "b",
                "method": "POST",
                "url": f"{user}/events",
                "headers": {"Content-Type": "application/json"},
                "body": new_event("batched"),
            },
            {"id": "c", "method": "GET", "url": f"{user}/events/AAMkADnotthere"},
        ],
    )
    assert {k: r["status"] for k, r in responses.items()} == {"a": 200, "b": 201, "c": 404}
    assert responses["a"]["body"]["isDefaultCalendar"] is True
    assert responses["b"]["body"]["subject"] == "batched"
    assert responses["b"]["headers"]["Content-Type"].startswith("application/json")
    assert responses["c"]["body"]["error"]["code"] == "ErrorItemNotFound"
    assert [e.fields["subject"] for e in seed.graph.calendar.events(seed.adele.id)] == ["batched"]
    # Each sub-request is a request to the mailbox of its own.
    assert seed.graph.counters(seed.adele.id).requests == 3


async def test_depends_on_orders_requests_and_a_failed_dependency_gives_424(seed: Seed) -> None:
    user = f"/users/{seed.adele.user_principal_name}"
    json_headers = {"Content-Type": "application/json"}
    responses = await send_batch(
        seed.client,
        [
            # Listed out of order on purpose: "2" must still run after "1".
            {"id": "2", "dependsOn": ["1"], "method": "GET", "url": f"{user}/events?$select=subject"},
            {
                "id": "1",
                "method": "POST",
                "url": f"{user}/events",
                "headers": json_headers,
                "body": new_event("first"),
            },
            {
                "id": "3",
                "method": "PATCH",
                "url": f"{user}/events/AAMkADgone",
                "headers": json_headers,
                "body": {"subject": "never"},
            },
            {
                "id": "4",
                "dependsOn": ["3"],
                "method": "POST",
                "url": f"{user}/events",
                "headers": json_headers,
                "body": new_event("must not exist"),
            },
            {"id": "5", "dependsOn": ["4"], "method": "GET", "url": f"{user}/calendar"},
        ],
    )
    assert responses["1"]["status"] == 201
    assert responses["2"]["status"] == 200
    assert [e["subject"] for e in responses["2"]["body"]["value"]] == ["first"]
    assert responses["3"]["status"] == 404
    assert responses["4"]["status"] == 424
    assert responses["5"]["status"] == 424  # a chain fails through
    assert responses["4"]["body"]["error"]["code"] == "FailedDependency"
    assert [e.fields["subject"] for e in seed.graph.calendar.events(seed.adele.id)] == ["first"]


async def test_more_than_20_requests_or_a_malformed_batch_is_400(seed: Seed) -> None:
    url = f"/users/{seed.adele.id}/calendar"
    too_many = [{"id": str(i), "method": "GET", "url": url} for i in range(21)]
    with pytest.raises(ODataError) as caught:
        await send_batch(seed.client, too_many)
    assert caught.value.response_status_code == 400
    assert caught.value.error is not None
    assert caught.value.error.code == "BadRequest"
    assert seed.graph.counters(seed.adele.id).requests == 0  # nothing ran

    exactly_20 = await send_batch(seed.client, too_many[:20])
    assert {r["status"] for r in exactly_20.values()} == {200}

    for bad in (
        [{"id": "1", "method": "GET", "url": url}, {"id": "1", "method": "GET", "url": url}],
        [{"id": "1", "method": "GET", "url": url, "dependsOn": ["9"]}],
        [
            {"id": "1", "method": "GET", "url": url, "dependsOn": ["2"]},
            {"id": "2", "method": "GET", "url": url, "dependsOn": ["1"]},
        ],
    ):
        with pytest.raises(ODataError) as caught:
            await send_batch(seed.client, bad)
        assert caught.value.response_status_code == 400


async def test_at_most_four_of_a_batch_run_at_once_per_mailbox(seed: Seed) -> None:
    seed.graph.latency = 0.3
    adele, megan = f"/users/{seed.adele.id}", f"/users/{seed.megan.id}"
    requests = [{"id": f"a{i}", "method": "GET", "url": f"{adele}/calendar"} for i in range(6)]
    requests += [{"id": f"m{i}", "method": "GET", "url": f"{megan}/calendar"} for i in range(2)]
    started = time.monotonic()
    responses = await send_batch(seed.client, requests)
    elapsed = time.monotonic() - started
    assert {r["status"] for r in responses.values()} == {200}  # queued, never throttled
    counters = seed.graph.counters(seed.adele.id)
    assert (counters.requests, counters.max_concurrent, counters.throttled) == (6, 4, 0)
    assert seed.graph.counters(seed.megan.id).max_concurrent == 2  # its own four slots
    assert elapsed >= 0.3 * 3  # the batch itself, then two rounds for Adele's six


async def test_each_sub_request_is_authorized_and_throttled_on_its_own(tmp_path: Path) -> None:
    async with seeded(tmp_path / "graph", permissions=("Calendars.Read", "User.Read.All")) as seed:
        user = f"/users/{seed.adele.id}"
        seed.graph.add_fault(status=429, retry_after=7, path=r"/calendarView$")
        responses = await send_batch(
            seed.client,
            [
                {"id": "read", "method": "GET", "url": f"{user}/calendar"},
                {
                    "id": "write",
                    "method": "POST",
                    "url": f"{user}/events",
                    "headers": {"Content-Type": "application/json"},
                    "body": new_event("denied"),
                },
                {"id": "who", "method": "GET", "url": f"/users/{seed.megan.user_principal_name}?$select=id"},
                {
                    "id": "busy",
                    "method": "GET",
                    "url": f"{user}/calendarView?startDateTime=2024-05-01T00:00:00Z"
                    "&endDateTime=2024-05-02T00:00:00Z",
                },
            ],
        )
        assert responses["read"]["status"] == 200
        assert responses["write"]["status"] == 403
        assert responses["write"]["body"]["error"]["code"] == "ErrorAccessDenied"
        assert responses["who"]["status"] == 200
        assert responses["who"]["body"]["id"] == seed.megan.id
        assert responses["busy"]["status"] == 429
        assert responses["busy"]["headers"]["Retry-After"] == "7"
        assert seed.graph.calendar.events(seed.adele.id) == []
        counters = seed.graph.counters(seed.adele.id)
        assert (counters.requests, counters.throttled, counters.faults) == (3, 1, 1)


async def test_a_batch_with_a_revoked_token_is_refused_as_a_whole(seed: Seed) -> None:
    await seed.user_client(seed.adele.id).get()  # the SDK now holds a token...
    seed.graph.revoke_tokens()  # ...that the emulator refuses from now on
    with pytest.raises(ODataError) as caught:
        await send_batch(
            seed.client, [{"id": "1", "method": "GET", "url": f"/users/{seed.adele.id}/calendar"}]
        )
    assert caught.value.response_status_code == 401
    assert seed.graph.counters(seed.adele.id).requests == 0  # no sub-request ran
