"""The OpenAPI document (`core/openapi.py`): valid OpenAPI 3.1, one operation for every route the
app registers and none it does not, request schemas that are the request models' own, examples
the models and parsers accept, and response schemas the real views fit exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import BaseModel, SecretStr

import function_app
from core import __version__
from core.booking.config import booking_view
from core.booking.requests import parse_reservation
from core.booking.reservations import reservation_view
from core.booking.slots import Slot, slot_view
from core.calendar.changes import parse_batch
from core.calendar.push import Accepted, ItemView, row_view
from core.calendar.status import sync_status
from core.delegated import grant_view
from core.diagnostics import Check as DiagnosticCheck
from core.diagnostics import CheckLine, Report
from core.diagnostics import Status as DiagnosticStatus
from core.health import Check, HealthReport
from core.host.envelope import envelope
from core.links import link_view, plan_link
from core.mail.config import import_view
from core.mail.outgoing import message_view, parse_outgoing
from core.mail.senders import sender_view
from core.openapi import OPERATIONS, REF_TEMPLATE, build_openapi
from core.openapi_examples import OUTGOING_MAIL, RESERVATION, RESOURCE, TENANT_CREATE
from core.openapi_schemas import PROBLEMS
from core.presence.config import presence_view, settings_view
from core.request_errors import (
    EditConflict,
    FieldProblem,
    InvalidInput,
    ItemGone,
    ItemNotFound,
    MalformedRequest,
    PreconditionFailed,
    RequestError,
    TenantDisabled,
    Unauthenticated,
    UpstreamUnavailable,
)
from core.run_history import run_view
from core.store.records import (
    ApiKeyEntry,
    Booker,
    BookingCalendar,
    CalendarSyncState,
    CredentialMode,
    DelegatedGrant,
    Direction,
    GrantStatus,
    HostAppointment,
    LinkedAccount,
    MailImport,
    MailImportState,
    MailSender,
    OutboxEvent,
    OutgoingAttachmentRecord,
    OutgoingMessage,
    OutgoingStatus,
    Presence,
    PresenceSettings,
    PresenceStatus,
    PushStatus,
    Reservation,
    ReservedDocument,
    ResourceLink,
    Run,
    RunStatus,
    SyncStatus,
    Tenant,
)
from core.tenant_schema import TenantCreate, plan_create, tenant_view
from core.validators import parse
from devtools.funchost.indexing import HTTP_TRIGGER, index_app
from functions import openapi as openapi_function
from functions.http import request_problem
from tests.unit.memory_app import memory_app

ROOT = Path(__file__).resolve().parents[2]
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
NOW = datetime(2026, 11, 2, 8, 15, tzinfo=UTC)
DOCUMENT = build_openapi(__version__)


def registered_routes() -> dict[tuple[str, str], str]:
    """(method, /api/… path) -> function name of every HTTP route of the app, indexed the way
    the local host does (`get_functions` answers once per app object; the index is cached)."""
    routes: dict[tuple[str, str], str] = {}
    for fn in index_app(function_app.app):
        if fn.trigger_type != HTTP_TRIGGER:
            continue
        path = "/api/" + str(fn.trigger.get("route") or fn.name)
        for method in fn.trigger.get("methods") or ALL_METHODS:
            routes[(str(method).upper(), path)] = fn.name
    return routes


def documented_routes() -> dict[tuple[str, str], str]:
    return {
        (method.upper(), path): operation["operationId"]
        for path, methods in DOCUMENT["paths"].items()
        for method, operation in methods.items()
    }


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = DOCUMENT["components"]["schemas"][name]
    return schema


def validate(instance: Any, schema: dict[str, Any]) -> None:
    """`instance` against `schema`, with the document's components for its references."""
    OAS31Validator({**schema, "components": DOCUMENT["components"]}).validate(instance)


def response_schema(name: str) -> dict[str, Any]:
    return dict(DOCUMENT["components"]["schemas"][name])


def assert_names_match(instance: Any, schema: dict[str, Any], where: str = "") -> None:
    """Every object in `instance` has exactly the properties its schema names: none missing
    that the schema requires, none the schema does not know."""
    schema = resolve(schema)
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        if instance is not None and len(branches) == 1:
            assert_names_match(instance, branches[0], where)
        return
    if isinstance(instance, dict) and "properties" in schema:
        known, required = set(schema["properties"]), set(schema.get("required", ()))
        assert set(instance) <= known, f"{where or 'the answer'}: not in the schema {set(instance) - known}"
        assert required <= set(instance), f"{where or 'the answer'}: missing {required - set(instance)}"
        for name, value in instance.items():
            assert_names_match(value, schema["properties"][name], f"{where}.{name}")
    elif isinstance(instance, list) and "items" in schema:
        for index, item in enumerate(instance):
            assert_names_match(item, schema["items"], f"{where}[{index}]")


def assert_view_fits(view: Any, name: str) -> None:
    validate(view, response_schema(name))
    assert_names_match(view, response_schema(name), name)


# --- the document ------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1_with_the_apps_version() -> None:
    errors = [str(e) for e in OpenAPIV31SpecValidator(DOCUMENT).iter_errors()]
    assert errors == []
    assert DOCUMENT["openapi"] == "3.1.0"
    assert DOCUMENT["info"]["version"] == __version__
    assert DOCUMENT["servers"] == [{"url": "/"}]
    json.dumps(DOCUMENT, allow_nan=False)  # plain JSON all the way down


def test_every_registered_http_route_is_documented_with_its_method_and_function_name() -> None:
    """GIVEN the app's HTTP routes WHEN each is looked up in the document THEN it is there, with
    its method, and its operationId is the trigger's function name (pending routes aside)."""
    registered = registered_routes()
    assert len(registered) >= 40
    documented = documented_routes()
    missing = sorted(set(registered) - set(documented))
    assert missing == [], f"routes without an Operation in core/openapi.py: {missing}"
    assert {route: documented[route] for route in registered} == registered


def test_every_documented_operation_is_a_registered_route() -> None:
    stale = sorted(set(documented_routes()) - set(registered_routes()))
    assert stale == [], f"core/openapi.py documents routes the app does not register: {stale}"


def test_every_route_says_who_may_call_it() -> None:
    for (_, path), operation in {
        (m, p): op for p, ms in DOCUMENT["paths"].items() for m, op in ms.items()
    }.items():
        schemes = [set(alternative) for alternative in operation["security"]]
        # a browser back from the sign-in (verified by its state) and Graph (by clientState)
        if path in ("/api/v1/connect/callback", "/api/v1/graph/notifications"):
            assert schemes == [], path
            continue
        assert {"functionKey"} <= schemes[0], path
        assert {"functionCode"} <= schemes[1], path
        bearer = set().union(*schemes) - {"functionKey", "functionCode"}
        if path.startswith("/api/v1/operator/"):
            assert bearer == {"operatorKey"}, path
        elif path.startswith("/api/v1/tenants/"):
            assert bearer == {"tenantKey"}, path
        else:
            assert bearer == set(), path


# --- requests ----------------------------------------------------------------------------------


def test_every_request_body_schema_is_its_models_own_json_schema() -> None:
    """GIVEN each body's models WHEN their JSON Schemas are made now THEN the document holds
    exactly those (its $defs hoisted), so document and validation cannot drift apart."""
    checked = 0
    for op in OPERATIONS:
        if op.body is None:
            continue
        operation = DOCUMENT["paths"][op.path][op.method.lower()]
        for media in operation["requestBody"]["content"].values():
            schema = media["schema"]
            refs = schema["oneOf"] if len(op.body.models) > 1 else [schema]
            assert [r["$ref"] for r in refs] == [f"#/components/schemas/{m.__name__}" for m in op.body.models]
            for model in op.body.models:
                own = model.model_json_schema(by_alias=True, ref_template=REF_TEMPLATE)
                defs = own.pop("$defs", {})
                assert DOCUMENT["components"]["schemas"][model.__name__] == own, model.__name__
                for name, definition in defs.items():
                    assert DOCUMENT["components"]["schemas"][name] == definition, name
                checked += 1
    assert checked >= 12


def test_every_request_body_has_an_example_its_model_accepts() -> None:
    for op in OPERATIONS:
        if op.body is None:
            continue
        assert op.body.examples, f"{op.operation_id} has no request example"
        operation = DOCUMENT["paths"][op.path][op.method.lower()]
        for example in op.body.examples:
            assert example.model in op.body.models
            example.model.model_validate(example.value)  # raises if the example is wrong
            for media in operation["requestBody"]["content"].values():
                assert media["examples"][example.name]["value"] == example.value
                validate(example.value, media["schema"])


def test_request_examples_pass_the_parsers_behind_the_models_too() -> None:
    """The checks beyond the models: batch items, documents' content, accounts, credentials."""
    for op in OPERATIONS:
        if op.operation_id == "push_appointments" and op.body is not None:
            for example in op.body.examples:
                batch = parse_batch(example.value, "Europe/Oslo")
                assert batch.rejected == []
                assert batch.changes
    parse_reservation(RESERVATION)
    assert parse_outgoing(OUTGOING_MAIL, 35 * 1024 * 1024).files  # base64, file type and content pass
    plan_link("contoso-norge", "room-4b", RESOURCE, NOW)
    spec = parse(TenantCreate, TENANT_CREATE)
    plan_create(spec, "contoso-norge", NOW, spec.host.webhook_secret or SecretStr("x" * 40))


# --- responses ---------------------------------------------------------------------------------


def test_every_response_example_fits_its_schema() -> None:
    checked = 0
    responses = DOCUMENT["components"]["responses"]
    for methods in DOCUMENT["paths"].values():
        for operation in methods.values():
            for answer in operation["responses"].values():
                if "$ref" in answer:
                    answer = responses[answer["$ref"].removeprefix("#/components/responses/")]
                for media_type, media in answer.get("content", {}).items():
                    if "example" in media:
                        validate(media["example"], media["schema"])
                        if media_type == "application/json" and media["schema"] != {
                            "$ref": "#/components/schemas/OpenApiDocument"
                        }:
                            assert_names_match(media["example"], media["schema"])
                        checked += 1
    assert checked >= 40


def test_every_problem_answer_is_problem_json_with_the_type_and_title_the_app_sends() -> None:
    errors: dict[int, RequestError] = {
        400: MalformedRequest("x"),
        401: Unauthenticated("x"),
        403: TenantDisabled("x"),
        404: ItemNotFound("x"),
        409: EditConflict("x"),
        410: ItemGone("x"),
        412: PreconditionFailed("x"),
        422: InvalidInput([FieldProblem("f", "x")]),
        503: UpstreamUnavailable("x"),
    }
    for status, (name, _, example) in PROBLEMS.items():
        answer = DOCUMENT["components"]["responses"][name]
        assert list(answer["content"]) == ["application/problem+json"]
        assert example["status"] == status
        if status in errors:
            sent = json.loads(request_problem(errors[status]).get_body())
            assert (example["type"], example["title"], example["status"]) == (
                sent["type"],
                sent["title"],
                sent["status"],
            )
    for methods in DOCUMENT["paths"].values():
        for operation in methods.values():
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and "$ref" not in answer:
                    assert "application/problem+json" in answer["content"], status


def _tenant() -> Tenant:
    return Tenant(
        tenant_id="contoso-norge",
        display_name="Contoso Norge AS",
        graph_tenant_id="3f2c8a1e-5b7d-4c9a-8e61-2d4f0b9a7c35",
        graph_client_id="9d1e4b7a-2c3f-4e8d-b5a6-7f0c1d2e3b4a",
        credential_mode=CredentialMode.CLIENT_SECRET,
        client_secret_name="tenant--contoso-norge--client-secret",
        webhook_secret_name="tenant--contoso-norge--webhook-signing",
        webhook_url="https://erp.contoso.no/hooks/m365-bridge",
        language="nb",
        time_zone="Europe/Oslo",
        api_keys=[
            ApiKeyEntry(key_id="a1", sha256="0" * 64, created_at=NOW, expires_at=NOW + timedelta(hours=24)),
            ApiKeyEntry(key_id="b2", sha256="1" * 64, created_at=NOW),
        ],
        created_at=NOW,
        updated_at=NOW,
    )


def _link() -> ResourceLink:
    return ResourceLink(
        tenant_id="contoso-norge",
        resource_id="room-4b",
        display_name="Møterom 4B",
        accounts=[
            LinkedAccount(account="moterom.4b@contoso.no", direction=Direction.BOTH),
            LinkedAccount(
                account="kari@contoso.no", direction=Direction.DOWN, calendars=["default", "Felles"]
            ),
        ],
        updated_at=NOW,
    )


def test_operator_and_resource_views_fit_their_schemas_exactly() -> None:
    tenant_body = tenant_view(_tenant(), NOW)
    assert_view_fits(tenant_body, "Tenant")
    assert_view_fits({"tenants": [tenant_body, tenant_view(Tenant(tenant_id="bare"), NOW)]}, "TenantList")
    assert_view_fits({**tenant_body, "apiKey": "m365b_contoso-norge_x"}, "IssuedTenant")
    link = link_view(_link())
    assert_view_fits(link, "Resource")
    assert_view_fits({"resources": [link], "next": "room-4b"}, "ResourceList")
    assert_view_fits(link_view(ResourceLink(tenant_id="t", resource_id="r")), "Resource")
    delegated = link_view(_link(), {"grady@contoso.no": "reconnect_required"})
    assert {a["connection"] for a in delegated["accounts"]} <= {"reconnect_required", "not_connected"}
    assert_view_fits(delegated, "Resource")


async def test_calendar_views_fit_their_schemas_exactly() -> None:
    row = HostAppointment(
        tenant_id="contoso-norge",
        resource_id="room-4b",
        host_appointment_id="SO-1001",
        version=3,
        applied_version=2,
        status=PushStatus.APPLIED,
        account="moterom.4b@contoso.no",
        calendar="default",
        event_id="AAMk=",
        tracking_id="f" * 32,
        accepted_at=NOW,
        updated_at=NOW,
    )
    assert_view_fits(row_view(row), "Appointment")
    assert_view_fits(
        row_view(HostAppointment(tenant_id="t", resource_id="r", host_appointment_id="h", version=1)),
        "Appointment",
    )
    batch = parse_batch(
        {
            "appointments": [
                {"hostAppointmentId": "SO-1", "resourceId": "room-4b", "version": 1, "op": "delete"},
                {"hostAppointmentId": "SO-2", "resourceId": "room-4b", "version": 1, "op": "delete"},
            ]
        },
        "Europe/Oslo",
    )
    items = [
        ItemView(0, batch.changes[0][1], "applied", result="deleted", event_id="AAMk="),
        ItemView(1, batch.changes[1][1], "skipped", reason="the resource is not linked"),
    ]
    rejected = [
        {"index": 2, "hostAppointmentId": None, "errors": [{"field": "appointments[2]", "detail": "x"}]}
    ]
    assert_view_fits(Accepted("f" * 32, items, rejected).to_dict(), "AppointmentsAccepted")

    async with memory_app() as app:
        await app.tables.repo(ResourceLink).insert(_link())
        await app.tables.repo(CalendarSyncState).insert(
            CalendarSyncState(
                tenant_id="contoso-norge",
                resource_id="room-4b",
                account="moterom.4b@contoso.no",
                status=SyncStatus.OK,
                last_run_at=NOW,
                last_success_at=NOW,
                last_full_sync_at=NOW,
                window_start=NOW - timedelta(days=30),
                window_end=NOW + timedelta(days=372),
            )
        )
        assert_view_fits(await sync_status(app.tables, "contoso-norge", "room-4b"), "SyncStatus")


def test_mail_booking_and_presence_views_fit_their_schemas_exactly() -> None:
    config = MailImport(
        tenant_id="contoso-norge",
        import_id="fakturaer",
        mailbox="faktura@contoso.no",
        import_folder="Inbox/Fakturaer",
        import_folder_id="AQMk1",
        archive_folder="Archive/Fakturaer",
        archive_folder_id="AQMk2",
        forward_to="regnskap@contoso.no",
        allowed_types=["pdf", "xml"],
        max_size_bytes=150 * 1024 * 1024,
        created_at=NOW,
        updated_at=NOW,
    )
    state = MailImportState(
        tenant_id="contoso-norge", import_id="fakturaer", status=SyncStatus.FAILED, error="x", last_run_at=NOW
    )
    assert_view_fits(import_view(config, state), "MailImport")
    assert_view_fits({"mailImports": [import_view(config, None)]}, "MailImportList")

    calendar = BookingCalendar(
        tenant_id="contoso-norge",
        booking_id="radgivning",
        owner="booking@contoso.no",
        time_zone="Europe/Oslo",
    )
    assert_view_fits({"bookingCalendars": [booking_view(calendar)]}, "BookingCalendarList")
    slots = [
        Slot("AAMk1", "Konsultasjon", NOW, NOW + timedelta(hours=1), True, change_key="Dw1"),
        Slot("AAMk2", "Konsultasjon", NOW, NOW + timedelta(hours=1), False, reason="taken"),
    ]
    assert_view_fits(
        {
            "bookingCalendarId": "radgivning",
            "from": NOW.isoformat(),
            "to": (NOW + timedelta(days=1)).isoformat(),
            "slots": [slot_view(s, calendar) for s in slots],
        },
        "Slots",
    )
    reservation = Reservation(
        tenant_id="contoso-norge",
        booking_calendar="radgivning",
        reservation_id="r-1",
        slot_id="AAMk1",
        booker=Booker(name="Åse Nordmann", email="ase@example.org"),
        answers={"Årsak": "Årskontroll", "Samtykke": True},
        slot_subject="Konsultasjon",
        slot_start=NOW,
        slot_end=NOW + timedelta(hours=1),
        documents=[
            ReservedDocument(
                name="henvisning.pdf", content_type="application/pdf", size=10, sha256="0" * 64, blob_name="b"
            )
        ],
        created_at=NOW,
        updated_at=NOW,
    )
    assert_view_fits(reservation_view(reservation), "Reservation")
    assert_view_fits({"reservations": [reservation_view(reservation)]}, "ReservationList")

    sender = MailSender(
        tenant_id="contoso-norge",
        sender_id="skjema",
        mailbox="skjema@contoso.no",
        created_at=NOW,
        updated_at=NOW,
    )
    assert_view_fits(sender_view(sender), "MailSender")
    assert_view_fits({"mailSenders": [sender_view(sender)]}, "MailSenderList")
    mail = OutgoingMessage(
        tenant_id="contoso-norge",
        message_id="mail-1",
        sender_id="skjema",
        mailbox="skjema@contoso.no",
        fingerprint="0" * 64,
        recipients=2,
        attachments=[
            OutgoingAttachmentRecord(
                name="kvittering.pdf", content_type="application/pdf", size=10, sha256="0" * 64, blob_name="b"
            )
        ],
        created_at=NOW,
    )
    assert_view_fits(message_view(mail), "OutgoingMail")
    failed = mail.model_copy(
        update={"status": OutgoingStatus.FAILED, "error": "x", "fix": "y", "outcome_unknown": True}
    )
    assert_view_fits(message_view(failed), "OutgoingMail")

    assert_view_fits(settings_view(PresenceSettings(tenant_id="contoso-norge")), "PresenceSettings")
    busy = Presence(
        tenant_id="contoso-norge",
        email="grady@contoso.no",
        display_name="Grady",
        status=PresenceStatus.BUSY,
        show_as="busy",
        subject="Kundemøte",
        since=NOW,
        until=NOW + timedelta(hours=1),
        read_at=NOW,
    )
    unread = Presence(tenant_id="contoso-norge", email="ola@contoso.no")
    assert_view_fits({"monitors": [presence_view(busy), presence_view(unread)]}, "PresenceMonitorList")
    not_monitored = {"email": "x@contoso.no", "status": "unknown", "reason": "not monitored"}
    assert_view_fits({"users": [presence_view(busy), not_monitored]}, "PresenceList")


def test_run_event_and_health_views_fit_their_schemas_exactly() -> None:
    run = Run(
        scope="contoso-norge",
        run_id="f" * 32,
        function="calendar-sync",
        status=RunStatus.SUCCEEDED,
        started_at=NOW,
        ended_at=NOW,
        counts={"pages": 2},
    )
    assert_view_fits({"runs": [run_view(run)]}, "RunList")
    event = OutboxEvent(
        tenant_id="contoso-norge",
        sequence=1,
        event_id="e1",
        type="bridge.test",
        occurred_at=NOW,
        payload={"a": 1},
    )
    assert_view_fits({"events": [envelope(event)], "next": "1"}, "EventPage")
    report = HealthReport("degraded", "0.1.0", (Check("tables", True, 1.0), Check("queues", False, 5.0, "x")))
    assert_view_fits(report.to_dict(), "HealthReport")


def test_onboarding_views_fit_their_schemas_exactly() -> None:
    connected = DelegatedGrant(
        tenant_id="contoso-norge",
        account="grady@contoso.no",
        scopes=["Calendars.ReadWrite", "User.Read"],
        connected_at=NOW,
        updated_at=NOW,
    )
    refused = connected.model_copy(
        update={
            "status": GrantStatus.RECONNECT_REQUIRED,
            "error": "Entra ID refused the grant (invalid_grant)",
        }
    )
    assert_view_fits(grant_view(connected), "ConnectedAccount")
    assert_view_fits({"accounts": [grant_view(connected), grant_view(refused)]}, "ConnectedAccountList")
    report = Report(
        "contoso-norge",
        NOW,
        (
            CheckLine(DiagnosticCheck.TOKEN, "app", DiagnosticStatus.OK, "A token."),
            CheckLine(DiagnosticCheck.MAIL_FOLDER, "x", DiagnosticStatus.FAILED, "Missing.", "Fix it."),
        ),
    )
    assert_view_fits(report.to_dict(), "SettingsReport")


# --- the route ---------------------------------------------------------------------------------


async def test_the_route_answers_the_document_and_builds_it_once() -> None:
    """GIVEN the app WHEN GET v1/openapi.json is called twice THEN both answers are the same
    document, built once for the process."""
    req = func.HttpRequest(method="GET", url="http://localhost/api/v1/openapi.json", headers={}, body=b"")
    openapi_function._document.cache_clear()
    async with memory_app():
        first = await openapi_function.get_openapi(req)
        second = await openapi_function.get_openapi(req)
    assert first.status_code == 200
    assert first.mimetype == "application/json"
    assert json.loads(first.get_body()) == DOCUMENT
    assert second.get_body() == first.get_body()
    assert openapi_function._document.cache_info().misses == 1


@pytest.mark.parametrize(
    "model", sorted({m for op in OPERATIONS if op.body for m in op.body.models}, key=str)
)
def test_every_request_model_refuses_unknown_fields_as_the_document_says(model: type[BaseModel]) -> None:
    assert DOCUMENT["components"]["schemas"][model.__name__]["additionalProperties"] is False


def test_starting_the_app_does_not_load_the_catalog() -> None:
    """Cold start: importing function_app leaves the catalog and its schemas for the first
    request for the document (checked in a fresh interpreter)."""
    code = "import sys, function_app; print(sorted(m for m in sys.modules if m.startswith('core.openapi')))"
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
