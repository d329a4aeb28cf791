"""One fully populated record of every type, with the awkward characters real ids carry
(Graph ids hold '/', '+' and '='; e-mail addresses may hold '#' or '?')."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.store.records import (
    ApiKeyEntry,
    Booker,
    CalendarScope,
    CalendarSyncState,
    Counter,
    CredentialMode,
    Direction,
    EventMapEntry,
    EventTransaction,
    LedgerStatus,
    LinkedAccount,
    MailLedgerEntry,
    OutboxEvent,
    Presence,
    PresenceStatus,
    Reservation,
    ReservationStatus,
    ResourceLink,
    Run,
    RunStatus,
    Subscription,
    SyncStatus,
    Tenant,
    hash_client_state,
)
from core.store.repository import Record

TENANT = "0f8fad5b-d9cb-469f-a165-70867728950e"
NOW = datetime(2024, 3, 31, 1, 59, 59, 999999, tzinfo=UTC)
GRAPH_ID = "AAMkAGI2TG93AAA=/+x#y?z\\w%20|pipe"
ATTACHMENT_ID = "AAMkAGI2TG93AAABEgAQAC" + "x/+=" * 80  # 342 characters, like real ones


def sample_records() -> list[Record]:
    return [
        Tenant(
            tenant_id=TENANT,
            display_name="Contoso A/S",
            credential_mode=CredentialMode.CLIENT_SECRET,
            graph_client_id="11111111-2222-3333-4444-555555555555",
            client_secret_name="tenant-0f8f-graph",
            webhook_url="https://erp.example/hooks?x=1#frag",
            language="nb",
            time_zone="W. Europe Standard Time",
            api_keys=[
                ApiKeyEntry(
                    key_id="k1", sha256="ab" * 32, created_at=NOW, expires_at=NOW + timedelta(hours=24)
                ),
                ApiKeyEntry(key_id="k2", sha256="cd" * 32, created_at=NOW),
            ],
            created_at=NOW,
        ),
        ResourceLink(
            tenant_id=TENANT,
            resource_id="room/4#B?",
            display_name="Møterom 4B",
            accounts=[
                LinkedAccount(account="Room4B@contoso.example", direction=Direction.DOWN),
                LinkedAccount(
                    account="anna@contoso.example",
                    calendars=["default", "Møterom/#?"],
                    direction=Direction.BOTH,
                    scope=CalendarScope.READ_WRITE,
                ),
            ],
            updated_at=NOW,
        ),
        CalendarSyncState(
            tenant_id=TENANT,
            resource_id="room/4#B?",
            account="Anna@Contoso.example",
            calendar="Møterom/#?",
            calendar_id=GRAPH_ID,
            delta_link="https://graph.microsoft.com/v1.0/users/x/calendarView/delta?$deltatoken="
            + "t" * 2000,
            window_start=NOW - timedelta(days=30),
            window_end=NOW + timedelta(days=365),
            last_run_at=NOW,
            status=SyncStatus.OK,
            consecutive_failures=0,
            lease_until=NOW,
            rerun_requested=True,
        ),
        EventMapEntry(
            tenant_id=TENANT,
            resource_id="room/4#B?",
            account="anna@contoso.example",
            event_id=GRAPH_ID,
            host_appointment_id="Q3-000123",
            change_key="DwAAABYAAAA=",
            fingerprint="f" * 64,
            transaction_id="5c0a0ae2-0a2e-4b0b-9c7e-0cde4b0b2f7a",
            version=2**40,
            start=NOW,
            end=NOW + timedelta(hours=1),
            updated_at=NOW,
        ),
        EventTransaction(
            tenant_id=TENANT,
            account="Anna@Contoso.example",
            transaction_id="5c0a0ae2-0a2e-4b0b-9c7e-0cde4b0b2f7a",
            resource_id="room/4#B?",
            host_appointment_id="Q3-000123",
            version=7,
            created_at=NOW,
        ),
        MailLedgerEntry(
            tenant_id=TENANT,
            mailbox="Invoices@Contoso.example",
            message_id=GRAPH_ID,
            attachment_id=ATTACHMENT_ID,
            status=LedgerStatus.STAGED,
            file_name="faktura 2024/03.pdf",
            blob_name="staged/abc.pdf",
            attempts=1,
        ),
        MailLedgerEntry(
            tenant_id=TENANT,
            mailbox="invoices@contoso.example",
            message_id=GRAPH_ID,
            step="archive",
            status=LedgerStatus.FAILED,
            error="ErrorItemNotFound",
        ),
        Reservation(
            tenant_id=TENANT,
            booking_calendar="consultations",
            slot_id=GRAPH_ID,
            reservation_id="r-1",
            status=ReservationStatus.BOOKED,
            booker=Booker(name="Åse O'Brien", email="ase@example.org"),
            answers={"reason": "check-up", "items": [1, 2], "nested": {"ok": True}},
            created_at=NOW,
        ),
        Presence(
            tenant_id=TENANT,
            email="Per#1@Contoso.example",
            status=PresenceStatus.BUSY,
            show_as="busy",
            since=NOW,
            until=NOW + timedelta(minutes=30),
        ),
        OutboxEvent(
            tenant_id=TENANT,
            sequence=2**33,
            event_id="e-1",
            type="appointment.upserted",
            occurred_at=NOW,
            payload={"subject": "Møte", "start": "2024-03-31T08:00:00Z", "readOnly": False},
        ),
        Counter(name="outbox", scope=TENANT, value=2**33),
        Run(
            scope=TENANT,
            run_id="run-1",
            function="calendar_down",
            status=RunStatus.FAILED,
            started_at=NOW,
            ended_at=NOW + timedelta(seconds=3),
            counts={"events": 12, "errors": 1},
            error="Graph 503",
        ),
        Subscription(
            tenant_id=TENANT,
            subscription_id="7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
            resource="/users/anna@contoso.example/events",
            expiration=NOW + timedelta(days=2),
            client_state_sha256=hash_client_state("s3cret"),
            account="anna@contoso.example",
        ),
    ]
