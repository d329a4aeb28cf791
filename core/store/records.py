"""The state the bridge keeps in Table Storage: one record type per table.

These are first shapes: later issues add fields (new fields need defaults so stored rows still
load). The keys are the design: each record's comment says which access pattern they serve.
Every value that comes from a user, a host or Graph goes through `join_key`/`escape_key`, so a
key never holds a character Table Storage forbids; e-mail addresses are lower-cased because
Exchange treats them case-insensitively.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from core.store.keys import (
    SEPARATOR,
    escape_key,
    inverted_timestamp,
    join_key,
    prefix_range,
    sequence_key,
    short_hash,
)
from core.store.repository import Record

# --- tenants -------------------------------------------------------------------------------


class CredentialMode(StrEnum):
    CLIENT_SECRET = "client_secret"  # noqa: S105 - a mode name, not a secret. The customer's app registration; the secret is in Key Vault
    MANAGED_IDENTITY = "managed"  # the deployment's app, federated with the managed identity
    DELEGATED = "delegated"  # per-user consent; refresh tokens in Key Vault


class ApiKeyEntry(BaseModel):
    """A stored tenant API key: its SHA-256, when it was made, and when it stops working
    (None = no end). Made and checked by `core.apikeys`."""

    model_config = ConfigDict(frozen=True)

    key_id: str  # random, unrelated to the key: names the entry in API responses and logs
    sha256: str
    created_at: datetime
    expires_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


class Tenant(Record):
    """A tenant that host systems act for.

    Keys: one constant partition, row = tenant id. The tenant list is small and every timer
    fans out over all of it, so one partition makes "all tenants" a single range read."""

    table: ClassVar[str] = "tenants"
    PARTITION: ClassVar[str] = "tenant"

    tenant_id: str  # the bridge's id for the tenant (a slug), used in every API route
    display_name: str = ""
    graph_tenant_id: str | None = None  # the Microsoft Entra tenant (GUID)
    credential_mode: CredentialMode = CredentialMode.MANAGED_IDENTITY
    graph_client_id: str | None = None
    # Names of Key Vault secrets, never secret values.
    client_secret_name: str | None = None
    webhook_secret_name: str | None = None
    webhook_url: str | None = None
    # Defaults for user-visible text and for times without a zone.
    language: str = "en"
    time_zone: str = "UTC"  # an IANA or Windows zone name
    # The tenant's API keys as SHA-256 hashes with their lifetimes; keys are never stored.
    api_keys: list[ApiKeyEntry] = Field(default_factory=list)
    enabled: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def key(cls, tenant_id: str) -> tuple[str, str]:
        return cls.PARTITION, escape_key(tenant_id)

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id)[1]


# --- resource links ------------------------------------------------------------------------

DEFAULT_CALENDAR = "default"  # the key part standing for a mailbox's default calendar


class Direction(StrEnum):
    DOWN = "down"  # Outlook -> host
    UP = "up"  # host -> Outlook
    BOTH = "both"
    NONE = "none"  # paused, kept

    @property
    def downloads(self) -> bool:
        return self in (Direction.DOWN, Direction.BOTH)

    @property
    def uploads(self) -> bool:
        return self in (Direction.UP, Direction.BOTH)


class CalendarScope(StrEnum):
    """What the bridge may do in a linked account's calendars (the guides' "scope"): reading is
    enough for down; up and both need write access."""

    READ = "Calendars.Read"
    READ_WRITE = "Calendars.ReadWrite"


class LinkedAccount(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: str  # UPN (lower-cased) or Entra object id of the Microsoft 365 mailbox
    direction: Direction = Direction.BOTH
    # DEFAULT_CALENDAR for the mailbox's default calendar, or calendar names
    calendars: list[str] = Field(default_factory=lambda: [DEFAULT_CALENDAR])
    scope: CalendarScope = CalendarScope.READ_WRITE


class ResourceLink(Record):
    """A host resource (person, room) and its linked accounts, in order.

    Keys: partition = tenant, row = host resource id. The host addresses a resource by its id
    (point read), and a tenant's timer lists all of its links (one partition)."""

    table: ClassVar[str] = "links"

    tenant_id: str
    resource_id: str
    display_name: str = ""
    accounts: list[LinkedAccount] = Field(default_factory=list)
    updated_at: datetime | None = None

    @property
    def main_account(self) -> LinkedAccount | None:
        """The account that receives uploads: the first whose direction includes up."""
        return next((a for a in self.accounts if a.direction.uploads), None)

    @classmethod
    def key(cls, tenant_id: str, resource_id: str) -> tuple[str, str]:
        return escape_key(tenant_id), escape_key(resource_id)

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id, self.resource_id)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.resource_id)[1]


# --- calendar sync state -------------------------------------------------------------------


class SyncStatus(StrEnum):
    NEVER = "never"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


@functools.lru_cache(maxsize=65_536)
def calendar_scope(resource_id: str, account: str, calendar: str) -> str:
    """The key part naming one synced calendar: a resource's link to one calendar of one
    account. Hashed, because a resource id, an address and a calendar name escaped side by side
    can pass Table Storage's 1 KiB key limit; the values themselves are columns. (Cached: a
    timer cycle computes it several times per calendar.)"""
    return short_hash(join_key(resource_id, account.lower(), calendar.casefold()))


@functools.lru_cache(maxsize=65_536)
def sync_state_key(resource_id: str, account: str, calendar: str) -> str:
    """A calendar's sync-state row key: 8 hex digits of its resource's hash, then its scope.
    One resource's calendars are neighbours in key order, so a batch of the timer's (which
    follows key order) spans few resources: it reads few links and one key range of states."""
    return short_hash(resource_id)[:8] + "-" + calendar_scope(resource_id, account, calendar)


class LeasedState(Record):
    """A job's state row that doubles as its lease: one worker at a time holds it
    (`lease_owner` until `lease_until`, taken and released with ETag writes); a request that
    finds it held sets `rerun_requested`, and the holder runs once more before it lets go, so
    bursts of requests coalesce. `core.leases.claim` takes it."""

    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    status: SyncStatus = SyncStatus.NEVER
    error: str | None = None
    consecutive_failures: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None
    rerun_requested: bool = False


class CalendarSyncState(LeasedState):
    """Where the down-sync of one calendar of one resource stands, and who is syncing it.

    Keys: partition = tenant, row = `sync_state_key` (the resource's hash, then the calendar's
    scope). A worker reads and writes exactly this row (point read + etag writes: the lease), a
    timer batch reads its rows as one key range, the tenant's state lists as one partition, and
    a tenant's deletion is one partition. Two resources linking the same calendar are two rows:
    each has its own view and its own delta link.

    The lease (`lease_owner`, `lease_until`) lets one worker at a time run a calendar; a request
    that finds it leased sets `rerun_requested`, and the holder runs once more before it lets
    go, so bursts of requests coalesce into at most one extra round."""

    table: ClassVar[str] = "syncstate"

    tenant_id: str
    resource_id: str
    account: str
    calendar: str = DEFAULT_CALENDAR  # as named in the link: "default" or a calendar's name
    calendar_id: str | None = None  # the resolved Graph id (None: the default calendar)
    delta_link: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    last_full_sync_at: datetime | None = None

    @classmethod
    def key(cls, tenant_id: str, resource_id: str, account: str, calendar: str) -> tuple[str, str]:
        return escape_key(tenant_id), sync_state_key(resource_id, account, calendar)

    @property
    def scope(self) -> str:
        return calendar_scope(self.resource_id, self.account, self.calendar)

    @property
    def partition_key(self) -> str:
        return escape_key(self.tenant_id)

    @property
    def row_key(self) -> str:
        return sync_state_key(self.resource_id, self.account, self.calendar)


# --- event map -----------------------------------------------------------------------------


class Origin(StrEnum):
    BRIDGE = "bridge"  # the bridge created it from a host appointment (must not echo back up)
    OUTLOOK = "outlook"  # a user made it in Outlook


class EventMapEntry(Record):
    """One Outlook event as the host knows it: which host appointment it is, and the
    fingerprint of what the host was last told, so an unchanged event is never sent again.

    Keys: partition = tenant, row = calendar scope|immutable event id. The down worker looks a
    delta item up by point read, a full resync lists one calendar with one prefix range
    (`calendar_range`), and a tenant's deletion is one partition."""

    table: ClassVar[str] = "eventmap"

    tenant_id: str
    resource_id: str
    account: str
    calendar: str = DEFAULT_CALENDAR
    event_id: str  # Graph immutable id
    series_id: str | None = None  # the series master's id, for occurrences and exceptions
    host_appointment_id: str | None = None
    change_key: str | None = None
    fingerprint: str | None = None  # of the appointment payload the host last received
    transaction_id: str | None = None
    origin: Origin = Origin.OUTLOOK
    version: int = 0  # the host's appointment version last applied; older versions are ignored
    start: datetime | None = None
    end: datetime | None = None
    # Outlook's lastModifiedDateTime of the state this entry describes. The down worker and the
    # push worker both write entries; the newer state wins (`core.calendar.eventmap`).
    last_modified: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def key(
        cls, tenant_id: str, resource_id: str, account: str, calendar: str, event_id: str
    ) -> tuple[str, str]:
        scope = calendar_scope(resource_id, account, calendar)
        return escape_key(tenant_id), scope + SEPARATOR + escape_key(event_id)

    @staticmethod
    def calendar_range(scope: str) -> tuple[str, str]:
        """(row_key_from, row_key_to) covering every entry of one calendar scope."""
        return prefix_range(scope + SEPARATOR)

    @property
    def partition_key(self) -> str:
        return escape_key(self.tenant_id)

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.resource_id, self.account, self.calendar, self.event_id)[1]


class EventTransaction(Record):
    """An event the bridge is about to create in a mailbox, by the `transactionId` it creates
    it with: written *before* the create, so when the event comes back down — even if the
    bridge died before it learnt the event's id — it is recognised as the host appointment it
    belongs to and never reported as a new one.

    Keys: partition = tenant, row = account|transactionId (Graph de-duplicates transaction ids
    per mailbox, so that is the scope). The down worker reads it by point read."""

    table: ClassVar[str] = "eventtx"

    tenant_id: str
    account: str
    transaction_id: str
    resource_id: str
    host_appointment_id: str
    version: int = 0
    created_at: datetime | None = None

    @classmethod
    def key(cls, tenant_id: str, account: str, transaction_id: str) -> tuple[str, str]:
        return escape_key(tenant_id), join_key(account.lower(), transaction_id)

    @property
    def partition_key(self) -> str:
        return escape_key(self.tenant_id)

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.account, self.transaction_id)[1]


# --- host appointments pushed up ----------------------------------------------------------


class PushOp(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


class PushStatus(StrEnum):
    PENDING = "pending"  # accepted, not yet in Outlook
    APPLIED = "applied"  # Outlook has this version (or, after a delete, no longer has the event)
    CONFLICT = "conflict"  # Outlook was edited later than the host's change: Outlook's state won
    SKIPPED = "skipped"  # nothing to write to: no link, no account with direction up/both
    FAILED = "failed"  # Graph refused it; `reason` says why


class HostAppointment(Record):
    """One host appointment on its way to Outlook: the newest version the host sent (desired)
    and what Outlook has (applied), with a lease so one worker at a time writes it.

    Keys: partition = tenant, row = hash of the resource id|escaped host appointment id. The
    POST and the worker address it by point read; an unlink's cleanup lists one resource with a
    prefix range (`resource_range`); a tenant's deletion is one partition.

    The desired state is kept here, not in the queue message, so versions resolve at the store:
    an older version than `version` is ignored when it arrives, and whichever worker holds the
    lease applies the newest one, however the messages were ordered."""

    table: ClassVar[str] = "appointments"

    tenant_id: str
    resource_id: str
    host_appointment_id: str
    # desired: the newest version the host sent
    version: int
    op: PushOp = PushOp.UPSERT
    change: dict[str, Any] = Field(default_factory=dict)  # `core.calendar.changes` stored form
    host_modified_at: datetime | None = None  # the host's modification time (or when accepted)
    tracking_id: str | None = None  # of the POST that sent `version`
    # applied: where the appointment is in Outlook now
    applied_version: int | None = None
    status: PushStatus = PushStatus.PENDING
    reason: str | None = None
    account: str | None = None
    calendar: str | None = None
    event_id: str | None = None
    change_key: str | None = None  # after the bridge's last write: anything else is an Outlook edit
    # a create under way: its transactionId, saved before the create so a retry (or the next
    # version) finds the event instead of making a second one
    creating_transaction_id: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    accepted_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def settled(self) -> bool:
        """Nothing left to do for the desired version."""
        return self.applied_version == self.version and self.status is not PushStatus.PENDING

    @classmethod
    def key(cls, tenant_id: str, resource_id: str, host_appointment_id: str) -> tuple[str, str]:
        return escape_key(tenant_id), short_hash(resource_id) + SEPARATOR + escape_key(host_appointment_id)

    @staticmethod
    def resource_range(resource_id: str) -> tuple[str, str]:
        return prefix_range(short_hash(resource_id) + SEPARATOR)

    @property
    def partition_key(self) -> str:
        return escape_key(self.tenant_id)

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.resource_id, self.host_appointment_id)[1]


# --- mail document import ------------------------------------------------------------------


class MailImport(Record):
    """One mailbox's document import, as the host configured it: where mail arrives, where it
    goes after, who gets what cannot be imported, what may be imported.

    Keys: partition = tenant, row = the host's id for the import. The API addresses it by point
    read, the timer lists a tenant's imports as one partition."""

    table: ClassVar[str] = "mailimports"

    tenant_id: str
    import_id: str
    mailbox: str  # UPN (lower-cased) or Entra object id
    import_folder: str  # as the host named it, e.g. "Inbox/Invoices"
    import_folder_id: str  # resolved when the import was saved
    archive_folder: str
    archive_folder_id: str
    forward_to: str
    allowed_types: list[str] = Field(default_factory=list)  # lower-case file extensions
    max_size_bytes: int = 0
    notify_to: str | None = None  # who hears of a failing import (Graph sendMail)
    enabled: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def key(cls, tenant_id: str, import_id: str) -> tuple[str, str]:
        return escape_key(tenant_id), escape_key(import_id)

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id, self.import_id)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.import_id)[1]


class MailSender(Record):
    """A sender profile: the mailbox host systems send mail as (seed 004: the forms product's
    configured sender). Keys: partition = tenant, row = the host's id for the profile."""

    table: ClassVar[str] = "mailsenders"

    tenant_id: str
    sender_id: str
    mailbox: str  # UPN (lower-cased) or Entra object id
    send_as: str | None = None  # another address the mailbox may send as (Exchange Send As)
    save_to_sent_items: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def key(cls, tenant_id: str, sender_id: str) -> tuple[str, str]:
        return escape_key(tenant_id), escape_key(sender_id)

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id, self.sender_id)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.sender_id)[1]


class OutgoingStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class OutgoingAttachmentRecord(BaseModel):
    """A file of an outgoing mail, staged in Blob Storage until it is sent."""

    model_config = ConfigDict(frozen=True)

    name: str
    content_type: str
    size: int
    sha256: str
    blob_name: str
    attached: bool = False  # on the draft (the draft path only)


class OutgoingMessage(Record):
    """One mail a host asked to send, and how far its worker got. The mail itself (recipients,
    subject, body) waits in Blob Storage with its files; this row holds no content.

    Keys: partition = tenant, row = message id (from sender profile and the host's
    idempotency key, so a repeated POST finds the row the first one made). The worker records
    each step before and after it: `send_started_at` before the send, `status: sent` after it."""

    table: ClassVar[str] = "outgoingmail"

    tenant_id: str
    message_id: str
    sender_id: str
    # the sender profile as it was when the mail was accepted
    mailbox: str
    send_as: str | None = None
    save_to_sent_items: bool = True
    fingerprint: str  # SHA-256 of the request as validated: a reused key with other content is a 409
    status: OutgoingStatus = OutgoingStatus.QUEUED
    mail_blob: str = ""  # the mail (recipients, subject, body) as JSON
    attachments: list[OutgoingAttachmentRecord] = Field(default_factory=list)
    recipients: int = 0
    draft_id: str | None = None  # the draft path: Graph's id of the draft (also after it is sent)
    send_started_at: datetime | None = None  # set just before Graph is asked to send
    attempts: int = 0
    error: str | None = None
    fix: str | None = None
    outcome_unknown: bool = False  # failed after a send whose outcome Graph never confirmed
    lease_owner: str | None = None
    lease_until: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    sent_at: datetime | None = None

    @property
    def attachment_bytes(self) -> int:
        return sum(a.size for a in self.attachments)

    @classmethod
    def key(cls, tenant_id: str, message_id: str) -> tuple[str, str]:
        return escape_key(tenant_id), message_id

    @property
    def partition_key(self) -> str:
        return escape_key(self.tenant_id)

    @property
    def row_key(self) -> str:
        return self.message_id


class MailImportState(LeasedState):
    """Where one import's runs stand, and who is running it: the same lease as a calendar's
    sync state (one worker per mailbox import; a request that finds it taken asks the holder
    for one more round).

    Keys: partition = tenant, row = import id (point reads and ETag writes)."""

    table: ClassVar[str] = "mailimportstate"

    tenant_id: str
    import_id: str

    @classmethod
    def key(cls, tenant_id: str, import_id: str) -> tuple[str, str]:
        return escape_key(tenant_id), escape_key(import_id)

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id, self.import_id)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.import_id)[1]


# --- mail ledger ---------------------------------------------------------------------------


class LedgerStatus(StrEnum):
    PENDING = "pending"  # seen, nothing done yet; a forward: its draft made, not known to be sent
    STAGED = "staged"  # the attachment is in Blob Storage
    ANNOUNCED = "announced"  # document.imported is in the outbox
    DONE = "done"  # message-level step finished (forwarded, archived)
    FAILED = "failed"


MESSAGE_STEP = "m:"  # row-key prefix of message-level steps
ATTACHMENT = "a:"  # row-key prefix of attachment rows


class MailLedgerEntry(Record):
    """One step of importing one mail: an attachment delivered, or a message-level step
    (forward, archive, failures). A crash between steps is resumed from these rows, never
    repeated.

    Keys: partition = tenant, row = hash of the mailbox|message id|a:<hash of attachment id>
    or …|m:<step>. The importer reads all rows of one message with one prefix range
    (`message_range`), deleting an import clears its mailbox with another (`mailbox_range`),
    and a tenant's deletion is one partition. Attachment ids are hashed because Graph
    attachment ids run to hundreds of characters and message id + attachment id could pass the
    1 KiB key limit; the full ids are columns."""

    table: ClassVar[str] = "mailledger"

    tenant_id: str
    mailbox: str
    message_id: str  # Graph immutable id
    attachment_id: str | None = None  # None = a message-level step
    step: str | None = None  # message-level step name, e.g. "forward", "archive"
    status: LedgerStatus = LedgerStatus.PENDING
    file_name: str | None = None
    content_type: str | None = None
    size: int | None = None
    sha256: str | None = None
    blob_name: str | None = None
    # The forward's draft (Graph immutable id), recorded before it is sent: a rerun reads it to
    # learn whether the send went, so a mail is never forwarded twice.
    draft_id: str | None = None
    error: str | None = None
    attempts: int = 0
    updated_at: datetime | None = None

    @staticmethod
    def _mailbox(mailbox: str) -> str:
        return short_hash(mailbox.lower())

    @classmethod
    def attachment_key(
        cls, tenant_id: str, mailbox: str, message_id: str, attachment_id: str
    ) -> tuple[str, str]:
        row = cls._message(mailbox, message_id) + ATTACHMENT + short_hash(attachment_id)
        return escape_key(tenant_id), row

    @classmethod
    def step_key(cls, tenant_id: str, mailbox: str, message_id: str, step: str) -> tuple[str, str]:
        return escape_key(tenant_id), cls._message(mailbox, message_id) + MESSAGE_STEP + escape_key(step)

    @classmethod
    def _message(cls, mailbox: str, message_id: str) -> str:
        return cls._mailbox(mailbox) + SEPARATOR + escape_key(message_id) + SEPARATOR

    @classmethod
    def message_range(cls, mailbox: str, message_id: str) -> tuple[str, str]:
        """(row_key_from, row_key_to) covering every row of one message."""
        return prefix_range(cls._message(mailbox, message_id))

    @classmethod
    def mailbox_range(cls, mailbox: str) -> tuple[str, str]:
        """(row_key_from, row_key_to) covering every row of one mailbox."""
        return prefix_range(cls._mailbox(mailbox) + SEPARATOR)

    def _key(self) -> tuple[str, str]:
        if self.attachment_id is not None:
            return self.attachment_key(self.tenant_id, self.mailbox, self.message_id, self.attachment_id)
        if self.step is None:
            raise ValueError("a mail ledger entry needs an attachment_id or a step")
        return self.step_key(self.tenant_id, self.mailbox, self.message_id, self.step)

    @property
    def partition_key(self) -> str:
        return self._key()[0]

    @property
    def row_key(self) -> str:
        return self._key()[1]


# --- reservations --------------------------------------------------------------------------


class BookingCalendar(Record):
    """An Outlook calendar whose admin-created appointments are bookable slots (seed 004).

    Keys: partition = tenant, row = the host's id for the booking calendar (point reads; a
    tenant's list is one partition)."""

    table: ClassVar[str] = "bookingcalendars"

    tenant_id: str
    booking_id: str
    display_name: str = ""
    owner: str  # the mailbox (UPN, lower-cased, or object id)
    calendar: str = DEFAULT_CALENDAR  # as named in Outlook
    calendar_id: str | None = None  # resolved when saved (None: the default calendar)
    time_zone: str = "UTC"  # hours and days are counted in this zone
    booked_suffix: str = " - Booked"
    first_hour: int = 8
    last_hour: int = 16
    show_weekend: bool = False
    notice_days: int = 0
    attach_documents: bool = True
    add_summary: bool = True
    notify_attendees: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def key(cls, tenant_id: str, booking_id: str) -> tuple[str, str]:
        return escape_key(tenant_id), escape_key(booking_id)

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id, self.booking_id)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.booking_id)[1]


class ReservationStatus(StrEnum):
    PENDING = "pending"  # the slot is claimed; the worker has not finished marking the event booked
    BOOKED = "booked"
    CANCELLING = "cancelling"  # the host cancelled; the worker is restoring the slot
    CANCELLED = "cancelled"
    FAILED = "failed"  # the worker could not book it (permanently); the slot was released


ACTIVE_RESERVATIONS = frozenset({ReservationStatus.PENDING, ReservationStatus.BOOKED})


class Booker(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = ""
    email: str | None = None
    phone: str | None = None


class SlotClaim(Record):
    """Who holds one slot of a booking calendar: the atomic part of booking.

    Keys: partition = tenant, row = booking calendar|slot event id. Claiming is an insert of
    exactly this key, so of concurrent claims one succeeds and the rest get AlreadyExists
    (201 / 409); releasing the slot deletes the row with its etag. A calendar's claims are one
    row range (the slot list hides them)."""

    table: ClassVar[str] = "slotclaims"

    tenant_id: str
    booking_calendar: str
    slot_id: str  # Graph immutable id of the slot event
    reservation_id: str
    claimed_at: datetime | None = None

    @classmethod
    def key(cls, tenant_id: str, booking_calendar: str, slot_id: str) -> tuple[str, str]:
        return escape_key(tenant_id), join_key(booking_calendar, slot_id)

    @classmethod
    def calendar_range(cls, booking_calendar: str) -> tuple[str, str]:
        """(row_key_from, row_key_to) covering every claim of one booking calendar."""
        return prefix_range(escape_key(booking_calendar) + SEPARATOR)

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id, self.booking_calendar, self.slot_id)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.booking_calendar, self.slot_id)[1]


class ReservedDocument(BaseModel):
    """A document the booker uploaded: staged in Blob Storage until it is attached."""

    model_config = ConfigDict(frozen=True)

    name: str
    content_type: str
    size: int
    sha256: str
    blob_name: str
    attachment_id: str | None = None  # on the event, once attached


class Reservation(Record):
    """One booking of a slot and how far its worker got. Every step the worker does in
    Outlook is recorded here before the next one, so a retry continues and a cancellation
    undoes exactly what the bridge did (its attachments, its subject suffix, its attendee).

    Keys: partition = tenant (a tenant's deletion takes them), row = booking calendar|
    reservation id (point reads; a calendar's reservations are one row range)."""

    table: ClassVar[str] = "reservations"

    tenant_id: str
    booking_calendar: str
    reservation_id: str
    slot_id: str
    status: ReservationStatus = ReservationStatus.PENDING
    owner: str = ""  # the booking calendar's mailbox when the slot was claimed
    booked_suffix: str = ""  # as configured then: a cancellation removes exactly this
    booker: Booker = Field(default_factory=Booker)
    answers: dict[str, Any] = Field(default_factory=dict)  # the form's fields, in the form's order
    add_booker_as_attendee: bool = False
    idempotency_key: str | None = None  # a hash of the host's key, never the key itself
    slot_subject: str = ""
    slot_start: datetime | None = None
    slot_end: datetime | None = None
    documents: list[ReservedDocument] = Field(default_factory=list)
    # What the event was before the bridge touched it (taken by the worker before its first
    # write): a cancellation restores it.
    snapshot_taken: bool = False
    preexisting_attachments: list[str] = Field(default_factory=list)
    original_subject: str | None = None
    original_body: str | None = None  # None: too large to keep; the body is left as booked
    original_body_type: str | None = None
    original_attendees: list[dict[str, str]] = Field(default_factory=list)
    summary_attachment_id: str | None = None
    event_marked: bool = False  # subject suffix, body and attendee written
    notify_started: bool = False  # the attendees' notification was handed to Graph (at most once)
    cancel_notify_started: bool = False
    error: str | None = None
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def key(cls, tenant_id: str, booking_calendar: str, reservation_id: str) -> tuple[str, str]:
        return escape_key(tenant_id), join_key(booking_calendar, reservation_id)

    @classmethod
    def calendar_range(cls, booking_calendar: str) -> tuple[str, str]:
        return prefix_range(escape_key(booking_calendar) + SEPARATOR)

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id, self.booking_calendar, self.reservation_id)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.booking_calendar, self.reservation_id)[1]


# --- presence ------------------------------------------------------------------------------


class PresenceStatus(StrEnum):
    FREE = "free"
    BUSY = "busy"
    UNKNOWN = "unknown"  # not read yet, or the last read failed (`reason` says why)


class PresenceSettings(Record):
    """A tenant's presence rules (seed 002). Keys: partition = tenant, row = `settings`."""

    table: ClassVar[str] = "presencesettings"
    ROW: ClassVar[str] = "settings"

    tenant_id: str
    busy_statuses: list[str] = Field(default_factory=lambda: ["busy"])  # Outlook showAs values
    show_subjects: bool = True  # never for private events
    refresh_minutes: int = 5
    monitor_account: str | None = (
        None  # the mailbox getSchedule is asked as (default: each batch's first user)
    )
    last_poll_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def key(cls, tenant_id: str) -> tuple[str, str]:
        return escape_key(tenant_id), cls.ROW

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id)[1]


class Presence(Record):
    """One monitored user (a switchboard's "enable per user") and what the switchboard sees.

    Keys: partition = tenant, row = lower-cased e-mail. `GET …/presence` lists the tenant's
    partition or reads rows by point. `items` are the user's calendar items from the last
    getSchedule read (the next day), so each state change can be told at its own moment from
    them, between reads; `emitted` is the status last told to the host (never told twice)."""

    table: ClassVar[str] = "presence"

    tenant_id: str
    email: str
    display_name: str = ""
    status: PresenceStatus = PresenceStatus.UNKNOWN
    reason: str | None = None  # why the status is unknown, in plain words
    show_as: str | None = None
    subject: str | None = None
    location: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    items: list[dict[str, Any]] = Field(default_factory=list)
    read_at: datetime | None = None
    tick_at: datetime | None = None  # when the next state change is due (a queued tick)
    emitted: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def key(cls, tenant_id: str, email: str) -> tuple[str, str]:
        return escape_key(tenant_id), escape_key(email.lower())

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id, self.email)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.email)[1]


# --- delegated access ----------------------------------------------------------------------


class ConnectState(Record):
    """One pending "connect your calendar" sign-in. Keys: partition `connect`, row = SHA-256 of
    the `state` the browser carries (the state itself is never stored). Deleted, with its ETag,
    by the callback that uses it."""

    table: ClassVar[str] = "connectstate"
    PARTITION: ClassVar[str] = "connect"

    state_hash: str
    tenant_id: str
    resource_id: str
    account: str
    direction: Direction = Direction.BOTH  # how the account is linked once connected
    redirect_uri: str  # the callback URL the sign-in was sent back to (the code is bound to it)
    return_url: str | None = None
    expires_at: datetime

    @classmethod
    def key(cls, state_hash: str) -> tuple[str, str]:
        return cls.PARTITION, state_hash

    @property
    def partition_key(self) -> str:
        return self.PARTITION

    @property
    def row_key(self) -> str:
        return self.state_hash


class GrantStatus(StrEnum):
    CONNECTED = "connected"
    RECONNECT_REQUIRED = "reconnect_required"  # Entra ID refused the refresh token


class DelegatedGrant(Record):
    """A user's own consent for their calendar (credential mode `delegated`); the refresh token
    is in the secrets port. Keys: partition = tenant, row = lower-cased account."""

    table: ClassVar[str] = "delegatedgrants"

    tenant_id: str
    account: str
    status: GrantStatus = GrantStatus.CONNECTED
    scopes: list[str] = Field(default_factory=list)
    error: str | None = None
    connected_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def key(cls, tenant_id: str, account: str) -> tuple[str, str]:
        return escape_key(tenant_id), escape_key(account.lower())

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id, self.account)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.account)[1]


# --- outbox --------------------------------------------------------------------------------


class OutboxEvent(Record):
    """An event for the host, kept until delivered (and for the pull feed after).

    Keys: partition = tenant, row = 20-digit zero-padded sequence, so delivery order and the
    feed's cursor order are row order: `GET …/events?after=n` is one range read from
    `sequence_key(n + 1)`. Sequences come from `core.store.sequences.next_sequence`."""

    table: ClassVar[str] = "outbox"

    tenant_id: str
    sequence: int
    event_id: str
    type: str
    occurred_at: datetime
    payload: dict[str, Any] = Field(default_factory=dict)  # the envelope's `data`
    attempts: int = 0
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_error: str | None = None

    @classmethod
    def key(cls, tenant_id: str, sequence: int) -> tuple[str, str]:
        return escape_key(tenant_id), sequence_key(sequence)

    @property
    def partition_key(self) -> str:
        return self.key(self.tenant_id, self.sequence)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.tenant_id, self.sequence)[1]


class Counter(Record):
    """A named counter (e.g. the outbox sequence of one tenant), incremented with etags.

    Keys: partition = counter name, row = scope (tenant id). One row per counter and scope,
    always addressed by a point read."""

    table: ClassVar[str] = "counters"

    name: str
    scope: str
    value: int = 0

    @classmethod
    def key(cls, name: str, scope: str) -> tuple[str, str]:
        return escape_key(name), escape_key(scope)

    @property
    def partition_key(self) -> str:
        return self.key(self.name, self.scope)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.name, self.scope)[1]


# --- runs ----------------------------------------------------------------------------------


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


SYSTEM_SCOPE = "_system"  # the partition of runs that belong to no tenant (housekeeping)


class Run(Record):
    """One run of a function or job, for diagnostics and alerts.

    Keys: partition = tenant id or "_system", row = inverted start time|run id, so a partition
    lists newest first (Table Storage only sorts ascending) and "runs older than X" is one
    row-key range (`delete_older_than`)."""

    table: ClassVar[str] = "runs"

    scope: str = SYSTEM_SCOPE
    run_id: str
    function: str
    status: RunStatus = RunStatus.RUNNING
    started_at: datetime
    ended_at: datetime | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    error: str | None = None

    @classmethod
    def key(cls, scope: str, started_at: datetime, run_id: str) -> tuple[str, str]:
        return escape_key(scope), inverted_timestamp(started_at) + SEPARATOR + escape_key(run_id)

    @property
    def partition_key(self) -> str:
        return self.key(self.scope, self.started_at, self.run_id)[0]

    @property
    def row_key(self) -> str:
        return self.key(self.scope, self.started_at, self.run_id)[1]


# --- subscriptions -------------------------------------------------------------------------


def hash_client_state(client_state: str) -> str:
    """What is stored of a subscription's clientState: its SHA-256, never the value."""
    return hashlib.sha256(client_state.encode("utf-8")).hexdigest()


class SubscriptionKind(StrEnum):
    CALENDAR = "calendar"  # one synced calendar: a resource's link to one calendar of an account
    MAIL = "mail"  # one mail import's folder


class SubscriptionStatus(StrEnum):
    CREATING = "creating"  # the row is written, Graph is being asked
    ACTIVE = "active"
    FAILED = "failed"  # Graph refused or could not be reached: `error`; tried again when reconciled
    REMOVED = "removed"  # Graph removed it (subscriptionRemoved) or it expired: to be made again


def subscription_target(kind: SubscriptionKind, *parts: str) -> str:
    """The row key naming what a subscription watches: `c-<calendar scope>` for a synced
    calendar, `m-<hash of the import id>` for a mail import. URL-safe, because it travels in the
    notification URL (`…/graph/notifications?tenantId=…&target=…`)."""
    if kind is SubscriptionKind.CALENDAR:
        resource_id, account, calendar = parts
        return "c-" + calendar_scope(resource_id, account, calendar)
    (import_id,) = parts
    return "m-" + short_hash(import_id)


class Subscription(Record):
    """A Graph change-notification subscription the bridge keeps for one target: a synced
    calendar or a mail import's folder.

    Keys: partition = tenant, row = target (`subscription_target`): one subscription per target,
    so concurrent reconciles cannot make two rows. A notification arrives at a URL naming tenant
    and target, so checking it is one point read: its clientState must hash to
    `client_state_sha256` (the value itself is stored nowhere but in Graph). The row is written
    before Graph is asked, so a subscription made just before a crash still carries the row's
    clientState and its notifications are honoured until the next reconcile replaces it."""

    table: ClassVar[str] = "subscriptions"

    tenant_id: str
    target: str
    kind: SubscriptionKind
    mailbox: str
    resource_id: str | None = None  # calendar: the host resource whose link it serves
    calendar: str | None = None  # calendar: the calendar's name in the link
    import_id: str | None = None  # mail: the import
    subscription_id: str | None = None  # Graph's id (None until Graph answered)
    resource: str | None = None  # the Graph resource path watched
    expiration: datetime | None = None  # what Graph granted
    client_state_sha256: str = ""
    status: SubscriptionStatus = SubscriptionStatus.CREATING
    error: str | None = None
    created_at: datetime | None = None
    renewed_at: datetime | None = None

    def client_state_matches(self, client_state: str) -> bool:
        """Constant-time check of a notification's clientState against the stored hash."""
        return bool(self.client_state_sha256) and hmac.compare_digest(
            hash_client_state(client_state), self.client_state_sha256
        )

    def healthy(self, now: datetime) -> bool:
        """Delivering now: active at Graph and not past the expiration it granted."""
        return (
            self.status is SubscriptionStatus.ACTIVE and self.expiration is not None and self.expiration > now
        )

    @classmethod
    def key(cls, tenant_id: str, target: str) -> tuple[str, str]:
        return escape_key(tenant_id), target

    @property
    def partition_key(self) -> str:
        return escape_key(self.tenant_id)

    @property
    def row_key(self) -> str:
        return self.target


RECORD_TYPES: tuple[type[Record], ...] = (
    Tenant,
    ResourceLink,
    CalendarSyncState,
    EventMapEntry,
    EventTransaction,
    HostAppointment,
    MailImport,
    MailImportState,
    MailLedgerEntry,
    MailSender,
    OutgoingMessage,
    SlotClaim,
    Reservation,
    PresenceSettings,
    Presence,
    ConnectState,
    DelegatedGrant,
    OutboxEvent,
    Counter,
    Run,
    Subscription,
    BookingCalendar,
)
