"""The Graph port on Microsoft Graph (or the local emulator), through msgraph-sdk's adapter.

Each operation describes its request as a `sender.Call` (path, Prefer tokens, the permission
it needs for the consent hint, whether a 5xx may be retried) and parses the bytes that come
back with `core.graph.parse`. Everything around the request — immutable ids, the per-mailbox
slot, retries, named errors — is the sender's, so it is the same for every operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote, urlencode

from core.graph.errors import (
    BadRequest,
    FolderNotFound,
    GraphError,
    GraphUnavailable,
    MalformedResponse,
    NotFound,
    SyncStateExpired,
    error_for_status,
    safe_code,
)
from core.graph.limits import MailboxLimiter
from core.graph.model import (
    SMALL_ATTACHMENT_LIMIT,
    Attachment,
    Calendar,
    DeltaPage,
    DeltaStart,
    Event,
    EventChanges,
    EventDraft,
    GraphSubscription,
    MailFolder,
    Message,
    OutgoingMail,
    Schedule,
    SubscriptionRequest,
    User,
    check_addresses,
    check_attachment,
    check_schedule_request,
    check_window,
)
from core.graph.parse import (
    attachment_id_from_location,
    load,
    parse_attachment,
    parse_batch_answers,
    parse_calendar,
    parse_collection,
    parse_event,
    parse_event_delta_page,
    parse_folder,
    parse_message,
    parse_message_delta_page,
    parse_next_expected_start,
    parse_schedule,
    parse_subscription,
    parse_upload_url,
    parse_user,
)
from core.graph.port import DEFAULT_CHUNK_SIZE, DEFAULT_DELTA_PAGE_SIZE, DEFAULT_MESSAGE_PAGE_SIZE
from core.graph.render import (
    dumps,
    event_body,
    event_changes_body,
    file_attachment,
    forward_body,
    graph_instant,
    message_body,
    schedule_body,
    send_mail_body,
    subscription_body,
)
from core.graph.sender import IMMUTABLE_IDS, UTC_TIMES, Call, GraphSender, Reply, RetryPolicy

if TYPE_CHECKING:
    import httpx
    from azure.core.credentials_async import AsyncTokenCredential

    from core.graph.client import GraphClientOptions

log = logging.getLogger(__name__)
T = TypeVar("T")

# Permissions named in ConsentMissing hints: the least each operation needs.
CALENDARS_READ = "Calendars.Read"
CALENDARS_WRITE = "Calendars.ReadWrite"
MAIL_READ = "Mail.Read"
MAIL_WRITE = "Mail.ReadWrite"
MAIL_SEND = "Mail.Send"
USERS_READ = "User.Read.All"

_EVENT_FIELDS = (
    "id,changeKey,subject,body,start,end,isAllDay,type,sensitivity,showAs,location,seriesMasterId,"
    "originalStart,transactionId,isCancelled,organizer,attendees,categories,hasAttachments,iCalUId,"
    "lastModifiedDateTime"
)
_MESSAGE_FIELDS = (
    "id,subject,receivedDateTime,from,sender,hasAttachments,parentFolderId,internetMessageId,changeKey,isRead,"
    "isDraft"
)
# Never `contentBytes`: a 150 MB attachment would arrive base64 inside the JSON.
_ATTACHMENT_FIELDS = "id,name,contentType,size,isInline"
_FOLDER_FIELDS = "id,displayName,parentFolderId"
# Upload-session ranges: a multiple of 320 KiB (the granularity Microsoft's upload sessions are
# documented with) under the 4 MB Graph advises per PUT for Outlook items: 3.75 MiB.
UPLOAD_CHUNK_SIZE = 12 * 320 * 1024
# Well-known folder names work in every mailbox language ("Inbox" is "Innboks" in Norwegian).
_WELL_KNOWN_FOLDERS = {
    name.casefold().replace(" ", ""): wk
    for wk, names in {
        "inbox": ("Inbox",),
        "archive": ("Archive",),
        "sentitems": ("SentItems", "Sent Items"),
        "drafts": ("Drafts",),
        "deleteditems": ("DeletedItems", "Deleted Items"),
        "junkemail": ("JunkEmail", "Junk Email"),
        "outbox": ("Outbox",),
        "msgfolderroot": ("MsgFolderRoot",),
    }.items()
    for name in names
}


def _seg(value: str) -> str:
    """One path segment: ids may hold '/', '+' and '=', so everything is percent-encoded."""
    if not value:
        raise BadRequest("an id or mailbox in the request path is empty")
    return quote(value, safe="")


def _path(*segments: str, query: Mapping[str, str | int] | None = None) -> str:
    path = "/" + "/".join(segments)
    if query:
        path += "?" + urlencode(query, quote_via=quote, safe="$")
    return path


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_permission(resource: str) -> str:
    """What Graph checks to subscribe to `resource` (named in a ConsentMissing)."""
    return CALENDARS_READ if resource.rstrip("/").lower().endswith("/events") else MAIL_READ


def _page_size(value: int) -> int:
    if not 1 <= value <= 1000:
        raise BadRequest("page_size must be 1 to 1000")
    return value


# Graph's limit of requests per `$batch`.
MAX_BATCH = 20


def _batches(starts: Sequence[DeltaStart], indexes: list[int]) -> list[list[int]]:
    """`indexes` in groups of at most `MAX_BATCH`, at most one per mailbox in a group: a batch
    then holds one slot of each of its mailboxes, so batches and single requests never wait on
    each other in a cycle."""
    groups: list[tuple[list[int], set[str]]] = []
    for index in indexes:
        key = starts[index].mailbox.casefold()
        group = next((g for g in groups if len(g[0]) < MAX_BATCH and key not in g[1]), None)
        if group is None:
            group = ([], set())
            groups.append(group)
        group[0].append(index)
        group[1].add(key)
    return [members for members, _ in groups]


def _if_match(change_key: str) -> str:
    # Graph's ETag for an item is W/"<changeKey>"; accept either form from callers. A bare
    # change key is base64 and may itself begin with "W/", but never holds a quote.
    return change_key if change_key.startswith(('W/"', '"')) else f'W/"{change_key}"'


class GraphApiGateway:
    """`GraphGateway` over HTTP. Build it with `open_gateway`; close it when done."""

    def __init__(self, sender: GraphSender, on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self._sender = sender
        self._on_close = on_close

    async def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            await on_close()

    # --- plumbing ------------------------------------------------------------------------

    async def _send(self, call: Call) -> Reply:
        return await self._sender.send(call)

    @staticmethod
    def _parse(call: Call, parse: Callable[[bytes], T], content: bytes) -> T:
        try:
            return parse(content)
        except MalformedResponse as exc:
            reason = str(exc)
        # Raised outside the handler: the context is the operation, not the parser's frames.
        raise MalformedResponse(
            f"{call.operation} for mailbox {call.mailbox!r}: {reason}",
            operation=call.operation,
            mailbox=call.mailbox,
        )

    async def _object(self, call: Call, parse: Callable[[object], T]) -> T:
        reply = await self._send(call)
        return self._parse(call, lambda content: parse(load(content)), reply.content)

    async def _collection(self, call: Call, parse: Callable[[object], T]) -> AsyncIterator[T]:
        """Every item of a paged collection, following nextLinks."""
        next_call: Call | None = call
        while next_call is not None:
            reply = await self._send(next_call)
            items, next_link, rejected = self._parse(
                next_call, lambda content: parse_collection(content, parse), reply.content
            )
            if rejected:
                log.warning(
                    "%s: skipped %d malformed item(s) for mailbox %s: %s",
                    call.operation,
                    len(rejected),
                    call.mailbox,
                    "; ".join(str(r) for r in rejected),
                )
            for item in items:
                yield item
            next_call = replace(call, url=next_link, path=None) if next_link else None

    def _check_stored_link(self, operation: str, mailbox: str, link: str) -> None:
        """A stored delta link for another Graph endpoint (GRAPH_BASE_URL changed since it was
        saved) cannot be followed; like an expired one, it means: start a full round."""
        if not link.startswith(self._sender.base_url + "/"):
            raise SyncStateExpired(
                f"{operation} for mailbox {mailbox!r}: the stored delta link is for another Graph "
                "endpoint; start a full round",
                operation=operation,
                mailbox=mailbox,
            )

    async def _delta(self, call: Call, parse: Callable[[bytes], DeltaPage[T]]) -> AsyncIterator[DeltaPage[T]]:
        while True:
            reply = await self._send(call)
            page = self._parse(call, parse, reply.content)
            yield page
            if page.next_link is None:
                return
            call = replace(call, url=page.next_link, path=None)

    # --- people and calendars ------------------------------------------------------------

    async def get_user(self, mailbox: str) -> User:
        call = Call(
            "get_user",
            mailbox,
            path=_path("users", _seg(mailbox), query={"$select": "id,displayName,mail,userPrincipalName"}),
            permission=USERS_READ,
        )
        return await self._object(call, parse_user)

    async def list_calendars(self, mailbox: str) -> list[Calendar]:
        call = Call(
            "list_calendars",
            mailbox,
            path=_path(
                "users",
                _seg(mailbox),
                "calendars",
                query={"$select": "id,name,canEdit,isDefaultCalendar,owner", "$top": 100},
            ),
            permission=CALENDARS_READ,
        )
        return [calendar async for calendar in self._collection(call, parse_calendar)]

    def _calendar_base(self, mailbox: str, calendar_id: str | None) -> tuple[str, ...]:
        if calendar_id is None:
            return ("users", _seg(mailbox))
        return ("users", _seg(mailbox), "calendars", _seg(calendar_id))

    def calendar_delta(
        self,
        mailbox: str,
        calendar_id: str | None,
        *,
        start: datetime,
        end: datetime,
        delta_link: str | None = None,
        page_size: int = DEFAULT_DELTA_PAGE_SIZE,
    ) -> AsyncIterator[DeltaPage[Event]]:
        # Checked here, before the generator starts: bad input fails at the call, not later.
        prefer = (f"odata.maxpagesize={_page_size(page_size)}", UTC_TIMES)
        if delta_link:
            self._check_stored_link("calendar_delta", mailbox, delta_link)
            call = Call("calendar_delta", mailbox, url=delta_link, prefer=prefer, permission=CALENDARS_READ)
        else:
            start, end = check_window(start, end)
            call = Call(
                "calendar_delta",
                mailbox,
                path=_path(
                    *self._calendar_base(mailbox, calendar_id),
                    "calendarView",
                    "delta",
                    query={"startDateTime": _iso(start), "endDateTime": _iso(end)},
                ),
                prefer=prefer,
                permission=CALENDARS_READ,
            )
        return self._delta(call, parse_event_delta_page)

    async def first_delta_pages(self, starts: Sequence[DeltaStart]) -> list[DeltaPage[Event] | GraphError]:
        results: list[DeltaPage[Event] | GraphError | None] = [None] * len(starts)
        ready: list[int] = []
        for index, start in enumerate(starts):
            try:
                _page_size(start.page_size)
                self._check_stored_link("calendar_delta", start.mailbox, start.delta_link)
            except GraphError as exc:
                results[index] = exc
                continue
            ready.append(index)
        await asyncio.gather(
            *(self._delta_batch(starts, group, results) for group in _batches(starts, ready))
        )
        return [r if r is not None else GraphUnavailable("first_delta_pages: no answer") for r in results]

    async def _delta_batch(
        self,
        starts: Sequence[DeltaStart],
        group: list[int],
        results: list[DeltaPage[Event] | GraphError | None],
    ) -> None:
        """One `$batch` of first delta pages; each answer (or the batch's own failure) lands in
        `results` at its start's index."""
        base = self._sender.base_url
        requests = []
        for index in group:
            start = starts[index]
            prefer = ", ".join((IMMUTABLE_IDS, f"odata.maxpagesize={start.page_size}", UTC_TIMES))
            requests.append(
                {
                    "id": str(index),
                    "method": "GET",
                    "url": start.delta_link[len(base) :],
                    "headers": {"Prefer": prefer, "Accept": "application/json"},
                }
            )
        call = Call(
            "first_delta_pages",
            "",
            method="POST",
            path="/$batch",
            body=dumps({"requests": requests}),
            permission=CALENDARS_READ,
            idempotent=True,  # every request in it is a read
        )
        try:
            reply = await self._sender.send(call, mailboxes=[starts[i].mailbox for i in group])
            answers = self._parse(call, parse_batch_answers, reply.content)
        except GraphError as exc:
            for index in group:
                results[index] = exc
            return
        for index in group:
            start = starts[index]
            answer = answers.get(str(index))
            if answer is None:
                results[index] = MalformedResponse(
                    "calendar_delta: the $batch response has no answer for this request",
                    operation="calendar_delta",
                    mailbox=start.mailbox,
                )
            elif not 200 <= answer.status < 300:
                results[index] = error_for_status(
                    answer.status,
                    code=safe_code((answer.body or {}).get("error", {}).get("code")),
                    headers=answer.headers,
                    operation="calendar_delta",
                    mailbox=start.mailbox,
                    permission=CALENDARS_READ,
                )
            elif answer.body is None:
                results[index] = MalformedResponse(
                    "calendar_delta: the answer has no JSON body",
                    operation="calendar_delta",
                    mailbox=start.mailbox,
                )
            else:
                try:
                    results[index] = parse_event_delta_page(answer.body)
                except MalformedResponse as exc:
                    results[index] = MalformedResponse(
                        f"calendar_delta for mailbox {start.mailbox!r}: {exc}",
                        operation="calendar_delta",
                        mailbox=start.mailbox,
                    )

    async def calendar_view(
        self, mailbox: str, calendar_id: str | None, start: datetime, end: datetime
    ) -> list[Event]:
        start, end = check_window(start, end)
        call = Call(
            "calendar_view",
            mailbox,
            path=_path(
                *self._calendar_base(mailbox, calendar_id),
                "calendarView",
                query={"startDateTime": _iso(start), "endDateTime": _iso(end), "$select": _EVENT_FIELDS},
            ),
            prefer=(f"odata.maxpagesize={DEFAULT_DELTA_PAGE_SIZE}", UTC_TIMES),
            permission=CALENDARS_READ,
        )
        return [event async for event in self._collection(call, parse_event)]

    async def get_event(self, mailbox: str, event_id: str, *, calendar_id: str | None = None) -> Event:
        base = ("users", _seg(mailbox)) if calendar_id is None else self._calendar_base(mailbox, calendar_id)
        call = Call(
            "get_event",
            mailbox,
            path=_path(*base, "events", _seg(event_id)),
            prefer=(UTC_TIMES,),
            permission=CALENDARS_READ,
        )
        return await self._object(call, parse_event)

    async def create_event(
        self, mailbox: str, calendar_id: str | None, draft: EventDraft, transaction_id: str
    ) -> Event:
        if not transaction_id:
            raise BadRequest("every event creation carries a transactionId")
        call = Call(
            "create_event",
            mailbox,
            method="POST",
            path=_path(*self._calendar_base(mailbox, calendar_id), "events"),
            body=dumps(event_body(draft, transaction_id)),
            prefer=(UTC_TIMES,),
            permission=CALENDARS_WRITE,
            idempotent=True,  # the transactionId makes a repeated POST return the same event
        )
        return await self._object(call, parse_event)

    async def update_event(
        self, mailbox: str, event_id: str, changes: EventChanges, *, if_match: str | None = None
    ) -> Event:
        call = Call(
            "update_event",
            mailbox,
            method="PATCH",
            path=_path("users", _seg(mailbox), "events", _seg(event_id)),
            body=dumps(event_changes_body(changes)),
            prefer=(UTC_TIMES,),
            headers=(("If-Match", _if_match(if_match)),) if if_match else (),
            permission=CALENDARS_WRITE,
        )
        return await self._object(call, parse_event)

    async def delete_event(self, mailbox: str, event_id: str) -> None:
        call = Call(
            "delete_event",
            mailbox,
            method="DELETE",
            path=_path("users", _seg(mailbox), "events", _seg(event_id)),
            permission=CALENDARS_WRITE,
        )
        await self._send(call)

    # --- event attachments ---------------------------------------------------------------

    def _event_attachments(self, mailbox: str, event_id: str, *rest: str) -> tuple[str, ...]:
        return ("users", _seg(mailbox), "events", _seg(event_id), "attachments", *rest)

    async def list_event_attachments(self, mailbox: str, event_id: str) -> list[Attachment]:
        call = Call(
            "list_event_attachments",
            mailbox,
            path=_path(*self._event_attachments(mailbox, event_id), query={"$select": _ATTACHMENT_FIELDS}),
            permission=CALENDARS_READ,
        )
        return [attachment async for attachment in self._collection(call, parse_attachment)]

    async def add_event_attachment(
        self, mailbox: str, event_id: str, *, name: str, content_type: str, content: bytes
    ) -> Attachment:
        check_attachment(name, content_type, content)
        base = self._event_attachments(mailbox, event_id)
        if len(content) <= SMALL_ATTACHMENT_LIMIT:
            call = Call(
                "add_event_attachment",
                mailbox,
                method="POST",
                path=_path(*base),
                body=dumps(file_attachment(name, content_type, content)),
                permission=CALENDARS_WRITE,
                idempotent=False,  # a repeated POST is a second attachment
            )
            return await self._object(call, parse_attachment)
        return await self._upload_event_attachment(mailbox, event_id, name, content_type, content)

    async def _upload_event_attachment(
        self, mailbox: str, event_id: str, name: str, content_type: str, content: bytes
    ) -> Attachment:
        """The upload-session path of `add_event_attachment`, then the new attachment."""
        base = self._event_attachments(mailbox, event_id)
        location = await self._upload(
            "add_event_attachment", mailbox, base, CALENDARS_WRITE, name, content_type, content
        )
        return await self._uploaded(mailbox, event_id, name, len(content), location)

    async def _upload(
        self,
        operation: str,
        mailbox: str,
        base: tuple[str, ...],
        permission: str,
        name: str,
        content_type: str,
        content: bytes,
    ) -> str | None:
        """An attachment by upload session ("Attach large files to Outlook messages or events")
        to the item whose attachments are at `base`: create the session, PUT the bytes in order;
        the final PUT's Location. A failure after the session exists cancels it, so a half-sent
        file can never complete later: the attachment exists only if the final range landed."""
        size = len(content)
        session = Call(
            operation,
            mailbox,
            method="POST",
            path=_path(*base, "createUploadSession"),
            body=dumps(
                {
                    "AttachmentItem": {
                        "attachmentType": "file",
                        "name": name,
                        "size": size,
                        "contentType": content_type,
                    }
                }
            ),
            permission=permission,
            # Creating a session changes nothing on the item; an unused one expires.
            idempotent=True,
        )
        reply = await self._send(session)
        upload = Call(
            operation,
            mailbox,
            method="PUT",
            url=self._parse(session, parse_upload_url, reply.content),
            permission=permission,
            idempotent=False,  # see GraphSender.upload_chunk for what is retried
        )
        failure: GraphError | None = None
        location: str | None = None
        try:
            location = await self._put_ranges(upload, content)
        except GraphError as exc:
            failure = exc
        if failure is not None:
            await self._sender.cancel_upload(upload)
            raise failure
        return location

    async def _put_ranges(self, upload: Call, content: bytes) -> str | None:
        """PUT `content` range by range, where the server says the next one begins; the final
        PUT's Location header."""
        size = len(content)
        start = 0
        view = memoryview(content)
        while True:
            chunk = bytes(view[start : start + UPLOAD_CHUNK_SIZE])
            reply = await self._sender.upload_chunk(upload, chunk, start, size)
            if reply.status == 201:
                return reply.headers.get("location")
            sent_to = start + len(chunk)
            expected = self._parse(upload, parse_next_expected_start, reply.content)
            if expected is None:
                expected = sent_to
            # Progress, within the file: a server that asks for a range before this one or past
            # the end would loop forever or corrupt the file.
            if not start < expected <= sent_to or expected >= size:
                raise MalformedResponse(
                    f"{upload.operation} for mailbox {upload.mailbox!r}: the upload session asked for "
                    f"byte {expected} after bytes {start}-{sent_to - 1} of {size}",
                    operation=upload.operation,
                    mailbox=upload.mailbox,
                )
            start = expected

    async def _uploaded(
        self, mailbox: str, event_id: str, name: str, size: int, location: str | None
    ) -> Attachment:
        """The attachment an upload session just created. The final PUT answers 201 with an
        empty body and a Location naming the attachment, .../Attachments('<id>'): the emulator's
        ids there are the ones Graph lists, but real Graph's Location is on the Outlook REST host
        and may carry the REST form of the id rather than the immutable one the gateway asks for.
        So the attachments are listed (also for their content type as Graph stored it) and the
        new one is the one with the Location's id, else the one with this name and size (the
        last listed if several: they hold the same file as far as a caller can tell)."""
        wanted = attachment_id_from_location(location)
        listed = await self.list_event_attachments(mailbox, event_id)
        by_id = next((a for a in listed if wanted is not None and a.id == wanted), None)
        if by_id is not None:
            return by_id
        same = [a for a in listed if a.name == name and a.size == size]
        if same:
            return same[-1]
        raise MalformedResponse(
            f"add_event_attachment for mailbox {mailbox!r}: the upload session completed, but the "
            "attachment is not listed on the event",
            operation="add_event_attachment",
            mailbox=mailbox,
        )

    async def delete_event_attachment(self, mailbox: str, event_id: str, attachment_id: str) -> None:
        call = Call(
            "delete_event_attachment",
            mailbox,
            method="DELETE",
            path=_path(*self._event_attachments(mailbox, event_id, _seg(attachment_id))),
            permission=CALENDARS_WRITE,
        )
        await self._send(call)

    async def get_schedule(
        self,
        mailbox: str,
        schedules: Sequence[str],
        start: datetime,
        end: datetime,
        *,
        interval_minutes: int = 15,
    ) -> list[Schedule]:
        wanted = tuple(schedules)
        start, end = check_schedule_request(wanted, start, end, interval_minutes)
        call = Call(
            "get_schedule",
            mailbox,
            method="POST",
            path=_path("users", _seg(mailbox), "calendar", "getSchedule"),
            body=dumps(schedule_body(wanted, start, end, interval_minutes)),
            prefer=(UTC_TIMES,),
            permission=CALENDARS_READ,
            idempotent=True,  # a read, despite the POST
        )
        reply = await self._send(call)
        found, _, rejected = self._parse(call, lambda c: parse_collection(c, parse_schedule), reply.content)
        if rejected:
            raise MalformedResponse(
                f"get_schedule for mailbox {mailbox!r}: {rejected[0]}",
                operation="get_schedule",
                mailbox=mailbox,
            )
        by_id = {s.schedule_id.casefold(): s for s in found}
        # Graph answers in request order; re-key anyway so a caller can zip with its list.
        return [by_id.get(s.casefold()) or Schedule(s, "", (), "missing") for s in wanted]

    # --- mail ----------------------------------------------------------------------------

    async def resolve_folder_path(self, mailbox: str, path: str) -> MailFolder:
        segments = [s.strip() for s in path.strip().strip("/").split("/")]
        if not segments or any(not s for s in segments):
            raise BadRequest("a folder path is display names separated by '/', e.g. Inbox/Invoices")
        users = ("users", _seg(mailbox))
        well_known = _WELL_KNOWN_FOLDERS.get(segments[0].casefold().replace(" ", ""))
        if well_known is not None:
            call = Call(
                "resolve_folder_path",
                mailbox,
                path=_path(*users, "mailFolders", well_known, query={"$select": _FOLDER_FIELDS}),
                permission=MAIL_READ,
            )
            folder = await self._object(call, parse_folder)
        else:
            folder = await self._child_folder(mailbox, (*users, "mailFolders"), segments[0], "")
        walked = segments[0]
        for segment in segments[1:]:
            folder = await self._child_folder(
                mailbox, (*users, "mailFolders", _seg(folder.id), "childFolders"), segment, walked
            )
            walked += "/" + segment
        return replace(folder, path="/".join(segments))

    async def _child_folder(self, mailbox: str, base: tuple[str, ...], name: str, parent: str) -> MailFolder:
        call = Call(
            "resolve_folder_path",
            mailbox,
            path=_path(*base, query={"$select": _FOLDER_FIELDS, "$top": 100}),
            permission=MAIL_READ,
        )
        wanted = name.casefold()
        async for folder in self._collection(call, parse_folder):
            if folder.display_name.casefold() == wanted:
                return folder
        where = f" under {parent!r}" if parent else ""
        raise FolderNotFound(
            f"resolve_folder_path for mailbox {mailbox!r}: no mail folder {name!r}{where}",
            segment=name,
            parent=parent,
            operation="resolve_folder_path",
            mailbox=mailbox,
        )

    def list_messages(
        self, mailbox: str, folder_id: str, *, page_size: int = DEFAULT_MESSAGE_PAGE_SIZE
    ) -> AsyncIterator[Message]:
        call = Call(
            "list_messages",
            mailbox,
            path=_path(
                "users",
                _seg(mailbox),
                "mailFolders",
                _seg(folder_id),
                "messages",
                query={"$select": _MESSAGE_FIELDS, "$top": _page_size(page_size)},
            ),
            permission=MAIL_READ,
        )
        return self._collection(call, parse_message)

    def message_delta(
        self,
        mailbox: str,
        folder_id: str,
        *,
        delta_link: str | None = None,
        page_size: int = DEFAULT_MESSAGE_PAGE_SIZE,
    ) -> AsyncIterator[DeltaPage[Message]]:
        prefer = (f"odata.maxpagesize={_page_size(page_size)}",)
        if delta_link:
            self._check_stored_link("message_delta", mailbox, delta_link)
            call = Call("message_delta", mailbox, url=delta_link, prefer=prefer, permission=MAIL_READ)
        else:
            call = Call(
                "message_delta",
                mailbox,
                path=_path(
                    "users",
                    _seg(mailbox),
                    "mailFolders",
                    _seg(folder_id),
                    "messages",
                    "delta",
                    query={"$select": _MESSAGE_FIELDS},
                ),
                prefer=prefer,
                permission=MAIL_READ,
            )
        return self._delta(call, parse_message_delta_page)

    async def list_attachments(self, mailbox: str, message_id: str) -> list[Attachment]:
        call = Call(
            "list_attachments",
            mailbox,
            path=_path(
                "users",
                _seg(mailbox),
                "messages",
                _seg(message_id),
                "attachments",
                query={"$select": _ATTACHMENT_FIELDS},
            ),
            permission=MAIL_READ,
        )
        return [attachment async for attachment in self._collection(call, parse_attachment)]

    def stream_attachment(
        self,
        mailbox: str,
        message_id: str,
        attachment_id: str,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncGenerator[bytes, None]:
        if chunk_size < 1:
            raise BadRequest("chunk_size must be positive")
        call = Call(
            "stream_attachment",
            mailbox,
            path=_path(
                "users",
                _seg(mailbox),
                "messages",
                _seg(message_id),
                "attachments",
                _seg(attachment_id),
                "$value",
            ),
            accept="*/*",
            permission=MAIL_READ,
        )
        return self._sender.stream(call, chunk_size)

    async def move_message(self, mailbox: str, message_id: str, destination_folder_id: str) -> Message:
        call = Call(
            "move_message",
            mailbox,
            method="POST",
            path=_path("users", _seg(mailbox), "messages", _seg(message_id), "move"),
            body=dumps({"destinationId": destination_folder_id}),
            permission=MAIL_WRITE,
            # With immutable ids a repeated move finds the message where the first one put it.
            idempotent=True,
        )
        return await self._object(call, parse_message)

    async def create_forward(
        self, mailbox: str, message_id: str, to: Sequence[str], comment: str = ""
    ) -> Message:
        recipients = check_addresses(tuple(to))
        call = Call(
            "create_forward",
            mailbox,
            method="POST",
            path=_path("users", _seg(mailbox), "messages", _seg(message_id), "createForward"),
            body=dumps(forward_body(recipients, comment)),
            permission=MAIL_WRITE,  # a draft is written; sending it needs Mail.Send
            idempotent=False,  # a repeated POST is a second draft
        )
        return await self._object(call, parse_message)

    # --- drafts: mail too large for one sendMail -------------------------------------------

    def _message_attachments(self, mailbox: str, message_id: str) -> tuple[str, ...]:
        return ("users", _seg(mailbox), "messages", _seg(message_id), "attachments")

    async def create_draft(self, mailbox: str, mail: OutgoingMail) -> Message:
        call = Call(
            "create_draft",
            mailbox,
            method="POST",
            path=_path("users", _seg(mailbox), "messages"),
            body=dumps(message_body(mail, with_attachments=False)),
            permission=MAIL_WRITE,
            idempotent=False,  # a repeated POST is a second draft
        )
        return await self._object(call, parse_message)

    async def add_message_attachment(
        self, mailbox: str, message_id: str, *, name: str, content_type: str, content: bytes
    ) -> None:
        check_attachment(name, content_type, content)
        base = self._message_attachments(mailbox, message_id)
        if len(content) <= SMALL_ATTACHMENT_LIMIT:
            call = Call(
                "add_message_attachment",
                mailbox,
                method="POST",
                path=_path(*base),
                body=dumps(file_attachment(name, content_type, content)),
                permission=MAIL_WRITE,
                idempotent=False,  # a repeated POST is a second attachment
            )
            await self._send(call)
            return
        await self._upload("add_message_attachment", mailbox, base, MAIL_WRITE, name, content_type, content)

    async def send_draft(self, mailbox: str, message_id: str) -> None:
        call = Call(
            "send_draft",
            mailbox,
            method="POST",
            path=_path("users", _seg(mailbox), "messages", _seg(message_id), "send"),
            permission=MAIL_SEND,
            idempotent=False,  # the caller checks the draft before it tries again
        )
        await self._send(call)

    async def get_message(self, mailbox: str, message_id: str) -> Message:
        call = Call(
            "get_message",
            mailbox,
            path=_path(
                "users", _seg(mailbox), "messages", _seg(message_id), query={"$select": _MESSAGE_FIELDS}
            ),
            permission=MAIL_READ,
        )
        return await self._object(call, parse_message)

    async def delete_message(self, mailbox: str, message_id: str) -> None:
        call = Call(
            "delete_message",
            mailbox,
            method="DELETE",
            path=_path("users", _seg(mailbox), "messages", _seg(message_id)),
            permission=MAIL_WRITE,
            idempotent=True,
        )
        with contextlib.suppress(NotFound):  # gone already
            await self._send(call)

    # --- change notifications --------------------------------------------------------------

    async def create_subscription(self, mailbox: str, request: SubscriptionRequest) -> GraphSubscription:
        call = Call(
            "create_subscription",
            mailbox,
            method="POST",
            path=_path("subscriptions"),
            body=dumps(subscription_body(request)),
            permission=_read_permission(request.resource),
            idempotent=False,  # a repeated POST is a second subscription
        )
        return await self._object(call, parse_subscription)

    async def renew_subscription(
        self, mailbox: str, subscription_id: str, expiration: datetime
    ) -> GraphSubscription:
        call = Call(
            "renew_subscription",
            mailbox,
            method="PATCH",
            path=_path("subscriptions", _seg(subscription_id)),
            body=dumps({"expirationDateTime": graph_instant(expiration)}),
            idempotent=True,
        )
        return await self._object(call, parse_subscription)

    async def reauthorize_subscription(self, mailbox: str, subscription_id: str) -> None:
        call = Call(
            "reauthorize_subscription",
            mailbox,
            method="POST",
            path=_path("subscriptions", _seg(subscription_id), "reauthorize"),
            idempotent=True,
        )
        await self._send(call)

    async def delete_subscription(self, mailbox: str, subscription_id: str) -> None:
        call = Call(
            "delete_subscription",
            mailbox,
            method="DELETE",
            path=_path("subscriptions", _seg(subscription_id)),
            idempotent=True,
        )
        with contextlib.suppress(NotFound):  # gone already (expired, removed): stopped either way
            await self._send(call)

    async def send_mail(self, mailbox: str, mail: OutgoingMail) -> None:
        if not mail.fits_one_request:
            raise BadRequest("attachments above 3 MB in all go through a draft (create_draft)")
        call = Call(
            "send_mail",
            mailbox,
            method="POST",
            path=_path("users", _seg(mailbox), "sendMail"),
            body=dumps(send_mail_body(mail)),
            permission=MAIL_SEND,
            idempotent=False,  # a repeated sendMail is a second mail
        )
        await self._send(call)


def open_gateway(
    credential: AsyncTokenCredential,
    options: GraphClientOptions | None = None,
    *,
    limiter: MailboxLimiter | None = None,
    retry: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> GraphApiGateway:
    """A gateway for one credential (one tenant's app). Share one `limiter` between every
    gateway of the process: the mailbox limit is per app *and mailbox*, not per gateway. The
    gateway owns its connection and closes it; the credential stays the caller's."""
    from core.graph.client import GraphClientOptions, connect

    options = options or GraphClientOptions()
    connection = connect(credential, options, transport=transport)
    sender = GraphSender(
        connection.adapter,
        connection.http,
        limiter or MailboxLimiter(),
        retry,
        sleep,
        connections=options.max_connections,
    )
    return GraphApiGateway(sender, on_close=connection.close)
