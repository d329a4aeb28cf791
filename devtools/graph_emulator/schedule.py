"""`POST /users/{id}/calendar/getSchedule`: free/busy of up to 20 mailboxes.

Per the Graph docs: `schedules` (SMTP addresses, at most 20), `startTime`/`endTime`
(dateTimeTimeZone, at most 62 days apart), `availabilityViewInterval` (minutes, 5-1440, default 30).
Each scheduleInformation has `scheduleItems` (status, start, end in the `Prefer: outlook.timezone`
zone or UTC, isPrivate; subject and location only for events that are not private) and
`availabilityView`, one digit per interval: 0 free, 1 tentative, 2 busy, 3 oof, 4 workingElsewhere.
Where items overlap a slot the strongest status wins: oof > busy > tentative > workingElsewhere >
free (Exchange's merged free/busy). An address with no mailbox gets an `error` instead.
Free/busy comes from each mailbox's default calendar; working hours are a fixed Mon-Fri 08-17 UTC.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from aiohttp import web

from devtools.graph_emulator.calendar_ops import Calendars
from devtools.graph_emulator.calendar_store import EventTime, Instance
from devtools.graph_emulator.calendar_view import output_zone
from devtools.graph_emulator.context import (
    EmulatorContext,
    action_parameters,
    graph_call,
    json_response,
    read_json,
)
from devtools.graph_emulator.errors import bad_request
from devtools.graph_emulator.timezones import date_time_time_zone

MAX_SCHEDULES = 20
MAX_DAYS = 62
DIGIT = {"free": "0", "tentative": "1", "busy": "2", "oof": "3", "workingElsewhere": "4", "unknown": "0"}
STRENGTH = {"0": 0, "4": 1, "1": 2, "2": 3, "3": 4}


def availability_view(
    items: list[Instance], start: dt.datetime, end: dt.datetime, interval: dt.timedelta
) -> str:
    slots = math.ceil((end - start) / interval)
    view = []
    for n in range(slots):
        slot_start = start + n * interval
        slot_end = min(slot_start + interval, end)
        digit = "0"
        for item in items:
            if item.start < slot_end and item.end > slot_start:
                candidate = DIGIT.get(item.show_as, "2")
                if STRENGTH[candidate] > STRENGTH[digit]:
                    digit = candidate
        view.append(digit)
    return "".join(view)


class ScheduleHandler:
    def __init__(self, ctx: EmulatorContext, calendars: Calendars) -> None:
        self.ctx = ctx
        self.calendars = calendars

    async def handle(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        body = action_parameters(await read_json(request))
        schedules = body.get("schedules")
        if not isinstance(schedules, list) or not schedules or not all(isinstance(s, str) for s in schedules):
            raise bad_request(
                "schedules must be a non-empty collection of SMTP addresses.", "ErrorInvalidParameter"
            )
        if len(schedules) > MAX_SCHEDULES:
            raise bad_request(
                f"The number of schedules ({len(schedules)}) exceeds the limit of {MAX_SCHEDULES}.",
                "ErrorInvalidParameter",
            )
        start = EventTime.parse(body.get("starttime"), "startTime").utc
        end = EventTime.parse(body.get("endtime"), "endTime").utc
        if end <= start:
            raise bad_request("endTime must be after startTime.", "ErrorInvalidParameter")
        if end - start > dt.timedelta(days=MAX_DAYS):
            raise bad_request(f"The requested time range exceeds {MAX_DAYS} days.", "ErrorInvalidParameter")
        minutes = body.get("availabilityviewinterval", 30)
        if not isinstance(minutes, int) or not 5 <= minutes <= 1440:
            raise bad_request(
                "availabilityViewInterval must be between 5 and 1440 minutes.", "ErrorInvalidParameter"
            )
        tz = output_zone(call)
        tenant_id = call.caller.tenant_id
        value = []
        for address in schedules:
            user = self.ctx.directory.user(tenant_id, address)
            if user is None:
                value.append(
                    {
                        "scheduleId": address,
                        "availabilityView": "",
                        "scheduleItems": [],
                        "error": {
                            "message": "The specified recipient is not found.",
                            "responseCode": "ErrorMailRecipientNotFound",
                        },
                    }
                )
                continue
            items = self.calendars.view(user, start, end)
            value.append(
                {
                    "scheduleId": address,
                    "availabilityView": availability_view(items, start, end, dt.timedelta(minutes=minutes)),
                    "scheduleItems": [self._item(i, tz) for i in items],
                    "workingHours": {
                        "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                        "startTime": "08:00:00.0000000",
                        "endTime": "17:00:00.0000000",
                        "timeZone": {"name": "UTC"},
                    },
                }
            )
        context = f"{self.ctx.graph_url}/$metadata#Collection(microsoft.graph.scheduleInformation)"
        return json_response({"@odata.context": context, "value": value})

    def _item(self, item: Instance, tz: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"isPrivate": item.is_private, "status": item.show_as}
        if not item.is_private:
            location = item.fields.get("location")
            out["subject"] = item.fields.get("subject") or ""
            out["location"] = location.get("displayName", "") if isinstance(location, dict) else ""
        out["start"] = date_time_time_zone(item.start, tz)
        out["end"] = date_time_time_zone(item.end, tz)
        return out
