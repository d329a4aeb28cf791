"""The Graph port: every Microsoft Graph operation the capabilities use, and nothing else.

Implementations: `gateway.GraphApiGateway` (msgraph-sdk's request adapter, over HTTPS to Graph or
the local emulator) and `fake.InMemoryGraph`. `tests/contract/test_graph_contract.py` holds both
to the same behaviour.

Rules every implementation keeps:
- Every operation names its mailbox (UPN or id) first; at most 4 of its requests are in flight
  per mailbox in the process, and ids are immutable (`Prefer: IdType="ImmutableId"`), so an id
  survives a move between folders.
- Failures are the named errors of `core.graph.errors`; nothing returns a status code.
- Reads return lean domain objects (`core.graph.model`); a read that failed raises — it never
  returns an empty result in place of an error (STYLE practice 5).
- Paged reads are async iterators that follow `@odata.nextLink` themselves. A delta round ends
  with a page whose `delta_link` is set: store it only after applying every page of the round.
- Inputs are validated before any I/O (`BadRequest`).

Generators (`calendar_delta`, `list_messages`, `message_delta`, `stream_attachment`) hold a
mailbox slot only while a request is on the wire, except `stream_attachment`, which holds one
while the body streams: consume it promptly, and close it (`contextlib.aclosing`) if you stop
early.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import datetime
from typing import Protocol

from core.graph.errors import GraphError
from core.graph.model import (
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
)

DEFAULT_DELTA_PAGE_SIZE = 100
DEFAULT_MESSAGE_PAGE_SIZE = 50
DEFAULT_CHUNK_SIZE = 1024 * 1024


class GraphGateway(Protocol):
    # --- people and calendars ------------------------------------------------------------

    async def get_user(self, mailbox: str) -> User:
        """The mailbox's user (NotFound if there is none)."""
        ...

    async def list_calendars(self, mailbox: str) -> list[Calendar]:
        """Every calendar of the mailbox, the default one included."""
        ...

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
        """One round of `calendarView/delta` (default calendar when `calendar_id` is None).

        Without `delta_link`: a full round over [start, end) — every occurrence, exception and
        single event (never series masters). With one: only what changed since, deletions and
        events that left the window as `Removed`; `start`/`end` are then carried by the link.
        Raises `SyncStateExpired` when the link is no longer valid."""
        ...

    async def first_delta_pages(self, starts: Sequence[DeltaStart]) -> list[DeltaPage[Event] | GraphError]:
        """The first page of several calendars' incremental rounds, read together (Graph's
        JSON batching: up to 20 per call, each request throttled on its own, at most one per
        mailbox per call). Per start, in order, its page or the error its own answer was (the
        caller then reads that calendar alone, as `calendar_delta` would, retries included).
        A page with `next_link` continues with `calendar_delta(delta_link=page.next_link)`."""
        ...

    async def calendar_view(
        self, mailbox: str, calendar_id: str | None, start: datetime, end: datetime
    ) -> list[Event]:
        """Every event instance in [start, end), all pages read."""
        ...

    async def get_event(self, mailbox: str, event_id: str, *, calendar_id: str | None = None) -> Event:
        """The event; with `calendar_id`, only if it is in that calendar (NotFound otherwise)."""
        ...

    async def create_event(
        self, mailbox: str, calendar_id: str | None, draft: EventDraft, transaction_id: str
    ) -> Event:
        """Create an event. A second creation with the same `transaction_id` in the mailbox
        returns the first event instead of making another."""
        ...

    async def update_event(
        self, mailbox: str, event_id: str, changes: EventChanges, *, if_match: str | None = None
    ) -> Event:
        """Apply `changes`; with `if_match` (the change key read before) fail with `Conflict`
        if the event changed since."""
        ...

    async def delete_event(self, mailbox: str, event_id: str) -> None:
        """Delete the event (NotFound if it is already gone)."""
        ...

    # --- event attachments ---------------------------------------------------------------

    async def list_event_attachments(self, mailbox: str, event_id: str) -> list[Attachment]:
        """The event's attachments, metadata only (never their content). NotFound if the
        event is gone."""
        ...

    async def add_event_attachment(
        self, mailbox: str, event_id: str, *, name: str, content_type: str, content: bytes
    ) -> Attachment:
        """Attach a file to a single event or series master and return the new attachment
        (its id, name, size and content type); the event's change key changes.

        Up to `SMALL_ATTACHMENT_LIMIT` (3 MB) one POST; above it, up to
        `LARGE_ATTACHMENT_LIMIT` (150 MB), an upload session. BadRequest before any I/O for an
        empty name, a content type that is no MIME type, or more than 150 MB. Not idempotent:
        a 5xx or timeout is not retried (`GraphUnavailable`) and may or may not have attached
        the file — list the attachments to decide. NotFound if the event is gone."""
        ...

    async def delete_event_attachment(self, mailbox: str, event_id: str, attachment_id: str) -> None:
        """Remove the attachment (the event's change key changes). NotFound if the attachment
        or the event is gone."""
        ...

    async def get_schedule(
        self,
        mailbox: str,
        schedules: Sequence[str],
        start: datetime,
        end: datetime,
        *,
        interval_minutes: int = 15,
    ) -> list[Schedule]:
        """Free/busy of up to 20 mailboxes, asked as `mailbox`. Unknown mailboxes come back as
        a `Schedule` with `error` set, in request order."""
        ...

    # --- mail ----------------------------------------------------------------------------

    async def resolve_folder_path(self, mailbox: str, path: str) -> MailFolder:
        """The folder at a '/'-separated path of display names, e.g. "Inbox/Invoices". The
        first segment may be a well-known name (Inbox, Archive, SentItems, ...), which works
        in every mailbox language. Names match case-insensitively. A missing folder is
        `FolderNotFound` naming the first missing segment and the path above it; a missing
        mailbox is a plain NotFound."""
        ...

    def list_messages(
        self, mailbox: str, folder_id: str, *, page_size: int = DEFAULT_MESSAGE_PAGE_SIZE
    ) -> AsyncIterator[Message]:
        """Every message in the folder, all pages read lazily."""
        ...

    def message_delta(
        self,
        mailbox: str,
        folder_id: str,
        *,
        delta_link: str | None = None,
        page_size: int = DEFAULT_MESSAGE_PAGE_SIZE,
    ) -> AsyncIterator[DeltaPage[Message]]:
        """One round of the folder's message delta (`Removed` for messages deleted or moved
        out). Raises `SyncStateExpired` when the link is no longer valid."""
        ...

    async def list_attachments(self, mailbox: str, message_id: str) -> list[Attachment]:
        """The message's attachments, metadata only (never their content)."""
        ...

    def stream_attachment(
        self,
        mailbox: str,
        message_id: str,
        attachment_id: str,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncGenerator[bytes, None]:
        """The attachment's raw bytes (`/$value`; an item attachment comes as MIME), in chunks
        of at most `chunk_size`. Never held whole in memory."""
        ...

    async def move_message(self, mailbox: str, message_id: str, destination_folder_id: str) -> Message:
        """Move the message; with immutable ids its id does not change."""
        ...

    async def create_forward(
        self, mailbox: str, message_id: str, to: Sequence[str], comment: str = ""
    ) -> Message:
        """A draft forwarding the message to `to`, in the mailbox's Drafts (`createForward`):
        `comment` above the original, which it quotes, and the original's attachments. Send it
        with `send_draft`. Forwarding through a draft rather than Graph's one-shot `forward`
        leaves an id to look up, so a caller that recorded it knows after a crash whether the
        forward went (`get_message(...).is_draft`). Not retried on an ambiguous failure (a
        second draft, never a second mail)."""
        ...

    async def send_mail(self, mailbox: str, mail: OutgoingMail) -> None:
        """Send as `mailbox` in one request (`mail.fits_one_request`: up to 3 MB of attachments;
        BadRequest otherwise). Never retried on an ambiguous failure (5xx, timeout): the caller's
        ledger decides, so a mail is not sent twice."""
        ...

    async def create_draft(self, mailbox: str, mail: OutgoingMail) -> Message:
        """A draft of `mail` in the mailbox's Drafts, without its attachments (add them with
        `add_message_attachment`). Not retried on an ambiguous failure (a second draft)."""
        ...

    async def add_message_attachment(
        self, mailbox: str, message_id: str, *, name: str, content_type: str, content: bytes
    ) -> None:
        """Attach a file to a draft: one POST up to 3 MB, an upload session above (≤ 150 MB)."""
        ...

    async def send_draft(self, mailbox: str, message_id: str) -> None:
        """Send a draft (a copy goes to Sent Items). Not retried on an ambiguous failure: the
        caller looks at the draft (`get_message`) to learn whether it went."""
        ...

    async def get_message(self, mailbox: str, message_id: str) -> Message:
        """One message by its immutable id (NotFound if gone); `is_draft` says whether a draft
        is still unsent."""
        ...

    async def delete_message(self, mailbox: str, message_id: str) -> None:
        """Delete a message (a draft given up); one already gone is no error."""
        ...

    # --- change notifications ------------------------------------------------------------

    async def create_subscription(self, mailbox: str, request: SubscriptionRequest) -> GraphSubscription:
        """Subscribe to changes of a resource in `mailbox`. Graph first validates the
        notification URL (the handshake), then answers with the subscription and the
        expiration it granted. Never retried on an ambiguous failure (a retry could make a
        second subscription): the caller reconciles."""
        ...

    async def renew_subscription(
        self, mailbox: str, subscription_id: str, expiration: datetime
    ) -> GraphSubscription:
        """Extend a subscription; NotFound when Graph no longer has it."""
        ...

    async def reauthorize_subscription(self, mailbox: str, subscription_id: str) -> None:
        """Answer `reauthorizationRequired`: Graph checks the app's access again and keeps
        delivering. NotFound when Graph no longer has it."""
        ...

    async def delete_subscription(self, mailbox: str, subscription_id: str) -> None:
        """Stop a subscription; one Graph no longer has is already stopped (no error)."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...
