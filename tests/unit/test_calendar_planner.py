"""The pure planner and the rolling window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.calendar.payload import CalendarContext
from core.calendar.planner import Delete, Forget, Known, Touch, Upsert, plan_items, plan_reconcile
from core.calendar.window import WindowPolicy
from core.graph.model import Event, EventType, Removed

T = datetime(2026, 4, 1, 9, tzinfo=UTC)
CTX = CalendarContext("acme", "room-4b", "adele@acme.example", "default")


def _event(event_id: str, subject: str = "Visit", change_key: str = "CK1", **kw: object) -> Event:
    return Event(event_id, change_key, subject, T, T + timedelta(hours=1), **kw)  # type: ignore[arg-type]


def _known(action: Upsert) -> dict[str, Known]:
    return {action.event.id: action.known}


def test_given_a_new_event_then_it_is_upserted_once_even_if_delta_repeats_it():
    actions = plan_items([_event("e1"), _event("e1")], {}, CTX)
    assert [type(a) for a in actions] == [Upsert]


def test_given_the_same_payload_with_a_new_change_key_then_only_the_map_is_touched():
    [first] = plan_items([_event("e1")], {}, CTX)
    assert isinstance(first, Upsert)
    [again] = plan_items([_event("e1", change_key="CK2")], _known(first), CTX)
    assert isinstance(again, Touch)
    assert again.known.change_key == "CK2"
    assert plan_items([_event("e1")], _known(first), CTX) == []


def test_given_an_edit_then_the_upsert_has_a_new_host_event_id():
    [first] = plan_items([_event("e1")], {}, CTX)
    assert isinstance(first, Upsert)
    [edit] = plan_items([_event("e1", "Moved", "CK2")], _known(first), CTX)
    assert isinstance(edit, Upsert)
    [back] = plan_items([_event("e1", "Visit", "CK3")], {"e1": edit.known}, CTX)
    assert isinstance(back, Upsert)
    # reverting to earlier content is a new change: its event id must differ from the first
    assert len({first.host_event_id, edit.host_event_id, back.host_event_id}) == 3
    # planning the same change twice (a retry after a crash) gives the same id
    [retry] = plan_items([_event("e1", "Moved", "CK2")], _known(first), CTX)
    assert isinstance(retry, Upsert)
    assert retry.host_event_id == edit.host_event_id


def test_given_removals_and_cancellations_then_only_known_events_are_deleted():
    [first] = plan_items([_event("e1")], {}, CTX)
    assert isinstance(first, Upsert)
    actions = plan_items([Removed("e1"), Removed("never-seen")], _known(first), CTX)
    assert [type(a) for a in actions] == [Delete]
    cancelled = plan_items([_event("e1", change_key="CK9", is_cancelled=True)], _known(first), CTX)
    assert [type(a) for a in cancelled] == [Delete]
    assert plan_items([_event("e2", is_cancelled=True)], {}, CTX) == []


def test_given_a_series_master_then_it_is_ignored():
    assert plan_items([_event("m", type=EventType.SERIES_MASTER)], {}, CTX) == []


def test_given_an_event_the_bridge_created_then_it_carries_its_host_appointment():
    [action] = plan_items([_event("e1", transaction_id="tx-1")], {}, CTX, {"tx-1": "H-42"})
    assert isinstance(action, Upsert)
    assert action.payload["hostAppointmentId"] == "H-42"
    assert action.known.host_appointment_id == "H-42"


def test_given_a_full_round_then_unseen_events_are_deleted_unless_they_aged_out():
    past = Known("old", "f", "c", end=T - timedelta(days=40))
    gone = Known("gone", "f", "c", end=T + timedelta(days=1))
    kept = Known("kept", "f", "c", end=T + timedelta(days=1))
    actions = plan_reconcile([past, gone, kept], {"kept"}, T - timedelta(days=30), CTX)
    assert {(type(a), a.known.event_id) for a in actions} == {(Forget, "old"), (Delete, "gone")}


def test_given_the_window_policy_then_a_link_serves_until_the_slack_is_used_up():
    policy = WindowPolicy(days_back=30, days_ahead=365, slack_days=7)
    start, end = policy.fresh(T)
    assert start == datetime(2026, 3, 2, tzinfo=UTC)
    assert end == datetime(2027, 4, 9, tzinfo=UTC)
    assert policy.covers(start, end, T + timedelta(days=7))
    assert not policy.covers(start, end, T + timedelta(days=8))
    assert not policy.covers(None, end, T)
    wider = WindowPolicy(days_back=60, days_ahead=365, slack_days=7)
    assert not wider.covers(start, end, T)  # more history wanted: a fresh round
