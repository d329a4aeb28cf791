"""`GET /mailFolders/{id}/messages/delta` (docs: "message: delta", "Get incremental changes to
messages in a folder").

A round is one or more pages: the first request of the first round returns every message in
the folder, page by page (`@odata.nextLink` with `$skiptoken`), the last page carries an
`@odata.deltaLink` with a `$deltatoken`. Following it returns what changed in the folder since:
new and changed messages in full, and `{"@odata.type", "id", "@removed": {"reason": "deleted"}}`
for messages deleted or moved out of the folder.

State: the token names a snapshot of the folder, lifetime key -> (changeKey, regular id), taken
at the round's first request (the snapshot-diff of calendar_view.plan_round, keyed by the
lifetime key because message ids have two forms). The ids in a page follow *that page's*
`Prefer: IdType` - Graph's links "are compatible with both ID formats" - so @removed names the
immutable id, or the regular id the message had in this folder. A message that left and came
back (a new regular id) is reported to regular-id clients as the old id @removed plus the new one.
Pages render the messages as they are when the page is read; an item changed mid-round comes
again in the next round (delta may repeat items).

Query options (the docs' list): `$select`, `$top`, `$expand=attachments`, `$filter` only as
`receivedDateTime ge|gt {value}`, `$orderby` only `receivedDateTime desc`, and the custom
`changeType=created|updated|deleted`; they are given on the first request and carried in the
tokens. `$search` and anything else → 400. `Prefer: odata.maxpagesize` (default 10, at most
1000 - emulator choices) may change on every request. An expired or foreign token → 410
SyncStateNotFound.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from devtools.graph_emulator import mail_ids
from devtools.graph_emulator.context import EmulatorContext, graph_call, json_response
from devtools.graph_emulator.errors import GraphError, bad_request
from devtools.graph_emulator.mail_ops import Mail
from devtools.graph_emulator.mail_query import parse_expand
from devtools.graph_emulator.mail_store import MailFolder, MailMailbox, MessageRecord, message_json
from devtools.graph_emulator.odata import ALWAYS_SELECTED, collection, link, page_size
from devtools.graph_emulator.timezones import parse_instant

PAGE_KIND = "messages.delta.page"
DELTA_KIND = "messages.delta"
DEFAULT_PAGE = 10
MAX_PAGE = 1000
ALLOWED = ("$select", "$top", "$expand", "$filter", "$orderby", "changetype", "$skiptoken", "$deltatoken")
CHANGE_TYPES = ("created", "updated", "deleted")
_FILTER = re.compile(r"\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Seen:
    change_key: str
    regular_id: str


@dataclass(frozen=True)
class Options:
    """The query of a round's first request, carried in its tokens."""

    folder_key: bytes
    select: str | None = None
    expand: tuple[str, ...] | None = None
    received_op: str | None = None  # "ge" | "gt"
    received_at: dt.datetime | None = None
    change_type: str | None = None
    page_size: int = DEFAULT_PAGE

    def matches(self, record: MessageRecord) -> bool:
        if self.received_at is None:
            return True
        when = record.received or record.created
        return when >= self.received_at if self.received_op == "ge" else when > self.received_at


@dataclass(frozen=True)
class Pending:
    """One entry still to be sent in a round: a message by key, or a removal."""

    key: bytes
    removed: Seen | None = None


@dataclass
class Round:
    options: Options
    pending: list[Pending]
    snapshot: dict[bytes, Seen]


@dataclass
class Base:
    options: Options
    snapshot: dict[bytes, Seen]


def plan_round(
    previous: dict[bytes, Seen],
    current: dict[bytes, Seen],
    change_type: str | None = None,
    *,
    immutable: bool,
) -> list[Pending]:
    """What a round reports, given the snapshot the client has and the folder now: changed or
    new messages, then removals. With regular ids a message whose id changed (it left and came
    back) is also reported removed under its old id. `change_type` keeps only one kind."""
    changed: list[Pending] = []
    removed: list[Pending] = []
    for key, seen in current.items():
        before = previous.get(key)
        if before is None:
            if change_type in (None, "created"):
                changed.append(Pending(key))
        elif before.change_key != seen.change_key:
            if change_type in (None, "updated"):
                changed.append(Pending(key))
            if not immutable and before.regular_id != seen.regular_id and change_type in (None, "deleted"):
                removed.append(Pending(key, before))
    if change_type in (None, "deleted"):
        removed.extend(Pending(key, seen) for key, seen in previous.items() if key not in current)
    return changed + removed


def snapshot_of(mailbox: MailMailbox, options: Options) -> dict[bytes, Seen]:
    """The folder now (messages matching the round's filter, newest first)."""
    records = sorted(
        (m for m in mailbox.in_folder(options.folder_key) if options.matches(m)),
        key=lambda m: (m.received or m.created, m.seq),
        reverse=True,
    )
    return {m.key: Seen(m.change_key, mailbox.message_id(m, False)) for m in records}


def render_entry(
    mailbox: MailMailbox, entry: Pending, options: Options, immutable: bool
) -> dict[str, Any] | None:
    """One entry of a page as Graph writes it (None: the message left since the round began)."""
    if entry.removed is not None:
        item_id = mail_ids.immutable_id(mailbox.tag, entry.key) if immutable else entry.removed.regular_id
        return {
            "@odata.type": "#microsoft.graph.message",
            "id": item_id,
            "@removed": {"reason": "deleted"},
        }
    record = mailbox.messages.get(entry.key)
    if record is None or record.folder_key != options.folder_key:
        # Gone since the round began: the round's snapshot still holds it, so the next
        # round reports it as @removed.
        return None
    out = {
        "@odata.type": "#microsoft.graph.message",
        **message_json(mailbox, record, immutable=immutable, expand=options.expand),
    }
    if options.select:
        wanted = {s.strip().lower() for s in options.select.split(",") if s.strip()}
        if options.expand is not None:
            wanted.add("attachments")
        out = {k: v for k, v in out.items() if k in ALWAYS_SELECTED or k.lower() in wanted}
    return out


def _query(request: web.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.query.items()}


def _gone() -> GraphError:
    return GraphError(410, "SyncStateNotFound", "The sync state generation is not found.")


class MessageDeltaHandler:
    def __init__(
        self, ctx: EmulatorContext, mail: Mail, folder_of: Callable[[web.Request], MailFolder]
    ) -> None:
        self.ctx = ctx
        self.mail = mail
        self.folder_of = folder_of

    def _options(self, request: web.Request, folder: MailFolder) -> Options:
        bad = [k for k in request.query if k.lower() not in ALLOWED]
        if bad:
            raise bad_request(
                f"The following parameters are not supported with change tracking over the 'Messages' "
                f"resource: '{', '.join(bad)}'.",
                "ErrorInvalidUrlQuery",
            )
        q = _query(request)
        op: str | None = None
        at: dt.datetime | None = None
        if q.get("$filter"):
            match = _FILTER.fullmatch(q["$filter"])
            if match is None:
                raise bad_request(
                    "Only 'receivedDateTime ge|gt {value}' is supported as $filter in a message delta.",
                    "ErrorInvalidUrlQuery",
                )
            try:
                op, at = match.group(1).lower(), parse_instant(match.group(2).strip("'"))
            except ValueError:
                raise bad_request(f"Invalid date-time in $filter: {match.group(2)}", "BadRequest") from None
        if q.get("$orderby") and " ".join(q["$orderby"].split()).lower() != "receiveddatetime desc":
            raise bad_request(
                "Only 'receivedDateTime desc' is supported as $orderby in a message delta.",
                "ErrorInvalidUrlQuery",
            )
        change_type = q.get("changetype")
        if change_type is not None and change_type.lower() not in CHANGE_TYPES:
            raise bad_request(f"Invalid changeType '{change_type}'.", "ErrorInvalidUrlQuery")
        return Options(
            folder.key,
            select=q.get("$select") or None,
            expand=parse_expand(q.get("$expand")),
            received_op=op,
            received_at=at,
            change_type=change_type.lower() if change_type else None,
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        user = call.user()
        mailbox = self.mail.mailbox(user)
        folder = self.folder_of(request)
        q = _query(request)
        immutable = call.prefer.immutable_ids
        if "$skiptoken" in q:
            round_: Round = self.ctx.sync_states.get(q["$skiptoken"], user.id, PAGE_KIND)
            if round_.options.folder_key != folder.key:
                raise _gone()
        else:
            if "$deltatoken" in q:
                base: Base = self.ctx.sync_states.get(q["$deltatoken"], user.id, DELTA_KIND)
                if base.options.folder_key != folder.key:
                    raise _gone()
                options, previous = base.options, base.snapshot
            else:
                options, previous = self._options(request, folder), {}
                # $top and the first request's maxpagesize are the round's page size.
                options = replace(options, page_size=page_size(request, call, DEFAULT_PAGE, MAX_PAGE))
            snapshot = snapshot_of(mailbox, options)
            pending = plan_round(previous, snapshot, options.change_type, immutable=immutable)
            round_ = Round(options, pending, snapshot)
        size = page_size(request, call, round_.options.page_size, MAX_PAGE)
        page: list[dict[str, Any]] = []
        rest = list(round_.pending)
        while rest and len(page) < size:
            rendered = render_entry(mailbox, rest.pop(0), round_.options, immutable)
            if rendered is not None:
                page.append(rendered)
        context = f"{self.ctx.graph_url}/$metadata#Collection(message)"
        if rest:
            token = self.ctx.sync_states.put(user.id, PAGE_KIND, Round(round_.options, rest, round_.snapshot))
            body = collection(
                page, context=context, next_link=link(self.ctx.base_url, request.path, {"$skiptoken": token})
            )
        else:
            token = self.ctx.sync_states.put(user.id, DELTA_KIND, Base(round_.options, round_.snapshot))
            body = collection(
                page,
                context=context,
                delta_link=link(self.ctx.base_url, request.path, {"$deltatoken": token}),
            )
        return json_response(body)
