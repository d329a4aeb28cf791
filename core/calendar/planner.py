"""The down-sync planner: pure functions from (what Graph reported, what the host was told) to
the actions that bring the host in step. No I/O: the shell (`sync.py`) reads the event map,
calls these, and applies the actions in order.

- `plan_items` handles one delta page. An event the host has not seen, or whose payload
  differs from what the host last received, becomes `Upsert`; a known event whose payload is
  unchanged but whose change key moved becomes `Touch` (the map learns the key, the host hears
  nothing); `Removed` — and a cancelled meeting — of a known event becomes `Delete`, of an
  unknown one nothing. Delta may repeat an item within a round: planning against the map as the
  earlier actions leave it makes a repeat a no-op.
- `plan_reconcile` ends a full round (first sync, expired delta state, a window that rolled):
  every known event the round did not report is gone from Outlook's window — `Delete` — unless
  it ended before the window starts, in which case it only aged out: `Forget` (the host keeps
  its history).

Host event ids are derived from the change they report (event id + change key + fingerprint
for an upsert, event id + the last known change for a delete), so applying the same action
twice — after a crash between the outbox write and the map write — emits one host event. An
entry whose change key is `UNSEEN` (`core.calendar.eventmap`: no round has confirmed what the
host holds) makes an upsert whose id also derives from the fingerprint the host was told last:
the host may need to hear again a state it heard before, out of order, and an id it has seen
already would be taken for that first telling.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from core.calendar.payload import CalendarContext, appointment, fingerprint
from core.graph.model import Event, EventType, Removed

# The change key of an event-map entry that no down round has confirmed (Graph's are never
# empty); see `core.calendar.eventmap`.
UNSEEN = ""


@dataclass(frozen=True, slots=True)
class Known:
    """What the event map holds for one event."""

    event_id: str
    fingerprint: str | None
    change_key: str | None
    host_appointment_id: str | None = None
    series_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    last_modified: datetime | None = None


@dataclass(frozen=True, slots=True)
class Upsert:
    event: Event
    payload: dict[str, object]
    fingerprint: str
    host_event_id: str
    host_appointment_id: str | None

    @property
    def known(self) -> Known:
        """The map entry after this action."""
        return Known(
            self.event.id,
            self.fingerprint,
            self.event.change_key,
            self.host_appointment_id,
            self.event.series_master_id,
            self.event.start,
            self.event.end,
            self.event.last_modified,
        )


@dataclass(frozen=True, slots=True)
class Touch:
    """Unchanged for the host; the map records the new change key."""

    known: Known


@dataclass(frozen=True, slots=True)
class Delete:
    known: Known
    host_event_id: str


@dataclass(frozen=True, slots=True)
class Forget:
    """Aged out of the window: the map lets go, the host is not told."""

    known: Known


Action = Upsert | Touch | Delete | Forget


def _event_id(kind: str, ctx: CalendarContext, *parts: str | None) -> str:
    material = "\x1f".join((ctx.tenant_id, ctx.resource_id, ctx.account.lower(), ctx.calendar.casefold()))
    material += "\x1e" + "\x1f".join(part or "" for part in parts)
    return f"appt-{kind}-" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:40]


def _delete(known: Known, ctx: CalendarContext) -> Delete:
    return Delete(known, _event_id("del", ctx, known.event_id, known.change_key, known.fingerprint))


def plan_items(
    items: Sequence[Event | Removed],
    known: Mapping[str, Known],
    ctx: CalendarContext,
    bridge_appointments: Mapping[str, str] | None = None,
) -> list[Action]:
    """Actions for one delta page. `known` maps event id → map entry for (at least) the page's
    ids; `bridge_appointments` maps a transactionId the bridge created an event with to its
    host appointment id, for events the map does not know yet."""
    current = dict(known)
    bridge = bridge_appointments or {}
    actions: list[Action] = []
    for item in items:
        if isinstance(item, Event) and item.type is EventType.SERIES_MASTER:
            continue  # never listed by calendarView; a series arrives as its instances
        if isinstance(item, Removed) or item.is_cancelled:
            entry = current.pop(item.id, None)
            if entry is not None:
                actions.append(_delete(entry, ctx))
            continue
        entry = current.get(item.id)
        host_id = entry.host_appointment_id if entry else None
        if host_id is None and item.transaction_id:
            host_id = bridge.get(item.transaction_id)
        payload = appointment(item, ctx, host_id)
        digest = fingerprint(payload)
        if entry is not None and entry.fingerprint == digest:
            if entry.change_key != item.change_key:
                touched = replace(
                    entry,
                    change_key=item.change_key,
                    start=item.start,
                    end=item.end,
                    last_modified=item.last_modified,
                )
                actions.append(Touch(touched))
                current[item.id] = touched
            continue
        told = entry.fingerprint if entry is not None and entry.change_key == UNSEEN else None
        host_event_id = _event_id("up", ctx, item.id, item.change_key, digest, *([told] if told else []))
        upsert = Upsert(item, payload, digest, host_event_id, host_id)
        actions.append(upsert)
        current[item.id] = upsert.known
    return actions


def plan_reconcile(
    known: Iterable[Known], seen: set[str], window_start: datetime, ctx: CalendarContext
) -> list[Action]:
    """Actions that end a full round: known events the round did not report."""
    actions: list[Action] = []
    for entry in known:
        if entry.event_id in seen:
            continue
        if entry.end is not None and entry.end <= window_start:
            actions.append(Forget(entry))
        else:
            actions.append(_delete(entry, ctx))
    return actions


def deleted_payload(known: Known) -> dict[str, object]:
    """The `appointment.deleted` data for a map entry."""
    return {
        "eventId": known.event_id,
        "seriesId": known.series_id,
        "hostAppointmentId": known.host_appointment_id,
    }
