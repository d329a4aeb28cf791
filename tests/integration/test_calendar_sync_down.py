"""Calendar sync down (Outlook → host), end to end on the local stack: the real `function_app`
on the local Functions host (timer → fan-out → `calendar-sync` queue → worker, and the host's
`POST …/resources/{r}/sync`), Azurite, and the Graph emulator over HTTPS with the real
azure-identity and msgraph-sdk clients. The tenant is onboarded through the operator API with
its own app registration (`client_secret`) in the emulator.

"Outlook" is the emulator's control API (a person editing their calendar). What the host was
told is read back from the pull feed and rebuilt into the host's view of each calendar
(upserted → put, deleted → drop, in feed order), then compared with the emulator's own
calendarView over the sync window. Events also go to a real webhook receiver, except where a
test's host only pulls the feed (fewer moving parts where a test moves hundreds of events).

One emulator serves the module; each test makes its own Entra tenant, app and mailboxes, and
its own Functions host with its own tables. Waits poll a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

import function_app
from core import bootstrap
from core.bootstrap import Container
from core.calendar.window import WindowPolicy
from core.store.records import EventMapEntry, EventTransaction, Origin
from devtools.funchost import FunctionHost
from devtools.funchost.settings import HostConfig, load_host_json
from devtools.graph_emulator import GraphEmulator
from devtools.graph_emulator.throttling import FaultKind
from tests.integration.bridge_api import Api, Reply, api_env  # noqa: F401 - fixture
from tests.waiting import eventually as wait_for
from tests.webhook_receiver import WebhookReceiver


def eventually(check: Callable[[], Any], *, within: float = 30.0, what: str) -> Awaitable[Any]:
    """`tests.waiting.eventually` with this module's patience: queue retries take ~12 s."""
    return wait_for(check, within=within, what=what, interval=0.1)


pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
NEVER = "0 0 0 1 1 *"  # the timer never fires by itself: tests fire it through the admin API
POLICY = WindowPolicy(days_back=7, days_ahead=60, slack_days=7)
PERMISSIONS = ("Calendars.ReadWrite", "User.Read.All")
OSLO = ZoneInfo("Europe/Oslo")
UPSERTED = "appointment.upserted"
DELETED = "appointment.deleted"
SYNC_RUN = "calendar-sync"
TERMINAL = ("succeeded", "failed")
APPOINTMENT_FIELDS = {
    "eventId",
    "seriesId",
    "hostAppointmentId",
    "type",
    "subject",
    "bodyPreview",
    "location",
    "start",
    "end",
    "isAllDay",
    "showAs",
    "sensitivity",
    "categories",
    "organizer",
    "attendeeCount",
    "lastModified",
    "readOnly",
}
DELTA_PATH = r"/calendarView/delta"


# --- Outlook: the customer's Microsoft 365 tenant in the Graph emulator ------------------------


@pytest.fixture(scope="module")
async def graph(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GraphEmulator]:
    async with GraphEmulator(directory=tmp_path_factory.mktemp("graph"), latency=0.0) as emulator:
        yield emulator


@dataclass
class Outlook:
    """The bridge's app registration in a fresh emulator tenant, and its people's mailboxes."""

    graph: GraphEmulator
    tenant_id: str
    client_id: str
    secret: str
    domain: str

    @classmethod
    def create(cls, graph: GraphEmulator) -> Outlook:
        name = "t" + uuid.uuid4().hex[:12]
        tenant = graph.add_tenant(name=name, domain=f"{name}.onmicrosoft.com")
        secret = "s-" + uuid.uuid4().hex
        app = graph.add_app(tenant.id, secrets=[secret], application_permissions=PERMISSIONS)
        return cls(graph, tenant.id, app.client_id, secret, tenant.domain)

    def mailbox(self, name: str) -> str:
        upn = f"{name}@{self.domain}".lower()
        self.graph.add_user(self.tenant_id, upn)
        return upn

    def last_token_at(self) -> float:
        """When the emulated Entra ID last issued the bridge's app a token."""
        return max(t.at for t in self.graph.identity.issued if t.client_id == self.client_id)


def _when(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def today_at(hour: int, days: int = 0) -> datetime:
    return datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0) + timedelta(days=days)


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_json(subject: str, start: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "subject": subject,
        "body": {"contentType": "text", "content": f"Agenda for {subject}"},
        "location": {"displayName": "Room 4B"},
        "start": _when(start),
        "end": _when(start + timedelta(hours=1)),
        "showAs": "busy",
        **extra,
    }


def create_event(
    graph: GraphEmulator, mailbox: str, body: dict[str, Any], calendar_id: str | None = None
) -> str:
    """Someone creates an appointment in Outlook; its id."""
    record, _ = graph.calendar.create_event(mailbox, body, calendar_id=calendar_id)
    return record.id


# --- the host system's side --------------------------------------------------------------------


@dataclass
class HostView:
    """What a host knows after applying the feed's appointment events in order."""

    appointments: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def apply(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            if event["type"] not in (UPSERTED, DELETED):
                continue  # push results (appointment.pushed) are not appointments
            data = event["data"]
            key = (data["account"], data["calendar"], data["appointment"]["eventId"])
            if event["type"] == UPSERTED:
                self.appointments[key] = data["appointment"]
            elif event["type"] == DELETED:
                assert key in self.appointments, f"deleted an appointment the host never had: {key}"
                del self.appointments[key]

    def calendar(self, account: str, calendar: str = "default") -> dict[str, dict[str, Any]]:
        return {k[2]: v for k, v in self.appointments.items() if k[:2] == (account, calendar)}


@dataclass
class Bridge:
    """The bridge as its host system and its operator use it, for one tenant."""

    api: Api
    app: Container
    outlook: Outlook
    receiver: WebhookReceiver
    tenant_id: str
    api_key: str
    feed: list[dict[str, Any]] = field(default_factory=list)  # every event read so far, in order
    cursor: str = "0"
    view: HostView = field(default_factory=HostView)

    @property
    def graph(self) -> GraphEmulator:
        return self.outlook.graph

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        return await self.api.call(
            method, f"/api/v1/tenants/{self.tenant_id}{path}", bearer=self.api_key, **kwargs
        )

    async def link(self, resource_id: str, *accounts: dict[str, Any]) -> None:
        body = {"displayName": "Møterom 4B", "accounts": list(accounts)}
        reply = await self.call("PUT", f"/resources/{resource_id}", json_body=body)
        assert reply.status == 201, reply.text

    async def status(self, resource_id: str) -> list[dict[str, Any]]:
        reply = await self.call("GET", f"/resources/{resource_id}/sync")
        assert reply.status == 200, reply.text
        assert reply.body["resourceId"] == resource_id
        return list(reply.body["calendars"])

    async def runs(self) -> list[dict[str, Any]]:
        reply = await self.call("GET", "/runs", params={"function": SYNC_RUN, "limit": "200"})
        assert reply.status == 200, reply.text
        return list(reply.body["runs"])

    async def request_sync(self, resource_id: str) -> Reply:
        reply = await self.call("POST", f"/resources/{resource_id}/sync")
        assert reply.status == 202, reply.text
        return reply

    async def sync(self, resource_id: str, *, expect: str = "succeeded") -> tuple[Reply, dict[str, Any]]:
        """The host's "Sync calendar": POST …/sync, wait for its run to end, read the feed."""
        reply = await self.request_sync(resource_id)
        run = await self.wait_run(reply.body["runId"])
        assert run["status"] == expect, run
        await self.read_feed()
        return reply, run

    async def wait_run(self, run_id: str) -> dict[str, Any]:
        async def ended() -> dict[str, Any] | None:
            runs = await self.runs()
            return next((r for r in runs if r["id"] == run_id and r["status"] in TERMINAL), None)

        run: dict[str, Any] = await eventually(ended, what=f"run {run_id} to end")
        return run

    async def fire_timer(self, function: str = "calendar_sync_fanout") -> None:
        """A timer (the calendar fan-out unless named), invoked through the host's admin API."""
        async with self.api.http.post(
            f"{self.api.host.base_url}/admin/functions/{function}",
            json={"input": ""},
            headers={"x-functions-key": self.api.host.master_key},
        ) as resp:
            assert resp.status == 202, await resp.text()

    async def wait_new_runs(self, before: set[str], count: int) -> list[dict[str, Any]]:
        """Wait until `count` sync runs not in `before` exist and all have ended; read the feed."""

        async def ended() -> list[dict[str, Any]] | None:
            new = [r for r in await self.runs() if r["id"] not in before]
            done = len(new) >= count and all(r["status"] in TERMINAL for r in new)
            return new if done else None

        runs: list[dict[str, Any]] = await eventually(ended, what=f"{count} sync runs to end")
        await self.read_feed()
        return runs

    async def read_feed(self) -> list[dict[str, Any]]:
        """The feed's events since the last read, applied to the host's view."""
        new: list[dict[str, Any]] = []
        while True:
            reply = await self.call("GET", "/events", params={"after": self.cursor, "limit": "1000"})
            assert reply.status == 200, reply.text
            page = reply.body["events"]
            new += page
            self.cursor = reply.body["next"]
            if not page:
                break
        self.feed += new
        self.view.apply(new)
        return new

    def outlook_view(self, mailbox: str, calendar_id: str | None = None) -> dict[str, Any]:
        """Outlook's calendarView over the window the bridge syncs (instance id → instance)."""
        start, end = POLICY.fresh(datetime.now(UTC))
        return {i.id: i for i in self.graph.calendar.view(mailbox, start, end, calendar_id)}

    def fault_second_page(self, mailbox: str, kind: FaultKind, **fault: Any) -> None:
        """Let the next delta page of `mailbox` through, then serve the following ones badly."""
        self.graph.add_fault("latency", latency_seconds=0.0, count=1, mailbox=mailbox, path=DELTA_PATH)
        self.graph.add_fault(kind, mailbox=mailbox, path=DELTA_PATH, **fault)


def assert_host_matches_outlook(
    bridge: Bridge, mailbox: str, calendar: str = "default", calendar_id: str | None = None
) -> None:
    """The host's view of one calendar is exactly Outlook's calendarView over the sync window:
    the same appointments, times, types, series and (unless private) subjects."""
    host = bridge.view.calendar(mailbox, calendar)
    outlook = bridge.outlook_view(mailbox, calendar_id)
    assert set(host) == set(outlook)
    for event_id, instance in outlook.items():
        got = host[event_id]
        series = instance.record.id if instance.type in ("occurrence", "exception") else None
        assert (got["start"]["utc"], got["end"]["utc"]) == (utc(instance.start), utc(instance.end))
        assert (got["type"], got["seriesId"]) == (instance.type, series)
        if not instance.is_private:
            assert got["subject"] == instance.fields.get("subject")


def upserts_of(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["data"]["appointment"]["eventId"] for e in events if e["type"] == UPSERTED)


def deletes_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["appointment"]["eventId"] for e in events if e["type"] == DELETED]


@pytest.fixture
def start_bridge(
    api_env: dict[str, str], graph: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    """`async with start_bridge(**settings) as bridge`: the Functions host with the real app
    against Azurite and the emulator, and a tenant onboarded through the operator API with its
    own app registration (client_secret), in Norwegian (nb), whose host takes webhooks (at a
    real receiver) or, with `webhook=False`, only pulls the feed."""

    @asynccontextmanager
    async def running(
        *,
        webhook: bool = True,
        queue_visibility: float | None = None,
        notifications: bool = False,
        **settings: str,
    ) -> AsyncIterator[Bridge]:
        port = 0
        if notifications:  # Graph (the emulator) must reach the host: a port known up front
            port = free_port()
            settings = {"BRIDGE_PUBLIC_URL": f"http://127.0.0.1:{port}", **settings}
        env = {
            **api_env,
            "GRAPH_BASE_URL": graph.graph_url,
            "GRAPH_AUTHORITY_HOST": graph.authority,
            "GRAPH_CA_BUNDLE": str(graph.ca_cert),
            "CALENDAR_SYNC_SCHEDULE": NEVER,
            "CALENDAR_SYNC_DAYS_BACK": str(POLICY.days_back),
            "CALENDAR_SYNC_DAYS_AHEAD": str(POLICY.days_ahead),
            "CALENDAR_SYNC_WINDOW_SLACK_DAYS": str(POLICY.slack_days),
            "SECRETS_CACHE_SECONDS": "0",
            **settings,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        await bootstrap.reset()
        outlook = Outlook.create(graph)
        try:
            async with (
                WebhookReceiver() as receiver,
                FunctionHost(
                    function_app.app, host_json=_host_config(queue_visibility), port=port, env=env
                ) as host,
                aiohttp.ClientSession() as http,
            ):
                api = Api(host, http, env["TEST_OPERATOR_KEY"], Path(env["LOCAL_SECRETS_DIR"]))
                tenant_id = "contoso-" + uuid.uuid4().hex[:6]
                tenant = {
                    "id": tenant_id,
                    "displayName": "Contoso",
                    "graph": {
                        "tenantId": outlook.tenant_id,
                        "clientId": outlook.client_id,
                        "credentialMode": "client_secret",
                        "clientSecret": outlook.secret,
                    },
                    "host": {"webhookUrl": receiver.url if webhook else None},
                    "defaults": {"language": "nb", "timeZone": "Europe/Oslo"},
                }
                created = await api.operator("POST", "/tenants", json_body=tenant)
                assert created.status == 201, created.text
                app = await bootstrap.container()  # the one the host's functions use
                yield Bridge(api, app, outlook, receiver, tenant_id, created.body["apiKey"])
        finally:
            graph.clear_faults()
            await bootstrap.reset()

    return running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _host_config(queue_visibility: float | None) -> HostConfig:
    """The real host.json, with a shorter queue retry when a test waits for the poison queue."""
    config = load_host_json(ROOT / "host.json")
    if queue_visibility is None:
        return config
    return replace(config, queues=replace(config.queues, visibility_timeout=queue_visibility))


# --- 1. first sync by the timer; Outlook's edits arrive exactly once -------------------------


async def test_given_a_timer_first_sync_when_outlook_changes_then_the_host_gets_exactly_those_changes(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a resource linked down to Adele's default calendar with three appointments
    WHEN the timer fires (admin API → fan-out → queue → worker)
    THEN one sync run succeeds, the host receives each appointment once, and its view equals
    Outlook's calendarView;
    WHEN Adele edits one, deletes one and creates one, and the host syncs
    THEN exactly one update, one delete and one new appointment arrive, and the views agree;
    AND a sync without changes emits nothing, and neither does a burst of requests (two POSTs
    and the timer at once) after one more edit: that edit arrives once;
    AND every event has the documented shape, and the webhook received exactly the feed's
    events, once each, in order."""
    async with start_bridge() as bridge:
        adele = bridge.outlook.mailbox("adele")
        ids = [create_event(bridge.graph, adele, event_json(f"Visit {i}", today_at(9, i))) for i in (1, 2, 3)]
        await bridge.link("room-4b", {"account": adele, "direction": "down"})

        await bridge.fire_timer()
        (first_run,) = await bridge.wait_new_runs(set(), 1)
        assert first_run["status"] == "succeeded"
        assert first_run["counts"] == {"calendars_synced": 1, "full_rounds": 1, "pages": 1, "upserted": 3}
        assert upserts_of(bridge.feed) == Counter(dict.fromkeys(ids, 1))
        assert_host_matches_outlook(bridge, adele)

        synced = len(bridge.feed)
        bridge.graph.calendar.update_event(adele, ids[0], {"subject": "Visit 1 (moved)"})
        bridge.graph.calendar.delete_event(adele, ids[1])
        added = create_event(bridge.graph, adele, event_json("Visit 4", today_at(13, 4)))
        _, run = await bridge.sync("room-4b")
        changes = bridge.feed[synced:]
        assert upserts_of(changes) == Counter({ids[0]: 1, added: 1})
        assert deletes_of(changes) == [ids[1]]
        assert (run["counts"].get("upserted"), run["counts"].get("deleted")) == (2, 1)
        assert "full_rounds" not in run["counts"]  # incremental from the stored delta link
        assert_host_matches_outlook(bridge, adele)

        _, quiet = await bridge.sync("room-4b")
        assert len(bridge.feed) == synced + 3
        assert "upserted" not in quiet["counts"]
        assert "deleted" not in quiet["counts"]

        before = {r["id"] for r in await bridge.runs()}
        bridge.graph.calendar.update_event(adele, ids[2], {"location": {"displayName": "Room 5C"}})
        await asyncio.gather(
            bridge.request_sync("room-4b"), bridge.request_sync("room-4b"), bridge.fire_timer()
        )
        burst = await bridge.wait_new_runs(before, 3)
        assert [r["status"] for r in burst] == ["succeeded"] * 3
        assert upserts_of(bridge.feed[synced + 3 :]) == Counter({ids[2]: 1})
        assert len(bridge.feed) == synced + 4
        assert_host_matches_outlook(bridge, adele)

        for event in bridge.feed:
            assert set(event) == {"id", "type", "tenantId", "occurredAt", "data"}
            assert set(event["data"]) == {"resourceId", "account", "calendar", "appointment"}
            assert (event["tenantId"], event["data"]["resourceId"]) == (bridge.tenant_id, "room-4b")
            fields = (
                APPOINTMENT_FIELDS
                if event["type"] == UPSERTED
                else {"eventId", "seriesId", "hostAppointmentId"}
            )
            assert set(event["data"]["appointment"]) == fields
        await eventually(lambda: len(bridge.receiver.accepted) >= len(bridge.feed), what="webhook deliveries")
        assert [r.event_id for r in bridge.receiver.accepted] == [e["id"] for e in bridge.feed]


# --- 2. a recurring series with an exception and a cancelled occurrence ----------------------


async def test_given_a_weekly_series_when_one_occurrence_is_edited_and_one_cancelled_then_only_they_change(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a weekly series of four occurrences in Adele's calendar, synced to the host
    THEN every occurrence arrived once, as type occurrence, with the series' id;
    WHEN Adele moves and renames the second occurrence and cancels the third
    THEN the host gets one update (the second, now an exception, same seriesId) and one
    appointment.deleted of only the third (with its seriesId), and nothing else."""
    async with start_bridge() as bridge:
        adele = bridge.outlook.mailbox("adele")
        first = today_at(14, 1)
        weekly = event_json("Weekly planning", first)
        weekly["recurrence"] = {
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [first.strftime("%A").lower()]},
            "range": {"type": "numbered", "startDate": first.date().isoformat(), "numberOfOccurrences": 4},
        }
        series = create_event(bridge.graph, adele, weekly)
        await bridge.link("room-4b", {"account": adele, "direction": "down"})

        await bridge.sync("room-4b")
        occurrences = sorted(bridge.outlook_view(adele).values(), key=lambda i: i.start)
        ids = [i.id for i in occurrences]
        assert [i.start for i in occurrences] == [first + timedelta(weeks=n) for n in range(4)]
        assert upserts_of(bridge.feed) == Counter(dict.fromkeys(ids, 1))
        host = bridge.view.calendar(adele)
        assert {(a["seriesId"], a["type"], a["subject"]) for a in host.values()} == {
            (series, "occurrence", "Weekly planning")
        }
        assert_host_matches_outlook(bridge, adele)

        synced = len(bridge.feed)
        moved = occurrences[1].start + timedelta(hours=2)
        patch = {
            "subject": "Planning (moved)",
            "start": _when(moved),
            "end": _when(moved + timedelta(hours=1)),
        }
        bridge.graph.calendar.update_event(adele, ids[1], patch)
        bridge.graph.calendar.delete_event(adele, ids[2])
        _, run = await bridge.sync("room-4b")

        changes = bridge.feed[synced:]
        assert [e["type"] for e in changes] == [UPSERTED, DELETED], changes
        updated, deleted = (e["data"]["appointment"] for e in changes)
        assert updated["eventId"] == ids[1]
        assert (updated["type"], updated["seriesId"], updated["subject"]) == (
            "exception",
            series,
            "Planning (moved)",
        )
        assert (updated["start"]["utc"], updated["end"]["utc"]) == (
            utc(moved),
            utc(moved + timedelta(hours=1)),
        )
        assert deleted == {"eventId": ids[2], "seriesId": series, "hostAppointmentId": None}
        assert (run["counts"].get("upserted"), run["counts"].get("deleted")) == (1, 1)
        assert set(bridge.view.calendar(adele)) == {ids[0], ids[1], ids[3]}
        assert_host_matches_outlook(bridge, adele)


# --- 3. private appointments are masked --------------------------------------------------------


async def test_given_a_private_event_then_the_host_gets_it_masked_in_the_tenant_language_and_read_only(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a tenant in Norwegian (nb), a resource linked both ways, and in Adele's calendar a
    private appointment (subject, body, location, categories, attendees) beside a normal one
    WHEN the host syncs
    THEN the private one arrives as "Privat avtale" with an empty body preview and location, no
    categories, organizer or attendees, sensitivity private and readOnly true — its times (in
    the tenant's zone) and showAs intact — while the normal one is shown in full, writable;
    WHEN Adele then marks the normal one private, and renames the private one
    THEN the first's update arrives masked the same way, and of the rename the host hears
    nothing (what it would see has not changed);
    AND no private detail appears anywhere in the feed or in what the webhook received."""
    async with start_bridge() as bridge:
        adele = bridge.outlook.mailbox("adele")
        at = today_at(8, 2)
        private = create_event(
            bridge.graph,
            adele,
            event_json(
                "Legetime hos dr. Hansen",
                at,
                sensitivity="private",
                showAs="oof",
                categories=["Helse"],
                body={"contentType": "html", "content": "<p>Diagnose: hemmelig</p>"},
                location={"displayName": "Legesenteret Majorstuen"},
                attendees=[
                    {
                        "emailAddress": {"address": "lege@example.com", "name": "Dr. Hansen"},
                        "type": "required",
                    }
                ],
            ),
        )
        normal = create_event(
            bridge.graph, adele, event_json("Lønnssamtale", today_at(11, 2), categories=["Personal"])
        )
        await bridge.link("room-4b", {"account": adele, "direction": "both"})

        await bridge.sync("room-4b")
        host = bridge.view.calendar(adele)
        masked = host[private]
        assert masked["subject"] == "Privat avtale"
        assert (masked["bodyPreview"], masked["location"], masked["categories"]) == ("", "", [])
        assert (masked["organizer"], masked["attendeeCount"]) == (None, 0)
        assert (masked["sensitivity"], masked["showAs"], masked["readOnly"]) == ("private", "oof", True)
        local = at.astimezone(OSLO).strftime("%Y-%m-%dT%H:%M:%S")
        assert masked["start"] == {"dateTime": local, "timeZone": "Europe/Oslo", "utc": utc(at)}
        shown = host[normal]
        assert (shown["subject"], shown["location"], shown["readOnly"]) == ("Lønnssamtale", "Room 4B", False)
        assert (shown["bodyPreview"], shown["categories"]) == ("Agenda for Lønnssamtale", ["Personal"])

        synced = len(bridge.feed)
        bridge.graph.calendar.update_event(adele, normal, {"sensitivity": "private"})
        bridge.graph.calendar.update_event(adele, private, {"subject": "Legetime flyttet"})  # masked: no news
        await bridge.sync("room-4b")
        (update,) = bridge.feed[synced:]
        now_private = update["data"]["appointment"]
        assert (now_private["eventId"], now_private["subject"], now_private["readOnly"]) == (
            normal,
            "Privat avtale",
            True,
        )
        assert (now_private["bodyPreview"], now_private["location"], now_private["categories"]) == (
            "",
            "",
            [],
        )

        await eventually(lambda: len(bridge.receiver.accepted) >= 3, what="the three webhook deliveries")
        delivered = b"".join(r.body for r in bridge.receiver.received).decode()
        for detail in ("Legetime", "Hansen", "hemmelig", "Legesenteret", "Helse", "lege@example.com"):
            assert detail not in delivered
            assert detail not in str(bridge.feed)
        assert "Lønnssamtale" not in str(update)


# --- 4. the delta state expires ------------------------------------------------------------------


async def test_given_the_delta_state_expired_with_changes_meanwhile_then_the_next_sync_converges(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN four appointments synced to the host (the bridge holds a delta link)
    WHEN Graph forgets the mailbox's delta state (410 SyncStateNotFound) and meanwhile Adele
    edits one appointment and deletes another
    THEN the next sync falls back to a full round and emits exactly one update and one delete —
    the two untouched appointments are not sent again — and the host's view equals Outlook's;
    AND the sync after that is incremental again and emits nothing."""
    async with start_bridge() as bridge:
        adele = bridge.outlook.mailbox("adele")
        ids = [create_event(bridge.graph, adele, event_json(f"Visit {i}", today_at(10, i))) for i in range(4)]
        await bridge.link("room-4b", {"account": adele, "direction": "down"})
        await bridge.sync("room-4b")
        assert upserts_of(bridge.feed) == Counter(dict.fromkeys(ids, 1))

        assert bridge.graph.expire_delta_tokens(adele) >= 1
        bridge.graph.calendar.update_event(adele, ids[0], {"location": {"displayName": "Room 5C"}})
        bridge.graph.calendar.delete_event(adele, ids[1])
        synced = len(bridge.feed)
        _, run = await bridge.sync("room-4b")

        assert (run["counts"].get("delta_state_expired"), run["counts"].get("full_rounds")) == (1, 1)
        changes = bridge.feed[synced:]
        assert upserts_of(changes) == Counter({ids[0]: 1})
        assert deletes_of(changes) == [ids[1]]
        assert bridge.view.calendar(adele)[ids[0]]["location"] == "Room 5C"
        assert_host_matches_outlook(bridge, adele)

        _, quiet = await bridge.sync("room-4b")
        assert "full_rounds" not in quiet["counts"]
        assert "delta_state_expired" not in quiet["counts"]
        assert len(bridge.feed) == synced + 2


# --- 5. Graph faults while paging --------------------------------------------------------------

MANY = 130  # the worker asks Graph for 100 per page: two pages


@dataclass(frozen=True)
class PageFault:
    """How Graph fails every request for a mailbox's second delta page and after."""

    kind: FaultKind
    status: int = 503
    retry_after: int | None = None
    error: str = ""  # what the failed calendar's error says, in plain words


PAGE_FAULTS = {
    "adele": PageFault("status", 429, retry_after=1, error="throttled by Graph (HTTP 429 TooManyRequests"),
    "grady": PageFault("status", 503, error="Graph failed (HTTP 503 serviceNotAvailable"),
    "megan": PageFault(
        "drop", error="could not reach Graph or its token endpoint (connection failed or dropped)"
    ),
}


async def test_given_graph_faults_on_second_pages_then_the_run_fails_and_its_retry_converges(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a resource linked down to four mailboxes — three with 130 appointments each (two
    delta pages), one with three — a 2 s Graph retry budget, and a host that pulls the feed
    WHEN Graph serves each big calendar's first page of the first sync but keeps failing its
    second past the budget: 429 with Retry-After for Adele, 503 for Grady, a dropped
    connection for Megan
    THEN the small calendar syncs; the run fails, its error naming each failed calendar and the
    cause in plain words; each big calendar's first 100 appointments reached the host, once
    each; nothing was deleted (a partial full round reconciles nothing); and GET …/sync shows
    the three failed with their causes and the fourth ok;
    WHEN Graph recovers (but for one more 429 on Grady's second page, within the budget) and the
    queue retries the failed message
    THEN the retry (same run id) waits the 429 out and succeeds, the other 30 of each arrive,
    every appointment has arrived exactly once, and the host's views equal Outlook's."""
    async with start_bridge(webhook=False, GRAPH_RETRY_BUDGET_SECONDS="2") as bridge:
        mailboxes = {name: bridge.outlook.mailbox(name) for name in (*PAGE_FAULTS, "lynne")}
        ids: dict[str, list[str]] = {name: [] for name in mailboxes}
        for name, mailbox in mailboxes.items():
            for i in range(MANY if name in PAGE_FAULTS else 3):
                at = today_at(8 + i % 9, 1 + i // 9)
                ids[name].append(create_event(bridge.graph, mailbox, event_json(f"{name} {i}", at)))
        await bridge.link("room-4b", *({"account": m, "direction": "down"} for m in mailboxes.values()))
        for name, fault in PAGE_FAULTS.items():
            bridge.fault_second_page(
                mailboxes[name], fault.kind, status=fault.status, retry_after=fault.retry_after, count=100
            )

        reply, failed = await bridge.sync("room-4b", expect="failed")
        bridge.graph.clear_faults()
        assert failed["counts"] == {
            "calendars_failed": 3,
            "calendars_synced": 1,
            "full_rounds": 4,
            "pages": 4,
            "upserted": 3 * 100 + 3,
        }
        assert not deletes_of(bridge.feed)
        assert set(upserts_of(bridge.feed).values()) == {1}
        assert failed["error"].startswith("CalendarSyncFailed: ")
        per_calendar = dict(part.split(": ", 1) for part in failed["error"].split(": ", 1)[1].split("; "))
        assert len(per_calendar) == 3
        statuses = {s["account"]: s for s in await bridge.status("room-4b")}
        for name, fault in PAGE_FAULTS.items():
            mailbox = mailboxes[name]
            assert fault.error in per_calendar[f"{mailbox}/default"]
            assert len(bridge.view.calendar(mailbox)) == 100
            assert set(bridge.view.calendar(mailbox)) < set(ids[name])
            status = statuses[mailbox]
            assert (status["status"], status["consecutiveFailures"], status["lastSuccessAt"]) == (
                "failed",
                1,
                None,
            )
            assert fault.error in status["error"]
        # Retry-After 1 s within a 2 s budget: the second page was tried three times, then given up
        assert bridge.graph.counters(mailboxes["adele"]).faults == 1 + 3
        assert set(bridge.view.calendar(mailboxes["lynne"])) == set(ids["lynne"])
        assert (statuses[mailboxes["lynne"]]["status"], statuses[mailboxes["lynne"]]["error"]) == ("ok", None)

        faults = bridge.graph.counters(mailboxes["grady"]).faults
        bridge.fault_second_page(mailboxes["grady"], "status", status=429, retry_after=1, count=1)

        async def retried() -> dict[str, Any] | None:
            same = [r for r in await bridge.runs() if r["id"] == reply.body["runId"]]
            return next((r for r in same if r["status"] == "succeeded"), None)

        retry = await eventually(retried, what="the queue to retry the failed message, successfully")
        same = [r["status"] for r in await bridge.runs() if r["id"] == reply.body["runId"]]
        assert same == ["succeeded", "failed"]  # newest first: one failure, one retry
        await bridge.read_feed()
        assert bridge.graph.counters(mailboxes["grady"]).faults == faults + 2  # the pass-through and the 429
        assert retry["counts"].get("upserted") == 3 * (MANY - 100)
        assert retry["counts"].get("calendars_synced") == 4
        assert "deleted" not in retry["counts"]
        assert upserts_of(bridge.feed) == Counter(
            dict.fromkeys((i for group in ids.values() for i in group), 1)
        )
        assert not deletes_of(bridge.feed)
        for mailbox in mailboxes.values():
            assert_host_matches_outlook(bridge, mailbox)
        statuses = {s["account"]: s for s in await bridge.status("room-4b")}
        assert {(s["status"], s["error"], s["consecutiveFailures"]) for s in statuses.values()} == {
            ("ok", None, 0)
        }


# --- 6. several calendars, and accounts that are not synced down -----------------------------


async def test_given_several_down_calendars_then_each_syncs_and_accounts_not_down_are_skipped(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a resource linked to Adele's default calendar and her "Rom 4B" calendar (down),
    Grady's default calendar (both), Megan (direction none) and Lynne (direction up), each
    with appointments
    WHEN the timer fires
    THEN one run (the timer's batch) syncs the three down calendars, the host gets each one's appointments
    under its account and calendar name, and nothing of Megan's or Lynne's (their mailboxes
    are not even read);
    WHEN "Rom 4B" and Grady's calendar change and the host asks for a sync of the resource
    THEN the answer lists the three down calendars and skips Megan's and Lynne's with the
    reason, the run counts three calendars synced and two skipped, each change arrives under
    its calendar, and GET …/sync shows the down calendars ok and the others never synced."""
    async with start_bridge() as bridge:
        adele, grady, megan, lynne = (bridge.outlook.mailbox(n) for n in ("adele", "grady", "megan", "lynne"))
        room = bridge.graph.calendar.create_calendar(adele, "Rom 4B")
        default_ids = [
            create_event(bridge.graph, adele, event_json(f"Adele {i}", today_at(9, i))) for i in (1, 2)
        ]
        room_ids = [
            create_event(bridge.graph, adele, event_json(f"Rom {i}", today_at(12, i)), calendar_id=room.id)
            for i in (1, 2, 3)
        ]
        grady_id = create_event(bridge.graph, grady, event_json("Grady 1", today_at(9, 1)))
        for who in (megan, lynne):
            create_event(bridge.graph, who, event_json(f"{who} busy", today_at(9, 1)))
        await bridge.link(
            "room-4b",
            {"account": adele, "direction": "down", "calendars": ["default", "Rom 4B"]},
            {"account": grady, "direction": "both"},
            {"account": megan, "direction": "none"},
            {"account": lynne, "direction": "up"},
        )

        await bridge.fire_timer()
        [run] = await bridge.wait_new_runs(set(), 1)
        assert (run["status"], run["counts"].get("calendars_synced"), run["counts"]["upserted"]) == (
            "succeeded",
            3,
            6,
        )
        assert set(bridge.view.calendar(adele, "default")) == set(default_ids)
        assert set(bridge.view.calendar(adele, "Rom 4B")) == set(room_ids)
        assert set(bridge.view.calendar(grady)) == {grady_id}
        assert {e["data"]["account"] for e in bridge.feed} == {adele, grady}
        assert_host_matches_outlook(bridge, adele)
        assert_host_matches_outlook(bridge, adele, "Rom 4B", room.id)
        assert_host_matches_outlook(bridge, grady)

        bridge.graph.calendar.update_event(adele, room_ids[0], {"subject": "Rom 1 (styremøte)"})
        bridge.graph.calendar.delete_event(grady, grady_id)
        synced = len(bridge.feed)
        reply, run = await bridge.sync("room-4b")
        assert reply.body["calendars"] == [
            {"account": adele, "calendar": "default"},
            {"account": adele, "calendar": "Rom 4B"},
            {"account": grady, "calendar": "default"},
        ]
        assert reply.body["skipped"] == [
            {"account": megan, "calendar": "default", "reason": "direction is none"},
            {"account": lynne, "calendar": "default", "reason": "direction is up"},
        ]
        counts = run["counts"]
        assert (counts.get("calendars_synced"), counts.get("calendars_skipped_not_down")) == (3, 2)
        changes = {
            (e["type"], e["data"]["account"], e["data"]["calendar"], e["data"]["appointment"]["eventId"])
            for e in bridge.feed[synced:]
        }
        assert changes == {(UPSERTED, adele, "Rom 4B", room_ids[0]), (DELETED, grady, "default", grady_id)}
        assert len(bridge.feed) == synced + 2
        assert_host_matches_outlook(bridge, adele)
        assert_host_matches_outlook(bridge, adele, "Rom 4B", room.id)
        assert_host_matches_outlook(bridge, grady)
        status = await bridge.status("room-4b")
        assert [(s["account"], s["calendar"], s["direction"], s["status"]) for s in status] == [
            (adele, "default", "down", "ok"),
            (adele, "Rom 4B", "down", "ok"),
            (grady, "default", "both", "ok"),
            (megan, "default", "none", "never"),
            (lynne, "default", "up", "never"),
        ]
        assert bridge.graph.counters(megan).requests == 0
        assert bridge.graph.counters(lynne).requests == 0


# --- 7. the host's "Sync calendar" and its status ---------------------------------------------


async def test_given_a_linked_resource_when_the_host_asks_for_a_sync_then_it_gets_a_run_id_and_a_status(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a resource linked down to Adele's calendar, never synced (status "never")
    WHEN the host POSTs …/resources/room-4b/sync
    THEN it gets 202 with a runId and the calendar it covers; that run appears in GET …/runs
    as a calendar-sync run that succeeded (one full round of one page, two upserted), and
    GET …/sync shows the calendar ok with its last run, success and full sync and its window;
    AND asking to sync (or for the status of) a resource that is not linked is a 404 problem."""
    async with start_bridge() as bridge:
        adele = bridge.outlook.mailbox("adele")
        for i in (1, 2):
            create_event(bridge.graph, adele, event_json(f"Visit {i}", today_at(9, i)))
        await bridge.link("room-4b", {"account": adele, "direction": "down"})
        assert [
            (c["status"], c["lastRunAt"], c["lastSuccessAt"], c["error"])
            for c in await bridge.status("room-4b")
        ] == [("never", None, None, None)]

        started = datetime.now(UTC)
        reply, run = await bridge.sync("room-4b")
        assert reply.status == 202
        assert set(reply.body) == {"runId", "calendars", "skipped"}
        assert reply.body["calendars"] == [{"account": adele, "calendar": "default"}]
        assert reply.body["skipped"] == []
        listed = [r for r in await bridge.runs() if r["id"] == reply.body["runId"]]
        assert [(r["function"], r["status"], r["error"]) for r in listed] == [(SYNC_RUN, "succeeded", None)]
        assert run["counts"] == {"calendars_synced": 1, "full_rounds": 1, "pages": 1, "upserted": 2}

        (status,) = await bridge.status("room-4b")
        assert (status["account"], status["calendar"], status["direction"]) == (adele, "default", "down")
        assert (status["status"], status["error"], status["consecutiveFailures"]) == ("ok", None, 0)
        for moment in ("lastRunAt", "lastSuccessAt", "lastFullSyncAt"):
            assert datetime.fromisoformat(status[moment]) >= started - timedelta(seconds=1), moment
        window = (datetime.fromisoformat(status["windowStart"]), datetime.fromisoformat(status["windowEnd"]))
        assert window in (POLICY.fresh(started), POLICY.fresh(datetime.now(UTC)))

        missing = await bridge.call("POST", "/resources/no-such-room/sync")
        assert missing.is_problem(404)
        assert (await bridge.call("GET", "/resources/no-such-room/sync")).is_problem(404)


# --- 8. a calendar that cannot be read is never taken for an empty one -------------------------


async def test_given_the_calendar_permission_revoked_then_the_run_fails_in_plain_words_and_nothing_is_deleted(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN three appointments synced to the host, and Entra tokens that live 2 s (so the
    bridge's next token carries the app's permissions as they are by then)
    WHEN an admin revokes the app's Calendars.ReadWrite permission and the host syncs
    THEN Graph refuses the read (403), the run fails with an error naming the missing admin
    consent for Calendars.Read in plain words, GET …/sync shows the calendar failed with the
    same words, and the host is told nothing — above all no appointment.deleted;
    WHEN the permission is granted again
    THEN the next sync succeeds and emits nothing: the host's view was right all along."""
    lifetime = 2
    async with start_bridge() as bridge:
        previous = bridge.graph.identity.token_lifetime_seconds
        bridge.graph.identity.token_lifetime_seconds = lifetime
        try:
            adele = bridge.outlook.mailbox("adele")
            ids = [
                create_event(bridge.graph, adele, event_json(f"Visit {i}", today_at(9, i))) for i in (1, 2, 3)
            ]
            await bridge.link("room-4b", {"account": adele, "direction": "down"})
            await bridge.sync("room-4b")
            assert set(bridge.view.calendar(adele)) == set(ids)
            synced = len(bridge.feed)

            bridge.graph.revoke(bridge.outlook.tenant_id, bridge.outlook.client_id, "Calendars.ReadWrite")
            revoked_at = time.time()
            await eventually(
                lambda: time.time() > bridge.outlook.last_token_at() + lifetime + 0.5,
                what="the bridge's token with the permission to expire",
            )
            _, failed = await bridge.sync("room-4b", expect="failed")
            fresh = [t for t in bridge.graph.identity.issued if t.client_id == bridge.outlook.client_id]
            assert [t.roles for t in fresh if t.at >= revoked_at] == [("User.Read.All",)]
            assert "admin consent missing for Calendars.Read" in failed["error"], failed
            assert f"{adele}/default" in failed["error"]
            assert "HTTP 403" in failed["error"]
            assert failed["counts"] == {"calendars_failed": 1, "calendars_synced": 0}
            assert len(bridge.feed) == synced
            (status,) = await bridge.status("room-4b")
            assert (status["status"], status["consecutiveFailures"]) == ("failed", 1)
            assert "admin consent missing for Calendars.Read" in status["error"]
            assert_host_matches_outlook(bridge, adele)

            bridge.graph.grant(bridge.outlook.tenant_id, bridge.outlook.client_id, "Calendars.ReadWrite")
            await eventually(
                lambda: time.time() > bridge.outlook.last_token_at() + lifetime + 0.5,
                what="the bridge's token without the permission to expire",
            )
            _, run = await bridge.sync("room-4b")
            assert "deleted" not in run["counts"]
            assert len(bridge.feed) == synced
            assert_host_matches_outlook(bridge, adele)
            (status,) = await bridge.status("room-4b")
            assert (status["status"], status["error"], status["consecutiveFailures"]) == ("ok", None, 0)
        finally:
            bridge.graph.identity.token_lifetime_seconds = previous


# --- 9. events the bridge wrote come back as the host's own appointments ---------------------


async def test_given_events_the_bridge_created_then_they_come_back_with_their_host_appointment_ids(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a resource linked both ways, and an event the up-sync created in Adele's calendar:
    its EventTransaction row (host appointment H-1001) written first, then the event created
    by the bridge's app with that transactionId — beside an event another app created with a
    transactionId the bridge does not know, and a plain Outlook event
    WHEN the host syncs (a full round)
    THEN the bridge's event arrives as appointment.upserted with hostAppointmentId H-1001 (never
    as a new appointment without it), the others without one;
    WHEN the up-sync creates another (H-1002) and the host syncs again (an incremental round)
    THEN it too comes back with its hostAppointmentId;
    WHEN Adele edits H-1001 in Outlook, then deletes it
    THEN the update and the appointment.deleted both carry H-1001."""
    async with start_bridge() as bridge:
        adele = bridge.outlook.mailbox("adele")
        await bridge.link("room-4b", {"account": adele, "direction": "both"})

        async def bridge_creates(host_appointment_id: str, subject: str, at: datetime) -> str:
            """What the up-sync does: the transaction row first, then the create with its id."""
            tx = "m365b-" + uuid.uuid4().hex
            row = EventTransaction(
                tenant_id=bridge.tenant_id,
                account=adele,
                transaction_id=tx,
                resource_id="room-4b",
                host_appointment_id=host_appointment_id,
                version=3,
                created_at=datetime.now(UTC),
            )
            await bridge.app.tables.repo(EventTransaction).insert(row)
            body = event_json(subject, at, transactionId=tx)
            record, created = bridge.graph.calendar.create_event(adele, body, app_id=bridge.outlook.client_id)
            assert created
            return str(record.id)

        ours = await bridge_creates("H-1001", "Booked by host", today_at(10, 1))
        foreign = create_event(
            bridge.graph,
            adele,
            event_json("Other app", today_at(12, 1), transactionId="x-" + uuid.uuid4().hex),
        )
        plain = create_event(bridge.graph, adele, event_json("Outlook only", today_at(14, 1)))

        await bridge.sync("room-4b")
        assert upserts_of(bridge.feed) == Counter({ours: 1, foreign: 1, plain: 1})
        host = bridge.view.calendar(adele)
        assert [host[i]["hostAppointmentId"] for i in (ours, foreign, plain)] == ["H-1001", None, None]
        key = EventMapEntry.key(bridge.tenant_id, "room-4b", adele, "default", ours)
        entry = await bridge.app.tables.repo(EventMapEntry).get(*key)
        assert entry is not None
        assert (entry.origin, entry.host_appointment_id, entry.version) == (Origin.BRIDGE, "H-1001", 3)

        synced = len(bridge.feed)
        second = await bridge_creates("H-1002", "Also booked by host", today_at(15, 2))
        _, run = await bridge.sync("room-4b")
        assert "full_rounds" not in run["counts"]
        (came_back,) = bridge.feed[synced:]
        assert came_back["data"]["appointment"]["eventId"] == second
        assert came_back["data"]["appointment"]["hostAppointmentId"] == "H-1002"

        bridge.graph.calendar.update_event(adele, ours, {"subject": "Booked by host (edited in Outlook)"})
        await bridge.sync("room-4b")
        (edited,) = bridge.feed[synced + 1 :]
        assert edited["type"] == UPSERTED
        assert edited["data"]["appointment"]["eventId"] == ours
        assert edited["data"]["appointment"]["hostAppointmentId"] == "H-1001"

        bridge.graph.calendar.delete_event(adele, ours)
        await bridge.sync("room-4b")
        (gone,) = bridge.feed[synced + 2 :]
        assert gone["type"] == DELETED
        assert gone["data"]["appointment"] == {
            "eventId": ours,
            "seriesId": None,
            "hostAppointmentId": "H-1001",
        }
        assert all(
            e["data"]["appointment"]["hostAppointmentId"] == "H-1001"
            for e in bridge.feed
            if e["data"]["appointment"]["eventId"] == ours
        )
        assert_host_matches_outlook(bridge, adele)


# --- found while testing (and fixed): the paging state expiring inside a full round ---------


async def test_given_the_paging_state_expiring_inside_a_full_round_then_the_round_starts_over(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN 130 appointments (two delta pages), never synced
    WHEN Graph forgets the mailbox's sync state while the first sync's full round is between
    its pages (the second page's $skiptoken answers 410 SyncStateNotFound)
    THEN the worker starts the full round over, as it does when a stored delta link expired:
    the run succeeds, every appointment arrives exactly once (the first page's 100 are not
    sent again), nothing is deleted, and the host's view equals Outlook's."""
    async with start_bridge(webhook=False) as bridge:
        adele = bridge.outlook.mailbox("adele")
        ids = [
            create_event(bridge.graph, adele, event_json(f"Slot {i}", today_at(8 + i % 9, 1 + i // 9)))
            for i in range(MANY)
        ]
        await bridge.link("room-4b", {"account": adele, "direction": "down"})
        bridge.fault_second_page(adele, "latency", latency_seconds=2.0, count=1)  # page 2 waits 2 s
        reply = await bridge.request_sync("room-4b")
        await eventually(lambda: bridge.graph.counters(adele).faults == 2, what="the second page's request")
        assert bridge.graph.expire_delta_tokens(adele) >= 1  # while it waits

        run = await bridge.wait_run(reply.body["runId"])
        await bridge.read_feed()
        assert not deletes_of(bridge.feed)
        assert set(upserts_of(bridge.feed).values()) == {1}
        assert run["status"] == "succeeded", run["error"]
        assert upserts_of(bridge.feed) == Counter(dict.fromkeys(ids, 1))
        assert_host_matches_outlook(bridge, adele)
