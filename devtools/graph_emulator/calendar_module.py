"""The calendar domain on the Graph surface: calendars, events, event attachments, plus the
control API that acts as a person in Outlook. calendarView/delta and getSchedule live in their
own files (calendar_view.py, schedule.py) and are registered from here.

Graph paths served, each under `/users/{id|upn}` and `/me`:
  GET/POST   /calendars                GET/DELETE /calendars/{id}            GET /calendar
  GET/POST   {events}                  GET/PATCH/DELETE {events}/{id}        GET {events}/{id}/instances
  POST/GET   {events}/{id}/attachments GET/DELETE {events}/{id}/attachments/{aid}
  GET        {events}/{id}/attachments/{aid}/$value
  POST       {events}/{id}/attachments/createUploadSession
where {events} is `/events`, `/calendar/events` or `/calendars/{calendar}/events`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from devtools.graph_emulator import calendar_view, schedule
from devtools.graph_emulator.calendar_ops import (
    MAX_POST_ATTACHMENT_BYTES,
    MIN_UPLOAD_SESSION_BYTES,
    Calendars,
)
from devtools.graph_emulator.calendar_store import (
    Instance,
    attachment_json,
    calendar_json,
    instances,
    master_instance,
    render,
)
from devtools.graph_emulator.calendar_view import output_zone
from devtools.graph_emulator.context import (
    EmulatorContext,
    GraphCall,
    Permissions,
    action_parameters,
    graph_call,
    json_response,
    read_json,
)
from devtools.graph_emulator.errors import GraphError, bad_request
from devtools.graph_emulator.odata import collection, offset_page, select, stream_bytes
from devtools.graph_emulator.routing import ControlRouter, GraphRouter, ModuleBase
from devtools.graph_emulator.timezones import parse_instant
from devtools.graph_emulator.uploads import UploadedFile

READ = Permissions.of("Calendars.Read", "Calendars.ReadWrite", "Calendars.ReadBasic")
WRITE = Permissions.of("Calendars.ReadWrite")
EVENT_PREFIXES = ("/events", "/calendar/events", "/calendars/{calendar}/events")


class CalendarModule(ModuleBase):
    name = "calendar"

    def __init__(self) -> None:
        self._calendars: Calendars | None = None

    @property
    def calendars(self) -> Calendars:
        if self._calendars is None:
            raise RuntimeError("the calendar module is not set up")
        return self._calendars

    def setup(self, ctx: EmulatorContext) -> None:
        super().setup(ctx)
        self._calendars = Calendars(ctx)

    def reset(self) -> None:
        self.calendars.reset()

    # -- routes ------------------------------------------------------------------------------

    def graph_routes(self, router: GraphRouter) -> None:
        add = router.add_mailbox
        add("GET", "/calendars", self._list_calendars, permissions=READ)
        add("POST", "/calendars", self._create_calendar, permissions=WRITE)
        add("GET", "/calendar", self._get_calendar, permissions=READ)
        add("GET", "/calendars/{calendar}", self._get_calendar, permissions=READ)
        add("DELETE", "/calendars/{calendar}", self._delete_calendar, permissions=WRITE)
        for prefix in EVENT_PREFIXES:
            add("GET", prefix, self._list_events, permissions=READ)
            add("POST", prefix, self._create_event, permissions=WRITE)
            add("GET", prefix + "/{event}", self._get_event, permissions=READ)
            add("PATCH", prefix + "/{event}", self._update_event, permissions=WRITE)
            add("DELETE", prefix + "/{event}", self._delete_event, permissions=WRITE)
            add("GET", prefix + "/{event}/instances", self._instances, permissions=READ)
            att = prefix + "/{event}/attachments"
            add("POST", att + "/createUploadSession", self._create_upload_session, permissions=WRITE)
            add("POST", att, self._add_attachment, permissions=WRITE)
            add("GET", att, self._list_attachments, permissions=READ)
            add("GET", att + "/{attachment}", self._get_attachment, permissions=READ)
            add("DELETE", att + "/{attachment}", self._delete_attachment, permissions=WRITE)
            add("GET", att + "/{attachment}/$value", self._attachment_value, permissions=READ)
        view = calendar_view.CalendarViewHandlers(self.ctx, self.calendars)
        for prefix in ("/calendarView", "/calendar/calendarView", "/calendars/{calendar}/calendarView"):
            add("GET", prefix, view.calendar_view, permissions=READ)
            add("GET", prefix + "/delta", view.delta, permissions=READ)
        add(
            "POST",
            "/calendar/getSchedule",
            schedule.ScheduleHandler(self.ctx, self.calendars).handle,
            permissions=READ,
            other_mailboxes_delegated=True,
        )

    def control_routes(self, router: ControlRouter) -> None:
        router.add("POST", "/users/{user}/calendars", self._control_create_calendar)
        router.add("GET", "/users/{user}/events", self._control_list_events)
        router.add("POST", "/users/{user}/events", self._control_create_event)
        router.add("PATCH", "/users/{user}/events/{event}", self._control_update_event)
        router.add("POST", "/users/{user}/events/{event}/move", self._control_move_event)
        router.add("DELETE", "/users/{user}/events/{event}", self._control_delete_event)

    # -- helpers -----------------------------------------------------------------------------

    def _context(self, call: GraphCall, suffix: str) -> str:
        return f"{self.ctx.graph_url}/$metadata#users('{call.user().id}')/{suffix}"

    def _render(self, call: GraphCall, instance: Instance) -> dict[str, Any]:
        return render(instance, call.user(), output_zone(call))

    # -- calendars ---------------------------------------------------------------------------

    async def _list_calendars(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        user = call.user()
        items = [calendar_json(c, user) for c in self.calendars.mailbox(user).calendars.values()]
        page, next_link = offset_page(request, call, self.ctx.base_url, items)
        return json_response(
            collection(select(page, request), context=self._context(call, "calendars"), next_link=next_link)
        )

    async def _create_calendar(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        body = await read_json(request)
        cal = self.calendars.create_calendar(
            call.user(), str(body.get("name") or ""), str(body.get("color") or "auto")
        )
        out = {"@odata.context": self._context(call, "calendars/$entity"), **calendar_json(cal, call.user())}
        return json_response(out, 201)

    async def _get_calendar(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        cal = self.calendars.calendar(call.user(), request.match_info.get("calendar"))
        out = {"@odata.context": self._context(call, "calendars/$entity"), **calendar_json(cal, call.user())}
        return json_response(out)

    async def _delete_calendar(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        self.calendars.delete_calendar(call.user(), request.match_info["calendar"])
        return web.Response(status=204)

    # -- events ------------------------------------------------------------------------------

    async def _list_events(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        records = self.calendars.events(call.user(), request.match_info.get("calendar"))
        items = [self._render(call, master_instance(r)) for r in records]
        page, next_link = offset_page(request, call, self.ctx.base_url, items)
        return json_response(
            collection(select(page, request), context=self._context(call, "events"), next_link=next_link)
        )

    async def _create_event(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        body = await read_json(request)
        record, _ = self.calendars.create_event(
            call.user(), body, calendar_id=request.match_info.get("calendar"), app_id=call.caller.client_id
        )
        out = {
            "@odata.context": self._context(call, "events/$entity"),
            **self._render(call, master_instance(record)),
        }
        return json_response(out, 201)

    async def _get_event(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        instance = self.calendars.find(
            call.user(), request.match_info["event"], request.match_info.get("calendar")
        )
        out = {"@odata.context": self._context(call, "events/$entity"), **self._render(call, instance)}
        return json_response(select([out], request)[0])

    async def _update_event(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        patch = await read_json(request)
        instance = self.calendars.update_event(
            call.user(),
            request.match_info["event"],
            patch,
            if_match=request.headers.get("If-Match"),
            calendar_id=request.match_info.get("calendar"),
        )
        out = {"@odata.context": self._context(call, "events/$entity"), **self._render(call, instance)}
        return json_response(out)

    async def _delete_event(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        self.calendars.delete_event(
            call.user(),
            request.match_info["event"],
            if_match=request.headers.get("If-Match"),
            calendar_id=request.match_info.get("calendar"),
        )
        return web.Response(status=204)

    async def _instances(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        start, end = calendar_view.window(request)
        instance = self.calendars.find(
            call.user(), request.match_info["event"], request.match_info.get("calendar")
        )
        found = instances([instance.record], start, end) if instance.type == "seriesMaster" else []
        items = [self._render(call, i) for i in found]
        page, next_link = offset_page(request, call, self.ctx.base_url, items)
        return json_response(
            collection(select(page, request), context=self._context(call, "events"), next_link=next_link)
        )

    # -- attachments -------------------------------------------------------------------------

    async def _add_attachment(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        body = await read_json(request)
        kind = body.get("@odata.type", "#microsoft.graph.fileAttachment")
        if kind != "#microsoft.graph.fileAttachment":
            raise bad_request(f"The emulator accepts file attachments on events, not {kind}.")
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request("The attachment name is required.")
        try:
            data = base64.b64decode(str(body.get("contentBytes") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("contentBytes is not valid base64.") from None
        if len(data) > MAX_POST_ATTACHMENT_BYTES:
            raise GraphError(
                413,
                "ErrorRequestEntityTooLarge",
                "The attachment is larger than 3 MB; use an upload session (createUploadSession).",
            )
        attachment = self.calendars.add_attachment(
            call.user(),
            request.match_info["event"],
            name=name,
            data=data,
            content_type=str(body.get("contentType") or "application/octet-stream"),
            is_inline=bool(body.get("isInline", False)),
            content_id=body.get("contentId"),
            calendar_id=request.match_info.get("calendar"),
        )
        out = {"@odata.context": self._context(call, "attachments/$entity"), **attachment_json(attachment)}
        return json_response(out, 201)

    async def _list_attachments(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        record = self.calendars.find(
            call.user(), request.match_info["event"], request.match_info.get("calendar")
        ).record
        items = [attachment_json(a) for a in record.attachments]
        return json_response(collection(select(items, request), context=self._context(call, "attachments")))

    async def _get_attachment(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        attachment = self.calendars.attachment(
            call.user(),
            request.match_info["event"],
            request.match_info["attachment"],
            request.match_info.get("calendar"),
        )
        out = {"@odata.context": self._context(call, "attachments/$entity"), **attachment_json(attachment)}
        return json_response(select([out], request)[0])

    async def _attachment_value(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        attachment = self.calendars.attachment(
            call.user(),
            request.match_info["event"],
            request.match_info["attachment"],
            request.match_info.get("calendar"),
        )
        return await stream_bytes(request, attachment.data, attachment.content_type)

    async def _delete_attachment(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        self.calendars.delete_attachment(
            call.user(),
            request.match_info["event"],
            request.match_info["attachment"],
            request.match_info.get("calendar"),
        )
        return web.Response(status=204)

    async def _create_upload_session(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        body = await read_json(request)
        user = call.user()
        event_id = request.match_info["event"]
        calendar_id = request.match_info.get("calendar")
        instance = self.calendars.find(user, event_id, calendar_id)  # 404 before a session is made
        item = action_parameters(body).get("attachmentitem")
        size = item.get("size") if isinstance(item, dict) else None
        if isinstance(size, int) and 0 < size < MIN_UPLOAD_SESSION_BYTES:
            # Documented in "Attach large files to Outlook messages or events" (Errors), for
            # messages and events alike: a file under 3 MB is one POST.
            raise GraphError(
                400,
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                "Attachment size must be greater than the minimum size.",
            )

        def complete(upload: UploadedFile) -> str:
            attachment = self.calendars.add_attachment(
                user,
                instance.id,
                name=upload.name,
                data=upload.data,
                content_type=upload.content_type,
                is_inline=upload.is_inline,
                content_id=upload.content_id,
            )
            return (
                f"{self.ctx.base_url}/api/v2.0/Users('{user.id}@{user.tenant_id}')/Events('{instance.id}')"
                f"/Attachments('{attachment.id}')"
            )

        session = self.ctx.uploads.create(
            user_id=user.id, item=item if isinstance(item, dict) else {}, on_complete=complete
        )
        return json_response(self.ctx.uploads.session_json(session), 201)

    # -- control API -------------------------------------------------------------------------

    async def _control_create_calendar(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        user = self.calendars.user(request.match_info["user"])
        cal = self.calendars.create_calendar(user, str(body.get("name") or ""))
        return json_response(calendar_json(cal, user), 201)

    async def _control_list_events(self, request: web.Request) -> web.StreamResponse:
        user = self.calendars.user(request.match_info["user"])
        records = self.calendars.events(user, request.query.get("calendarId"))
        return json_response({"value": [render(master_instance(r), user, None) for r in records]})

    async def _control_create_event(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        user = self.calendars.user(request.match_info["user"])
        calendar_id = body.pop("calendarId", None)
        record, _ = self.calendars.create_event(user, body, calendar_id=calendar_id)
        return json_response(render(master_instance(record), user, None), 201)

    async def _control_update_event(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        user = self.calendars.user(request.match_info["user"])
        instance = self.calendars.update_event(user, request.match_info["event"], body)
        return json_response(render(instance, user, None))

    async def _control_move_event(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        user = self.calendars.user(request.match_info["user"])
        try:
            start = parse_instant(str(body["start"]))
            end = parse_instant(str(body["end"])) if body.get("end") else None
        except (KeyError, ValueError):
            raise bad_request("move takes {'start': ISO instant, 'end'?: ISO instant}") from None
        instance = self.calendars.move_event(user, request.match_info["event"], start, end)
        return json_response(render(instance, user, None))

    async def _control_delete_event(self, request: web.Request) -> web.StreamResponse:
        user = self.calendars.user(request.match_info["user"])
        self.calendars.delete_event(user, request.match_info["event"])
        return web.Response(status=204)
