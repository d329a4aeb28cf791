"""Lean parsing of Graph JSON: what is validated, what is rejected by name, and that nothing
else escapes."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.graph_pages import delta_page, delta_page_bytes, event_json
from core.graph import (
    AttachmentKind,
    Event,
    EventType,
    MalformedItem,
    MalformedResponse,
    Removed,
    Sensitivity,
    ShowAs,
)
from core.graph.parse import (
    parse_attachment,
    parse_collection,
    parse_event,
    parse_event_delta_page,
    parse_message,
    parse_schedule,
)


def _event(**changes: Any) -> dict[str, Any]:
    raw = event_json(1, "single", random.Random(1))
    raw.update(changes)
    return raw


def test_a_realistic_500_item_delta_page_parses_completely() -> None:
    page = parse_event_delta_page(delta_page_bytes(500))
    assert len(page.items) == 500
    assert page.rejected == ()
    assert page.is_last
    assert page.next_link is None
    events = [i for i in page.items if isinstance(i, Event)]
    removed = [i for i in page.items if isinstance(i, Removed)]
    assert 10 < len(removed) < 70
    kinds = Counter(e.type for e in events)
    assert kinds[EventType.OCCURRENCE]
    assert kinds[EventType.EXCEPTION]
    assert kinds[EventType.SINGLE_INSTANCE]
    assert any(e.is_private for e in events)
    assert any(e.is_all_day for e in events)
    assert all(e.start.tzinfo is UTC and e.end >= e.start for e in events)
    assert all(e.series_master_id for e in events if e.type is not EventType.SINGLE_INSTANCE)


def test_event_fields_are_read_into_the_domain_object() -> None:
    event = parse_event(_event())
    assert event.subject == "Customer meeting 1"
    assert event.start == datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
    assert event.location == "Oslo 4"
    assert event.organizer == "kari@contoso.example"
    assert event.attendees
    assert event.attendees[0].address.endswith("@contoso.example")
    assert event.body.startswith("<html>")
    assert event.body_type.value == "html"
    assert event.last_modified == datetime(2025, 2, 21, 8, 9, 10, 765432, tzinfo=UTC)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"dateTime": "2030-01-07T09:00:00.0000000", "timeZone": "UTC"}, datetime(2030, 1, 7, 9, tzinfo=UTC)),
        (
            {"dateTime": "2030-01-07T09:00:00.0000000", "timeZone": "W. Europe Standard Time"},
            datetime(2030, 1, 7, 8, tzinfo=UTC),
        ),
        ({"dateTime": "2030-07-01T09:00:00", "timeZone": "Europe/Oslo"}, datetime(2030, 7, 1, 7, tzinfo=UTC)),
        (
            {"dateTime": "2030-07-01T09:00:00", "timeZone": "Pacific Standard Time"},
            datetime(2030, 7, 1, 16, tzinfo=UTC),
        ),
        ({"dateTime": "2030-01-07T09:00:00+01:00", "timeZone": "UTC"}, datetime(2030, 1, 7, 8, tzinfo=UTC)),
    ],
)
def test_start_and_end_become_aware_utc_from_any_time_zone(when: dict[str, str], expected: datetime) -> None:
    event = parse_event(_event(start=when, end={"dateTime": "2031-01-01T00:00:00", "timeZone": "UTC"}))
    assert event.start == expected
    assert event.start.tzinfo is UTC


def test_all_day_events_keep_their_wall_clock_dates() -> None:
    event = parse_event(
        _event(
            isAllDay=True,
            start={"dateTime": "2030-05-17T00:00:00.0000000", "timeZone": "W. Europe Standard Time"},
            end={"dateTime": "2030-05-18T00:00:00.0000000", "timeZone": "W. Europe Standard Time"},
        )
    )
    assert (event.start, event.end) == (datetime(2030, 5, 17, tzinfo=UTC), datetime(2030, 5, 18, tzinfo=UTC))


def test_unknown_future_enum_values_are_read_conservatively() -> None:
    event = parse_event(_event(showAs="unknownFutureValue", sensitivity="unknownFutureValue"))
    assert event.show_as is ShowAs.UNKNOWN  # neither busy nor free
    assert event.sensitivity is Sensitivity.PRIVATE
    assert event.is_private


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"id": None}, "has no id"),
        ({"id": ""}, "has no id"),
        ({"type": "weekly"}, "type is not a known event type"),
        ({"start": None}, "start is missing"),
        ({"start": {"timeZone": "UTC"}}, "start.dateTime is missing"),
        ({"end": {"dateTime": "next tuesday", "timeZone": "UTC"}}, "end.dateTime is not ISO 8601"),
        (
            {"start": {"dateTime": "2030-01-01T00:00:00", "timeZone": "Mars/Olympus"}},
            "start.timeZone is not a known time zone",
        ),
        ({"end": {"dateTime": "2000-01-01T00:00:00", "timeZone": "UTC"}}, "ends before it starts"),
        (
            {"start": {"dateTime": "0001-01-01T00:00:00", "timeZone": "W. Europe Standard Time"}},
            "start.dateTime is out of range",
        ),
        ({"subject": 42}, "subject is not a string"),
        ({"categories": "Quick3"}, "categories is not a list of strings"),
        ({"attendees": {"a": 1}}, "attendees is not a list"),
    ],
)
def test_malformed_events_are_rejected_by_name(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedItem) as caught:
        parse_event(_event(**changes))
    assert caught.value.reason == reason
    assert caught.value.kind == "event"


def test_one_malformed_item_does_not_hide_the_rest_of_the_page() -> None:
    page = delta_page(5)
    page["value"][2]["start"] = {"dateTime": "garbage", "timeZone": "UTC"}
    page["value"].append("not an object")
    parsed = parse_event_delta_page(json.dumps(page))
    assert len(parsed.items) == 4  # the other four of the original five
    assert [r.reason for r in parsed.rejected] == ["start.dateTime is not ISO 8601", "not a JSON object"]
    assert parsed.rejected[0].item_id == page["value"][2]["id"]


@pytest.mark.parametrize(
    "body",
    [
        b"<html>gateway timeout</html>",
        b"[]",
        b'{"value": {}}',
        b'{"value": []}',
        b'{"value": [], "@odata.deltaLink": 5}',
    ],
)
def test_a_page_that_is_not_a_delta_envelope_is_a_malformed_response(body: bytes) -> None:
    with pytest.raises(MalformedResponse):
        parse_event_delta_page(body)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "id",
            "type",
            "start",
            "end",
            "isAllDay",
            "subject",
            "body",
            "location",
            "attendees",
            "organizer",
            "categories",
            "sensitivity",
            "showAs",
            "originalStart",
            "lastModifiedDateTime",
            "changeKey",
            "seriesMasterId",
            "transactionId",
            "@removed",
        ]
    ),
    _json,
)
def test_any_json_in_any_field_parses_or_is_rejected_by_name(field: str, value: object) -> None:
    """No value Graph (or a proxy) could put in a field crashes the parser: the item parses or
    becomes a MalformedItem."""
    raw = _event(**{field: value})
    try:
        page = parse_event_delta_page(json.dumps({"value": [raw], "@odata.deltaLink": "https://x/d"}))
    except MalformedResponse as exc:
        raise AssertionError(f"the page failed instead of the item: {exc}") from exc
    assert len(page.items) + len(page.rejected) == 1


def test_removed_items_carry_their_id_and_reason() -> None:
    page = parse_event_delta_page(
        json.dumps(
            {
                "value": [{"id": "a", "@removed": {"reason": "changed"}}, {"id": "b", "@removed": {}}],
                "@odata.nextLink": "https://x/next",
            }
        )
    )
    assert page.items == (Removed("a", "changed"), Removed("b", "deleted"))
    assert not page.is_last
    assert page.next_link == "https://x/next"


def test_messages_attachments_and_schedules_parse() -> None:
    message = parse_message(
        {
            "id": "m1",
            "subject": "Invoice",
            "receivedDateTime": "2030-01-07T09:00:00Z",
            "from": {"emailAddress": {"address": "billing@supplier.example"}},
            "hasAttachments": True,
            "parentFolderId": "f1",
        }
    )
    assert (message.sender, message.received, message.has_attachments) == (
        "billing@supplier.example",
        datetime(2030, 1, 7, 9, tzinfo=UTC),
        True,
    )
    item = parse_attachment(
        {"@odata.type": "#microsoft.graph.itemAttachment", "id": "a", "name": "Fwd", "size": 10}
    )
    assert item.kind is AttachmentKind.ITEM
    assert item.content_type == "application/octet-stream"
    with pytest.raises(MalformedItem):
        parse_attachment({"@odata.type": "#microsoft.graph.fileAttachment", "id": "a", "size": -1})
    schedule = parse_schedule(
        {
            "scheduleId": "ola@contoso.example",
            "availabilityView": "0220",
            "scheduleItems": [
                {
                    "isPrivate": True,
                    "status": "busy",
                    "start": {"dateTime": "2030-01-07T09:00:00.0000000", "timeZone": "UTC"},
                    "end": {"dateTime": "2030-01-07T09:30:00.0000000", "timeZone": "UTC"},
                }
            ],
        }
    )
    assert schedule.items[0].is_private
    assert schedule.items[0].status is ShowAs.BUSY
    failed = parse_schedule(
        {"scheduleId": "x@y.z", "error": {"message": "m", "responseCode": "ErrorMailboxNotFound"}}
    )
    assert failed.error == "ErrorMailboxNotFound"
    items, next_link, rejected = parse_collection(b'{"value": [{"id": "m"}, {}]}', parse_message)
    assert [m.id for m in items] == ["m"]
    assert next_link is None
    assert len(rejected) == 1
