"""`make demo`: the whole local stack on a demo tenant, every built job run end to end.

Starts Azurite and the local Functions host with the real `function_app`, then drives the app
the way its users do — a host system over HTTPS with the function key, an operator through the
admin API — printing one line per job. It keeps serving until Ctrl-C (or SIGTERM), then stops
every process it started. `--once` stops after the jobs (used by the test of this script).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import runpy
import secrets
import signal
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from devtools.azurite import Azurite
from devtools.demo_mail_send import job_mail_send
from devtools.demo_notifications import job_notifications
from devtools.demo_onboarding import job_connect, job_openapi, job_test_settings
from devtools.demo_support import ROOT, DemoReceiver, as_check, run_function, say, wait_for
from devtools.graph_emulator import GraphEmulator

DEMO_TENANT = "demo-tenant"
DEMO_DOMAIN = "contoso-demo.onmicrosoft.com"
DEMO_PERMISSIONS = (
    "Calendars.ReadWrite",
    "Mail.ReadWrite",
    "Mail.Send",
    "MailboxSettings.Read",
    "User.Read.All",
)


class DemoTenant:
    """The demo's Microsoft 365 tenant in the Graph emulator: an app registration with the
    product's permissions granted, two people, and a calendar with single and recurring events."""

    def __init__(self, graph: GraphEmulator) -> None:
        self.graph = graph
        self.tenant = graph.add_tenant(name="Contoso (demo)", domain=DEMO_DOMAIN)
        self.secret = secrets.token_urlsafe(24)
        self.app = graph.add_app(
            self.tenant.id, secrets=[self.secret], application_permissions=DEMO_PERMISSIONS
        )
        self.adele = graph.add_user(self.tenant.id, f"adele@{DEMO_DOMAIN}", display_name="Adele Vance")
        self.grady = graph.add_user(self.tenant.id, f"grady@{DEMO_DOMAIN}", display_name="Grady Archie")
        day = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
        self.event_ids = [
            graph.calendar.create_event(self.adele, _event(f"Customer visit {i}", day + timedelta(days=i)))[
                0
            ].id
            for i in (1, 2, 3)
        ]
        weekly = _event("Weekly planning", day + timedelta(days=1, hours=4))
        weekly["recurrence"] = {
            "pattern": {
                "type": "weekly",
                "interval": 1,
                "daysOfWeek": [(day + timedelta(days=1)).strftime("%A").lower()],
            },
            "range": {
                "type": "numbered",
                "startDate": (day + timedelta(days=1)).date().isoformat(),
                "numberOfOccurrences": 4,
            },
        }
        graph.calendar.create_event(self.adele, weekly)
        doctor = _event("Doctor's appointment", day + timedelta(days=2, hours=6))
        doctor["sensitivity"] = "private"
        graph.calendar.create_event(self.adele, doctor)
        graph.calendar.create_event(self.grady, _event("Site inspection", day + timedelta(days=1, hours=2)))

    def credential(self) -> Any:
        from azure.identity.aio import ClientSecretCredential

        return ClientSecretCredential(
            self.tenant.id,
            self.app.client_id,
            self.secret,
            authority=self.graph.authority,
            disable_instance_discovery=True,
            connection_verify=str(self.graph.ca_cert),
        )


def _event(subject: str, start: datetime) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "showAs": "busy",
    }


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def job_health(http: aiohttp.ClientSession, base_url: str, key: str) -> None:
    async with http.get(f"{base_url}/api/v1/health", headers={"x-functions-key": key}) as resp:
        body: dict[str, Any] = await resp.json(content_type=None)
    checks = ", ".join(
        f"{name} {'ok' if c['ok'] else 'FAILED: ' + str(c['error'])} ({c['latency_ms']} ms)"
        for name, c in body["checks"].items()
    )
    mark = "✓" if resp.status == 200 else "✗"
    say(f"{mark} job health: HTTP {resp.status} {body['status']}, version {body['version']}: {checks}")
    if resp.status != 200:
        raise SystemExit(1)


async def job_housekeeping(http: aiohttp.ClientSession, base_url: str, master_key: str) -> None:
    from core.bootstrap import container
    from core.housekeeping import FUNCTION
    from core.store.records import SYSTEM_SCOPE, Run, RunStatus

    app = await container()
    runs = app.tables.runs()
    now = datetime.now(UTC)
    retention = app.settings.run_retention_days
    # The demo tenant's history: two runs past retention, one inside it.
    for days, run_id in ((retention + 5, "demo-old-1"), (retention + 1, "demo-old-2"), (1, "demo-recent")):
        await runs.upsert(
            Run(scope=DEMO_TENANT, run_id=run_id, function="demo", started_at=now - timedelta(days=days))
        )

    started = datetime.now(UTC)
    async with http.post(
        f"{base_url}/admin/functions/{FUNCTION}", json={"input": ""}, headers={"x-functions-key": master_key}
    ) as resp:
        accepted = resp.status
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = [
            r
            async for r in runs.list(SYSTEM_SCOPE)
            if r.function == FUNCTION and r.started_at >= started and r.status is not RunStatus.RUNNING
        ]
        if done:
            run = done[0]
            left = [r.run_id async for r in runs.list(DEMO_TENANT)]
            say(
                f"✓ job housekeeping: admin API HTTP {accepted}, run {run.run_id} {run.status.value}, "
                f"pruned {run.counts.get('runs_pruned', 0)} runs older than {retention} days; "
                f"{DEMO_TENANT} keeps {left}"
            )
            return
        await asyncio.sleep(0.1)
    say("✗ job housekeeping: no finished run within 30 s")
    raise SystemExit(1)


async def job_graph(demo: DemoTenant) -> None:
    """The Graph gateway against the emulator, as the calendar sync will use it: a full delta
    round, then a person edits Outlook and the next round brings only the changes."""
    from core.bootstrap import container
    from core.graph.model import Removed

    app = await container()
    mailbox = demo.adele.user_principal_name
    start, end = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=60)
    credential = demo.credential()
    gateway = app.graph_for(credential)
    try:
        pages, events, delta_link = 0, [], None
        async for page in gateway.calendar_delta(
            mailbox, None, start=start, end=end, delta_link=None, page_size=4
        ):
            pages += 1
            events += [item for item in page.items if not isinstance(item, Removed)]
            delta_link = page.delta_link or delta_link
        occurrences = sum(1 for e in events if e.series_master_id)
        say(
            f"✓ job graph: token for {demo.app.client_id[:8]}… from the emulated Entra ID; "
            f"calendarView/delta for {mailbox}: {len(events)} events ({occurrences} occurrences of a weekly "
            f"series) in {pages} pages, delta link kept"
        )
        # Adele edits one appointment in Outlook and deletes another.
        demo.graph.calendar.update_event(demo.adele, demo.event_ids[0], {"subject": "Customer visit (moved)"})
        demo.graph.calendar.delete_event(demo.adele, demo.event_ids[1])
        changed = removed = 0
        async for page in gateway.calendar_delta(mailbox, None, start=start, end=end, delta_link=delta_link):
            removed += sum(1 for item in page.items if isinstance(item, Removed))
            changed += sum(1 for item in page.items if not isinstance(item, Removed))
        counters = demo.graph.counters(mailbox)
        say(
            f"✓ job graph: after an edit and a delete in Outlook the next round brought {changed} changed "
            f"and {removed} removed; the emulator counted {counters.requests} requests, "
            f"at most {counters.max_concurrent} at once, {counters.bytes_out:,} bytes"
        )
    finally:
        await gateway.close()
        await credential.close()


async def job_tenant_and_delivery(
    http: aiohttp.ClientSession, host: Any, demo: DemoTenant, operator_key: str, receiver: DemoReceiver
) -> dict[str, str]:
    """An operator onboards the demo tenant, its host system links a resource, asks for a test
    event, receives it signed at its webhook, and pages the same event from the feed."""
    base = host.base_url + "/api/v1"
    fkey = {"x-functions-key": host.function_key}
    tenant_body = {
        "id": "contoso-demo",
        "displayName": "Contoso (demo)",
        "graph": {
            "tenantId": demo.tenant.id,
            "clientId": demo.app.client_id,
            "credentialMode": "client_secret",
            "clientSecret": demo.secret,
        },
        "host": {"webhookUrl": receiver.url},
        "defaults": {"language": "nb", "timeZone": "Europe/Oslo"},
    }
    operator = {**fkey, "Authorization": f"Bearer {operator_key}"}
    async with http.post(f"{base}/operator/tenants", json=tenant_body, headers=operator) as resp:
        created = await resp.json(content_type=None)
        status = resp.status
    if status != 201:
        say(f"✗ job tenant: operator API answered HTTP {status}: {created.get('detail')}")
        raise SystemExit(1)
    tenant_key = {**fkey, "Authorization": f"Bearer {created['apiKey']}"}
    say(
        f"✓ job tenant: operator created tenant contoso-demo (HTTP {status}); "
        "API key and webhook secret shown once"
    )

    link = {
        "displayName": "Møterom 4B",
        "accounts": [
            {"account": demo.adele.user_principal_name, "direction": "both"},
            {"account": demo.grady.user_principal_name, "direction": "down"},
        ],
    }
    async with http.put(
        f"{base}/tenants/contoso-demo/resources/room-4b", json=link, headers=tenant_key
    ) as resp:
        resource = await resp.json(content_type=None)
        say(
            f"✓ job links: host linked resource room-4b (HTTP {resp.status}), "
            f"main account {resource['mainAccount']}"
        )

    async with http.post(f"{base}/tenants/contoso-demo/events/test", headers=tenant_key) as resp:
        event = await resp.json(content_type=None)
    try:
        await asyncio.wait_for(receiver.arrived.wait(), 30)
    except TimeoutError:
        say("✗ job delivery: the test event did not reach the webhook within 30 s")
        raise SystemExit(1) from None
    body, headers = receiver.received[0]
    verify = runpy.run_path(str(ROOT / "docs" / "webhook_verification.py"))["verify_m365bridge_signature"]
    verified = verify(created["webhookSecret"], body, headers["M365Bridge-Signature"])
    say(
        f"✓ job delivery: {headers['M365Bridge-Event-Type']} event #{event['sequence']} delivered to the "
        f"host webhook, signature {'verified' if verified else 'NOT verified'} "
        "with docs/webhook_verification.py"
    )
    async with http.get(f"{base}/tenants/contoso-demo/events", headers=tenant_key) as resp:
        feed = await resp.json(content_type=None)
    async with http.get(f"{base}/tenants/contoso-demo/runs", headers=tenant_key) as resp:
        runs = await resp.json(content_type=None)
    latest = runs["runs"][0] if runs.get("runs") else {}
    say(
        f"✓ job feed: GET …/events returns {len(feed['events'])} event(s), next cursor {feed['next']}; "
        f"last run: {latest.get('function')} {latest.get('status')}"
    )
    return tenant_key


def _appointments(receiver: DemoReceiver) -> list[dict[str, Any]]:
    out = []
    for body, _ in receiver.received:
        envelope = json.loads(body)
        if envelope["type"].startswith("appointment."):
            out.append(envelope)
    return out


async def job_calendar_sync(
    http: aiohttp.ClientSession,
    host: Any,
    demo: DemoTenant,
    tenant_key: dict[str, str],
    receiver: DemoReceiver,
) -> None:
    """The scheduled down-sync: the timer fans out one queue message per down-linked calendar,
    workers read calendarView/delta and the host's webhook receives the appointments. Then a
    person edits Outlook and the host presses "Sync calendar": only the changes arrive."""
    base = host.base_url + "/api/v1/tenants/contoso-demo"
    now = datetime.now(UTC)
    outlook = sum(
        len(demo.graph.calendar.view(user, now - timedelta(days=30), now + timedelta(days=365)))
        for user in (demo.adele, demo.grady)
    )
    accepted = await run_function(http, host, "calendar_sync_fanout")

    async def all_synced() -> bool:
        async with http.get(f"{base}/resources/room-4b/sync", headers=tenant_key) as reply:
            status = await reply.json(content_type=None)
        return (
            all(c["status"] == "ok" for c in status["calendars"]) and len(_appointments(receiver)) >= outlook
        )

    await wait_for("job calendar sync", all_synced)
    first = _appointments(receiver)
    series = sum(1 for e in first if e["data"]["appointment"]["seriesId"])
    private = next(
        e["data"]["appointment"] for e in first if e["data"]["appointment"]["sensitivity"] == "private"
    )
    by_account: dict[str, int] = {}
    for e in first:
        by_account[e["data"]["account"]] = by_account.get(e["data"]["account"], 0) + 1
    say(
        f"✓ job calendar sync: timer fan-out (admin API HTTP {accepted}) → {len(by_account)} calendars → "
        f"{len(first)} appointment.upserted at the host webhook ({series} occurrences of a series; "
        f"per account {by_account}); a private event arrives as "
        f"{private['subject']!r}, readOnly={private['readOnly']}"
    )

    demo.graph.calendar.update_event(demo.adele, demo.event_ids[2], {"subject": "Customer visit (new time)"})
    demo.graph.calendar.delete_event(demo.adele, demo.event_ids[0])
    async with http.post(f"{base}/resources/room-4b/sync", headers=tenant_key) as resp:
        requested = await resp.json(content_type=None)
        status = resp.status
    run_id = requested["runId"]

    async def run_done() -> bool:
        async with http.get(f"{base}/runs?function=calendar-sync", headers=tenant_key) as reply:
            runs = (await reply.json(content_type=None))["runs"]
        return any(r["id"] == run_id and r["status"] != "running" for r in runs)

    await wait_for("job sync calendar", run_done)
    await wait_for("job sync calendar (delivery)", _delivered(receiver, len(first) + 2))
    changes = [
        f"{e['type']} {a.get('subject') or a['eventId'][:12] + '…'}"
        for e in _appointments(receiver)[len(first) :]
        for a in [e["data"]["appointment"]]
    ]
    async with http.get(f"{base}/runs?function=calendar-sync&limit=1", headers=tenant_key) as reply:
        run = (await reply.json(content_type=None))["runs"][0]
    say(
        f"✓ job sync calendar: after an edit and a delete in Outlook, POST …/resources/room-4b/sync "
        f"(HTTP {status}, run {run_id[:8]}… {run['status']}, counts {run['counts']}) delivered only {changes}"
    )


def _pushed(receiver: DemoReceiver) -> list[dict[str, Any]]:
    return [e["data"] for e in _appointments(receiver) if e["type"] == "appointment.pushed"]


def _work_order(
    host_id: str, version: int, subject: str, day: int, hour: int, **extra: Any
) -> dict[str, Any]:
    start = (datetime.now() + timedelta(days=day)).replace(hour=hour, minute=0, second=0, microsecond=0)
    return {
        "hostAppointmentId": host_id,
        "version": version,
        "subject": subject,
        "body": "Work order from the ERP",
        "location": "Storgata 1, Oslo",
        "start": start.strftime("%Y-%m-%dT%H:%M:%S"),
        "end": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
        "timeZone": "Europe/Oslo",
        "categories": ["ERP"],
    } | extra


async def job_calendar_push(
    http: aiohttp.ClientSession,
    host: Any,
    demo: DemoTenant,
    tenant_key: dict[str, str],
    receiver: DemoReceiver,
) -> None:
    """The ERP pushes work orders: each is in Outlook before the 202; a batch resolves versions;
    an Outlook edit of a pushed event comes back as the same host appointment; unlinking with
    cleanup removes exactly the bridge's events."""
    base = host.base_url + "/api/v1/tenants/contoso-demo"
    adele = demo.adele.user_principal_name

    async def post(body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        started = time.perf_counter()
        async with http.post(f"{base}/appointments", json=body, headers=tenant_key) as resp:
            answer = await resp.json(content_type=None)
            return resp.status, answer, time.perf_counter() - started

    def in_outlook(mailbox: Any, subject: str) -> list[Any]:
        events = demo.graph.calendar.mailbox(mailbox).events.values()
        return [r for r in events if r.fields.get("subject") == subject]

    status, first, took = await post(
        {"resourceId": "room-4b", **_work_order("SO-1001", 1, "Service: heat pump", 2, 10)}
    )
    [item] = first["appointments"]
    made = in_outlook(demo.adele, "Service: heat pump")
    say(
        f"✓ job calendar push: POST …/appointments (HTTP {status} in {took * 1000:.0f} ms) → "
        f"{item['status']}, {item['result']} in {adele}'s calendar ({len(made)} event, transactionId "
        "from SO-1001 v1)"
    )
    batch = {
        "appointments": [
            {"resourceId": "room-4b", **_work_order("SO-1001", 2, "Service: heat pump (moved)", 3, 12)},
            {"resourceId": "room-4b", **_work_order("SO-1002", 1, "Installation: charger", 4, 9)},
            {"resourceId": "room-4b", **_work_order("SO-1001", 1, "Service: heat pump", 2, 10)},
            {"resourceId": "room-4b", **_work_order("SO-1003", 1, "Broken", 4, 9, end="yesterday")},
        ]
    }
    status, answer, _ = await post(batch)
    results = [i.get("result") or i["status"] for i in answer["appointments"]]
    problems = [e["field"] for r in answer["rejected"] for e in r["errors"]]
    say(f"✓ job calendar push: a batch (HTTP {status}) → {results}; rejected {problems}")

    # every push result reaches the host before Adele's edit, so what arrives next is the edit
    async def results_heard() -> bool:
        return len(_pushed(receiver)) >= 3

    await wait_for("job calendar push (results)", results_heard)

    # Adele moves the charger installation in Outlook; the host syncs its calendar
    [charger] = in_outlook(demo.adele, "Installation: charger")
    demo.graph.calendar.update_event(
        demo.adele, charger.id, {"subject": "Installation: charger (Adele moved it)"}
    )
    seen = len(_appointments(receiver))
    async with http.post(f"{base}/resources/room-4b/sync", headers=tenant_key) as resp:
        await resp.read()

    async def edit_heard() -> bool:
        return any(
            e["type"] == "appointment.upserted"
            and e["data"]["appointment"].get("hostAppointmentId") == "SO-1002"
            for e in _appointments(receiver)[seen:]
        )

    await wait_for("job push round trip", edit_heard)
    await asyncio.sleep(1.0)  # anything else the sync sent would arrive now
    back = [
        e["data"]["appointment"]
        for e in _appointments(receiver)[seen:]
        if e["type"] == "appointment.upserted"
    ]
    say(
        "✓ job push round trip: after Adele edited a pushed event, the sync sent "
        + ", ".join(
            f"appointment.upserted for host appointment {a['hostAppointmentId']} ({a['subject']!r})"
            for a in back
        )
        + f"; the host heard {len(_pushed(receiver))} appointment.pushed results"
    )

    # a technician linked up-only to Grady; unlinking with cleanup removes what the bridge made
    link = {"accounts": [{"account": demo.grady.user_principal_name, "direction": "up"}]}
    async with http.put(f"{base}/resources/tech-7", json=link, headers=tenant_key) as resp:
        await resp.read()
    await post({"resourceId": "tech-7", **_work_order("SO-2001", 1, "Inspection: boiler", 5, 8)})
    before = len(demo.graph.calendar.mailbox(demo.grady).events)
    async with http.delete(f"{base}/resources/tech-7?cleanup=true", headers=tenant_key) as resp:
        unlinked = resp.status
    await wait_for(
        "job unlink cleanup",
        as_check(lambda: not in_outlook(demo.grady, "Inspection: boiler")),
    )
    after = len(demo.graph.calendar.mailbox(demo.grady).events)
    say(
        f"✓ job unlink cleanup: DELETE …/resources/tech-7?cleanup=true (HTTP {unlinked}) → "
        f"{before - after} bridge event deleted from {demo.grady.user_principal_name}'s calendar, "
        f"his own {after} kept"
    )


async def job_mail_import(
    http: aiohttp.ClientSession,
    host: Any,
    demo: DemoTenant,
    tenant_key: dict[str, str],
    receiver: DemoReceiver,
) -> None:
    """Invoices arrive in a mailbox folder; "Run import" stages each document, announces it with
    a download URL, forwards what has nothing to import, and archives every mail."""
    from devtools.graph_emulator.mail_ops import file

    base = host.base_url + "/api/v1/tenants/contoso-demo"
    box = demo.adele.user_principal_name
    mail = demo.graph.module("mail").mail
    mail.ensure_folder_path(box, "Inbox/Fakturaer")
    mail.ensure_folder_path(box, "Archive/Fakturaer")
    invoice = b"%PDF-1.7 demo invoice 2026-1001"
    logo = file("logo.png", b"\x89PNG logo", "image/png", inline=True, content_id="logo")
    mail.deliver_mail(
        box,
        "Inbox/Fakturaer",
        subject="Faktura 2026-1001",
        attachments=[file("faktura-2026-1001.pdf", invoice, "application/pdf"), logo],
    )
    mail.deliver_mail(
        box, "Inbox/Fakturaer", subject="Takk for sist", body="<img src='cid:logo'>", attachments=[logo]
    )
    config = {
        "mailbox": box,
        "importFolder": "Inbox/Fakturaer",
        "archiveFolder": "Archive/Fakturaer",
        "forwardTo": "regnskap@contoso-demo.example",
    }
    async with http.put(f"{base}/mail-imports/invoices", json=config, headers=tenant_key) as resp:
        saved = resp.status
    async with http.post(f"{base}/mail-imports/invoices/run", headers=tenant_key) as resp:
        run_id = (await resp.json(content_type=None))["runId"]

    async def ended() -> bool:
        async with http.get(f"{base}/runs?runId={run_id}", headers=tenant_key) as reply:
            runs = (await reply.json(content_type=None))["runs"]
        return any(r["status"] != "running" for r in runs)

    await wait_for("job mail import", ended)
    async with http.get(f"{base}/runs?runId={run_id}", headers=tenant_key) as reply:
        run = (await reply.json(content_type=None))["runs"][0]

    def documents() -> list[dict[str, Any]]:
        return [
            json.loads(body)["data"]
            for body, _ in receiver.received
            if json.loads(body)["type"] == "document.imported"
        ]

    await wait_for("job mail import (delivery)", as_check(lambda: bool(documents())))
    document = documents()[0]
    async with http.get(document["downloadUrl"]) as resp:
        content = await resp.read()
    verified = hashlib.sha256(content).hexdigest() == document["sha256"]
    archived = len(mail.messages(box, "Archive/Fakturaer"))
    say(
        f"✓ job mail import: PUT …/mail-imports/invoices (HTTP {saved}), run {run['status']} "
        f"{run['counts']}; document.imported {document['fileName']!r} downloaded from its URL, "
        f"sha256 {'verified' if verified else 'WRONG'}; {archived} mails archived"
    )


async def job_booking_slots(
    http: aiohttp.ClientSession, host: Any, demo: DemoTenant, tenant_key: dict[str, str]
) -> None:
    """An admin puts slots in a booking calendar; the form lists them with the rules applied."""
    base = host.base_url + "/api/v1/tenants/contoso-demo"
    owner = demo.grady.user_principal_name
    calendar = demo.graph.calendar.create_calendar(demo.grady, "Bookable slots")
    # the next Monday in the booking calendar's own zone, at least 2 days away so the 1-day
    # notice never hides it (late on a Sunday in UTC it is already Monday in Oslo)
    today = datetime.now(ZoneInfo("Europe/Oslo")).date()
    monday = today + timedelta(days=7 - today.weekday())
    if (monday - today).days < 2:
        monday += timedelta(days=7)
    for day, hour in ((0, 9), (0, 10), (0, 18), (5, 10)):  # Monday 9 and 10; 18:00 and Saturday filtered
        when = monday + timedelta(days=day)
        slot = {
            "subject": "Rådgivning",
            "start": {"dateTime": f"{when.isoformat()}T{hour:02d}:00:00", "timeZone": "Europe/Oslo"},
            "end": {"dateTime": f"{when.isoformat()}T{hour:02d}:45:00", "timeZone": "Europe/Oslo"},
        }
        demo.graph.calendar.create_event(demo.grady, slot, calendar_id=calendar.id)
    config = {"displayName": "Rådgivning", "owner": owner, "calendar": "Bookable slots", "noticeDays": 1}
    async with http.put(f"{base}/booking-calendars/advice", json=config, headers=tenant_key) as resp:
        saved = await resp.json(content_type=None)
        status = resp.status
    async with http.get(f"{base}/booking-calendars/advice/slots", headers=tenant_key) as resp:
        slots = (await resp.json(content_type=None))["slots"]
    shown = [
        f"{s['start']['dateTime'][5:16]} {'available' if s['available'] else 'unavailable'}" for s in slots
    ]
    say(
        f"✓ job booking slots: PUT …/booking-calendars/advice (HTTP {status}, suffix "
        f"{saved['bookedSuffix']!r}); GET …/slots shows {shown} (08-16, no weekends)"
    )


async def job_booking_reserve(
    http: aiohttp.ClientSession,
    host: Any,
    demo: DemoTenant,
    tenant_key: dict[str, str],
    receiver: DemoReceiver,
) -> None:
    """Two forms book the same slot at once: one 201, one 409. The worker marks the slot booked
    in Outlook with the upload and a PDF summary; cancelling restores it."""
    base = host.base_url + "/api/v1/tenants/contoso-demo/booking-calendars/advice"
    async with http.get(f"{base}/slots", headers=tenant_key) as resp:
        slot = next(s for s in (await resp.json(content_type=None))["slots"] if s["available"])

    def form(name: str) -> dict[str, Any]:
        referral = base64.b64encode(b"%PDF-1.7 demo referral").decode()
        return {
            "slotId": slot["slotId"],
            "slotVersion": slot["version"],
            "booker": {"name": name, "email": "kari@example.org"},
            "fields": {"Årsak": "Årskontroll", "Telefon": "+47 900 00 000"},
            "documents": [
                {"name": "henvisning.pdf", "contentType": "application/pdf", "contentBase64": referral}
            ],
        }

    async def book(name: str) -> tuple[int, dict[str, Any]]:
        async with http.post(f"{base}/reservations", json=form(name), headers=tenant_key) as resp:
            return resp.status, await resp.json(content_type=None)

    answers = await asyncio.gather(book("Kari Nordmann"), book("Ola Nordmann"))
    [(_, reservation)] = [a for a in answers if a[0] == 201]

    def events(kind: str) -> list[dict[str, Any]]:
        return [json.loads(b)["data"] for b, _ in receiver.received if json.loads(b)["type"] == kind]

    await wait_for("job booking (booked)", as_check(lambda: events("booking.reserved")))
    event = demo.graph.calendar.find(demo.grady, slot["slotId"]).record
    booked_subject = event.fields["subject"]
    attached = sorted(a.name for a in event.attachments)
    say(
        f"✓ job booking: two forms POST …/reservations at once → HTTP {sorted(a[0] for a in answers)}; "
        f"booking.reserved; Outlook shows {booked_subject!r} with {attached}"
    )
    async with http.delete(f"{base}/reservations/{reservation['id']}", headers=tenant_key) as resp:
        cancel_status = resp.status
    await wait_for("job booking (cancelled)", as_check(lambda: events("booking.cancelled")))
    event = demo.graph.calendar.find(demo.grady, slot["slotId"]).record
    async with http.get(f"{base}/slots", headers=tenant_key) as resp:
        free = any(s["slotId"] == slot["slotId"] for s in (await resp.json(content_type=None))["slots"])
    say(
        f"✓ job booking cancel: DELETE …/reservations/{reservation['id'][:10]}… (HTTP {cancel_status}) → "
        f"booking.cancelled; Outlook shows {event.fields['subject']!r} with {len(event.attachments)} "
        f"attachments; slot {'listed again' if free else 'STILL TAKEN'}"
    )


async def job_presence(
    http: aiohttp.ClientSession,
    host: Any,
    demo: DemoTenant,
    tenant_key: dict[str, str],
    receiver: DemoReceiver,
) -> None:
    """The switchboard: two people enabled; Grady's meeting starts in a few seconds and ends a
    few seconds later, and the switchboard hears busy and free at those moments."""
    base = host.base_url + "/api/v1/tenants/contoso-demo/presence"
    adele, grady = demo.adele.user_principal_name, demo.grady.user_principal_name
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    end = start + timedelta(seconds=3)
    meeting = {
        "subject": "Kundemøte",
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
    }
    demo.graph.calendar.create_event(demo.grady, meeting)
    for upn in (adele, grady):
        async with http.put(f"{base}/monitors/{upn}", json={}, headers=tenant_key) as resp:
            assert resp.status == 201, await resp.text()

    def told() -> list[dict[str, Any]]:
        return [
            json.loads(b)["data"]
            for b, _ in receiver.received
            if json.loads(b)["type"] == "presence.changed" and json.loads(b)["data"]["email"] == grady
        ]

    await wait_for("job presence", as_check(lambda: len(told()) >= 3), seconds=30)
    async with http.get(f"{base}?users={adele},{grady}", headers=tenant_key) as resp:
        users = (await resp.json(content_type=None))["users"]
    changes = [f"{c['status']} {c['since'][11:19] if c['since'] else '-'}" for c in told()]
    say(
        f"✓ job presence: 2 users enabled; Grady's meeting {start:%H:%M:%S}-{end:%H:%M:%S} → "
        f"presence.changed {changes}; GET …/presence → {[u['status'] for u in users]}"
    )


def _delivered(receiver: DemoReceiver, count: int) -> Any:
    async def check() -> bool:
        return len(_appointments(receiver)) >= count

    return check


async def run_stack(azurite: Azurite, demo_dir: Path, port: int, stop: asyncio.Event | None) -> None:
    """The Graph emulator and the local Functions host on top of a running Azurite; the jobs;
    then serve until `stop` is set (or return at once without one)."""
    async with GraphEmulator(directory=demo_dir / "graph") as graph:
        demo = DemoTenant(graph)
        from core.operator_auth import new_operator_key

        operator_key, operator_digest = new_operator_key()
        receiver = DemoReceiver()
        await receiver.start()
        say("m365-bridge demo — local stack")
        for service, service_port in sorted(azurite.ports.items()):
            say(f"  Azurite {service:<5} http://127.0.0.1:{service_port}/devstoreaccount1")
        say(f"  Graph emulator {graph.graph_url}  (Entra ID {graph.authority}, CA {graph.ca_cert})")
        say(
            f"  demo tenant {demo.tenant.id} ({DEMO_DOMAIN}), users {demo.adele.user_principal_name}, "
            f"{demo.grady.user_principal_name}"
        )
        env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "BRIDGE_TABLE_PREFIX": "demo",
            "SECRETS_PROVIDER": "local",
            "LOCAL_SECRETS_DIR": str(demo_dir / "secrets"),
            "HOUSEKEEPING_SCHEDULE": os.environ.get("HOUSEKEEPING_SCHEDULE", "0 17 3 * * *"),
            "MAIL_IMPORT_SCHEDULE": os.environ.get("MAIL_IMPORT_SCHEDULE", "0 0 */2 * * *"),
            "GRAPH_SUBSCRIPTION_SCHEDULE": os.environ.get("GRAPH_SUBSCRIPTION_SCHEDULE", "0 20 * * * *"),
            "CALENDAR_SYNC_SCHEDULE": os.environ.get("CALENDAR_SYNC_SCHEDULE", "0 */15 * * * *"),
            "RUN_RETENTION_DAYS": "30",
            "GRAPH_BASE_URL": graph.graph_url,
            "GRAPH_AUTHORITY_HOST": graph.authority,
            "GRAPH_CA_BUNDLE": str(graph.ca_cert),
            "BRIDGE_OPERATOR_KEY_SHA256": operator_digest,
        }
        os.environ.update(env)  # the app reads its settings from the process environment

        import function_app
        from core import bootstrap
        from devtools.funchost import FunctionHost

        port = port if port == 0 or _port_free(port) else 0
        async with FunctionHost(function_app.app, host_json=ROOT / "host.json", port=port, env=env) as host:
            for line in host.describe():
                say(line)
            say()
            async with aiohttp.ClientSession() as http:
                await job_health(http, host.base_url, host.function_key)
                await job_housekeeping(http, host.base_url, host.master_key)
            await job_graph(demo)
            async with aiohttp.ClientSession() as http:
                tenant_key = await job_tenant_and_delivery(http, host, demo, operator_key, receiver)
                await job_calendar_sync(http, host, demo, tenant_key, receiver)
                await job_calendar_push(http, host, demo, tenant_key, receiver)
                await job_mail_import(http, host, demo, tenant_key, receiver)
                await job_booking_slots(http, host, demo, tenant_key)
                await job_booking_reserve(http, host, demo, tenant_key, receiver)
                await job_presence(http, host, demo, tenant_key, receiver)
                await job_mail_send(http, host, demo, tenant_key, receiver)
                await job_openapi(http, host)
                await job_test_settings(http, host, tenant_key)
                await job_connect(http, host, demo, operator_key, receiver)
                await job_notifications(http, host, demo, receiver)
            if stop is not None:
                say()
                say(f"ready: serving {host.base_url} — Ctrl-C stops every process")
                await stop.wait()
        # Only once the host has stopped (in-flight invocations done) may the app's clients close.
        await bootstrap.reset()
        await receiver.stop()
        say("stopped: functions host")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--port", type=int, default=7071, help="host port (0: any free port)")
    parser.add_argument("--once", action="store_true", help="stop after the jobs instead of serving")
    args = parser.parse_args(argv)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    demo_dir = ROOT / ".local" / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    with Azurite() as azurite:
        try:
            await run_stack(azurite, demo_dir, args.port, None if args.once else stop)
        finally:
            say("stopped: Graph emulator")
    say("stopped: Azurite")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        sys.exit(130)
