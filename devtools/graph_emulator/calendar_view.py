"""`calendarView` and `calendarView/delta`.

calendarView: single events, occurrences and exceptions overlapping [startDateTime, endDateTime)
(never series masters), ordered by start, paged with `$top`/`Prefer: odata.maxpagesize` and a
`$skip` next link (default page size 10, as Graph's), `$select` honoured. The window's values are
UTC unless they carry an offset; `Prefer: outlook.timezone` only changes how times are shown.

delta (docs: "Get incremental changes to events in a calendar view"): the first round returns
every instance in the window, page by page (`@odata.nextLink` with `$skiptoken`), and ends with
an `@odata.deltaLink` holding a `$deltatoken`. The token names a snapshot (instance id ->
changeKey); following it returns what differs from the snapshot: new or changed instances in full,
and `{"@odata.type", "id", "@removed": {"reason": "deleted"}}` for instances gone from the window
(deleted, moved out, or a cancelled occurrence). Each page of a round is the state at the round's
first request. `$select`, `$filter`, `$expand`, `$orderby` and `$search` are refused (400) because
the service does not support them here. A token the control API expired answers 410
SyncStateNotFound. Default page size 100, maximum 1000 (emulator choices).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from devtools.graph_emulator.calendar_ops import Calendars
from devtools.graph_emulator.calendar_store import Instance, render
from devtools.graph_emulator.context import EmulatorContext, GraphCall, graph_call, json_response
from devtools.graph_emulator.errors import GraphError, bad_request
from devtools.graph_emulator.odata import collection, link, offset_page, page_size, select
from devtools.graph_emulator.timezones import UnknownTimeZone, parse_instant, zone

DELTA_UNSUPPORTED = ("$select", "$filter", "$expand", "$orderby", "$search")
VIEW_UNSUPPORTED = ("$filter", "$expand", "$search")
PAGE_KIND = "calendarView.page"
DELTA_KIND = "calendarView.delta"


def _query(request: web.Request) -> dict[str, str]:
    # Graph's query option names are case-insensitive (its own docs write "startdatetime").
    return {k.lower(): v for k, v in request.query.items()}


def window(request: web.Request) -> tuple[dt.datetime, dt.datetime]:
    q = _query(request)
    if not q.get("startdatetime") or not q.get("enddatetime"):
        raise bad_request(
            "This request requires a time window specified by the query string parameters StartDateTime "
            "and EndDateTime.",
            "ErrorInvalidParameter",
        )
    try:
        start, end = parse_instant(q["startdatetime"]), parse_instant(q["enddatetime"])
    except ValueError:
        raise bad_request(
            "StartDateTime and EndDateTime must be ISO 8601 date-times.", "ErrorInvalidParameter"
        ) from None
    if end <= start:
        raise bad_request("EndDateTime must be after StartDateTime.", "ErrorInvalidParameter")
    return start, end


@dataclass
class _Round:
    """Behind a $skiptoken: the rest of a round's items, and the snapshot its deltaLink will hold."""

    calendar_id: str
    start: dt.datetime
    end: dt.datetime
    page_size: int
    pending: list[dict[str, Any]]
    snapshot: dict[str, str]


@dataclass
class _Base:
    """Behind a $deltatoken: what the client has after the round that issued it."""

    calendar_id: str
    start: dt.datetime
    end: dt.datetime
    page_size: int
    snapshot: dict[str, str]


def output_zone(call: GraphCall) -> str | None:
    """The `Prefer: outlook.timezone` zone, validated and recorded as applied; None = UTC."""
    name = call.prefer.time_zone
    if not name:
        return None
    try:
        zone(name)
    except UnknownTimeZone as exc:
        raise GraphError(400, "TimeZoneNotSupportedException", str(exc)) from None
    call.apply(f'outlook.timezone="{name}"')
    return name


def plan_round(
    previous: dict[str, str], current: list[Instance]
) -> tuple[list[Instance], list[str], dict[str, str]]:
    """One delta round: the instances new or changed since `previous` (id -> changeKey), the ids
    no longer in the window, and the snapshot the round's deltaLink will hold."""
    snapshot = {i.id: i.change_key for i in current}
    changed = [i for i in current if previous.get(i.id) != i.change_key]
    removed = [item_id for item_id in previous if item_id not in snapshot]
    return changed, removed, snapshot


def _removed(item_id: str) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.event", "id": item_id, "@removed": {"reason": "deleted"}}


class CalendarViewHandlers:
    default_delta_page = 100
    max_page = 1000

    def __init__(self, ctx: EmulatorContext, calendars: Calendars) -> None:
        self.ctx = ctx
        self.calendars = calendars

    def _render_all(self, call: GraphCall, items: list[Instance]) -> list[dict[str, Any]]:
        tz = output_zone(call)
        owner = call.user()
        return [render(i, owner, tz) for i in items]

    async def calendar_view(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        bad = [k for k in request.query if k.lower() in VIEW_UNSUPPORTED]
        if bad:
            raise bad_request(
                f"The emulator does not support {', '.join(bad)} on calendarView.", "ErrorInvalidUrlQuery"
            )
        start, end = window(request)
        cal = self.calendars.calendar(call.user(), request.match_info.get("calendar"))
        items = self._render_all(call, self.calendars.view(call.user(), start, end, cal.id))
        page, next_link = offset_page(request, call, self.ctx.base_url, items, max_size=self.max_page)
        context = f"{self.ctx.graph_url}/$metadata#users('{call.user().id}')/calendarView"
        return json_response(collection(select(page, request), context=context, next_link=next_link))

    async def delta(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        user = call.user()
        bad = [k for k in request.query if k.lower() in DELTA_UNSUPPORTED]
        if bad:
            raise bad_request(
                "The following parameters are not supported with change tracking over the 'CalendarView' "
                f"resource: '{', '.join(bad)}'.",
                "ErrorInvalidUrlQuery",
            )
        q = _query(request)
        calendar_id = self.calendars.calendar(user, request.match_info.get("calendar")).id
        if "$skiptoken" in q:
            state: _Round = self.ctx.sync_states.get(q["$skiptoken"], user.id, PAGE_KIND)
            if state.calendar_id != calendar_id:
                raise GraphError(410, "SyncStateNotFound", "The sync state generation is not found.")
            round_ = state
        else:
            if "$deltatoken" in q:
                base: _Base = self.ctx.sync_states.get(q["$deltatoken"], user.id, DELTA_KIND)
                if base.calendar_id != calendar_id:
                    raise GraphError(410, "SyncStateNotFound", "The sync state generation is not found.")
                start, end, size, previous = base.start, base.end, base.page_size, base.snapshot
            else:
                start, end = window(request)
                size, previous = self.default_delta_page, {}
            changed, removed, snapshot = plan_round(
                previous, self.calendars.view(user, start, end, calendar_id)
            )
            pending = self._render_all(call, changed) + [_removed(i) for i in removed]
            round_ = _Round(calendar_id, start, end, size, pending, snapshot)
        size = page_size(request, call, round_.page_size, self.max_page)
        page, rest = round_.pending[:size], round_.pending[size:]
        context = f"{self.ctx.graph_url}/$metadata#Collection(event)"
        if rest:
            token = self.ctx.sync_states.put(
                user.id, PAGE_KIND, _Round(calendar_id, round_.start, round_.end, size, rest, round_.snapshot)
            )
            body = collection(
                page, context=context, next_link=link(self.ctx.base_url, request.path, {"$skiptoken": token})
            )
        else:
            token = self.ctx.sync_states.put(
                user.id, DELTA_KIND, _Base(calendar_id, round_.start, round_.end, size, round_.snapshot)
            )
            body = collection(
                page,
                context=context,
                delta_link=link(self.ctx.base_url, request.path, {"$deltatoken": token}),
            )
        return json_response(body)
