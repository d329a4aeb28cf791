"""One contract for every Graph port implementation.

`GRAPH_IMPLEMENTATIONS` names each implementation and how to build its harness (the gateway
under test plus the world behind it, see `graph_world.py`): the in-memory fake, and the real
`GraphApiGateway` (msgraph-sdk, azure-identity, HTTPS) against the Graph emulator. Every test
runs against both; a behaviour in which they differ is a bug in one of them.

Each test uses its own mailboxes (and, on the emulator, its own tenant), so the session's one
emulator needs no reset between tests.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.graph import (
    BadRequest,
    Conflict,
    DeltaPage,
    Event,
    EventChanges,
    EventDraft,
    EventType,
    FolderNotFound,
    Message,
    NotFound,
    Removed,
    Sensitivity,
    ShowAs,
    SyncStateExpired,
    transaction_id,
)
from core.graph.fake import InMemoryGraph, SeedAttachment
from core.graph.model import (
    AttachmentKind,
    BodyType,
    DeltaStart,
    Importance,
    OutgoingAttachment,
    OutgoingMail,
    SubscriptionRequest,
)
from tests.contract.graph_world import FakeWorld, GraphHarness, emulator_harness


@asynccontextmanager
async def _fake_harness() -> AsyncIterator[GraphHarness]:
    graph = InMemoryGraph()
    yield GraphHarness(gateway=graph, world=FakeWorld(graph), name="fake")
    await graph.close()


def _fake(_: pytest.FixtureRequest) -> AbstractAsyncContextManager[GraphHarness]:
    return _fake_harness()


def _emulator(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[GraphHarness]:
    return emulator_harness(request.getfixturevalue("graph_emulator"))


# name -> how to build its harness (not yet entered). A builder runs in a synchronous fixture
# and asks `request` for the session fixtures it needs (the emulator), so a run that selects
# only the fake starts no server.
HarnessBuilder = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[GraphHarness]]
GRAPH_IMPLEMENTATIONS: dict[str, HarnessBuilder] = {
    "fake": _fake,
    "emulator": _emulator,
}

# The implementations the mail tests run against: every one, now that the emulator has its mail
# module. It was built alongside this suite; should a change there break the emulator runs
# before the fix, narrow this to ["fake"] (and say so) rather than skipping.
MAIL_IMPLEMENTATIONS: list[str] = list(GRAPH_IMPLEMENTATIONS)


def _params(names: Iterable[str]) -> list[Any]:
    # The emulator-backed runs need the local stack: marked like the Azurite table contract.
    return [pytest.param(n, marks=pytest.mark.integration if n == "emulator" else ()) for n in sorted(names)]


@pytest.fixture(params=_params(GRAPH_IMPLEMENTATIONS))
def graph_implementation(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[GraphHarness]:
    return GRAPH_IMPLEMENTATIONS[request.param](request)


@pytest.fixture
async def graph(
    graph_implementation: AbstractAsyncContextManager[GraphHarness],
) -> AsyncIterator[GraphHarness]:
    async with graph_implementation as harness:
        yield harness


# Narrows the mail tests to MAIL_IMPLEMENTATIONS (overrides the fixture's parameters).
mail_contract = pytest.mark.parametrize("graph_implementation", _params(MAIL_IMPLEMENTATIONS), indirect=True)


BASE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # a Monday, safely in the future
WINDOW = (BASE - timedelta(days=1), BASE + timedelta(days=30))


async def _mailbox(graph: GraphHarness, name: str = "kari") -> str:
    upn = f"{name}-{uuid.uuid4().hex[:8]}@contoso.example"
    await graph.world.add_user(upn, name.title())
    return upn


def _draft(subject: str, day: int = 0, hours: float = 1.0, **kw: object) -> EventDraft:
    start = BASE + timedelta(days=day)
    return EventDraft(subject=subject, start=start, end=start + timedelta(hours=hours), **kw)  # type: ignore[arg-type]


async def _round(
    graph: GraphHarness, mailbox: str, delta_link: str | None = None, page_size: int = 100
) -> tuple[list[Event | Removed], str, int]:
    """One whole delta round: (items, the final delta link, number of pages)."""
    items: list[Event | Removed] = []
    pages: list[DeltaPage[Event]] = []
    async for page in graph.gateway.calendar_delta(
        mailbox, None, start=WINDOW[0], end=WINDOW[1], delta_link=delta_link, page_size=page_size
    ):
        assert not page.rejected
        pages.append(page)
        items.extend(page.items)
    assert all(p.delta_link is None and p.next_link for p in pages[:-1])
    assert pages[-1].delta_link
    return items, pages[-1].delta_link, len(pages)


def _events(items: list[Event | Removed]) -> dict[str, Event]:
    return {i.id: i for i in items if isinstance(i, Event)}


def _removed(items: list[Event | Removed]) -> set[str]:
    return {i.id for i in items if isinstance(i, Removed)}


# --- users and calendars -------------------------------------------------------------------


async def test_get_user_finds_the_mailbox_and_an_unknown_mailbox_is_not_found(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    user = await graph.gateway.get_user(mailbox)
    assert user.user_principal_name.casefold() == mailbox.casefold()
    assert user.id
    with pytest.raises(NotFound):
        await graph.gateway.get_user(f"nobody-{uuid.uuid4().hex[:8]}@contoso.example")


async def test_list_calendars_holds_the_default_and_added_calendars(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    booking_id = await graph.world.add_calendar(mailbox, "Bookings")
    calendars = await graph.gateway.list_calendars(mailbox)
    assert sum(c.is_default for c in calendars) == 1
    assert {c.id: c.name for c in calendars}[booking_id] == "Bookings"


# --- events ----------------------------------------------------------------------------------


async def test_create_event_returns_it_in_utc_with_its_transaction_id(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    tid = transaction_id("appt-1", 1)
    oslo = BASE.astimezone(ZoneInfo("Europe/Oslo"))
    draft = EventDraft(
        "Service visit", oslo, oslo + timedelta(minutes=90), body="Bring tools", location="Bergen"
    )
    created = await graph.gateway.create_event(mailbox, None, draft, tid)
    assert created.id
    assert created.change_key
    assert (created.start, created.end) == (BASE, BASE + timedelta(minutes=90))
    assert created.start.tzinfo is UTC
    assert created.transaction_id == tid
    assert (created.subject, created.location, created.type) == (
        "Service visit",
        "Bergen",
        EventType.SINGLE_INSTANCE,
    )
    again = await graph.gateway.get_event(mailbox, created.id)
    assert (again.id, again.subject, again.start, again.change_key) == (
        created.id,
        created.subject,
        created.start,
        created.change_key,
    )


async def test_creating_twice_with_one_transaction_id_makes_one_event(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    tid = transaction_id("appt-7", 3)
    first = await graph.gateway.create_event(mailbox, None, _draft("Once"), tid)
    second = await graph.gateway.create_event(mailbox, None, _draft("Once"), tid)
    assert second.id == first.id
    view = await graph.gateway.calendar_view(mailbox, None, *WINDOW)
    assert [e.id for e in view if e.subject == "Once"] == [first.id]
    other = await graph.gateway.create_event(mailbox, None, _draft("Once"), transaction_id("appt-7", 4))
    assert other.id != first.id


async def test_update_with_the_current_change_key_succeeds_and_a_stale_one_conflicts(
    graph: GraphHarness,
) -> None:
    mailbox = await _mailbox(graph)
    created = await graph.gateway.create_event(mailbox, None, _draft("v1"), transaction_id("a", 1))
    updated = await graph.gateway.update_event(
        mailbox, created.id, EventChanges(subject="v2"), if_match=created.change_key
    )
    assert updated.subject == "v2"
    assert updated.change_key
    assert updated.change_key != created.change_key
    with pytest.raises(Conflict):
        await graph.gateway.update_event(
            mailbox, created.id, EventChanges(subject="v3"), if_match=created.change_key
        )
    assert (await graph.gateway.get_event(mailbox, created.id)).subject == "v2"


async def test_an_outlook_edit_makes_the_bridges_change_key_stale(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    created = await graph.gateway.create_event(mailbox, None, _draft("mine"), transaction_id("b", 1))
    await graph.world.outlook_update_event(mailbox, created.id, EventChanges(location="Room 2"))
    with pytest.raises(Conflict):
        await graph.gateway.update_event(
            mailbox, created.id, EventChanges(subject="x"), if_match=created.change_key
        )


async def test_missing_events_are_not_found_for_get_update_and_delete(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    created = await graph.gateway.create_event(mailbox, None, _draft("gone"), transaction_id("c", 1))
    await graph.gateway.delete_event(mailbox, created.id)
    with pytest.raises(NotFound):
        await graph.gateway.get_event(mailbox, created.id)
    with pytest.raises(NotFound):
        await graph.gateway.update_event(mailbox, created.id, EventChanges(subject="x"))
    with pytest.raises(NotFound):
        await graph.gateway.delete_event(mailbox, created.id)


async def test_bad_input_is_rejected_before_graph(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    with pytest.raises(BadRequest):
        await graph.gateway.create_event(mailbox, None, _draft("x"), "")
    with pytest.raises(BadRequest):
        graph.gateway.calendar_delta(mailbox, None, start=WINDOW[0], end=WINDOW[1], page_size=0)
    with pytest.raises(BadRequest):
        await graph.gateway.get_schedule(
            mailbox, [f"u{i}@contoso.example" for i in range(21)], *WINDOW[:1], BASE
        )
    with pytest.raises(BadRequest):
        EventDraft("naive", datetime(2030, 1, 1, 9), datetime(2030, 1, 1, 10))


# --- event attachments ---------------------------------------------------------------------

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 400  # 102,409 bytes
FIVE_MB = random.Random(5).randbytes(5 * 1024 * 1024)  # no two chunks alike: order errors show


async def test_an_event_read_through_a_calendar_is_found_only_in_that_calendar(graph: GraphHarness) -> None:
    """GIVEN an event in a secondary calendar WHEN it is read through that calendar, through
    another one and through the mailbox THEN the other calendar answers NotFound."""
    mailbox = await _mailbox(graph)
    bookings = await graph.world.add_calendar(mailbox, "Slots")
    other = await graph.world.add_calendar(mailbox, "Other")
    event_id = await graph.world.outlook_create_event(mailbox, bookings, _draft("Slot"))
    assert (await graph.gateway.get_event(mailbox, event_id, calendar_id=bookings)).subject == "Slot"
    assert (await graph.gateway.get_event(mailbox, event_id)).id == event_id
    with pytest.raises(NotFound):
        await graph.gateway.get_event(mailbox, event_id, calendar_id=other)


async def test_a_small_attachment_is_listed_with_its_metadata_and_stored_byte_for_byte(
    graph: GraphHarness,
) -> None:
    """GIVEN an event WHEN a 100 KB PDF is attached THEN the answer and the list name it with its
    size and content type (metadata only), Exchange holds its exact bytes, no upload session was
    used, and the event has attachments and a new change key."""
    mailbox = await _mailbox(graph)
    created = await graph.gateway.create_event(mailbox, None, _draft("with pdf"), transaction_id("att", 1))
    added = await graph.gateway.add_event_attachment(
        mailbox, created.id, name="summary.pdf", content_type="application/pdf", content=PDF
    )
    assert added.id
    assert (added.name, added.size, added.content_type, added.kind, added.is_inline) == (
        "summary.pdf",
        len(PDF),
        "application/pdf",
        AttachmentKind.FILE,
        False,
    )
    assert await graph.gateway.list_event_attachments(mailbox, created.id) == [added]
    assert await graph.world.event_attachment_content(mailbox, created.id, added.id) == PDF
    assert await graph.world.upload_sessions(mailbox) == 0
    after = await graph.gateway.get_event(mailbox, created.id)
    assert after.has_attachments
    assert after.change_key != created.change_key


async def test_a_5_mb_attachment_goes_through_an_upload_session_and_arrives_intact(
    graph: GraphHarness,
) -> None:
    """GIVEN an event WHEN a 5 MB file is attached THEN one upload session carries it, the
    returned attachment is the listed one, and Exchange holds exactly its bytes."""
    mailbox = await _mailbox(graph)
    created = await graph.gateway.create_event(mailbox, None, _draft("with scan"), transaction_id("att", 2))
    added = await graph.gateway.add_event_attachment(
        mailbox, created.id, name="scan.tiff", content_type="image/tiff", content=FIVE_MB
    )
    assert (added.name, added.size, added.content_type) == ("scan.tiff", len(FIVE_MB), "image/tiff")
    assert await graph.gateway.list_event_attachments(mailbox, created.id) == [added]
    assert await graph.world.upload_sessions(mailbox) == 1
    assert await graph.world.event_attachment_content(mailbox, created.id, added.id) == FIVE_MB
    assert (await graph.gateway.get_event(mailbox, created.id)).change_key != created.change_key


async def test_deleting_an_attachment_removes_only_that_one(graph: GraphHarness) -> None:
    """GIVEN an event with two attachments WHEN one is deleted THEN only the other is listed,
    its bytes are untouched, and the event's change key changed again."""
    mailbox = await _mailbox(graph)
    created = await graph.gateway.create_event(mailbox, None, _draft("two files"), transaction_id("att", 3))
    first = await graph.gateway.add_event_attachment(
        mailbox, created.id, name="a.pdf", content_type="application/pdf", content=PDF
    )
    second = await graph.gateway.add_event_attachment(
        mailbox, created.id, name="b.txt", content_type="text/plain", content=b"notes"
    )
    assert first.id != second.id
    before = await graph.gateway.get_event(mailbox, created.id)
    await graph.gateway.delete_event_attachment(mailbox, created.id, first.id)
    assert await graph.gateway.list_event_attachments(mailbox, created.id) == [second]
    assert await graph.world.event_attachment_content(mailbox, created.id, second.id) == b"notes"
    assert (await graph.gateway.get_event(mailbox, created.id)).change_key != before.change_key


async def test_attachments_of_a_missing_event_or_a_missing_attachment_are_not_found(
    graph: GraphHarness,
) -> None:
    """GIVEN an attachment deleted once, and an event deleted WHEN the attachment is deleted
    again, or the event's attachments are listed, added or deleted THEN NotFound each time."""
    mailbox = await _mailbox(graph)
    created = await graph.gateway.create_event(mailbox, None, _draft("gone"), transaction_id("att", 4))
    added = await graph.gateway.add_event_attachment(
        mailbox, created.id, name="a.txt", content_type="text/plain", content=b"x"
    )
    await graph.gateway.delete_event_attachment(mailbox, created.id, added.id)
    with pytest.raises(NotFound):
        await graph.gateway.delete_event_attachment(mailbox, created.id, added.id)
    await graph.gateway.delete_event(mailbox, created.id)
    with pytest.raises(NotFound):
        await graph.gateway.list_event_attachments(mailbox, created.id)
    with pytest.raises(NotFound):
        await graph.gateway.add_event_attachment(
            mailbox, created.id, name="a.txt", content_type="text/plain", content=b"x"
        )
    with pytest.raises(NotFound):
        await graph.gateway.add_event_attachment(
            mailbox, created.id, name="big.bin", content_type="application/octet-stream", content=FIVE_MB
        )
    with pytest.raises(NotFound):
        await graph.gateway.delete_event_attachment(mailbox, created.id, added.id)


async def test_bad_attachments_are_rejected_before_graph(graph: GraphHarness) -> None:
    """GIVEN a mailbox and event that do not exist WHEN an attachment with an empty name, no MIME
    type or over 150 MB is added THEN BadRequest — not NotFound: nothing was asked of Graph."""
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@contoso.example"
    attach = graph.gateway.add_event_attachment
    with pytest.raises(BadRequest):
        await attach(nobody, "no-such-event", name="", content_type="text/plain", content=b"x")
    with pytest.raises(BadRequest):
        await attach(nobody, "no-such-event", name="  ", content_type="text/plain", content=b"x")
    with pytest.raises(BadRequest):
        await attach(nobody, "no-such-event", name="a.txt", content_type="", content=b"x")
    too_big = bytes(150 * 1024 * 1024 + 1)
    with pytest.raises(BadRequest):
        await attach(nobody, "no-such-event", name="big.pdf", content_type="application/pdf", content=too_big)
    with pytest.raises(BadRequest):
        await attach(nobody, "", name="a.txt", content_type="text/plain", content=b"x")
    with pytest.raises(BadRequest):
        await graph.gateway.delete_event_attachment(nobody, "no-such-event", "")


# --- calendar delta ----------------------------------------------------------------------


async def test_delta_gives_everything_first_then_only_changes(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    ids = [await graph.world.outlook_create_event(mailbox, None, _draft(f"e{i}", day=i)) for i in range(5)]
    await graph.world.outlook_create_event(mailbox, None, _draft("far future", day=90))  # outside

    items, link, pages = await _round(graph, mailbox, page_size=2)
    assert set(_events(items)) == set(ids)
    assert pages >= 3  # paged by page_size and every nextLink followed

    unchanged, link, _ = await _round(graph, mailbox, link)
    assert unchanged == []

    new_id = await graph.world.outlook_create_event(mailbox, None, _draft("new", day=7))
    await graph.world.outlook_update_event(
        mailbox,
        ids[1],
        EventChanges(
            subject="e1 moved", start=BASE + timedelta(days=8), end=BASE + timedelta(days=8, hours=1)
        ),
    )
    await graph.world.outlook_delete_event(mailbox, ids[2])
    changes, link, _ = await _round(graph, mailbox, link)
    events = _events(changes)
    assert set(events) == {new_id, ids[1]}
    assert events[ids[1]].subject == "e1 moved"
    assert events[ids[1]].start == BASE + timedelta(days=8)
    assert _removed(changes) == {ids[2]}

    again, _, _ = await _round(graph, mailbox, link)
    assert again == []


async def test_an_event_that_leaves_the_window_comes_back_removed(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    event_id = await graph.world.outlook_create_event(mailbox, None, _draft("moving"))
    _, link, _ = await _round(graph, mailbox)
    later = BASE + timedelta(days=120)
    await graph.world.outlook_update_event(
        mailbox, event_id, EventChanges(start=later, end=later + timedelta(hours=1))
    )
    changes, _, _ = await _round(graph, mailbox, link)
    assert _removed(changes) == {event_id}
    assert _events(changes) == {}


async def test_a_series_arrives_as_occurrences_and_an_edited_one_as_an_exception(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    master = await graph.world.outlook_create_daily_series(mailbox, None, _draft("standup", hours=0.25), 3)
    items, link, _ = await _round(graph, mailbox)
    occurrences = sorted(_events(items).values(), key=lambda e: e.start)
    assert [e.type for e in occurrences] == [EventType.OCCURRENCE] * 3  # never the master
    assert {e.series_master_id for e in occurrences} == {master}
    assert [e.start for e in occurrences] == [BASE + timedelta(days=d) for d in range(3)]

    await graph.world.outlook_update_event(
        mailbox, occurrences[1].id, EventChanges(subject="standup (moved)")
    )
    changes, _, _ = await _round(graph, mailbox, link)
    edited = [e for e in _events(changes).values() if e.subject == "standup (moved)"]
    assert len(edited) == 1
    assert edited[0].type is EventType.EXCEPTION
    assert edited[0].series_master_id == master


async def test_an_expired_delta_link_raises_sync_state_expired_and_a_full_round_recovers(
    graph: GraphHarness,
) -> None:
    mailbox = await _mailbox(graph)
    event_id = await graph.world.outlook_create_event(mailbox, None, _draft("kept"))
    _, link, _ = await _round(graph, mailbox)
    await graph.world.expire_delta_links(mailbox)
    with pytest.raises(SyncStateExpired):
        await _round(graph, mailbox, link)
    items, _, _ = await _round(graph, mailbox)
    assert set(_events(items)) == {event_id}


async def test_first_delta_pages_read_many_rounds_at_once_each_with_its_own_answer(
    graph: GraphHarness,
) -> None:
    """25 rounds (more than one $batch holds; one mailbox twice), a changed calendar, an
    expired link and a link stored for another Graph endpoint: each start gets the page its
    own round would give, or its own error."""
    mailboxes = [await _mailbox(graph, f"p{i}") for i in range(24)]
    links = {}
    for mailbox in mailboxes:
        await graph.world.outlook_create_event(mailbox, None, _draft("kept"))
        _, links[mailbox], _ = await _round(graph, mailbox)
    changed = mailboxes[3]
    new_id = await graph.world.outlook_create_event(changed, None, _draft("new"))
    expired = mailboxes[5]
    await graph.world.expire_delta_links(expired)
    starts = [DeltaStart(m, links[m], 100) for m in mailboxes]
    starts.append(DeltaStart(mailboxes[0], links[mailboxes[0]], 100))  # one mailbox twice
    starts.append(DeltaStart(mailboxes[1], "https://graph.example.org/v1.0/users/x/calendarView/delta", 100))
    answers = await graph.gateway.first_delta_pages(starts)
    assert len(answers) == 26
    for mailbox, answer in zip([*mailboxes, mailboxes[0]], answers, strict=False):
        if mailbox == expired:
            assert isinstance(answer, SyncStateExpired)
            continue
        assert isinstance(answer, DeltaPage), (mailbox, answer)
        assert answer.delta_link
        assert answer.next_link is None
        assert set(_events(list(answer.items))) == ({new_id} if mailbox == changed else set())
    assert isinstance(answers[-1], SyncStateExpired)  # another endpoint's link: start a full round
    # the new links carry on like any delta link
    page = answers[3]
    assert isinstance(page, DeltaPage)
    assert page.delta_link is not None
    again, _, _ = await _round(graph, changed, page.delta_link)
    assert again == []


async def test_private_and_all_day_events_are_read_as_such(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    day = datetime(2030, 1, 9, tzinfo=UTC)
    private_id = await graph.world.outlook_create_event(
        mailbox, None, _draft("doctor", sensitivity=Sensitivity.PRIVATE, show_as=ShowAs.OOF)
    )
    all_day_id = await graph.world.outlook_create_event(
        mailbox,
        None,
        EventDraft("holiday", day, day + timedelta(days=1), is_all_day=True, show_as=ShowAs.FREE),
    )
    events = _events((await _round(graph, mailbox))[0])
    assert events[private_id].is_private
    assert events[private_id].show_as is ShowAs.OOF
    holiday = events[all_day_id]
    assert holiday.is_all_day
    assert (holiday.start, holiday.end) == (day, day + timedelta(days=1))


async def test_calendar_view_returns_the_window_of_one_calendar(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    bookings = await graph.world.add_calendar(mailbox, "Bookings")
    slot = await graph.world.outlook_create_event(mailbox, bookings, _draft("Slot", day=2))
    await graph.world.outlook_create_event(mailbox, bookings, _draft("Slot later", day=40))
    await graph.world.outlook_create_event(mailbox, None, _draft("Not a slot", day=2))
    view = await graph.gateway.calendar_view(mailbox, bookings, BASE, BASE + timedelta(days=31))
    assert [e.id for e in view] == [slot]


# --- schedules -----------------------------------------------------------------------------


async def test_get_schedule_reports_busy_intervals_and_unknown_mailboxes(graph: GraphHarness) -> None:
    asker = await _mailbox(graph, "switchboard")
    busy = await _mailbox(graph, "ola")
    await graph.world.outlook_create_event(busy, None, _draft("meeting", hours=0.5))
    unknown = f"ghost-{uuid.uuid4().hex[:8]}@contoso.example"
    schedules = await graph.gateway.get_schedule(
        asker, [busy, unknown], BASE - timedelta(minutes=30), BASE + timedelta(hours=1), interval_minutes=15
    )
    assert [s.schedule_id.casefold() for s in schedules] == [busy.casefold(), unknown.casefold()]
    assert schedules[0].availability_view == "002200"
    assert schedules[0].error is None
    assert [(i.start, i.status) for i in schedules[0].items] == [(BASE, ShowAs.BUSY)]
    assert schedules[1].error


# --- limits --------------------------------------------------------------------------------


async def test_at_most_four_requests_are_in_flight_per_mailbox(graph: GraphHarness) -> None:
    first, second = await _mailbox(graph, "a"), await _mailbox(graph, "b")
    await graph.world.reset_peaks()
    await graph.world.set_latency(0.05)
    try:
        # A mailbox request: Outlook's limit (and the emulator's counters) are per mailbox, while
        # `get_user` is a directory request that neither counts against it nor is counted.
        answers = await asyncio.gather(*(graph.gateway.list_calendars(m) for m in [first, second] * 10))
    finally:
        await graph.world.set_latency(0)
    assert len(answers) == 20
    # Exactly 4: never more, and the limit is per mailbox (not 4 for the whole process).
    assert await graph.world.peak_concurrency(first) == 4
    assert await graph.world.peak_concurrency(second) == 4


# --- mail ----------------------------------------------------------------------------------


@mail_contract
async def test_folder_paths_resolve_by_well_known_or_display_name(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    invoices = await graph.world.add_mail_folder(mailbox, "Inbox/Invoices")
    found = await graph.gateway.resolve_folder_path(mailbox, "Inbox/Invoices")
    assert found.id == invoices
    assert (await graph.gateway.resolve_folder_path(mailbox, "inbox/INVOICES")).id == invoices
    with pytest.raises(FolderNotFound, match="Missing") as missing:
        await graph.gateway.resolve_folder_path(mailbox, "Inbox/Invoices/Missing/2026")
    assert (missing.value.segment, missing.value.parent) == ("Missing", "Inbox/Invoices")
    with pytest.raises(FolderNotFound) as top:
        await graph.gateway.resolve_folder_path(mailbox, "Fakturer/2026")
    assert (top.value.segment, top.value.parent) == ("Fakturer", "")
    with pytest.raises(NotFound) as nobody:
        await graph.gateway.resolve_folder_path("nobody@" + mailbox.split("@")[1], "Inbox/Invoices")
    assert not isinstance(nobody.value, FolderNotFound)


@mail_contract
async def test_mail_lists_with_attachments_streamed_in_chunks(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    folder = await graph.world.add_mail_folder(mailbox, "Inbox/Import")
    pdf = bytes(range(256)) * 1000  # 256,000 bytes
    message_id = await graph.world.deliver_mail(
        mailbox,
        "Inbox/Import",
        "Invoice 42",
        "billing@supplier.example",
        [
            SeedAttachment("invoice.pdf", "application/pdf", pdf),
            SeedAttachment("logo.png", "image/png", b"\x89PNG...", is_inline=True, content_id="logo"),
        ],
    )
    messages = [m async for m in graph.gateway.list_messages(mailbox, folder)]
    assert [(m.id, m.subject, m.has_attachments) for m in messages] == [(message_id, "Invoice 42", True)]
    attachments = {a.name: a for a in await graph.gateway.list_attachments(mailbox, message_id)}
    assert attachments["invoice.pdf"].size == len(pdf)
    assert attachments["invoice.pdf"].kind is AttachmentKind.FILE
    assert not attachments["invoice.pdf"].is_inline
    assert attachments["logo.png"].is_inline
    chunks = [
        c
        async for c in graph.gateway.stream_attachment(
            mailbox, message_id, attachments["invoice.pdf"].id, chunk_size=64 * 1024
        )
    ]
    assert b"".join(chunks) == pdf
    assert len(chunks) >= 4
    assert max(map(len, chunks)) <= 64 * 1024


@mail_contract
async def test_stopping_a_stream_early_releases_the_mailbox(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    await graph.world.add_mail_folder(mailbox, "Inbox")
    message_id = await graph.world.deliver_mail(
        mailbox,
        "Inbox",
        "big",
        "x@supplier.example",
        [SeedAttachment("big.bin", "application/octet-stream", b"x" * 300_000)],
    )
    (attachment,) = await graph.gateway.list_attachments(mailbox, message_id)
    for _ in range(6):  # more than 4: a leaked slot per abandoned stream would hang here
        async with aclosing(
            graph.gateway.stream_attachment(mailbox, message_id, attachment.id, chunk_size=1000)
        ) as s:
            async for _chunk in s:
                break
    assert (await asyncio.wait_for(graph.gateway.get_user(mailbox), 5)).user_principal_name


@mail_contract
async def test_a_moved_message_keeps_its_id(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    inbox = await graph.world.add_mail_folder(mailbox, "Inbox")
    archive = await graph.world.add_mail_folder(mailbox, "Archive/Imported")
    message_id = await graph.world.deliver_mail(mailbox, "Inbox", "to archive", "x@supplier.example")
    moved = await graph.gateway.move_message(mailbox, message_id, archive)
    assert moved.id == message_id
    assert moved.parent_folder_id == archive
    assert [m.id async for m in graph.gateway.list_messages(mailbox, archive)] == [message_id]
    assert message_id not in [m.id async for m in graph.gateway.list_messages(mailbox, inbox)]


@mail_contract
async def test_forward_and_send_mail_leave_the_mailbox(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    await graph.world.add_mail_folder(mailbox, "Inbox")
    message_id = await graph.world.deliver_mail(mailbox, "Inbox", "no attachment", "x@supplier.example")
    draft = await graph.gateway.create_forward(
        mailbox, message_id, ["erp@customer.example"], "No attachment found"
    )
    await graph.gateway.send_draft(mailbox, draft.id)
    await graph.gateway.send_mail(
        mailbox, OutgoingMail(subject="Receipt", body="Thanks", to=("host@customer.example",))
    )
    sent = await graph.world.sent_mail(mailbox)
    assert [(s.kind, s.to) for s in sent] == [
        ("forward", ("erp@customer.example",)),
        ("send", ("host@customer.example",)),
    ]
    assert sent[1].subject == "Receipt"


@mail_contract
async def test_a_forward_is_a_draft_until_sent_and_its_id_then_names_the_sent_forward(
    graph: GraphHarness,
) -> None:
    """GIVEN a mail with a file WHEN its forward is made (createForward) THEN it is a draft in
    Drafts, "FW: subject", carrying the file, and nothing has left the mailbox; WHEN the draft is
    sent THEN it leaves once as a forward with the comment, and the draft's id names a sent
    message (not a draft) — how the importer learns after a crash that a forward went — which
    cannot be sent again."""
    mailbox = await _mailbox(graph)
    await graph.world.add_mail_folder(mailbox, "Inbox")
    drafts = await graph.gateway.resolve_folder_path(mailbox, "Drafts")
    sheet = SeedAttachment("costs.xlsx", "application/vnd.ms-excel", b"PK\x03\x04 costs")
    message_id = await graph.world.deliver_mail(mailbox, "Inbox", "Invoice 7", "x@supplier.example", [sheet])
    draft = await graph.gateway.create_forward(mailbox, message_id, ["erp@customer.example"], "No document")
    assert draft.id != message_id
    assert (draft.is_draft, draft.subject, draft.parent_folder_id) == (True, "FW: Invoice 7", drafts.id)
    assert [a.name for a in await graph.gateway.list_attachments(mailbox, draft.id)] == ["costs.xlsx"]
    assert (await graph.gateway.get_message(mailbox, draft.id)).is_draft
    assert await graph.world.sent_mail(mailbox) == []

    await graph.gateway.send_draft(mailbox, draft.id)
    [sent] = await graph.world.sent_mail(mailbox)
    assert (sent.kind, sent.to, sent.subject, sent.attachment_names, sent.comment) == (
        "forward",
        ("erp@customer.example",),
        "FW: Invoice 7",
        ("costs.xlsx",),
        "No document",
    )
    assert not (await graph.gateway.get_message(mailbox, draft.id)).is_draft
    with pytest.raises(BadRequest):
        await graph.gateway.send_draft(mailbox, draft.id)  # sent already: never twice
    assert len(await graph.world.sent_mail(mailbox)) == 1
    assert (await graph.gateway.get_message(mailbox, message_id)).subject == "Invoice 7"  # untouched


@mail_contract
async def test_a_forward_draft_given_up_is_deleted_and_never_sent(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    inbox = await graph.world.add_mail_folder(mailbox, "Inbox")
    message_id = await graph.world.deliver_mail(mailbox, "Inbox", "no attachment", "x@supplier.example")
    draft = await graph.gateway.create_forward(mailbox, message_id, ["erp@customer.example"], "x")
    await graph.gateway.delete_message(mailbox, draft.id)
    with pytest.raises(NotFound):
        await graph.gateway.get_message(mailbox, draft.id)
    with pytest.raises(NotFound):
        await graph.gateway.send_draft(mailbox, draft.id)
    assert await graph.world.sent_mail(mailbox) == []
    assert [m.id async for m in graph.gateway.list_messages(mailbox, inbox)] == [message_id]


@mail_contract
async def test_a_forward_of_a_missing_mail_or_to_a_bad_address_is_refused(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    await graph.world.add_mail_folder(mailbox, "Inbox")
    message_id = await graph.world.deliver_mail(mailbox, "Inbox", "no attachment", "x@supplier.example")
    with pytest.raises(BadRequest):
        await graph.gateway.create_forward(mailbox, message_id, ["not an address"])
    with pytest.raises(BadRequest):
        await graph.gateway.create_forward(mailbox, message_id, [])
    await graph.gateway.delete_message(mailbox, message_id)
    with pytest.raises(NotFound):
        await graph.gateway.create_forward(mailbox, message_id, ["erp@customer.example"])


@mail_contract
async def test_a_mail_over_3_mb_goes_as_a_draft_with_an_upload_session_then_send(graph: GraphHarness) -> None:
    """GIVEN a mail with a 5 MB attachment and a small one WHEN sent in one request THEN it is
    refused before any I/O; WHEN made as a draft, its attachments added (the large one by an
    upload session) and the draft sent THEN the recipients get it with both files whole, and
    the draft's id now names a sent message (not a draft) — how a retry learns it went."""
    mailbox = await _mailbox(graph)
    await graph.world.add_mail_folder(mailbox, "Inbox")
    large = OutgoingAttachment("tegning.pdf", "application/pdf", b"%PDF-" + bytes(5 * 1024 * 1024))
    small = OutgoingAttachment("notat.txt", "text/plain", b"se vedlegg")
    mail = OutgoingMail(
        subject="Tilbud",
        body="<p>Se vedlegg</p>",
        body_type=BodyType.HTML,
        to=("kunde@customer.example",),
        attachments=(large, small),
        importance=Importance.HIGH,
    )
    with pytest.raises(BadRequest):
        await graph.gateway.send_mail(mailbox, mail)
    draft = await graph.gateway.create_draft(mailbox, mail)
    assert draft.is_draft
    sessions = await graph.world.upload_sessions(mailbox)
    for attachment in mail.attachments:
        await graph.gateway.add_message_attachment(
            mailbox,
            draft.id,
            name=attachment.name,
            content_type=attachment.content_type,
            content=attachment.content,
        )
    assert await graph.world.upload_sessions(mailbox) == sessions + 1  # only the large one
    assert (await graph.gateway.get_message(mailbox, draft.id)).is_draft
    await graph.gateway.send_draft(mailbox, draft.id)
    [sent] = await graph.world.sent_mail(mailbox)
    assert (sent.kind, sent.to, sent.subject) == ("send", ("kunde@customer.example",), "Tilbud")
    assert sorted(zip(sent.attachment_names, sent.attachment_sizes, strict=True)) == [
        ("notat.txt", len(small.content)),
        ("tegning.pdf", len(large.content)),
    ]
    assert not (await graph.gateway.get_message(mailbox, draft.id)).is_draft
    with pytest.raises(BadRequest):
        await graph.gateway.send_draft(mailbox, draft.id)  # sent already: never twice


@mail_contract
async def test_a_draft_given_up_is_deleted_once_and_gone_after(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    await graph.world.add_mail_folder(mailbox, "Inbox")
    draft = await graph.gateway.create_draft(mailbox, OutgoingMail("Utkast", "x", ("a@customer.example",)))
    await graph.gateway.delete_message(mailbox, draft.id)
    await graph.gateway.delete_message(mailbox, draft.id)
    with pytest.raises(NotFound):
        await graph.gateway.get_message(mailbox, draft.id)
    assert await graph.world.sent_mail(mailbox) == []


@mail_contract
async def test_message_delta_gives_the_folder_first_then_only_changes(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    folder = await graph.world.add_mail_folder(mailbox, "Inbox/Import")
    archive = await graph.world.add_mail_folder(mailbox, "Archive")
    first = await graph.world.deliver_mail(mailbox, "Inbox/Import", "one", "x@supplier.example")

    async def round_(link: str | None) -> tuple[list[Message | Removed], str]:
        items: list[Message | Removed] = []
        last = ""
        async for page in graph.gateway.message_delta(mailbox, folder, delta_link=link):
            items.extend(page.items)
            last = page.delta_link or last
        assert last
        return items, last

    items, link = await round_(None)
    assert [i.id for i in items] == [first]
    second = await graph.world.deliver_mail(mailbox, "Inbox/Import", "two", "x@supplier.example")
    await graph.gateway.move_message(mailbox, first, archive)
    items, _ = await round_(link)
    assert {i.id for i in items if isinstance(i, Message)} == {second}
    assert {i.id for i in items if isinstance(i, Removed)} == {first}


# --- change notifications ----------------------------------------------------------------------


def _subscription(
    resource: str, url: str, *, days: float = 2, change_types: tuple[str, ...] = ()
) -> SubscriptionRequest:
    return SubscriptionRequest(
        resource=resource,
        change_types=change_types or ("created", "updated", "deleted"),
        notification_url=url,
        lifecycle_url=url,
        client_state="cs-" + uuid.uuid4().hex,
        expiration=datetime.now(UTC) + timedelta(days=days),
    )


async def test_a_subscription_is_created_renewed_reauthorized_and_deleted(graph: GraphHarness) -> None:
    """GIVEN a mailbox WHEN the bridge subscribes to its calendar's events (Graph validates the
    notification URL first) THEN Graph holds the subscription with the expiration it granted;
    renewing extends it, reauthorizing keeps it; deleting stops it, and deleting again or a
    subscription Graph never had is no error — while renewing or reauthorizing one it no
    longer has is NotFound."""
    mailbox = await _mailbox(graph)
    url = await graph.world.notification_url()
    request = _subscription(f"/users/{mailbox}/calendar/events", url, days=1)
    created = await graph.gateway.create_subscription(mailbox, request)
    assert created.id in await graph.world.subscription_ids(mailbox)
    assert created.resource == request.resource
    assert datetime.now(UTC) < created.expiration <= request.expiration + timedelta(seconds=1)
    later = datetime.now(UTC) + timedelta(days=2)
    renewed = await graph.gateway.renew_subscription(mailbox, created.id, later)
    assert (renewed.id, renewed.expiration > created.expiration) == (created.id, True)
    await graph.gateway.reauthorize_subscription(mailbox, created.id)
    await graph.gateway.delete_subscription(mailbox, created.id)
    assert created.id not in await graph.world.subscription_ids(mailbox)
    await graph.gateway.delete_subscription(mailbox, created.id)
    with pytest.raises(NotFound):
        await graph.gateway.renew_subscription(mailbox, created.id, later)
    with pytest.raises(NotFound):
        await graph.gateway.reauthorize_subscription(mailbox, created.id)


async def test_a_subscription_longer_than_graph_allows_is_granted_its_maximum(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    folder = await graph.world.add_mail_folder(mailbox, "Inbox/Fakturaer")
    url = await graph.world.notification_url()
    request = _subscription(
        f"/users/{mailbox}/mailFolders('{folder}')/messages", url, days=30, change_types=("created",)
    )
    granted = await graph.gateway.create_subscription(mailbox, request)
    # Outlook's maximum is 4,230 or 10,080 minutes, by source (FACTS.md): within both
    now = datetime.now(UTC)
    assert now + timedelta(days=2) < granted.expiration <= now + timedelta(days=7, minutes=1)
    assert granted.id in await graph.world.subscription_ids(mailbox)


async def test_a_subscription_graph_would_refuse_is_refused_before_any_request(graph: GraphHarness) -> None:
    mailbox = await _mailbox(graph)
    url = await graph.world.notification_url()
    for bad in (
        _subscription("/subscriptions", url),
        _subscription(f"/users/{mailbox}/events?$filter=x", url),
        _subscription(f"/users/{mailbox}/events", "http://bridge.example/hook"),
        _subscription(f"/users/{mailbox}/events", url, change_types=("moved",)),
    ):
        with pytest.raises(BadRequest):
            await graph.gateway.create_subscription(mailbox, bad)
    assert await graph.world.subscription_ids(mailbox) == set()
