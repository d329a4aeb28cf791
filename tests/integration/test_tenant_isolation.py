"""R5: every tenant-scoped endpoint called with another tenant's key → 0 reads or writes across
tenants.

The routes come from the app itself (indexed the way the local host does), so a route added
later - by any capability - is covered without touching this test: every route with
`{tenantId}` is called with tenant B's valid key on tenant A's id, for each of its methods, with
parameters naming tenant A's real state (a resource, an import, a booking calendar and its
reservation and claim, a sender and its mail, a presence monitor, a delegated grant, a pushed
appointment, events in its outbox, a run — each shown to be there by A's own key first) and
bodies that would succeed for A. Each call must answer 404 problem+json exactly like a missing
tenant (so nothing of A's was read), and change nothing anywhere: no table row, no secret, no
queue message (as the app's queue writer records them), no blob (so nothing was written). It
must answer 401 without a key. A route that does not go through `tenant_endpoint` fails here (it
would answer differently, and it lacks the guard's mark)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient

import function_app
from core.bootstrap import Container
from core.host import Emission
from core.queues import TextQueue
from core.store.records import (
    SYSTEM_SCOPE,
    BookingCalendar,
    DelegatedGrant,
    HostAppointment,
    MailImport,
    MailSender,
    OutgoingMessage,
    Presence,
    PresenceSettings,
    Reservation,
    Run,
    SlotClaim,
    Tenant,
)
from devtools.funchost.indexing import HTTP_TRIGGER, index_app
from tests.integration.bridge_api import Api, api, api_env, app, every_row, every_secret_file, link_body

__all__ = ["api", "api_env", "app"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
TENANT_PREFIX = "v1/tenants/{tenantId}"
OPERATOR_PREFIX = "v1/operator/"

# Values for route parameters other than the tenant, naming tenant A's real state.
PARAMS = {
    "resourceId": "room-1",
    "importId": "invoices",
    "bookingCalendarId": "advice",
    "reservationId": "r-1",
    "senderId": "forms",
    "messageId": "mail-1",
    "email": "ola@a.example",
    "account": "megan@a.example",
    "hostAppointmentId": "SO-1",
}
_BY_CONSTRAINT = {"int": "1", "long": "1", "bool": "true", "alpha": "abc", "guid": str(uuid.uuid4())}
_PARAM = re.compile(r"\{(?P<star>\*{0,2})(?P<name>\w+)(?::(?P<constraint>\w+))?[^}]*\}")
# Request bodies that would succeed for tenant A if the guard let them through.
BODIES: dict[str, Any] = {"resources/{resourceId}": link_body("intruder@contoso.example")}


@dataclass(frozen=True)
class Route:
    name: str
    template: str
    methods: tuple[str, ...]
    user_function: Any

    def path(self, tenant_id: str) -> str:
        def fill(match: re.Match[str]) -> str:
            name = match["name"]
            if name == "tenantId":
                return tenant_id
            if match["star"]:
                return "a/b"
            return PARAMS.get(name) or _BY_CONSTRAINT.get(match["constraint"] or "", "x")

        return "/api/" + _PARAM.sub(fill, self.template)

    def body(self) -> Any:
        for suffix, body in BODIES.items():
            if self.template.endswith(suffix):
                return body
        return {}


def http_routes() -> list[Route]:
    routes = []
    for fn in index_app(function_app.app):  # cached per app object, like the host's own index
        if fn.trigger_type != HTTP_TRIGGER:
            continue
        methods = tuple(m.upper() for m in fn.trigger.get("methods") or ALL_METHODS)
        routes.append(Route(fn.name, str(fn.trigger.get("route") or fn.name), methods, fn.user_function))
    return routes


def test_r5_every_route_with_a_tenant_id_is_a_guarded_tenant_or_operator_route(
    record_property: Callable[[str, Any], None],
) -> None:
    """R5's coverage: every route the app serves with a `{tenantId}` goes through the guard,
    so the cross-tenant test below reaches every tenant-scoped endpoint there is."""
    routes = [r for r in http_routes() if "{tenantId}" in r.template]
    record_property("operations", len(routes))
    record_property(
        "unguarded",
        sum(
            not getattr(r.user_function, "tenant_guarded", False)
            for r in routes
            if not r.template.startswith(OPERATOR_PREFIX)
        ),
    )
    assert routes, "no tenant routes found"
    for route in routes:
        if route.template.startswith(OPERATOR_PREFIX):
            assert getattr(route.user_function, "operator_guarded", False), route.name
        else:
            assert route.template.startswith(TENANT_PREFIX), (
                f"{route.name}: tenant routes live under {TENANT_PREFIX}"
            )
            assert getattr(route.user_function, "tenant_guarded", False), (
                f"{route.name} skips tenant_endpoint"
            )
    for route in http_routes():
        if route.template.startswith(OPERATOR_PREFIX):
            assert getattr(route.user_function, "operator_guarded", False), route.name


async def seed_tenant_a(app: Container) -> None:
    """Tenant A's state behind every route parameter (rows as the capabilities write them)."""
    tenant = "tenant-a"
    now = app.clock()
    rows: list[Any] = [
        Run(scope=tenant, run_id="r1", function="f", started_at=now),
        MailImport(
            tenant_id=tenant,
            import_id=PARAMS["importId"],
            mailbox="invoices@a.example",
            import_folder="Inbox/Invoices",
            import_folder_id="folder-1",
            archive_folder="Archive/Invoices",
            archive_folder_id="folder-2",
            forward_to="accounts@a.example",
        ),
        BookingCalendar(tenant_id=tenant, booking_id=PARAMS["bookingCalendarId"], owner="booking@a.example"),
        Reservation(
            tenant_id=tenant,
            booking_calendar=PARAMS["bookingCalendarId"],
            reservation_id=PARAMS["reservationId"],
            slot_id="slot-1",
        ),
        SlotClaim(
            tenant_id=tenant,
            booking_calendar=PARAMS["bookingCalendarId"],
            slot_id="slot-1",
            reservation_id=PARAMS["reservationId"],
        ),
        MailSender(tenant_id=tenant, sender_id=PARAMS["senderId"], mailbox="forms@a.example"),
        OutgoingMessage(
            tenant_id=tenant,
            message_id=PARAMS["messageId"],
            sender_id=PARAMS["senderId"],
            mailbox="forms@a.example",
            fingerprint="f" * 64,
        ),
        Presence(tenant_id=tenant, email=PARAMS["email"]),
        # read just now, every hour: the presence timer leaves the tenant alone during the test
        PresenceSettings(tenant_id=tenant, refresh_minutes=60, last_poll_at=now),
        DelegatedGrant(tenant_id=tenant, account=PARAMS["account"]),
        HostAppointment(
            tenant_id=tenant,
            resource_id=PARAMS["resourceId"],
            host_appointment_id=PARAMS["hostAppointmentId"],
            version=1,
        ),
    ]
    for row in rows:
        await app.tables.repo(type(row)).insert(row)
    # events in A's feed; A pulls the feed (no webhook), so no delivery runs during the test
    tenants = app.tables.repo(Tenant)
    found = await tenants.get(*Tenant.key(tenant))
    assert found is not None
    await tenants.save(found.model_copy(update={"webhook_url": None}))
    await app.outbox().emit_many(
        tenant, [Emission("test.happened", {"secret": "of tenant A"}, "a-1")], nudge=False
    )


def tenant_rows(rows: dict[tuple[str, str, str], Any]) -> dict[tuple[str, str, str], Any]:
    """Every row but the system runs the host's own timers record meanwhile (the delivery sweep
    every minute): those belong to no tenant."""
    return {k: v for k, v in rows.items() if not (k[0].endswith("runs") and k[1] == SYSTEM_SCOPE)}


# GET routes whose answer for A's own key shows the seeded state (the control: B's 404 on them
# is a refusal, not an absence).
OWN_STATE = (
    "resources/{resourceId}",
    "resources/{resourceId}/appointments/{hostAppointmentId}",
    "mail-imports/{importId}",
    "booking-calendars/{bookingCalendarId}",
    "reservations/{reservationId}",
    "mail-senders/{senderId}",
    "messages/{messageId}",
    "presence/monitors/{email}",
    "connect/accounts/{account}",
    "events",
    "runs",
)


async def every_blob(connection_string: str) -> dict[str, str]:
    """Every blob of every container: name → etag."""
    found: dict[str, str] = {}
    async with BlobServiceClient.from_connection_string(connection_string) as service:
        async for container in service.list_containers():
            async for blob in service.get_container_client(container.name).list_blobs():
                found[f"{container.name}/{blob.name}"] = str(blob.etag)
    return found


async def test_r5_every_tenant_scoped_endpoint_called_with_another_tenants_key_reads_and_writes_nothing(
    api: Api,
    app: Container,
    api_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, Any], None],
) -> None:
    key_a = (await api.create_tenant("tenant-a")).body["apiKey"]
    key_b = (await api.create_tenant("tenant-b")).body["apiKey"]
    # tenant A has state a cross-tenant call could read or change
    put = await api.call(
        "PUT", "/api/v1/tenants/tenant-a/resources/room-1", bearer=key_a, json_body=link_body("a@x.example")
    )
    assert put.status == 201
    await seed_tenant_a(app)

    routes = [r for r in http_routes() if r.template.startswith(TENANT_PREFIX)]
    assert {"put_resource", "get_resource", "delete_resource", "list_resources", "list_runs"} <= {
        r.name for r in routes
    }
    controls = 0
    for route in routes:
        if "GET" in route.methods and route.template.endswith(OWN_STATE):
            own = await api.call("GET", route.path("tenant-a"), bearer=key_a)
            assert own.status == 200, f"A's own key on {route.template}: {own.status} {own.text}"
            controls += 1
    assert controls >= len(OWN_STATE)
    connection = api_env["AzureWebJobsStorage"]
    rows_before = tenant_rows(await every_row(connection, api_env["BRIDGE_TABLE_PREFIX"]))
    secrets_before = every_secret_file(api.secrets_dir)
    blobs_before = await every_blob(connection)
    # every queue message the app writes goes through TextQueue.send (the queues themselves are
    # shared by the whole test session, so their contents are no measure)
    queued: list[tuple[str, str]] = []
    send = TextQueue.send

    async def recorded(self: TextQueue, text: str, *, delay: float = 0.0) -> None:
        queued.append((self.name, text))
        await send(self, text, delay=delay)

    monkeypatch.setattr(TextQueue, "send", recorded)

    checked = reads = 0
    for route in routes:
        for method in route.methods:
            body = route.body() if method in ("POST", "PUT", "PATCH") else None
            cross = await api.call(method, route.path("tenant-a"), bearer=key_b, json_body=body)
            assert cross.is_problem(404), (
                f"{method} {route.template} with B's key on A: {cross.status} {cross.text}"
            )
            missing = await api.call(method, route.path("no-such-tenant"), bearer=key_b, json_body=body)
            reads += cross.body != missing.body
            assert cross.body == missing.body, f"{method} {route.template}: cross-tenant differs from missing"
            anonymous = await api.call(method, route.path("tenant-a"), json_body=body)
            assert anonymous.is_problem(401), f"{method} {route.template} without a key: {anonymous.status}"
            assert anonymous.headers["WWW-Authenticate"] == "Bearer"
            wrong = await api.call(method, route.path("tenant-a"), bearer=key_b[:-4] + "AAAA", json_body=body)
            assert wrong.is_problem(401), f"{method} {route.template} with a wrong key: {wrong.status}"
            checked += 1

    rows_after = tenant_rows(await every_row(connection, api_env["BRIDGE_TABLE_PREFIX"]))
    blobs_after = await every_blob(connection)
    writes = sum(rows_after.get(k) != v for k, v in rows_before.items()) + len(
        set(rows_after) - set(rows_before)
    )
    writes += len(queued) + (blobs_after != blobs_before)
    record_property("operations", checked)
    record_property("routes", len(routes))
    record_property("reads_across_tenants", reads)
    record_property("writes_across_tenants", writes)
    record_property("lost", 0)
    record_property("duplicated", 0)
    assert checked >= len(routes) >= 40
    assert rows_after == rows_before
    assert every_secret_file(api.secrets_dir) == secrets_before
    assert queued == []
    assert blobs_after == blobs_before
    # and A's own key still sees A's state as it was
    own = await api.call("GET", "/api/v1/tenants/tenant-a/resources/room-1", bearer=key_a)
    assert own.body["accounts"][0]["account"] == "a@x.example"


async def test_given_a_tenant_key_when_any_operator_route_is_called_then_401(api: Api) -> None:
    key = (await api.create_tenant("tenant-a")).body["apiKey"]
    routes = [r for r in http_routes() if r.template.startswith(OPERATOR_PREFIX)]
    assert len(routes) >= 6
    for route in routes:
        for method in route.methods:
            reply = await api.call(
                method, route.path("tenant-a"), bearer=key, json_body={} if method != "GET" else None
            )
            assert reply.is_problem(401), f"{method} {route.template}: {reply.status}"
    assert (await api.operator("GET", "/tenants/tenant-a")).status == 200
