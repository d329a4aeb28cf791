"""A tenant's booking calendars (`…/booking-calendars/{id}`): which Outlook calendar holds the
slots, and the rules a form applies when it shows them (hours, weekends, notice), what booking
one does (suffix, documents, summary, notification).

The calendar is named as in Outlook and resolved when the booking calendar is saved; a
calendar that does not exist, or a mailbox the app may not read, is a field problem then. The
suffix defaults to the tenant language's (" - Booked", " - Booket", …).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from core.calendar.sync import CalendarNotFound, find_calendar_id
from core.errors import NotFound, StaleEtag
from core.graph.errors import ConsentMissing, GraphUnavailable, Throttled, TokenUnavailable
from core.graph.errors import NotFound as GraphNotFound
from core.graph_access import GraphProvider
from core.i18n import Text, text
from core.request_errors import (
    EditConflict,
    InvalidInput,
    ItemNotFound,
    UpstreamUnavailable,
)
from core.runs import Clock
from core.store import Tables
from core.store.keys import escape_key
from core.store.records import DEFAULT_CALENDAR, BookingCalendar, Tenant
from core.validators import Account, ApiModel, TimeZoneName, parse, plain_text, valid_host_id
from core.versions import check_preconditions, create_or_replace

log = logging.getLogger(__name__)


def _name(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 255:
        raise ValueError("must be 1-255 characters")
    return plain_text(value)


def _suffix(value: str) -> str:
    if not value.strip() or len(value) > 50:
        raise ValueError("must be 1-50 characters")
    return plain_text(value)


Name = Annotated[str, AfterValidator(_name)]


class BookingCalendarIn(ApiModel):
    display_name: Name
    owner: Account
    calendar: Name = DEFAULT_CALENDAR
    time_zone: TimeZoneName | None = None  # default: the tenant's
    booked_suffix: Annotated[str, AfterValidator(_suffix)] | None = None  # default: the tenant language's
    first_hour: Annotated[int, Field(ge=0, le=23, strict=True)] = 8
    last_hour: Annotated[int, Field(ge=1, le=24, strict=True)] = 16
    show_weekend: bool = False
    notice_days: Annotated[int, Field(ge=0, le=365, strict=True)] = 0
    attach_documents: bool = True
    add_summary: bool = True
    notify_attendees: bool = False

    @model_validator(mode="after")
    def _hours_in_order(self) -> BookingCalendarIn:
        if self.last_hour <= self.first_hour:
            raise ValueError("lastHour must be after firstHour")
        return self


def booking_view(config: BookingCalendar) -> dict[str, Any]:
    return {
        "id": config.booking_id,
        "displayName": config.display_name,
        "owner": config.owner,
        "calendar": config.calendar,
        "timeZone": config.time_zone,
        "bookedSuffix": config.booked_suffix,
        "firstHour": config.first_hour,
        "lastHour": config.last_hour,
        "showWeekend": config.show_weekend,
        "noticeDays": config.notice_days,
        "attachDocuments": config.attach_documents,
        "addSummary": config.add_summary,
        "notifyAttendees": config.notify_attendees,
        "createdAt": _iso(config.created_at),
        "updatedAt": _iso(config.updated_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class BookingCalendarService:
    """A tenant's booking calendars. Every method is scoped to the tenant it was made for."""

    def __init__(self, tables: Tables, graphs: GraphProvider, tenant: Tenant, clock: Clock) -> None:
        self._configs = tables.repo(BookingCalendar)
        self._graphs = graphs
        self._tenant = tenant
        self._clock = clock

    async def put(
        self, booking_id: str, body: object, if_match: str | None = None, if_none_match: str | None = None
    ) -> tuple[BookingCalendar, bool]:
        try:
            booking_id = valid_host_id(booking_id)
        except ValueError as exc:
            raise InvalidInput.one("bookingCalendarId", str(exc)) from None
        spec = parse(BookingCalendarIn, body)
        current = await self._configs.get(*BookingCalendar.key(self._tenant.tenant_id, booking_id))
        check_preconditions(current, if_match, if_none_match)
        calendar_id = await self._resolve(spec)
        now = self._clock()
        wanted = BookingCalendar(
            tenant_id=self._tenant.tenant_id,
            booking_id=booking_id,
            display_name=spec.display_name,
            owner=spec.owner,
            calendar=spec.calendar,
            calendar_id=calendar_id,
            time_zone=spec.time_zone or self._tenant.time_zone,
            booked_suffix=spec.booked_suffix or text(Text.BOOKED_SUFFIX, self._tenant.language),
            first_hour=spec.first_hour,
            last_hour=spec.last_hour,
            show_weekend=spec.show_weekend,
            notice_days=spec.notice_days,
            attach_documents=spec.attach_documents,
            add_summary=spec.add_summary,
            notify_attendees=spec.notify_attendees,
            created_at=current.created_at if current else now,
            updated_at=now,
        )
        saved = await create_or_replace(
            self._configs,
            current,
            wanted,
            conditional=bool(if_match or if_none_match),
            what="The booking calendar",
        )
        log.info(
            "booking calendar saved",
            extra={"booking_id": booking_id, "new_booking_calendar": current is None},
        )
        return saved, current is None

    async def _resolve(self, spec: BookingCalendarIn) -> str | None:
        gateway = await self._graphs.gateway(self._tenant)
        try:
            return await find_calendar_id(gateway, spec.owner, spec.calendar)
        except CalendarNotFound:
            raise InvalidInput.one("calendar", "does not exist in the owner's mailbox") from None
        except GraphNotFound:
            raise InvalidInput.one("owner", "is not a mailbox of the tenant") from None
        except (ConsentMissing, TokenUnavailable) as exc:
            raise InvalidInput.one("owner", f"cannot be read by the bridge: {exc}") from None
        except (Throttled, GraphUnavailable):
            raise UpstreamUnavailable("Microsoft Graph is unavailable; retry later.") from None

    async def get(self, booking_id: str) -> BookingCalendar:
        try:
            key = BookingCalendar.key(self._tenant.tenant_id, valid_host_id(booking_id))
        except ValueError:
            key = None
        config = await self._configs.get(*key) if key else None
        if config is None:
            raise ItemNotFound(f"Booking calendar '{booking_id}' does not exist.")
        return config

    async def delete(self, booking_id: str, if_match: str | None = None) -> None:
        config = await self.get(booking_id)
        check_preconditions(config, if_match)
        try:
            await self._configs.delete(config)
        except (StaleEtag, NotFound):
            raise EditConflict("The booking calendar changed while it was being deleted; retry.") from None

    async def list(self) -> list[BookingCalendar]:
        return [c async for c in self._configs.list(escape_key(self._tenant.tenant_id))]
