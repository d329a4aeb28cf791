"""Changes to calendars and events - the one place they happen, for Graph requests and for the
control API ("a person in Outlook") alike, so both emit the same change hooks.

`Calendars` is the calendar module's state and its Python API: `emulator.calendar.create_event(
"adele@contoso.com", {...Graph event JSON...})` does what Adele creating that event in Outlook does.
Users may be named by id or UPN wherever a `user` argument is taken.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from devtools.graph_emulator import ids
from devtools.graph_emulator.calendar_store import (
    OCCURRENCE_FIELDS,
    WRITABLE,
    Attachment,
    Calendar,
    EventRecord,
    EventTime,
    ExceptionRecord,
    Instance,
    Mailbox,
    check_properties,
    check_times,
    clean_fields,
    etag_matches,
    instances,
    master_instance,
    occurrence_instance,
    parse_recurrence_or_400,
    require,
    valid_original,
)
from devtools.graph_emulator.context import EmulatorContext
from devtools.graph_emulator.directory import User
from devtools.graph_emulator.errors import GraphError, bad_request
from devtools.graph_emulator.hooks import Change
from devtools.graph_emulator.timezones import date_time_time_zone

MAX_POST_ATTACHMENT_BYTES = 3 * 1024 * 1024
MIN_UPLOAD_SESSION_BYTES = 3 * 1024 * 1024  # smaller files are one POST (400 otherwise)


def stale_change_key() -> GraphError:
    return GraphError(
        412,
        "ErrorIrresolvableConflict",
        "The send or update operation could not be performed because the change key passed in the "
        "request does not match the current change key for the item.",
    )


class Calendars:
    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx
        self._mailboxes: dict[str, Mailbox] = {}

    def reset(self) -> None:
        self._mailboxes.clear()

    # -- mailboxes and calendars -------------------------------------------------------------

    def user(self, user: User | str) -> User:
        return user if isinstance(user, User) else self.ctx.resolve_user(user)

    def mailbox(self, user: User | str) -> Mailbox:
        """The user's calendar store, made with its default calendar ("Calendar") on first use:
        every Exchange mailbox has one."""
        found = self.user(user)
        mailbox = self._mailboxes.get(found.id)
        if mailbox is None:
            mailbox = self._mailboxes[found.id] = Mailbox(found)
            default = Calendar(ids.outlook_id("AAMkAC"), found.id, "Calendar", True, ids.change_key())
            mailbox.calendars[default.id] = default
        return mailbox

    def calendar(self, user: User | str, calendar_id: str | None = None) -> Calendar:
        mailbox = self.mailbox(user)
        if calendar_id is None:
            return mailbox.default_calendar
        found = mailbox.calendars.get(calendar_id)
        require(found is not None)
        assert found is not None
        return found

    def create_calendar(self, user: User | str, name: str, color: str = "auto") -> Calendar:
        mailbox = self.mailbox(user)
        if not name or not isinstance(name, str):
            raise bad_request("The calendar name is required.")
        if any(c.name.lower() == name.lower() for c in mailbox.calendars.values()):
            raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")
        cal = Calendar(ids.outlook_id("AAMkAC"), mailbox.user.id, name, False, ids.change_key(), color)
        mailbox.calendars[cal.id] = cal
        return cal

    def delete_calendar(self, user: User | str, calendar_id: str) -> None:
        mailbox = self.mailbox(user)
        cal = self.calendar(user, calendar_id)
        if cal.is_default:
            raise GraphError(400, "ErrorInvalidRequest", "The default calendar cannot be deleted.")
        for record in [r for r in mailbox.events.values() if r.calendar_id == cal.id]:
            self._drop(mailbox, record)
        del mailbox.calendars[cal.id]

    # -- reads -------------------------------------------------------------------------------

    def find(self, user: User | str, event_id: str, calendar_id: str | None = None) -> Instance:
        """A single event, series master, occurrence or exception by id (404 if none)."""
        mailbox = self.mailbox(user)
        occurrence = ids.parse_occurrence_id(event_id)
        if occurrence is not None:
            series_id, original = occurrence
            record = mailbox.events.get(series_id)
            require(record is not None and valid_original(record, original))
            assert record is not None
            instance = occurrence_instance(record, original)
        else:
            record = mailbox.events.get(event_id)
            require(record is not None)
            assert record is not None
            instance = master_instance(record)
        require(calendar_id is None or record.calendar_id == calendar_id)
        return instance

    def events(self, user: User | str, calendar_id: str | None = None) -> list[EventRecord]:
        """Single events and series masters of a calendar (the default one if not named)."""
        cal = self.calendar(user, calendar_id)
        return sorted(
            (r for r in self.mailbox(user).events.values() if r.calendar_id == cal.id),
            key=lambda r: (r.created, r.id),
        )

    def view(
        self, user: User | str, start: dt.datetime, end: dt.datetime, calendar_id: str | None = None
    ) -> list[Instance]:
        """What calendarView returns for [start, end) (aware datetimes)."""
        return instances(self.events(user, calendar_id), start, end)

    # -- writes ------------------------------------------------------------------------------

    def create_event(
        self,
        user: User | str,
        body: dict[str, Any],
        *,
        calendar_id: str | None = None,
        app_id: str | None = None,
    ) -> tuple[EventRecord, bool]:
        """Create an event from Graph JSON; (record, created). With a `transactionId` the same app
        already used in this mailbox, nothing is created and the existing event is returned
        (Graph answers 201 with it again)."""
        mailbox = self.mailbox(user)
        cal = self.calendar(user, calendar_id)
        check_properties(body)
        transaction_id = body.get("transactionId")
        if transaction_id is not None and not isinstance(transaction_id, str):
            raise bad_request("transactionId must be a string.")
        if transaction_id:
            existing = mailbox.transactions.get((app_id or "", transaction_id))
            if existing is not None and existing in mailbox.events:
                return mailbox.events[existing], False
        fields = clean_fields(body, WRITABLE)
        if "start" not in body or "end" not in body:
            raise bad_request("An event needs both start and end.")
        start, end = EventTime.parse(body["start"], "start"), EventTime.parse(body["end"], "end")
        check_times(start, end, bool(fields.get("isAllDay")))
        now = self.ctx.clock.now()
        record = EventRecord(
            id=ids.outlook_id(),
            user_id=mailbox.user.id,
            calendar_id=cal.id,
            fields=fields,
            start=start,
            end=end,
            recurrence=parse_recurrence_or_400(body.get("recurrence")),
            created=now,
            modified=now,
            change_key=ids.change_key(),
            ical_uid=ids.ical_uid(),
            transaction_id=transaction_id or None,
            creator=app_id,
        )
        mailbox.events[record.id] = record
        if transaction_id:
            mailbox.transactions[(app_id or "", transaction_id)] = record.id
        self._emit("created", mailbox, master_instance(record))
        return record, True

    def update_event(
        self,
        user: User | str,
        event_id: str,
        patch: dict[str, Any],
        *,
        if_match: str | None = None,
        calendar_id: str | None = None,
    ) -> Instance:
        """PATCH semantics. Patching an occurrence turns it into an exception."""
        mailbox = self.mailbox(user)
        instance = self.find(user, event_id, calendar_id)
        if not etag_matches(if_match, instance.change_key):
            raise stale_change_key()
        record = instance.record
        now = self.ctx.clock.now()
        if instance.original_start is not None:
            if "recurrence" in patch:
                raise bad_request(
                    "The recurrence of an occurrence cannot be changed; change the series master."
                )
            check_properties(patch)
            fields = clean_fields(patch, OCCURRENCE_FIELDS)
            exc = record.exceptions.get(instance.original_start)
            start = (
                EventTime.parse(patch["start"], "start")
                if "start" in patch
                else (exc.start if exc else EventTime.at(instance.start, record.start.tz_name))
            )
            end = (
                EventTime.parse(patch["end"], "end")
                if "end" in patch
                else (exc.end if exc else EventTime.at(instance.end, record.end.tz_name))
            )
            merged = {**record.fields, **(exc.fields if exc else {}), **fields}
            check_times(start, end, bool(merged.get("isAllDay")))
            if exc is None:
                exc = ExceptionRecord(instance.original_start, {}, start, end, ids.change_key(), now, now)
                record.exceptions[instance.original_start] = exc
            exc.fields.update(fields)
            exc.start, exc.end = start, end
            exc.change_key = ids.change_key()
            exc.modified = now
        else:
            fields = clean_fields(patch, WRITABLE)
            start = EventTime.parse(patch["start"], "start") if "start" in patch else record.start
            end = EventTime.parse(patch["end"], "end") if "end" in patch else record.end
            check_times(start, end, bool({**record.fields, **fields}.get("isAllDay")))
            if "recurrence" in patch:
                record.recurrence = parse_recurrence_or_400(patch["recurrence"])
                if record.recurrence is None:
                    record.exceptions.clear()
                    record.cancelled.clear()
            record.fields.update(fields)
            record.start, record.end = start, end
            # transactionId cannot change after creation (Graph docs); a PATCH carrying one is ignored.
            record.change_key = ids.change_key()
            record.modified = now
        updated = self.find(user, instance.id)
        self._emit("updated", mailbox, updated)
        return updated

    def move_event(
        self, user: User | str, event_id: str, start: dt.datetime, end: dt.datetime | None = None
    ) -> Instance:
        """Drag an event (or one occurrence) to a new time; keeps its duration unless `end` given."""
        instance = self.find(user, event_id)
        if start.tzinfo is None or (end is not None and end.tzinfo is None):
            raise ValueError("move_event takes aware datetimes")
        new_end = end if end is not None else start + (instance.end - instance.start)
        tz = instance.record.start.tz_name
        return self.update_event(
            user,
            event_id,
            {"start": date_time_time_zone(start, tz), "end": date_time_time_zone(new_end, tz)},
        )

    def delete_event(
        self, user: User | str, event_id: str, *, if_match: str | None = None, calendar_id: str | None = None
    ) -> None:
        """Delete an event or series; deleting an occurrence or exception cancels that occurrence."""
        mailbox = self.mailbox(user)
        instance = self.find(user, event_id, calendar_id)
        if not etag_matches(if_match, instance.change_key):
            raise stale_change_key()
        record = instance.record
        if instance.original_start is not None:
            # The series itself is left as it was (change key, lastModified): its other occurrences
            # render the same, so a delta round reports just the cancelled one as @removed.
            record.cancelled.add(instance.original_start)
            record.exceptions.pop(instance.original_start, None)
            self._emit("deleted", mailbox, instance)
            return
        self._drop(mailbox, record)

    def _drop(self, mailbox: Mailbox, record: EventRecord) -> None:
        del mailbox.events[record.id]
        mailbox.transactions = {k: v for k, v in mailbox.transactions.items() if v != record.id}
        self._emit("deleted", mailbox, master_instance(record))

    # -- attachments -------------------------------------------------------------------------

    def add_attachment(
        self,
        user: User | str,
        event_id: str,
        *,
        name: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        is_inline: bool = False,
        content_id: str | None = None,
        calendar_id: str | None = None,
    ) -> Attachment:
        mailbox = self.mailbox(user)
        instance = self.find(user, event_id, calendar_id)
        if instance.original_start is not None:
            raise bad_request("Attachments can be added to single events and series masters only.")
        record = instance.record
        now = self.ctx.clock.now()
        attachment = Attachment(
            "AAMkAT" + secrets.token_urlsafe(30), name, content_type, data, is_inline, content_id, now
        )
        record.attachments.append(attachment)
        record.change_key = ids.change_key()
        record.modified = now
        self._emit("updated", mailbox, master_instance(record))
        return attachment

    def attachment(
        self, user: User | str, event_id: str, attachment_id: str, calendar_id: str | None = None
    ) -> Attachment:
        record = self.find(user, event_id, calendar_id).record
        found = next((a for a in record.attachments if a.id == attachment_id), None)
        require(found is not None, "The attachment was not found.")
        assert found is not None
        return found

    def delete_attachment(
        self, user: User | str, event_id: str, attachment_id: str, calendar_id: str | None = None
    ) -> None:
        mailbox = self.mailbox(user)
        record = self.find(user, event_id, calendar_id).record
        found = self.attachment(user, event_id, attachment_id, calendar_id)
        record.attachments.remove(found)
        record.change_key = ids.change_key()
        record.modified = self.ctx.clock.now()
        self._emit("updated", mailbox, master_instance(record))

    # -- hooks -------------------------------------------------------------------------------

    def _emit(self, change_type: str, mailbox: Mailbox, instance: Instance) -> None:
        user = mailbox.user
        self.ctx.hooks.emit(
            Change(
                kind="event",
                change_type=change_type,
                tenant_id=user.tenant_id,
                user_id=user.id,
                resource_id=instance.id,
                resource=f"Users/{user.id}/Events/{instance.id}",
                container_id=instance.record.calendar_id,
                series_master_id=instance.record.id if instance.original_start is not None else None,
                change_key=instance.change_key if change_type != "deleted" else None,
                at=self.ctx.clock.now(),
            )
        )
