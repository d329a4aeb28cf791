"""Which slots a booking form shows: the events of the booking calendar in a window, filtered
by the calendar's rules.

Every appointment an admin put in the booking calendar is a slot, unless it is booked (its
subject ends with the booked suffix, or a reservation holds it), all-day, cancelled or over.
The rules are the guide's, in the calendar's time zone (wall-clock hours, so daylight saving
moves nothing): a slot must start at or after `first_hour` and end by `last_hour` on its day;
weekends only with `show_weekend`; and a slot sooner than `notice_days` days ahead is listed but
unavailable, with the reason, as the guide's form shows it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from core.graph.model import Event, EventType
from core.graph_access import GraphProvider
from core.request_errors import InvalidInput
from core.store import Tables
from core.store.records import BookingCalendar, SlotClaim, Tenant
from core.timezones import zone_for
from core.validators import CALENDAR_LATEST, CALENDAR_RANGE, in_calendar_range

DEFAULT_DAYS = 31
MAX_DAYS = 93


@dataclass(frozen=True, slots=True)
class Slot:
    event_id: str
    subject: str
    start: datetime
    end: datetime
    available: bool
    reason: str | None = None
    change_key: str | None = None  # the slot's version: a reservation may insist on it


def _zone(config: BookingCalendar) -> tzinfo:
    return zone_for(config.time_zone) or UTC


def _wall(day: date, hour: int, zone: tzinfo) -> datetime:
    """`hour` o'clock on `day` in `zone` (24 = the next midnight)."""
    if hour == 24:
        return datetime.combine(day + timedelta(days=1), time(0), zone)
    return datetime.combine(day, time(hour), zone)


def plan_slots(
    events: Iterable[Event], config: BookingCalendar, now: datetime, reserved: set[str]
) -> list[Slot]:
    """The slots among `events`, in start order (pure)."""
    zone = _zone(config)
    first_bookable_day = now.astimezone(zone).date() + timedelta(days=config.notice_days)
    out: list[Slot] = []
    for event in sorted(events, key=lambda e: (e.start, e.id)):
        if event.is_cancelled or event.is_all_day or event.type is EventType.SERIES_MASTER:
            continue
        if event.id in reserved or event.subject.endswith(config.booked_suffix):
            continue
        if event.start < now:
            continue
        start, end = event.start.astimezone(zone), event.end.astimezone(zone)
        day = start.date()
        if not config.show_weekend and day.weekday() >= 5:
            continue
        if start < _wall(day, config.first_hour, zone) or end > _wall(day, config.last_hour, zone):
            continue
        if day < first_bookable_day:
            reason = f"bookable from {first_bookable_day.isoformat()} ({config.notice_days} days' notice)"
            out.append(Slot(event.id, event.subject, event.start, event.end, False, reason, event.change_key))
        else:
            out.append(Slot(event.id, event.subject, event.start, event.end, True, None, event.change_key))
    return out


def _when(moment: datetime, zone: tzinfo, zone_name: str) -> dict[str, str]:
    return {
        "dateTime": moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S"),
        "timeZone": zone_name,
        "utc": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def slot_view(slot: Slot, config: BookingCalendar) -> dict[str, Any]:
    zone = _zone(config)
    out: dict[str, Any] = {
        "slotId": slot.event_id,
        "subject": slot.subject,
        "start": _when(slot.start, zone, config.time_zone),
        "end": _when(slot.end, zone, config.time_zone),
        "available": slot.available,
        "version": slot.change_key,
    }
    if slot.reason:
        out["reason"] = slot.reason
    return out


def _bound(name: str, raw: str, zone: tzinfo) -> datetime:
    try:
        if len(raw) == 10:
            value = datetime.combine(date.fromisoformat(raw), time(0), zone)
        else:
            value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput.one(name, "must be a date (2026-03-01) or a date-time") from None
    value = value if value.tzinfo else value.replace(tzinfo=zone)
    if not in_calendar_range(value):
        raise InvalidInput.one(name, f"must be {CALENDAR_RANGE}")
    return value


def window(
    config: BookingCalendar, start: str | None, end: str | None, now: datetime
) -> tuple[datetime, datetime]:
    """The `from`/`to` query parameters: dates are midnights in the calendar's zone; the
    default is today and the next 31 days; at most 93 days."""
    zone = _zone(config)
    frm = (
        _bound("from", start, zone) if start else datetime.combine(now.astimezone(zone).date(), time(0), zone)
    )
    to = _bound("to", end, zone) if end else frm + timedelta(days=DEFAULT_DAYS)
    if not end and not in_calendar_range(to):
        raise InvalidInput.one(
            "from", f"must be {DEFAULT_DAYS} days before {CALENDAR_LATEST} when `to` is left out"
        )
    if to <= frm:
        raise InvalidInput.one("to", "must be after from")
    if to - frm > timedelta(days=MAX_DAYS):
        raise InvalidInput.one("to", f"must be at most {MAX_DAYS} days after from")
    return frm.astimezone(UTC), to.astimezone(UTC)


async def list_slots(
    tables: Tables,
    graphs: GraphProvider,
    tenant: Tenant,
    config: BookingCalendar,
    start: datetime,
    end: datetime,
    now: datetime,
) -> list[Slot]:
    """The booking calendar's slots in [start, end): one calendarView read, one read of the
    calendar's claims."""
    gateway = await graphs.gateway(tenant)
    events = await gateway.calendar_view(config.owner, config.calendar_id, start, end)
    reserved = await claimed_slots(tables, config)
    return plan_slots(events, config, now, reserved)


async def claimed_slots(tables: Tables, config: BookingCalendar) -> set[str]:
    """The slot ids a reservation holds (one row range)."""
    low, high = SlotClaim.calendar_range(config.booking_id)
    claims = tables.repo(SlotClaim).list(
        SlotClaim.key(config.tenant_id, config.booking_id, "-")[0], row_key_from=low, row_key_to=high
    )
    return {claim.slot_id async for claim in claims}
