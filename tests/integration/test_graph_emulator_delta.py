"""calendarView/delta through the real msgraph-sdk: a first round paged by maxpagesize ending in a
deltaLink, then only the changes since (created, updated, deleted as @removed), cancelled
occurrences and events moved out of the window as @removed, expired state as 410
SyncStateNotFound, and $select refused."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.calendar_view.delta.delta_get_response import DeltaGetResponse
from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import DeltaRequestBuilder

from tests.integration.graph_clients import Seed, config, event, seeded

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
UTC = dt.UTC
WINDOW = ("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
PAGE_OF_TWO = {"Prefer": "odata.maxpagesize=2"}


@pytest.fixture
async def seed(tmp_path: Path) -> AsyncIterator[Seed]:
    async with seeded(tmp_path / "graph") as s:
        yield s


def _slot(day: int, hour: int = 10) -> tuple[str, str]:
    return f"2024-06-{day:02d}T{hour:02d}:00:00", f"2024-06-{day:02d}T{hour + 1:02d}:00:00"


async def _round(seed: Seed, link: str | None) -> tuple[list[list[Any]], str]:
    """One delta round: the pages' items, and the deltaLink that ends it."""
    delta = seed.user_client(seed.adele.id).calendar_view.delta
    if link is None:
        query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            start_date_time=WINDOW[0], end_date_time=WINDOW[1]
        )
        page: DeltaGetResponse | None = await delta.get(
            request_configuration=config(headers=PAGE_OF_TWO, query=query)
        )
    else:
        page = await delta.with_url(link).get(request_configuration=config(headers=PAGE_OF_TWO))
    pages: list[list[Any]] = []
    while True:
        assert page is not None
        pages.append(list(page.value or []))
        if page.odata_delta_link:
            assert not page.odata_next_link
            return pages, page.odata_delta_link
        assert page.odata_next_link
        assert "$skiptoken=" in page.odata_next_link
        page = await delta.with_url(page.odata_next_link).get(
            request_configuration=config(headers=PAGE_OF_TWO)
        )


def _removed(item: Any) -> bool:
    return "@removed" in (item.additional_data or {})


async def test_first_round_pages_then_only_the_changes_since(seed: Seed) -> None:
    """GIVEN 5 events WHEN a client runs delta with maxpagesize 2 THEN pages of 2, 2, 1 and a
    deltaLink; GIVEN then one created (by the app, with a transactionId), one updated and one
    deleted in Outlook WHEN the deltaLink is followed THEN exactly those three come back, the
    deleted one as @removed with reason deleted, the created one carrying its transactionId."""
    ids: list[str] = []
    for day in range(3, 8):
        start, end = _slot(day)
        created = await seed.user_client(seed.adele.id).events.post(event(f"event {day}", start, end))
        assert created is not None
        assert created.id
        ids.append(created.id)

    pages, delta_link = await _round(seed, None)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert "$deltatoken=" in delta_link
    assert sorted(str(e.id) for p in pages for e in p) == sorted(ids)

    start, end = _slot(20)
    new = await seed.user_client(seed.adele.id).events.post(
        event("new", start, end, transaction_id="host-7-v1")
    )
    assert new is not None
    seed.graph.calendar.update_event(seed.adele.id, ids[1], {"subject": "event 4 renamed"})
    seed.graph.calendar.delete_event(seed.adele.id, ids[2])

    pages, delta_link = await _round(seed, delta_link)
    items = [i for p in pages for i in p]
    changed = {i.id: i for i in items if not _removed(i)}
    removed = [i for i in items if _removed(i)]
    assert set(changed) == {new.id, ids[1]}
    assert changed[ids[1]].subject == "event 4 renamed"
    assert changed[new.id].transaction_id == "host-7-v1"
    assert [r.id for r in removed] == [ids[2]]
    assert removed[0].additional_data["@removed"] == {"reason": "deleted"}

    pages, _ = await _round(seed, delta_link)
    assert pages == [[]]  # nothing changed since


async def test_cancelled_occurrences_and_events_leaving_the_window_come_back_as_removed(seed: Seed) -> None:
    cal = seed.graph.calendar
    start, end = _slot(10)
    single, _ = cal.create_event(
        seed.adele.id,
        {
            "subject": "single",
            "start": {"dateTime": start, "timeZone": "UTC"},
            "end": {"dateTime": end, "timeZone": "UTC"},
        },
    )
    start, end = _slot(3, 9)
    cal.create_event(
        seed.adele.id,
        {
            "subject": "daily",
            "start": {"dateTime": start, "timeZone": "Europe/Copenhagen"},
            "end": {"dateTime": end, "timeZone": "Europe/Copenhagen"},
            "recurrence": {
                "pattern": {"type": "daily", "interval": 1},
                "range": {"type": "numbered", "startDate": "2024-06-03", "numberOfOccurrences": 3},
            },
        },
    )
    pages, link = await _round(seed, None)
    first = [i for p in pages for i in p]
    occurrences = [i for i in first if i.series_master_id]
    assert len(first) == 4
    assert len(occurrences) == 3

    cal.delete_event(seed.adele.id, str(occurrences[1].id))  # cancel the middle occurrence
    cal.move_event(seed.adele.id, single.id, dt.datetime(2024, 8, 1, 10, tzinfo=UTC))  # out of the window
    pages, link = await _round(seed, link)
    items = [i for p in pages for i in p]
    assert sorted(i.id for i in items) == sorted([occurrences[1].id, single.id])
    assert all(_removed(i) for i in items)

    cal.move_event(seed.adele.id, single.id, dt.datetime(2024, 6, 15, 10, tzinfo=UTC))  # back in
    pages, _ = await _round(seed, link)
    items = [i for p in pages for i in p]
    assert [(i.id, _removed(i)) for i in items] == [(single.id, False)]


async def test_an_expired_delta_token_is_410_sync_state_not_found(seed: Seed) -> None:
    start, end = _slot(5)
    seed.graph.calendar.create_event(
        seed.adele.id,
        {
            "subject": "x",
            "start": {"dateTime": start, "timeZone": "UTC"},
            "end": {"dateTime": end, "timeZone": "UTC"},
        },
    )
    _, link = await _round(seed, None)
    assert seed.graph.expire_delta_tokens(seed.adele.user_principal_name) >= 1
    with pytest.raises(ODataError) as gone:
        await seed.user_client(seed.adele.id).calendar_view.delta.with_url(link).get()
    assert gone.value.response_status_code == 410
    assert gone.value.error is not None
    assert gone.value.error.code == "SyncStateNotFound"
    # A full round starts over.
    pages, _ = await _round(seed, None)
    assert [len(p) for p in pages] == [1]


async def test_select_is_refused_on_delta(seed: Seed) -> None:
    query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
        start_date_time=WINDOW[0], end_date_time=WINDOW[1], select=["subject"]
    )
    with pytest.raises(ODataError) as bad:
        await seed.user_client(seed.adele.id).calendar_view.delta.get(
            request_configuration=config(query=query)
        )
    assert bad.value.response_status_code == 400
    assert bad.value.error is not None
    assert bad.value.error.code == "ErrorInvalidUrlQuery"
