"""An in-memory Graph with the port's semantics, for capability tests and the contract suite.

It is a `GraphGateway` and, through its `outlook_*`/`deliver_*`/`expire_*` methods, the world
behind it: a test acts as a person in Outlook or as Exchange, then watches what the bridge
does through the port. `tests/contract/test_graph_contract.py` runs the same tests against
this fake and the emulator-backed gateway, so the fake cannot drift from Graph unnoticed.

What it models, as Graph does (see `port.py`): immutable ids (a move keeps the id), change
keys that change on every write, If-Match → Conflict, transactionId de-duplication per
mailbox, `calendarView/delta` rounds (full first round, then only changes, `Removed` for
deletions and events that left the window, links that can be expired → SyncStateExpired,
paging by `page_size`), occurrences and exceptions of daily series (masters are never listed),
getSchedule's availabilityView, folders with well-known names, attachments streamed in
chunks, event attachments (a new change key on each add and delete; files over 3 MB counted as
upload sessions, over 150 MB refused), and at most 4 operations in flight per mailbox (with
optional latency, so tests can see the limit hold). `inject` makes the next operations on a
mailbox fail with a named error.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from core.graph.errors import (
    BadRequest,
    Conflict,
    FolderNotFound,
    GraphError,
    GraphUnavailable,
    NotFound,
    SyncStateExpired,
)
from core.graph.limits import MailboxLimiter
from core.graph.model import (
    SMALL_ATTACHMENT_LIMIT,
    Attachment,
    AttachmentKind,
    Calendar,
    DeltaPage,
    DeltaStart,
    Event,
    EventChanges,
    EventDraft,
    EventType,
    GraphSubscription,
    MailFolder,
    Message,
    OutgoingMail,
    Removed,
    Schedule,
    ScheduleItem,
    ShowAs,
    SubscriptionRequest,
    User,
    check_addresses,
    check_attachment,
    check_schedule_request,
    check_window,
)
from core.graph.port import DEFAULT_CHUNK_SIZE, DEFAULT_DELTA_PAGE_SIZE, DEFAULT_MESSAGE_PAGE_SIZE
from core.graph.render import subscription_body

# Outlook resources: the most Graph grants (sources say 4,230 or 10,080 minutes; FACTS.md).
MAX_SUBSCRIPTION_LIFETIME = timedelta(minutes=4230)

V = TypeVar("V", Event, Message)

_WELL_KNOWN = {
    "inbox": "Inbox",
    "archive": "Archive",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "outbox": "Outbox",
}
_WELL_KNOWN_ALIASES = {
    **{k: k for k in _WELL_KNOWN},
    **{v.casefold().replace(" ", ""): k for k, v in _WELL_KNOWN.items()},
}
# availabilityView digits, and which status wins when events overlap in one interval.
_DIGIT = {
    ShowAs.FREE: "0",
    ShowAs.TENTATIVE: "1",
    ShowAs.BUSY: "2",
    ShowAs.OOF: "3",
    ShowAs.WORKING_ELSEWHERE: "4",
}
_PRIORITY = {ShowAs.FREE: 0, ShowAs.WORKING_ELSEWHERE: 1, ShowAs.TENTATIVE: 2, ShowAs.BUSY: 3, ShowAs.OOF: 4}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # a window a delta link carries itself


@dataclass(frozen=True, slots=True)
class SeedAttachment:
    """An attachment of a delivered mail. `content` of an item attachment is its MIME."""

    name: str
    content_type: str
    content: bytes = field(repr=False)
    is_inline: bool = False
    kind: AttachmentKind = AttachmentKind.FILE
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class SentMail:
    """What left a mailbox: a `send` (sendMail) or a `forward`."""

    kind: str  # "send" (sendMail, or a draft sent) or "forward" (a createForward draft sent)
    mailbox: str
    to: tuple[str, ...]
    subject: str
    attachment_names: tuple[str, ...] = ()
    comment: str = ""
    attachment_sizes: tuple[int, ...] = ()


@dataclass
class _Mailbox:
    user: User
    calendars: dict[str, Calendar]
    default_calendar: str
    events: dict[str, tuple[str, Event]] = field(default_factory=dict)  # id -> (calendar id, event)
    transactions: dict[str, str] = field(default_factory=dict)  # transactionId -> event id
    folders: dict[str, MailFolder] = field(default_factory=dict)
    well_known: dict[str, str] = field(default_factory=dict)  # well-known name -> folder id
    messages: dict[str, Message] = field(default_factory=dict)
    attachments: dict[str, list[tuple[Attachment, bytes]]] = field(default_factory=dict)
    event_attachments: dict[str, list[tuple[Attachment, bytes]]] = field(default_factory=dict)
    sent: list[SentMail] = field(default_factory=list)


@dataclass
class _DeltaState:
    mailbox: str
    scope: str  # calendar id or folder id
    start: datetime | None
    end: datetime | None
    seen: dict[str, str | None]  # id -> change key when the link was issued
    expired: bool = False


class InMemoryGraph:
    def __init__(self, *, latency: float = 0.0, limiter: MailboxLimiter | None = None) -> None:
        self.latency = latency
        self._limiter = limiter or MailboxLimiter()
        self._mailboxes: dict[str, _Mailbox] = {}
        self._aliases: dict[str, str] = {}  # casefolded UPN or id -> mailbox key
        self._delta: dict[str, _DeltaState] = {}
        self._counter = itertools.count(1)
        self._in_flight: dict[str, int] = defaultdict(int)
        self._peak: dict[str, int] = defaultdict(int)
        self._faults: dict[str, deque[GraphError]] = defaultdict(deque)
        self.calls: list[tuple[str, str]] = []  # (operation, mailbox), for tests that count
        # (mailbox key, "post" | "upload_session"): how each event attachment was added.
        self.attachment_uploads: Counter[tuple[str, str]] = Counter()
        self.drafts: dict[str, OutgoingMail] = {}  # draft id -> the mail it was made from
        # forward draft id -> (its recipients, its comment): what its send delivers
        self.forwards: dict[str, tuple[tuple[str, ...], str]] = {}
        # Graph's side of change notifications: id -> (mailbox key, request, expiration granted),
        # judged by `clock` (tests with a settable clock set it to theirs).
        self.subscriptions: dict[str, tuple[str, SubscriptionRequest, datetime]] = {}
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.reauthorized: list[str] = []

    # === the world: seeding and acting as a person in Outlook ==============================

    def add_user(self, upn: str, display_name: str = "") -> User:
        user = User(str(uuid.uuid4()), display_name or upn.split("@")[0], upn, upn)
        calendar = Calendar(self._new_id("cal"), "Calendar", True, True, upn)
        box = _Mailbox(user, {calendar.id: calendar}, calendar.id)
        root = MailFolder(self._new_id("folder"), "Top of Information Store", None, "")
        box.folders[root.id] = root
        box.well_known["msgfolderroot"] = root.id
        for name, display in _WELL_KNOWN.items():
            folder = MailFolder(self._new_id("folder"), display, root.id, display)
            box.folders[folder.id] = folder
            box.well_known[name] = folder.id
        key = upn.casefold()
        self._mailboxes[key] = box
        self._aliases[key] = key
        self._aliases[user.id.casefold()] = key
        return user

    def add_calendar(self, mailbox: str, name: str) -> Calendar:
        box = self._box(mailbox)
        calendar = Calendar(self._new_id("cal"), name, True, False, box.user.mail)
        box.calendars[calendar.id] = calendar
        return calendar

    def outlook_create_event(self, mailbox: str, calendar_id: str | None, draft: EventDraft) -> Event:
        box = self._box(mailbox)
        return self._store_event(box, self._calendar_id(box, calendar_id), self._event_from(draft, None))

    def outlook_create_daily_series(
        self, mailbox: str, calendar_id: str | None, draft: EventDraft, count: int
    ) -> str:
        """A daily series of `count` occurrences; returns the series master's id."""
        box = self._box(mailbox)
        calendar = self._calendar_id(box, calendar_id)
        master = replace(self._event_from(draft, None), type=EventType.SERIES_MASTER)
        self._store_event(box, calendar, master)
        for day in range(count):
            shift = timedelta(days=day)
            occurrence = replace(
                self._event_from(draft, None),
                start=draft.start + shift,
                end=draft.end + shift,
                type=EventType.OCCURRENCE,
                series_master_id=master.id,
                original_start=draft.start + shift,
            )
            self._store_event(box, calendar, occurrence)
        return master.id

    def outlook_update_event(self, mailbox: str, event_id: str, changes: EventChanges) -> Event:
        box = self._box(mailbox)
        calendar, event = self._event(box, event_id, "outlook_update_event", mailbox)
        updated = self._apply(event, changes)
        if updated.type is EventType.OCCURRENCE:
            updated = replace(updated, type=EventType.EXCEPTION)
        return self._store_event(box, calendar, updated)

    def outlook_delete_event(self, mailbox: str, event_id: str) -> None:
        box = self._box(mailbox)
        _, event = self._event(box, event_id, "outlook_delete_event", mailbox)
        del box.events[event_id]
        box.event_attachments.pop(event_id, None)
        if event.type is EventType.SERIES_MASTER:
            for other_id in [i for i, (_, e) in box.events.items() if e.series_master_id == event_id]:
                del box.events[other_id]

    def expire_delta_links(self, mailbox: str) -> None:
        key = self._key(mailbox)
        for state in self._delta.values():
            if state.mailbox == key:
                state.expired = True

    def add_mail_folder(self, mailbox: str, path: str) -> MailFolder:
        """Create the folders of `path` that do not exist yet (the first segment may be a
        well-known name); return the last one."""
        box = self._box(mailbox)
        segments = [s for s in path.strip("/").split("/") if s]
        if not segments:
            raise BadRequest("empty folder path")
        parent = self._top_folder(box, segments[0], create=True)
        assert parent is not None
        for segment in segments[1:]:
            child = self._child(box, parent.id, segment)
            if child is None:
                child = MailFolder(self._new_id("folder"), segment, parent.id, f"{parent.path}/{segment}")
                box.folders[child.id] = child
            parent = child
        return parent

    def deliver_mail(
        self,
        mailbox: str,
        folder_path: str,
        subject: str,
        sender: str = "sender@external.example",
        attachments: Sequence[SeedAttachment] = (),
        received: datetime | None = None,
    ) -> Message:
        box = self._box(mailbox)
        folder = self.add_mail_folder(mailbox, folder_path)
        message = Message(
            self._new_id("msg"),
            subject,
            received or datetime.now(UTC),
            sender,
            any(not a.is_inline for a in attachments),  # Graph's hasAttachments ignores inline ones
            folder.id,
            f"<{uuid.uuid4()}@external.example>",
            self._new_change_key(),
        )
        box.messages[message.id] = message
        box.attachments[message.id] = [
            (
                Attachment(
                    self._new_id("att"),
                    a.name,
                    a.content_type,
                    len(a.content),
                    a.is_inline,
                    a.kind,
                    a.content_id,
                ),
                a.content,
            )
            for a in attachments
        ]
        return message

    def inject(self, mailbox: str, error: GraphError, times: int = 1) -> None:
        """The next `times` operations on `mailbox` raise `error`."""
        self._faults[self._key(mailbox)].extend([error] * times)

    def sent_mail(self, mailbox: str) -> list[SentMail]:
        return list(self._box(mailbox).sent)

    def messages_in(self, mailbox: str, folder_id: str) -> list[Message]:
        return [m for m in self._box(mailbox).messages.values() if m.parent_folder_id == folder_id]

    def event_attachment_content(self, mailbox: str, event_id: str, attachment_id: str) -> bytes:
        """The stored bytes of an event's attachment (what Exchange holds)."""
        box = self._box(mailbox)
        found = next((c for a, c in box.event_attachments.get(event_id, []) if a.id == attachment_id), None)
        if found is None:
            raise _not_found("event_attachment_content", mailbox)
        return found

    def upload_sessions(self, mailbox: str) -> int:
        """How many event attachments of the mailbox went through an upload session."""
        return self.attachment_uploads[(self._key(mailbox), "upload_session")]

    def peak_concurrency(self, mailbox: str) -> int:
        return self._peak.get(self._key(mailbox), 0)

    def reset_peaks(self) -> None:
        self._peak.clear()

    # === the port ===========================================================================

    async def close(self) -> None:
        return None

    async def get_user(self, mailbox: str) -> User:
        async with self._op("get_user", mailbox) as box:
            return box.user

    async def list_calendars(self, mailbox: str) -> list[Calendar]:
        async with self._op("list_calendars", mailbox) as box:
            return list(box.calendars.values())

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
        _check_page_size(page_size)
        if not delta_link:
            start, end = check_window(start, end)
        return self._calendar_delta(mailbox, calendar_id, start, end, delta_link, page_size)

    async def _calendar_delta(
        self,
        mailbox: str,
        calendar_id: str | None,
        start: datetime,
        end: datetime,
        delta_link: str | None,
        page_size: int,
    ) -> AsyncIterator[DeltaPage[Event]]:
        async with self._op("calendar_delta", mailbox) as box:
            if delta_link:
                state = self._delta_state(delta_link, "calendar_delta", mailbox, windowed=True)
                calendar, window_start, window_end = state.scope, state.start, state.end
                if window_start is None or window_end is None:  # narrowed by `windowed`
                    raise AssertionError("a calendar delta state has a window")
            else:
                state = None
                calendar, window_start, window_end = self._calendar_id(box, calendar_id), start, end
            current = self._in_window(box, calendar, window_start, window_end)
            items = _changes(current, state, lambda i: i in box.events)
            link = self._issue(self._key(mailbox), calendar, window_start, window_end, current)
        async for page in self._pages(mailbox, "calendar_delta", items, link, page_size):
            yield page

    async def first_delta_pages(self, starts: Sequence[DeltaStart]) -> list[DeltaPage[Event] | GraphError]:
        """Each start's round read at once (one operation per page, as Graph counts them); a
        round of more than one page answers an error instead, so the caller reads it alone
        (the fake's next links belong to the generator that issued them)."""
        out: list[DeltaPage[Event] | GraphError] = []
        for start in starts:
            try:
                _check_page_size(start.page_size)
                pages = [
                    page
                    async for page in self._calendar_delta(
                        start.mailbox, None, _EPOCH, _EPOCH, start.delta_link, start.page_size
                    )
                ]
            except GraphError as exc:
                out.append(exc)
                continue
            if len(pages) == 1:
                out.append(pages[0])
            else:
                out.append(GraphUnavailable("first_delta_pages: a round of several pages; read it alone"))
        return out

    async def calendar_view(
        self, mailbox: str, calendar_id: str | None, start: datetime, end: datetime
    ) -> list[Event]:
        start, end = check_window(start, end)
        async with self._op("calendar_view", mailbox) as box:
            return list(self._in_window(box, self._calendar_id(box, calendar_id), start, end).values())

    async def get_event(self, mailbox: str, event_id: str, *, calendar_id: str | None = None) -> Event:
        async with self._op("get_event", mailbox) as box:
            calendar, event = self._event(box, event_id, "get_event", mailbox)
            if calendar_id is not None and calendar != self._calendar_id(box, calendar_id):
                raise _not_found("get_event", mailbox)
            return event

    async def create_event(
        self, mailbox: str, calendar_id: str | None, draft: EventDraft, transaction_id: str
    ) -> Event:
        if not transaction_id:
            raise BadRequest("every event creation carries a transactionId")
        async with self._op("create_event", mailbox) as box:
            existing = box.transactions.get(transaction_id)
            if existing is not None and existing in box.events:
                return box.events[existing][1]
            event = self._event_from(draft, transaction_id)
            box.transactions[transaction_id] = event.id
            return self._store_event(box, self._calendar_id(box, calendar_id), event)

    async def update_event(
        self, mailbox: str, event_id: str, changes: EventChanges, *, if_match: str | None = None
    ) -> Event:
        async with self._op("update_event", mailbox) as box:
            calendar, event = self._event(box, event_id, "update_event", mailbox)
            if if_match is not None and _bare_key(if_match) != event.change_key:
                raise Conflict(
                    f"update_event for mailbox {mailbox!r}: the item changed since it was read (HTTP 412)",
                    operation="update_event",
                    mailbox=mailbox,
                    status=412,
                )
            updated = self._apply(event, changes)
            if updated.type is EventType.OCCURRENCE:
                updated = replace(updated, type=EventType.EXCEPTION)
            return self._store_event(box, calendar, updated)

    async def delete_event(self, mailbox: str, event_id: str) -> None:
        async with self._op("delete_event", mailbox) as box:
            self._event(box, event_id, "delete_event", mailbox)
            del box.events[event_id]
            box.event_attachments.pop(event_id, None)

    async def list_event_attachments(self, mailbox: str, event_id: str) -> list[Attachment]:
        _check_id(event_id)
        async with self._op("list_event_attachments", mailbox) as box:
            self._event(box, event_id, "list_event_attachments", mailbox)
            return [a for a, _ in box.event_attachments.get(event_id, [])]

    async def add_event_attachment(
        self, mailbox: str, event_id: str, *, name: str, content_type: str, content: bytes
    ) -> Attachment:
        _check_id(event_id)
        check_attachment(name, content_type, content)
        # Like the gateway: one POST up to 3 MB, else an upload session (counted, so a test can
        # see which path a file took).
        path = "post" if len(content) <= SMALL_ATTACHMENT_LIMIT else "upload_session"
        async with self._op("add_event_attachment", mailbox) as box:
            calendar, event = self._event(box, event_id, "add_event_attachment", mailbox)
            if event.type in (EventType.OCCURRENCE, EventType.EXCEPTION):
                # As the emulator: attachments belong to single events and series masters.
                raise BadRequest(
                    f"add_event_attachment for mailbox {mailbox!r}: attachments can be added to single "
                    "events and series masters only (HTTP 400)",
                    operation="add_event_attachment",
                    mailbox=mailbox,
                    status=400,
                )
            attachment = Attachment(
                self._new_id("att"), name, content_type, len(content), False, AttachmentKind.FILE
            )
            box.event_attachments.setdefault(event_id, []).append((attachment, bytes(content)))
            self.attachment_uploads[(self._key(mailbox), path)] += 1
            self._store_event(box, calendar, replace(event, has_attachments=True))  # a new change key
            return attachment

    async def delete_event_attachment(self, mailbox: str, event_id: str, attachment_id: str) -> None:
        _check_id(event_id)
        _check_id(attachment_id)
        async with self._op("delete_event_attachment", mailbox) as box:
            calendar, event = self._event(box, event_id, "delete_event_attachment", mailbox)
            kept = [(a, c) for a, c in box.event_attachments.get(event_id, []) if a.id != attachment_id]
            if len(kept) == len(box.event_attachments.get(event_id, [])):
                raise _not_found("delete_event_attachment", mailbox)
            box.event_attachments[event_id] = kept
            self._store_event(box, calendar, replace(event, has_attachments=bool(kept)))

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
        async with self._op("get_schedule", mailbox):
            return [self._schedule(address, start, end, interval_minutes) for address in wanted]

    async def resolve_folder_path(self, mailbox: str, path: str) -> MailFolder:
        segments = [s.strip() for s in path.strip().strip("/").split("/")]
        if not segments or any(not s for s in segments):
            raise BadRequest("a folder path is display names separated by '/', e.g. Inbox/Invoices")
        async with self._op("resolve_folder_path", mailbox) as box:
            folder = self._top_folder(box, segments[0], create=False)
            walked = ""
            for index, segment in enumerate(segments):
                if index > 0:
                    assert folder is not None
                    folder = self._child(box, folder.id, segment)
                if folder is None:
                    where = f" under {walked!r}" if walked else ""
                    raise FolderNotFound(
                        f"resolve_folder_path for mailbox {mailbox!r}: no mail folder {segment!r}{where}",
                        segment=segment,
                        parent=walked,
                        operation="resolve_folder_path",
                        mailbox=mailbox,
                    )
                walked = f"{walked}/{segment}" if walked else segment
            assert folder is not None
            return replace(folder, path="/".join(segments))

    def list_messages(
        self, mailbox: str, folder_id: str, *, page_size: int = DEFAULT_MESSAGE_PAGE_SIZE
    ) -> AsyncIterator[Message]:
        _check_page_size(page_size)
        return self._list_messages(mailbox, folder_id)

    async def _list_messages(self, mailbox: str, folder_id: str) -> AsyncIterator[Message]:
        async with self._op("list_messages", mailbox) as box:
            self._folder(box, folder_id, "list_messages", mailbox)
            found = sorted(
                (m for m in box.messages.values() if m.parent_folder_id == folder_id),
                key=lambda m: (m.received or datetime.min.replace(tzinfo=UTC), m.id),
            )
        for message in found:
            yield message

    def message_delta(
        self,
        mailbox: str,
        folder_id: str,
        *,
        delta_link: str | None = None,
        page_size: int = DEFAULT_MESSAGE_PAGE_SIZE,
    ) -> AsyncIterator[DeltaPage[Message]]:
        _check_page_size(page_size)
        return self._message_delta(mailbox, folder_id, delta_link, page_size)

    async def _message_delta(
        self, mailbox: str, folder_id: str, delta_link: str | None, page_size: int
    ) -> AsyncIterator[DeltaPage[Message]]:
        async with self._op("message_delta", mailbox) as box:
            if delta_link:
                state = self._delta_state(delta_link, "message_delta", mailbox, windowed=False)
                folder = state.scope
            else:
                state, folder = None, folder_id
                self._folder(box, folder, "message_delta", mailbox)
            current = {m.id: m for m in box.messages.values() if m.parent_folder_id == folder}
            items = _changes(current, state, lambda i: i in box.messages)
            link = self._issue(self._key(mailbox), folder, None, None, current)
        async for page in self._pages(mailbox, "message_delta", items, link, page_size):
            yield page

    async def list_attachments(self, mailbox: str, message_id: str) -> list[Attachment]:
        async with self._op("list_attachments", mailbox) as box:
            self._message(box, message_id, "list_attachments", mailbox)
            return [a for a, _ in box.attachments.get(message_id, [])]

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
        return self._stream_attachment(mailbox, message_id, attachment_id, chunk_size)

    async def _stream_attachment(
        self, mailbox: str, message_id: str, attachment_id: str, chunk_size: int
    ) -> AsyncGenerator[bytes, None]:
        async with self._op("stream_attachment", mailbox) as box:
            self._message(box, message_id, "stream_attachment", mailbox)
            content = next((c for a, c in box.attachments.get(message_id, []) if a.id == attachment_id), None)
            if content is None:
                raise _not_found("stream_attachment", mailbox)
            view = memoryview(content)
            for offset in range(0, len(content), chunk_size):
                yield bytes(view[offset : offset + chunk_size])

    async def move_message(self, mailbox: str, message_id: str, destination_folder_id: str) -> Message:
        async with self._op("move_message", mailbox) as box:
            message = self._message(box, message_id, "move_message", mailbox)
            self._folder(box, destination_folder_id, "move_message", mailbox)
            moved = replace(
                message, parent_folder_id=destination_folder_id, change_key=self._new_change_key()
            )
            box.messages[message_id] = moved  # immutable ids: same id in the new folder
            return moved

    async def create_forward(
        self, mailbox: str, message_id: str, to: Sequence[str], comment: str = ""
    ) -> Message:
        recipients = check_addresses(tuple(to))
        async with self._op("create_forward", mailbox) as box:
            original = self._message(box, message_id, "create_forward", mailbox)
            files = box.attachments.get(message_id, [])
            draft = Message(
                self._new_id("msg"),
                f"FW: {original.subject}",
                None,
                box.user.mail,
                any(not a.is_inline for a, _ in files),
                box.well_known["drafts"],
                None,
                self._new_change_key(),
                True,
                True,
            )
            box.messages[draft.id] = draft
            # as Graph does: the draft carries copies of the original's attachments
            box.attachments[draft.id] = [(replace(a, id=self._new_id("att")), c) for a, c in files]
            self.forwards[draft.id] = (recipients, comment)
            return draft

    async def send_mail(self, mailbox: str, mail: OutgoingMail) -> None:
        if not mail.fits_one_request:
            raise BadRequest("attachments above 3 MB in all go through a draft (create_draft)")
        async with self._op("send_mail", mailbox) as box:
            recipients = (*mail.to, *mail.cc, *mail.bcc)
            names = tuple(a.name for a in mail.attachments)
            sizes = tuple(len(a.content) for a in mail.attachments)
            box.sent.append(
                SentMail("send", box.user.user_principal_name, recipients, mail.subject, names, "", sizes)
            )
            if mail.save_to_sent_items:
                sent = Message(
                    self._new_id("msg"),
                    mail.subject,
                    datetime.now(UTC),
                    box.user.mail,
                    bool(mail.attachments),
                    box.well_known["sentitems"],
                    f"<{uuid.uuid4()}@bridge>",
                    self._new_change_key(),
                    True,
                )
                box.messages[sent.id] = sent
                box.attachments[sent.id] = [
                    (
                        Attachment(
                            self._new_id("att"),
                            a.name,
                            a.content_type,
                            len(a.content),
                            False,
                            AttachmentKind.FILE,
                        ),
                        a.content,
                    )
                    for a in mail.attachments
                ]

    # --- drafts ---------------------------------------------------------------------------

    async def create_draft(self, mailbox: str, mail: OutgoingMail) -> Message:
        async with self._op("create_draft", mailbox) as box:
            draft = Message(
                self._new_id("msg"),
                mail.subject,
                None,
                mail.from_address or box.user.mail,
                False,
                box.well_known["drafts"],
                None,
                self._new_change_key(),
                True,
                True,
            )
            box.messages[draft.id] = draft
            box.attachments[draft.id] = []
            self.drafts[draft.id] = replace(mail, attachments=())
            return draft

    async def add_message_attachment(
        self, mailbox: str, message_id: str, *, name: str, content_type: str, content: bytes
    ) -> None:
        check_attachment(name, content_type, content)
        async with self._op("add_message_attachment", mailbox) as box:
            draft = self._message(box, message_id, "add_message_attachment", mailbox)
            if not draft.is_draft:
                raise BadRequest("add_message_attachment: only a draft takes attachments", mailbox=mailbox)
            attachment = Attachment(
                self._new_id("att"), name, content_type, len(content), False, AttachmentKind.FILE
            )
            box.attachments[message_id].append((attachment, content))
            kind = "post" if len(content) <= SMALL_ATTACHMENT_LIMIT else "upload_session"
            self.attachment_uploads[(self._key(mailbox), kind)] += 1

    async def send_draft(self, mailbox: str, message_id: str) -> None:
        async with self._op("send_draft", mailbox) as box:
            draft = self._message(box, message_id, "send_draft", mailbox)
            mail = self.drafts.get(message_id)
            forward = self.forwards.get(message_id)
            if not draft.is_draft or (mail is None and forward is None):
                raise BadRequest("send_draft: the message is not a draft", mailbox=mailbox)
            upn = box.user.user_principal_name
            if forward is not None:  # inline images travel in the quoted body, not as files
                files = [(a, c) for a, c in box.attachments.get(message_id, []) if not a.is_inline]
            else:
                files = box.attachments.get(message_id, [])
            names = tuple(a.name for a, _ in files)
            sizes = tuple(len(content) for _, content in files)
            if forward is not None:
                box.sent.append(SentMail("forward", upn, forward[0], draft.subject, names, forward[1], sizes))
            else:
                assert mail is not None
                recipients = (*mail.to, *mail.cc, *mail.bcc)
                box.sent.append(SentMail("send", upn, recipients, mail.subject, names, "", sizes))
            # as Graph does: the sent message keeps its (immutable) id and moves to Sent Items
            box.messages[message_id] = replace(
                draft,
                is_draft=False,
                parent_folder_id=box.well_known["sentitems"],
                received=datetime.now(UTC),
            )
            self.drafts.pop(message_id, None)
            self.forwards.pop(message_id, None)

    async def get_message(self, mailbox: str, message_id: str) -> Message:
        async with self._op("get_message", mailbox) as box:
            return self._message(box, message_id, "get_message", mailbox)

    async def delete_message(self, mailbox: str, message_id: str) -> None:
        async with self._op("delete_message", mailbox) as box:
            box.messages.pop(message_id, None)
            box.attachments.pop(message_id, None)
            self.drafts.pop(message_id, None)
            self.forwards.pop(message_id, None)

    # --- change notifications --------------------------------------------------------------

    async def create_subscription(self, mailbox: str, request: SubscriptionRequest) -> GraphSubscription:
        subscription_body(request)  # what Graph would refuse, refused the same way
        async with self._op("create_subscription", mailbox):
            subscription_id = str(uuid.uuid4())
            granted = min(request.expiration, self.clock() + MAX_SUBSCRIPTION_LIFETIME)
            self.subscriptions[subscription_id] = (self._key(mailbox), request, granted)
            return GraphSubscription(subscription_id, request.resource, granted)

    async def renew_subscription(
        self, mailbox: str, subscription_id: str, expiration: datetime
    ) -> GraphSubscription:
        async with self._op("renew_subscription", mailbox):
            key, request, _ = self._subscription(subscription_id, "renew_subscription", mailbox)
            granted = min(expiration, self.clock() + MAX_SUBSCRIPTION_LIFETIME)
            self.subscriptions[subscription_id] = (key, request, granted)
            return GraphSubscription(subscription_id, request.resource, granted)

    async def reauthorize_subscription(self, mailbox: str, subscription_id: str) -> None:
        async with self._op("reauthorize_subscription", mailbox):
            self._subscription(subscription_id, "reauthorize_subscription", mailbox)
            self.reauthorized.append(subscription_id)

    async def delete_subscription(self, mailbox: str, subscription_id: str) -> None:
        async with self._op("delete_subscription", mailbox):
            self.subscriptions.pop(subscription_id, None)

    def _subscription(
        self, subscription_id: str, operation: str, mailbox: str
    ) -> tuple[str, SubscriptionRequest, datetime]:
        found = self.subscriptions.get(subscription_id)
        if found is None or found[2] <= self.clock():
            self.subscriptions.pop(subscription_id, None)
            raise _not_found(operation, mailbox)
        return found

    # === internals ==========================================================================

    @asynccontextmanager
    async def _op(self, operation: str, mailbox: str) -> AsyncIterator[_Mailbox]:
        """One operation: bounded per mailbox like the real gateway, counted, delayed by
        `latency`, failing with an injected error or NotFound for an unknown mailbox."""
        key = self._aliases.get(mailbox.casefold(), mailbox.casefold())
        async with self._limiter.slot(mailbox):
            self._in_flight[key] += 1
            self._peak[key] = max(self._peak[key], self._in_flight[key])
            self.calls.append((operation, mailbox))
            try:
                if self.latency:
                    await asyncio.sleep(self.latency)
                faults = self._faults.get(key)
                if faults:
                    raise faults.popleft()
                box = self._mailboxes.get(key)
                if box is None:
                    raise _not_found(operation, mailbox)
                yield box
            finally:
                self._in_flight[key] -= 1

    async def _pages(
        self, mailbox: str, operation: str, items: list[V | Removed], link: str, size: int
    ) -> AsyncIterator[DeltaPage[V]]:
        pages = [items[i : i + size] for i in range(0, len(items), size)] or [[]]
        for number, chunk in enumerate(pages):
            last = number == len(pages) - 1
            if number:
                async with self._op(operation, mailbox):  # every page is a request
                    pass
            yield DeltaPage(
                tuple(chunk),
                None if last else f"{link}&page={number + 1}",
                link if last else None,
            )

    def _key(self, mailbox: str) -> str:
        return self._aliases.get(mailbox.casefold(), mailbox.casefold())

    def _box(self, mailbox: str) -> _Mailbox:
        box = self._mailboxes.get(self._key(mailbox))
        if box is None:
            raise _not_found("seed", mailbox)
        return box

    def _new_id(self, kind: str) -> str:
        # Shaped like Graph's: base64-ish with '/', '+' and '=' that need URL encoding.
        return f"AAMk{kind}{next(self._counter):06d}/+{uuid.uuid4().hex[:12]}="

    def _new_change_key(self) -> str:
        return f"CK{next(self._counter):08d}"

    def _calendar_id(self, box: _Mailbox, calendar_id: str | None) -> str:
        if calendar_id is None:
            return box.default_calendar
        if calendar_id not in box.calendars:
            raise _not_found("calendar", box.user.user_principal_name)
        return calendar_id

    def _event_from(self, draft: EventDraft, transaction_id: str | None) -> Event:
        return Event(
            id=self._new_id("evt"),
            change_key=None,
            subject=draft.subject,
            start=draft.start,
            end=draft.end,
            is_all_day=draft.is_all_day,
            sensitivity=draft.sensitivity,
            show_as=draft.show_as,
            body=draft.body,
            body_type=draft.body_type,
            location=draft.location,
            transaction_id=transaction_id,
            attendees=draft.attendees,
            categories=draft.categories,
        )

    def _store_event(self, box: _Mailbox, calendar_id: str, event: Event) -> Event:
        stored = replace(event, change_key=self._new_change_key(), last_modified=datetime.now(UTC))
        box.events[stored.id] = (calendar_id, stored)
        return stored

    def _apply(self, event: Event, changes: EventChanges) -> Event:
        updates: dict[str, object] = {
            name: getattr(changes, name)
            for name in (
                "subject",
                "start",
                "end",
                "body",
                "body_type",
                "is_all_day",
                "location",
                "show_as",
                "sensitivity",
                "categories",
                "attendees",
            )
            if getattr(changes, name) is not None
        }
        updated = replace(event, **updates)  # type: ignore[arg-type]
        if updated.end <= updated.start:
            raise BadRequest("an event must end after it starts")
        return updated

    def _event(self, box: _Mailbox, event_id: str, operation: str, mailbox: str) -> tuple[str, Event]:
        found = box.events.get(event_id)
        if found is None:
            raise _not_found(operation, mailbox)
        return found

    def _in_window(self, box: _Mailbox, calendar: str, start: datetime, end: datetime) -> dict[str, Event]:
        found = [
            e
            for c, e in box.events.values()
            if c == calendar
            and e.type is not EventType.SERIES_MASTER
            and _overlaps(e.start, e.end, start, end)
        ]
        found.sort(key=lambda e: (e.start, e.id))
        return {e.id: e for e in found}

    def _issue(
        self,
        mailbox_key: str,
        scope: str,
        start: datetime | None,
        end: datetime | None,
        current: Mapping[str, Event] | Mapping[str, Message],
    ) -> str:
        token = uuid.uuid4().hex
        self._delta[token] = _DeltaState(
            mailbox_key, scope, start, end, {i: v.change_key for i, v in current.items()}
        )
        return f"https://graph.fake/v1.0/delta?$deltatoken={token}"

    def _delta_state(self, link: str, operation: str, mailbox: str, *, windowed: bool) -> _DeltaState:
        token = link.rpartition("$deltatoken=")[2].split("&")[0]
        state = self._delta.get(token)
        if (
            state is None
            or state.expired
            or state.mailbox != self._key(mailbox)
            or (state.start is not None) is not windowed  # a link of the other kind of delta
        ):
            raise SyncStateExpired(
                f"{operation} for mailbox {mailbox!r}: the delta state expired (HTTP 410 SyncStateNotFound); "
                "start a full round",
                operation=operation,
                mailbox=mailbox,
                status=410,
                code="SyncStateNotFound",
            )
        return state

    def _schedule(self, address: str, start: datetime, end: datetime, interval: int) -> Schedule:
        box = self._mailboxes.get(self._key(address))
        if box is None:
            return Schedule(address, "", (), "ErrorMailboxNotFound")
        events = [
            e
            for _, e in box.events.values()
            if e.type is not EventType.SERIES_MASTER
            and not e.is_cancelled
            and _overlaps(e.start, e.end, start, end)
        ]
        step = timedelta(minutes=interval)
        digits = []
        slot = start
        while slot < end:
            statuses = [e.show_as for e in events if _overlaps(e.start, e.end, slot, slot + step)]
            best = max(statuses, key=lambda s: _PRIORITY.get(s, 0), default=ShowAs.FREE)
            digits.append(_DIGIT.get(best, "0"))
            slot += step
        items = tuple(
            ScheduleItem(
                e.start,
                e.end,
                e.show_as,
                e.is_private,
                "" if e.is_private else e.subject,
                "" if e.is_private else e.location,
            )
            for e in sorted(events, key=lambda e: e.start)
        )
        return Schedule(address, "".join(digits), items)

    def _top_folder(self, box: _Mailbox, name: str, *, create: bool) -> MailFolder | None:
        well_known = _WELL_KNOWN_ALIASES.get(name.casefold().replace(" ", ""))
        if well_known is not None:
            return box.folders[box.well_known[well_known]]
        root = box.well_known["msgfolderroot"]
        found = self._child(box, root, name)
        if found is None and create:
            found = MailFolder(self._new_id("folder"), name, root, name)
            box.folders[found.id] = found
        return found

    def _child(self, box: _Mailbox, parent_id: str, name: str) -> MailFolder | None:
        wanted = name.casefold()
        return next(
            (
                f
                for f in box.folders.values()
                if f.parent_id == parent_id and f.display_name.casefold() == wanted
            ),
            None,
        )

    def _folder(self, box: _Mailbox, folder_id: str, operation: str, mailbox: str) -> MailFolder:
        folder = box.folders.get(folder_id) or box.folders.get(box.well_known.get(folder_id, ""))
        if folder is None:
            raise _not_found(operation, mailbox)
        return folder

    def _message(self, box: _Mailbox, message_id: str, operation: str, mailbox: str) -> Message:
        message = box.messages.get(message_id)
        if message is None:
            raise _not_found(operation, mailbox)
        return message


def _overlaps(start: datetime, end: datetime, window_start: datetime, window_end: datetime) -> bool:
    if start == end:  # a zero-length event sits at its start
        return window_start <= start < window_end
    return start < window_end and end > window_start


def _changes(
    current: Mapping[str, V], state: _DeltaState | None, exists: Callable[[str], bool]
) -> list[V | Removed]:
    """A delta round's items: all of `current` on a first round; later, what is new or has a
    different change key, then `Removed` for what was seen and is no longer there ("deleted"
    if it is gone, "changed" if it only left the window or folder)."""
    if state is None:
        return list(current.values())
    changed: list[V | Removed] = [v for i, v in current.items() if state.seen.get(i, "\0") != v.change_key]
    for item_id in state.seen:
        if item_id not in current:
            changed.append(Removed(item_id, "changed" if exists(item_id) else "deleted"))
    return changed


def _bare_key(if_match: str) -> str:
    # W/"<key>" or "<key>" is an ETag; anything else is a bare change key (which may itself
    # begin with "W/": base64)
    value = if_match[2:] if if_match.startswith('W/"') else if_match
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _check_id(value: str) -> None:
    # The gateway cannot put an empty id into a request path; neither does the fake.
    if not value:
        raise BadRequest("an id or mailbox in the request path is empty")


def _check_page_size(value: int) -> None:
    if not 1 <= value <= 1000:
        raise BadRequest("page_size must be 1 to 1000")


def _not_found(operation: str, mailbox: str) -> NotFound:
    return NotFound(
        f"{operation} for mailbox {mailbox!r}: not found (HTTP 404 ErrorItemNotFound)",
        operation=operation,
        mailbox=mailbox,
        status=404,
        code="ErrorItemNotFound",
    )
