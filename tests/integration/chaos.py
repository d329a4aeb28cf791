"""TARGETS R1: the chaos engine. Thousands of sync operations on the real local stack while about
a fifth of Microsoft Graph's answers are faults; afterwards the host and Outlook must agree, with
no appointment lost and none duplicated.

Why a separate engine (and not one more integration test): the same run is a CI-sized test
(`tests/integration/test_r1_chaos.py`), the 10,000-operation `long` test and the bench script
that writes R1's section of `bench/RESULTS.md` (`bench/r1_chaos.py`); all three call `run_chaos`.

The stack is the real one: Azurite, the Graph emulator over HTTPS, and the local Functions host
running the real `function_app` — its HTTP API, the `calendar-push` and `calendar-sync` queue
workers with their retries and poison queues, the fan-out timer — whose gateway is msgraph-sdk's
request adapter with azure-identity. One tenant (its own app registration, client secret),
`mailboxes` people, and one resource per person linked `both` to their mailbox; resource 0
also links person 1's calendar `down`, so one calendar is seen by two resources.

What happens, all of it chosen by one `random.Random(seed)`:

- **The plan.** Before anything runs, the seed's generator draws the whole operation list
  (`plan`, weights in `OPERATION_WEIGHTS`): people creating, editing and deleting appointments
  in Outlook (through the emulator, as a person would; some private, some daily or weekly
  series whose single occurrences are edited or cancelled), people editing or deleting events
  the bridge wrote, the host creating, updating and cancelling appointments
  (`POST …/appointments`: one change, a batch of new ones, or the next versions of one in
  parallel requests, in any order) and re-sending versions it sent before, "Sync calendar"
  (`POST …/resources/{r}/sync`) and the fan-out timer. Operations run `concurrency` at a time,
  in plan order per target (one appointment, one Outlook event), so what reaches the bridge
  for one appointment is ordered as a host would order it (but for the parallel versions),
  while different appointments race each other.
- **The faults.** The same generator seeds the fault stream, so the faults come in the same
  order whatever the timing (which request meets each fault is the stack's timing, and is not
  replayable on a shared machine). A pump keeps the faults served at `fault_rate` of the Graph
  requests the emulator counted, each of a random kind: 429 with Retry-After, 503, 504, a
  timeout (an answer slower than `GRAPH_TIMEOUT_SECONDS`), a dropped connection, a connection
  dropped after the request was carried out (the lost answer that makes a client repeat a
  create), and sync-state expiry — a 410 on a mailbox's next delta request, or the emulator
  forgetting every delta state of a mailbox (`expire_delta_tokens`: its next incremental round
  gets 410 SyncStateNotFound).
- **Then quiet.** Faults off, the queues drained (every retry run), one more "Sync calendar"
  per resource until a round brings nothing new.
- **The check** (`check`). The host's view is what a host that pulls the feed knows: the feed
  folded in order — `appointment.upserted`/`appointment.deleted` per event, plus its own
  appointments where `appointment.pushed` put them (the bridge does not echo its own writes, so
  that is the only way a host knows where its appointment is) and Outlook's state where a
  conflict went Outlook's way; it keeps its own appointments under its own ids, so one it
  cancelled (`appointment.pushed` deleted) leaves its view wherever the feed showed it. It must
  equal Outlook's calendarView over the sync window for every linked calendar: same events,
  times and (unless private) subjects. For every host appointment, Outlook must hold its latest
  version exactly once (unless a person edited or deleted it after the host's last change: then
  the conflict rule decides, and the views must still agree); a cancelled one must be gone; no
  event may carry a transactionId the host's appointments were not sent with. Lost = an
  appointment missing on one side, or a host appointment whose latest version never reached
  Outlook; duplicated = a second event for one host appointment (or one no appointment owns), or
  one host appointment twice in a view. Zombies (cancelled, still in Outlook), phantoms (at the
  host, gone from Outlook) and mismatches (on both sides, not alike) fail the run too. A problem
  names what the host and the people did to the appointment and what the feed told the host
  about it.

Replay: the seed is printed and in every assertion message; `CHAOS_SEED=<n>` runs it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
NEVER = "0 0 0 1 1 *"  # timers fire only when the engine fires them
PERMISSIONS = ("Calendars.ReadWrite", "User.Read.All")
DAYS_BACK, DAYS_AHEAD, SLACK = 7, 60, 7
UPSERTED = "appointment.upserted"
DELETED = "appointment.deleted"
PUSHED = "appointment.pushed"
PLACED = ("created", "updated", "recreated", "moved")  # pushed results that put the host's version
TERMINAL = ("succeeded", "failed")

log = logging.getLogger("tests.chaos")

# --- configuration --------------------------------------------------------------------------

# Operation kinds and how often the plan draws each (weights, in percent).
OPERATION_WEIGHTS: Mapping[str, int] = {
    "outlook_create": 13,  # a person makes an appointment (one in ten private)
    "outlook_series": 2,  # a person makes a daily or weekly series
    "outlook_update": 12,  # a person edits one of theirs (subject, time, place; a series or an occurrence)
    "outlook_delete": 6,  # a person deletes one of theirs (a series, or one occurrence of it)
    "outlook_edit_pushed": 5,  # a person edits an event the bridge wrote for the host
    "outlook_delete_pushed": 2,  # a person deletes one
    "host_create": 14,  # POST …/appointments, a new appointment
    "host_batch": 3,  # POST …/appointments, 2-5 new appointments in one request
    "host_update": 13,  # POST …/appointments, its next version
    "host_burst": 3,  # the next 2-3 versions of one appointment in parallel POSTs, in any order
    "host_delete": 6,  # POST …/appointments, op delete
    "host_replay": 3,  # POST …/appointments, a version sent before (must change nothing)
    "sync": 15,  # POST …/resources/{r}/sync
    "timer": 3,  # the calendar fan-out timer, through the host's admin API
}
# Fault kinds, as a deck of 20 the pump deals from, reshuffled when it runs out: every kind
# comes up in every 20 faults, in the same shares however short the run.
FAULT_DECK: Mapping[str, int] = {
    "429": 5,
    "503": 3,
    "504": 2,
    "timeout": 2,
    "drop": 3,
    "drop_after": 2,
    "410": 1,  # a 410 on a mailbox's next delta request
    "410_expiry": 2,  # the emulator forgets every delta state of a mailbox
}
_DELTA_PATH = r"/calendarView/delta"
LONG_RETRY_AFTER = 25  # seconds: more than ChaosConfig.retry_budget_seconds
# operations on one of the host's live appointments (a create when there is none)
_ON_LIVE_APPOINTMENTS = (
    "outlook_edit_pushed",
    "outlook_delete_pushed",
    "host_update",
    "host_burst",
    "host_delete",
    "host_replay",
)


@dataclass(frozen=True)
class ChaosConfig:
    """One chaos run. `seed` decides every choice; the rest sizes the run."""

    operations: int
    seed: int
    fault_rate: float = 0.20
    mailboxes: int = 4
    concurrency: int = 8
    graph_timeout_seconds: float = 3.0  # GRAPH_TIMEOUT_SECONDS: a "timeout" fault answers 1 s later
    retry_budget_seconds: float = 20.0  # GRAPH_RETRY_BUDGET_SECONDS (below LONG_RETRY_AFTER)
    drain_timeout_seconds: float = 300.0  # faults off → every queue empty
    progress_every: int = 0  # a progress line every n operations (0: never)


def seed_from_env(default: int | None = None) -> int:
    """`CHAOS_SEED` when set (a replay), else `default`, else a fresh random seed."""
    value = os.environ.get("CHAOS_SEED", "").strip()
    if value:
        return int(value)
    if default is not None:
        return default
    return random.SystemRandom().randrange(2**32)


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """What an appointment says, as far as the check compares it."""

    subject: str
    start: datetime  # aware UTC
    end: datetime
    location: str = ""
    private: bool = False


@dataclass(frozen=True)
class HostChange:
    """One change the host sends: a version of an appointment, with its content (None: delete)."""

    host_id: str
    version: int
    content: Content | None


@dataclass(frozen=True)
class Op:
    """One operation of the plan. `keys` order operations on the same targets (an appointment,
    a person's event); `handle` names a person's Outlook event by the plan's own number (Outlook
    makes the id when it runs); `draw` picks, when it runs, among what exists then (an
    occurrence of a series, a version sent before)."""

    index: int
    kind: str
    keys: tuple[str, ...] = ()
    mailbox: int = -1
    handle: int = -1
    host_id: str = ""
    content: Content | None = None
    patch: Mapping[str, Any] | None = None
    draw: int = -1
    changes: tuple[HostChange, ...] = ()  # what the host sends, in the order it starts sending
    occurrences: int = 0  # a new series: how many


def _moment(rng: random.Random, today: datetime) -> tuple[datetime, datetime]:
    start = today + timedelta(
        days=rng.randint(1, 30), hours=rng.randint(7, 17), minutes=rng.choice((0, 15, 30, 45))
    )
    return start, start + timedelta(minutes=rng.choice((30, 45, 60, 90)))


def _content(rng: random.Random, today: datetime, label: str, *, private: bool = False) -> Content:
    start, end = _moment(rng, today)
    return Content(f"{label} #{rng.randrange(10**6)}", start, end, f"Room {rng.randint(1, 9)}", private)


def _when(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _patch(rng: random.Random, today: datetime, n: int) -> dict[str, Any]:
    """What a person changes in Outlook: the subject, the time, the place, or subject and time."""
    what = rng.choice(("subject", "time", "location", "subject+time"))
    patch: dict[str, Any] = {}
    if "subject" in what:
        patch["subject"] = f"Edited in Outlook #{n}-{rng.randrange(10**6)}"
    if "time" in what:
        start, end = _moment(rng, today)
        patch |= {"start": _when(start), "end": _when(end)}
    if what == "location":
        patch["location"] = {"displayName": f"Room {rng.randint(10, 99)}"}
    return patch


def plan(rng: random.Random, operations: int, mailboxes: int, today: datetime) -> list[Op]:
    """The whole run's operations, drawn from `rng` alone (so a seed names one plan). A model of
    what exists — each person's own events, the host's live appointments and their versions —
    keeps every operation meaningful; one that has nothing to act on becomes a create."""
    kinds = list(OPERATION_WEIGHTS)
    weights = list(OPERATION_WEIGHTS.values())
    people: list[list[int]] = [[] for _ in range(mailboxes)]  # live handles per mailbox
    series: set[int] = set()  # handles that are recurring series
    live: list[dict[str, int]] = [{} for _ in range(mailboxes)]  # host id → version, per resource
    handles = 0
    ops: list[Op] = []

    def content(label: str) -> Content:
        return _content(rng, today, label)

    for index in range(operations):
        kind = rng.choices(kinds, weights)[0]
        m = rng.randrange(mailboxes)
        if kind in ("outlook_update", "outlook_delete") and not people[m]:
            kind = "outlook_create"
        if kind in _ON_LIVE_APPOINTMENTS and not live[m]:
            kind = "host_create"
        if kind in ("outlook_create", "outlook_series"):
            handle, handles = handles, handles + 1
            people[m].append(handle)
            private = rng.random() < 0.1
            made = _content(rng, today, f"Person {m} meeting {handle}", private=private)
            count = 0
            if kind == "outlook_series":
                series.add(handle)
                count = rng.randint(2, 4)
            ops.append(Op(index, kind, (f"p{handle}",), m, handle, content=made, occurrences=count))
        elif kind == "outlook_update":
            handle = rng.choice(people[m])
            whole = handle not in series or rng.random() < 0.3
            patch = _patch(rng, today, index)
            if handle in series and whole:  # a whole series: what it says, not when
                patch = {"subject": f"Series edited #{index}"}
            draw = -1 if whole else rng.randrange(10**6)
            ops.append(Op(index, kind, (f"p{handle}",), m, handle, patch=patch, draw=draw))
        elif kind == "outlook_delete":
            at = rng.randrange(len(people[m]))
            handle = people[m][at]
            whole = handle not in series or rng.random() < 0.3
            if whole:
                people[m].pop(at)
            draw = -1 if whole else rng.randrange(10**6)
            ops.append(Op(index, kind, (f"p{handle}",), m, handle, draw=draw))
        elif kind in ("outlook_edit_pushed", "outlook_delete_pushed"):
            host_id = rng.choice(sorted(live[m]))
            edit = _patch(rng, today, index) if kind == "outlook_edit_pushed" else None
            ops.append(Op(index, kind, (f"h{m}/{host_id}",), m, host_id=host_id, patch=edit))
        elif kind in ("host_create", "host_batch"):
            ids = (
                [f"SO-{index:05d}"]
                if kind == "host_create"
                else [f"SO-{index:05d}-{j}" for j in range(rng.randint(2, 5))]
            )
            for host_id in ids:
                live[m][host_id] = 1
            made_all = tuple(HostChange(h, 1, content(f"Service {h} v1")) for h in ids)
            # new ids: no earlier operation holds their keys, so a batch takes them all at once
            ops.append(Op(index, kind, tuple(f"h{m}/{h}" for h in ids), m, changes=made_all))
        elif kind == "host_update":
            host_id = rng.choice(sorted(live[m]))
            version = live[m][host_id] = live[m][host_id] + rng.choice((1, 1, 1, 2, 5))
            change = HostChange(host_id, version, content(f"Service {host_id} v{version}"))
            ops.append(Op(index, kind, (f"h{m}/{host_id}",), m, host_id=host_id, changes=(change,)))
        elif kind == "host_burst":
            # a host with several workers: the next 2-3 versions sent at once, in any order, the
            # last of them sometimes a cancellation
            host_id = rng.choice(sorted(live[m]))
            burst: list[HostChange] = []
            for _ in range(rng.randint(2, 3)):
                version = live[m][host_id] = live[m][host_id] + 1
                burst.append(HostChange(host_id, version, content(f"Service {host_id} v{version}")))
            if rng.random() < 0.2:
                burst[-1] = replace(burst[-1], content=None)
                live[m].pop(host_id)
            rng.shuffle(burst)
            ops.append(Op(index, kind, (f"h{m}/{host_id}",), m, host_id=host_id, changes=tuple(burst)))
        elif kind == "host_delete":
            host_id = rng.choice(sorted(live[m]))
            change = HostChange(host_id, live[m].pop(host_id) + 1, None)
            ops.append(Op(index, kind, (f"h{m}/{host_id}",), m, host_id=host_id, changes=(change,)))
        elif kind == "host_replay":
            # which of the versions sent so far is re-sent is drawn now, picked when it runs
            host_id = rng.choice(sorted(live[m]))
            ops.append(Op(index, kind, (f"h{m}/{host_id}",), m, host_id=host_id, draw=rng.randrange(10**6)))
        elif kind == "sync":
            ops.append(Op(index, kind, mailbox=m))
        else:
            ops.append(Op(index, kind))
    return ops


# --- the stack ---------------------------------------------------------------------------------


def resource_id(m: int) -> str:
    return f"res-{m}"


@dataclass(frozen=True)
class Link:
    """One down-linked calendar as the host sees it: (resource, account)."""

    resource: str
    account: str


@dataclass
class Stack:
    """The running stack and the tenant the run uses."""

    graph: Any  # devtools.graph_emulator.GraphEmulator
    host: Any  # devtools.funchost.FunctionHost
    http: aiohttp.ClientSession
    connection_string: str
    tenant_id: str
    api_key: str
    client_id: str
    mailboxes: list[str]
    links: list[Link]  # every down-linked calendar

    async def call(
        self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """A tenant API call: (status, JSON body or None)."""
        headers = {"x-functions-key": self.host.function_key, "Authorization": f"Bearer {self.api_key}"}
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        url = f"{self.host.base_url}/api/v1/tenants/{self.tenant_id}{path}"
        async with self.http.request(method, url, data=data, headers=headers, params=params) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None

    async def fire_timer(self, function: str = "calendar_sync_fanout") -> int:
        async with self.http.post(
            f"{self.host.base_url}/admin/functions/{function}",
            json={"input": ""},
            headers={"x-functions-key": self.host.master_key},
        ) as resp:
            return resp.status


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """The app reads its settings from the process environment: set them for the run, then put
    back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@asynccontextmanager
async def open_stack(config: ChaosConfig, connection_string: str, work: Path) -> AsyncIterator[Stack]:
    """The Graph emulator (in this process), the local Functions host with the real app on
    Azurite at `connection_string`, a tenant onboarded through the operator API, and its
    resources linked through the tenant API."""
    import function_app
    from core import bootstrap
    from core.operator_auth import new_operator_key
    from devtools.funchost import FunctionHost
    from devtools.graph_emulator import GraphEmulator

    operator_key, digest = new_operator_key()
    async with GraphEmulator(directory=work / "graph", latency=0.0) as graph:
        env = {
            "AzureWebJobsStorage": connection_string,
            "BRIDGE_TABLE_PREFIX": "r1" + uuid.uuid4().hex[:10],
            "LOCAL_SECRETS_DIR": str(work / "secrets"),
            "HOUSEKEEPING_SCHEDULE": NEVER,
            "MAIL_IMPORT_SCHEDULE": NEVER,
            "GRAPH_SUBSCRIPTION_SCHEDULE": NEVER,
            "CALENDAR_SYNC_SCHEDULE": NEVER,
            "BRIDGE_OPERATOR_KEY_SHA256": digest,
            "GRAPH_BASE_URL": graph.graph_url,
            "GRAPH_AUTHORITY_HOST": graph.authority,
            "GRAPH_CA_BUNDLE": str(graph.ca_cert),
            "GRAPH_TIMEOUT_SECONDS": str(config.graph_timeout_seconds),
            "GRAPH_RETRY_BUDGET_SECONDS": str(config.retry_budget_seconds),
            "CALENDAR_SYNC_DAYS_BACK": str(DAYS_BACK),
            "CALENDAR_SYNC_DAYS_AHEAD": str(DAYS_AHEAD),
            "CALENDAR_SYNC_WINDOW_SLACK_DAYS": str(SLACK),
        }
        name = "r1" + uuid.uuid4().hex[:10]
        tenant = graph.add_tenant(name=name, domain=f"{name}.onmicrosoft.com")
        secret = "s-" + uuid.uuid4().hex
        app = graph.add_app(tenant.id, secrets=[secret], application_permissions=PERMISSIONS)
        mailboxes = [f"person{m}@{tenant.domain}".lower() for m in range(config.mailboxes)]
        for upn in mailboxes:
            graph.add_user(tenant.id, upn)
        with _environment(env):
            await bootstrap.reset()
            try:
                async with (
                    FunctionHost(function_app.app, host_json=ROOT / "host.json", port=0, env=env) as host,
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http,
                ):
                    tenant_id = "chaos-" + uuid.uuid4().hex[:6]
                    body = {
                        "id": tenant_id,
                        "displayName": "Chaos AS",
                        "graph": {
                            "tenantId": tenant.id,
                            "clientId": app.client_id,
                            "credentialMode": "client_secret",
                            "clientSecret": secret,
                        },
                        "host": {},
                        "defaults": {"language": "en", "timeZone": "Europe/Oslo"},
                    }
                    async with http.post(
                        f"{host.base_url}/api/v1/operator/tenants",
                        json=body,
                        headers={
                            "x-functions-key": host.function_key,
                            "Authorization": f"Bearer {operator_key}",
                        },
                    ) as resp:
                        created = await resp.json()
                        if resp.status != 201:
                            raise RuntimeError(f"tenant not created: HTTP {resp.status} {created}")
                    stack = Stack(
                        graph,
                        host,
                        http,
                        connection_string,
                        tenant_id,
                        created["apiKey"],
                        app.client_id,
                        mailboxes,
                        [],
                    )
                    for m, upn in enumerate(mailboxes):
                        accounts = [{"account": upn, "direction": "both"}]
                        stack.links.append(Link(resource_id(m), upn))
                        if m == 0 and len(mailboxes) > 1:  # one calendar seen by two resources
                            accounts.append({"account": mailboxes[1], "direction": "down"})
                            stack.links.append(Link(resource_id(0), mailboxes[1]))
                        status, reply = await stack.call(
                            "PUT",
                            f"/resources/{resource_id(m)}",
                            {"displayName": f"Resource {m}", "accounts": accounts},
                        )
                        if status != 201:
                            raise RuntimeError(f"resource not linked: HTTP {status} {reply}")
                    yield stack
            finally:
                graph.clear_faults()
                await bootstrap.reset()


# --- faults ------------------------------------------------------------------------------------


class FaultPump:
    """Keeps the faults served at `rate` of the Graph requests the emulator counted.

    Each injected fault is a one-shot (`count=1`) fault with no filter (it meets the next Graph
    request, whoever sends it), except the 410s: a status 410 on one mailbox's next delta
    request, or that mailbox's delta states forgotten. A fault counts as injected once served
    (an expiry at once); what is still pending when the faults go off is not counted."""

    BURST = 2  # faults added per tick at most: a burst of consecutive failures stays short

    def __init__(
        self, graph: Any, rng: random.Random, rate: float, mailboxes: Sequence[str], timeout: float
    ) -> None:
        self.graph = graph
        self.rng = rng
        self.rate = rate
        self.mailboxes = list(mailboxes)
        self.timeout = timeout
        self.served: Counter[str] = Counter()
        self.pending: dict[int, str] = {}  # fault id → kind
        self._deck: list[str] = []
        self.requests_at_start = self._requests()
        self._task: asyncio.Task[None] | None = None

    def _requests(self) -> int:
        return sum(c.requests for c in self.graph.all_counters().values())

    @property
    def requests(self) -> int:
        """Graph requests (per-mailbox, as the emulator counts them) since the pump started."""
        return self._requests() - self.requests_at_start

    def _account(self) -> None:
        """Faults no longer pending were served."""
        still = {f.id for f in self.graph.ctx.faults.pending()}
        for fault_id, kind in list(self.pending.items()):
            if fault_id not in still:
                self.served[kind] += 1
                del self.pending[fault_id]

    def tick(self) -> None:
        self._account()
        wanted = int(self.rate * self.requests) - sum(self.served.values()) - len(self.pending)
        for _ in range(min(wanted, self.BURST)):
            self._inject()

    def _deal(self) -> str:
        if not self._deck:
            self._deck = [kind for kind, n in FAULT_DECK.items() for _ in range(n)]
            self.rng.shuffle(self._deck)
        return self._deck.pop()

    def _inject(self) -> None:
        kind = self._deal()
        mailbox = self.rng.choice(self.mailboxes)
        add = self.graph.add_fault
        if kind == "410_expiry":
            self.graph.expire_delta_tokens(mailbox)
            self.served[kind] += 1
            return
        if kind == "410":
            fault = add("status", status=410, mailbox=mailbox, path=_DELTA_PATH)
        elif kind == "429":
            # now and then longer than the retry budget: the bridge gives up waiting and
            # re-queues the work for when Graph said to come back
            fault = add(
                "status", status=429, retry_after=self.rng.choice((0, 1, 1, 1, 2, 2, LONG_RETRY_AFTER))
            )
        elif kind in ("503", "504"):
            fault = add("status", status=int(kind), retry_after=self.rng.choice((None, None, 1)))
        elif kind == "timeout":
            fault = add("latency", latency_seconds=self.timeout + 1.0)
        else:
            fault = add(kind)
        self.pending[fault.id] = kind

    async def _pump(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self._task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        """Faults off: count what was served, drop what was not."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._account()
        self.graph.clear_faults()
        self.pending.clear()


# --- running the plan --------------------------------------------------------------------------


@dataclass
class HostSide:
    """What the host sent, per appointment: the content of each version, and its last word."""

    sent: dict[tuple[str, str], dict[int, Content]] = field(default_factory=dict)
    # (resource, host id) → (upsert|delete, newest version, its modifiedAt)
    last: dict[tuple[str, str], tuple[str, int, datetime]] = field(default_factory=dict)
    # (resource, host id) → (edit|delete, when) of the last time a person touched its event
    outlook_last: dict[tuple[str, str], tuple[str, datetime]] = field(default_factory=dict)
    # transactionId → (resource, host id): the bridge creates an event with the transactionId of
    # a version the host sent with content
    owners: dict[str, tuple[str, str]] = field(default_factory=dict)
    # what was done to each, in order, in a few words (for the problems the check names)
    done: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def learn(self, item: tuple[str, str], change: HostChange, modified: datetime, answer: str) -> None:
        from core.graph.model import transaction_id

        what = "delete" if change.content is None else "upsert"
        self.done.setdefault(item, []).append(
            f"host sent v{change.version} {what} at {modified.time()} ({answer})"
        )
        if change.content is not None:
            self.sent.setdefault(item, {})[change.version] = change.content
            self.owners[transaction_id(change.host_id, change.version)] = item
        last = self.last.get(item)
        if last is None or change.version > last[1]:
            self.last[item] = ("delete" if change.content is None else "upsert", change.version, modified)


@dataclass
class Execution:
    ops_done: Counter[str] = field(default_factory=Counter)
    noops: Counter[str] = field(default_factory=Counter)  # operations that found nothing to act on
    answers: Counter[str] = field(default_factory=Counter)  # push answers by status
    anomalies: list[str] = field(default_factory=list)  # answers the API should not have given


def _host_change(resource: str, change: HostChange, modified: datetime) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hostAppointmentId": change.host_id,
        "resourceId": resource,
        "version": change.version,
        "modifiedAt": modified.isoformat().replace("+00:00", "Z"),
    }
    content = change.content
    if content is None:
        return body | {"op": "delete"}
    return body | {
        "subject": content.subject,
        "body": f"Work order {change.host_id}",
        "location": content.location,
        "start": content.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": content.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timeZone": "Europe/Oslo",
        "categories": ["ERP"],
    }


def _series_body(c: Content, occurrences: int, rng_pick: int) -> dict[str, Any]:
    """A daily or weekly series of `occurrences`, starting when `c` does."""
    daily = rng_pick % 2 == 0
    pattern: dict[str, Any] = {"type": "daily", "interval": 1}
    if not daily:
        pattern = {"type": "weekly", "interval": 1, "daysOfWeek": [c.start.strftime("%A").lower()]}
    return {
        "pattern": pattern,
        "range": {
            "type": "numbered",
            "startDate": c.start.date().isoformat(),
            "numberOfOccurrences": occurrences,
        },
    }


class Runner:
    """Runs a plan on a stack: `concurrency` operations at a time, in plan order per key."""

    def __init__(self, stack: Stack, config: ChaosConfig, say: Callable[[str], None]) -> None:
        self.stack = stack
        self.config = config
        self.say = say
        self.host = HostSide()
        self.execution = Execution()
        self.person_ids: dict[int, str] = {}  # plan handle → Outlook event id
        self._locks: dict[str, asyncio.Lock] = {}

    def _pushed_event(self, m: int, resource: str, host_id: str) -> Any:
        """The Outlook event the bridge wrote for (resource, host id) in mailbox m, if any (not a
        placeholder the bridge makes only to delete it)."""
        owners = self.host.owners
        records = self.stack.graph.calendar.mailbox(self.stack.mailboxes[m]).events.values()
        return next(
            (
                r
                for r in records
                if r.transaction_id
                and owners.get(r.transaction_id) == (resource, host_id)
                and r.fields.get("subject")
            ),
            None,
        )

    async def run(self, ops: Sequence[Op]) -> None:
        queue: asyncio.Queue[Op] = asyncio.Queue()
        for op in ops:
            queue.put_nowait(op)
        done = 0
        started = time.monotonic()

        async def worker() -> None:
            nonlocal done
            while True:
                try:
                    op = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                # Taken in plan order; a free lock is taken without yielding and a held one is
                # waited for first come, first served: per key, operations run in plan order.
                # An operation with several keys has only new ones (see `plan`): all free.
                locks = [self._locks.setdefault(key, asyncio.Lock()) for key in op.keys]
                for lock in locks:
                    await lock.acquire()
                try:
                    await self.one(op)
                finally:
                    for lock in locks:
                        lock.release()
                done += 1
                every = self.config.progress_every
                if every and done % every == 0:
                    self.say(f"chaos: {done}/{len(ops)} operations in {time.monotonic() - started:.0f} s")

        await asyncio.gather(*(worker() for _ in range(self.config.concurrency)))

    async def one(self, op: Op) -> None:
        stack = self.stack
        self.execution.ops_done[op.kind] += 1
        if op.kind.startswith("outlook_"):
            if op.kind in ("outlook_edit_pushed", "outlook_delete_pushed"):
                await self._outlook_on_pushed(op)
            else:
                self._outlook(op)
        elif op.kind.startswith("host_"):
            await self._push(op)
        elif op.kind == "sync":
            status, reply = await stack.call("POST", f"/resources/{resource_id(op.mailbox)}/sync")
            if status != 202:
                self.execution.anomalies.append(f"op {op.index} sync: HTTP {status} {reply}")
        else:
            status = await stack.fire_timer()
            if status != 202:
                self.execution.anomalies.append(f"op {op.index} timer: HTTP {status}")

    def _outlook(self, op: Op) -> None:
        """A person at work in their own calendar."""
        calendar = self.stack.graph.calendar
        mailbox = self.stack.mailboxes[op.mailbox]
        if op.kind in ("outlook_create", "outlook_series"):
            assert op.content is not None
            c = op.content
            body: dict[str, Any] = {
                "subject": c.subject,
                "body": {"contentType": "text", "content": f"Agenda: {c.subject}"},
                "location": {"displayName": c.location},
                "start": _when(c.start),
                "end": _when(c.end),
                "showAs": "busy",
            }
            if c.private:
                body["sensitivity"] = "private"
            if op.occurrences:
                body["recurrence"] = _series_body(c, op.occurrences, op.index)
            record, _ = calendar.create_event(mailbox, body)
            self.person_ids[op.handle] = record.id
            return
        event_id = self.person_ids[op.handle]
        if op.draw >= 0:  # one occurrence of a series
            window = (
                datetime.now(UTC) - timedelta(days=DAYS_BACK),
                datetime.now(UTC) + timedelta(days=DAYS_AHEAD),
            )
            instances = sorted(
                (i for i in calendar.view(mailbox, *window) if i.record.id == event_id),
                key=lambda i: (i.original_start or i.start, i.id),
            )
            if not instances:
                self.execution.noops[op.kind] += 1  # every occurrence was cancelled already
                return
            event_id = instances[op.draw % len(instances)].id
        if op.kind == "outlook_update":
            assert op.patch is not None
            calendar.update_event(mailbox, event_id, dict(op.patch))
        else:
            calendar.delete_event(mailbox, event_id)
            if op.draw < 0:
                self.person_ids.pop(op.handle)

    async def _outlook_on_pushed(self, op: Op) -> None:
        """A person edits or deletes the event the bridge wrote for a host appointment — if it is
        in Outlook yet (its push may still be on its way: then there is nothing to touch)."""
        resource = resource_id(op.mailbox)
        record = self._pushed_event(op.mailbox, resource, op.host_id)
        if record is None:
            self.execution.noops[op.kind] += 1
            return
        mailbox = self.stack.mailboxes[op.mailbox]
        calendar = self.stack.graph.calendar
        if op.kind == "outlook_edit_pushed":
            assert op.patch is not None
            calendar.update_event(mailbox, record.id, dict(op.patch))
            when = calendar.find(mailbox, record.id).record.modified
            self.host.outlook_last[(resource, op.host_id)] = ("edit", when)
        else:
            calendar.delete_event(mailbox, record.id)
            when = datetime.now(UTC)
            self.host.outlook_last[(resource, op.host_id)] = ("delete", when)
        self.host.done.setdefault((resource, op.host_id), []).append(
            f"a person {op.kind.split('_')[1]}d {record.id} at {when.time()}"
        )

    async def _push(self, op: Op) -> None:
        """The host sends its changes: one, a batch in one request, or a burst of parallel
        requests; a replay re-sends a version it sent before, which must change nothing."""
        resource = resource_id(op.mailbox)
        if op.kind == "host_replay":
            item = (resource, op.host_id)
            versions = self.host.sent.get(item, {})
            if not versions:
                self.execution.noops[op.kind] += 1
                return
            sent = sorted(versions)
            version = sent[op.draw % len(sent)]
            newest = self.host.last[item][1]
            answer = await self._post(
                op, resource, [HostChange(op.host_id, version, versions[version])], learn=False
            )
            if answer is not None and version < newest and answer[0]["status"] != "ignored":
                self.execution.anomalies.append(
                    f"op {op.index}: version {version} of {op.host_id} re-sent after version {newest} "
                    f"was answered {answer[0]['status']!r}, not 'ignored'"
                )
            return
        # the host's modification times: its versions were made in version order
        now = datetime.now(UTC)
        modified = {
            c.version: now + timedelta(microseconds=n)
            for n, c in enumerate(sorted(op.changes, key=lambda c: c.version))
        }
        if op.kind == "host_burst":
            await asyncio.gather(*(self._post(op, resource, [change], modified) for change in op.changes))
        else:
            await self._post(op, resource, list(op.changes), modified)

    async def _post(
        self,
        op: Op,
        resource: str,
        changes: list[HostChange],
        modified: Mapping[int, datetime] | None = None,
        *,
        learn: bool = True,
    ) -> list[dict[str, Any]] | None:
        if modified is None:
            now = datetime.now(UTC)
            modified = {c.version: now for c in changes}
        bodies = [_host_change(resource, c, modified[c.version]) for c in changes]
        status, reply = await self.stack.call(
            "POST", "/appointments", bodies[0] if len(bodies) == 1 else {"appointments": bodies}
        )
        if status != 202 or reply.get("rejected"):
            self.execution.anomalies.append(f"op {op.index} {op.kind}: HTTP {status} {reply}")
            return None
        answers: list[dict[str, Any]] = reply["appointments"]
        for change, answer in zip(changes, answers, strict=True):
            self.execution.answers[answer["status"]] += 1
            if learn:
                self.host.learn(
                    (resource, change.host_id), change, modified[change.version], answer["status"]
                )
        return answers


# --- quiet, then the check -----------------------------------------------------------------------


async def queue_depths(connection_string: str, names: Sequence[str]) -> dict[str, int]:
    """Messages in each queue, visible or not (0 for a queue that does not exist)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue.aio import QueueServiceClient

    depths: dict[str, int] = {}
    async with QueueServiceClient.from_connection_string(connection_string) as service:
        for name in names:
            try:
                props = await service.get_queue_client(name).get_queue_properties()
                depths[name] = int(props.approximate_message_count or 0)
            except ResourceNotFoundError:
                depths[name] = 0
    return depths


WORK_QUEUES = ("calendar-push", "calendar-sync")
POISON_QUEUES = ("calendar-push-poison", "calendar-sync-poison")


async def drain(stack: Stack, within: float) -> float:
    """Until the push and sync queues hold nothing (every retry ran) twice in a row; seconds."""
    started = time.monotonic()
    quiet = 0
    while quiet < 2:
        if time.monotonic() - started > within:
            depths = await queue_depths(stack.connection_string, WORK_QUEUES)
            raise AssertionError(f"the queues did not drain within {within:.0f} s: {depths}")
        depths = await queue_depths(stack.connection_string, WORK_QUEUES)
        quiet = quiet + 1 if not any(depths.values()) else 0
        await asyncio.sleep(1.0)
    return time.monotonic() - started


@dataclass
class Feed:
    """The tenant's feed as the host pulled it."""

    events: list[dict[str, Any]] = field(default_factory=list)
    cursor: str = "0"

    async def read(self, stack: Stack) -> list[dict[str, Any]]:
        new: list[dict[str, Any]] = []
        while True:
            status, reply = await stack.call("GET", "/events", params={"after": self.cursor, "limit": "1000"})
            if status != 200:
                raise AssertionError(f"GET …/events: HTTP {status} {reply}")
            page = reply["events"]
            new += page
            self.cursor = reply["next"]
            if not page:
                break
        self.events += new
        return new


async def final_syncs(stack: Stack, feed: Feed, rounds: int = 4) -> list[str]:
    """ "Sync calendar" for every resource, one after another, until a round brings the host
    nothing new; failures of those syncs (which run without faults) are returned."""
    failures: list[str] = []
    resources = sorted({link.resource for link in stack.links})
    for _ in range(rounds):
        await feed.read(stack)
        before = len(feed.events)
        for resource in resources:
            status, reply = await stack.call("POST", f"/resources/{resource}/sync")
            if status != 202:
                failures.append(f"final sync of {resource}: HTTP {status} {reply}")
                continue
            run = await _wait_run(stack, reply["runId"])
            if run["status"] != "succeeded":
                failures.append(f"final sync of {resource} {run['status']}: {run.get('error')}")
        if not await feed.read(stack) and len(feed.events) == before:
            break
    return failures


async def _wait_run(stack: Stack, run_id: str, within: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        status, reply = await stack.call("GET", "/runs", params={"runId": run_id})
        if status == 200:
            ended = [r for r in reply["runs"] if r["status"] in TERMINAL]
            if ended:
                return dict(ended[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not end within {within:.0f} s")
        await asyncio.sleep(0.2)


# The host's view of one calendar: event id → (subject, start UTC, end UTC, host appointment id, private)
HostAppt = tuple[str, str, str, str | None, bool]


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_payload(appointment: Mapping[str, Any]) -> HostAppt:
    return (
        str(appointment["subject"]),
        str(appointment["start"]["utc"]),
        str(appointment["end"]["utc"]),
        appointment.get("hostAppointmentId"),
        appointment.get("sensitivity") in ("private", "confidential"),
    )


def fold(
    events: Sequence[Mapping[str, Any]], sent: Mapping[tuple[str, str], Mapping[int, Content]]
) -> tuple[dict[tuple[str, str], dict[str, HostAppt]], list[str]]:
    """The host's view of every calendar, (resource, account) → event id → appointment, from the
    feed in order (see the module docstring); and oddities met on the way (a delete of an event
    the host never had is harmless, but named)."""
    views: dict[tuple[str, str], dict[str, HostAppt]] = {}
    # (resource, host id) → (resource, account, event id): where the host's own appointment is
    own: dict[tuple[str, str], tuple[str, str, str]] = {}
    odd: list[str] = []
    for event in events:
        data = event["data"]
        kind = event["type"]
        if kind not in (UPSERTED, DELETED, PUSHED):
            continue
        resource = str(data["resourceId"])
        account = str(data.get("account") or "").lower()
        if kind == UPSERTED:
            appointment = data["appointment"]
            views.setdefault((resource, account), {})[appointment["eventId"]] = _from_payload(appointment)
            if appointment.get("hostAppointmentId"):
                # news of one of the host's own appointments (of this resource): a host keeps it
                # under its own id, and drops it when it cancels that appointment
                own[(resource, str(appointment["hostAppointmentId"]))] = (
                    resource,
                    account,
                    appointment["eventId"],
                )
        elif kind == DELETED:
            event_id = data["appointment"]["eventId"]
            if views.setdefault((resource, account), {}).pop(event_id, None) is None:
                odd.append(f"{event['id']}: appointment.deleted of {event_id}, which the host never had")
        else:
            item = (resource, str(data["hostAppointmentId"]))
            result = data["result"]
            event_id = data.get("eventId")
            if result in (*PLACED, "conflict_outlook_won") and event_id:
                previous = own.get(item)
                if previous is not None and previous != (resource, account, event_id):
                    views.get(previous[:2], {}).pop(previous[2], None)  # the bridge replaced that event
                if result == "conflict_outlook_won":
                    appt = _from_payload(data["conflict"]["appointment"])
                else:
                    content = sent[item][int(data["version"])]
                    appt = (content.subject, _utc(content.start), _utc(content.end), item[1], False)
                views.setdefault((resource, account), {})[event_id] = appt
                own[item] = (resource, account, event_id)
            elif result == "deleted":
                previous = own.pop(item, None)
                if previous is not None:
                    views.get(previous[:2], {}).pop(previous[2], None)
    return views, odd


@dataclass
class Verdict:
    lost: int = 0
    duplicated: int = 0
    zombies: int = 0  # host cancelled it, Outlook still has it
    phantoms: int = 0  # the host has it, Outlook has not
    mismatched: int = 0  # both have it, but not alike
    problems: list[str] = field(default_factory=list)

    history: Mapping[str, list[str]] = field(default_factory=dict)  # what the feed said, per host id

    @property
    def converged(self) -> bool:
        return not (self.lost or self.duplicated or self.zombies or self.phantoms or self.mismatched)

    def say(self, what: str, host_id: str | None = None, did: Sequence[str] = ()) -> None:
        """One problem; for a host appointment, with what the host and people did to it and what
        the feed told the host about it."""
        told = self.history.get(host_id or "", [])
        self.problems.append(
            what
            + (f" — done: {'; '.join(did)}" if did else "")
            + (f" — the feed: {'; '.join(told)}" if told else "")
        )


def history(events: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Per host appointment id, each feed event about it in order, in a few words."""
    told: dict[str, list[str]] = {}
    for event in events:
        data = event["data"]
        if event["type"] == PUSHED:
            what = f"pushed v{data['version']} {data['result']} {data.get('eventId')}"
            told.setdefault(str(data["hostAppointmentId"]), []).append(what)
        elif event["type"] in (UPSERTED, DELETED) and data["appointment"].get("hostAppointmentId"):
            appointment = data["appointment"]
            what = f"{event['type'].split('.')[1]} {data['resourceId']}/{appointment['eventId']}"
            if event["type"] == UPSERTED:
                what += f" {appointment['subject']!r} lastModified {appointment.get('lastModified')}"
            told.setdefault(str(appointment["hostAppointmentId"]), []).append(what)
    return told


def check(stack: Stack, runner: Runner, feed: Feed) -> Verdict:
    """Compare the host's view with Outlook (see the module docstring)."""
    from core.calendar.window import WindowPolicy

    verdict = Verdict(history=history(feed.events))
    views, _ = fold(feed.events, runner.host.sent)
    window = WindowPolicy(DAYS_BACK, DAYS_AHEAD, SLACK).needed(datetime.now(UTC))
    calendar = stack.graph.calendar
    # 1. every linked calendar: the host's view is Outlook's
    for link in stack.links:
        host = views.get((link.resource, link.account), {})
        outlook = {i.id: i for i in calendar.view(link.account, *window)}
        where = f"{link.resource}/{link.account}"
        for event_id in sorted(outlook.keys() - host.keys()):
            verdict.lost += 1
            verdict.say(
                f"lost: {where}: Outlook event {event_id} ({outlook[event_id].fields.get('subject')!r}) "
                "is not in the host's view"
            )
        for event_id in sorted(host.keys() - outlook.keys()):
            verdict.phantoms += 1
            got = host[event_id]
            verdict.say(
                f"phantom: {where}: the host has {event_id} {got}, Outlook has not",
                got[3],
                runner.host.done.get((link.resource, got[3] or ""), []),
            )
        for event_id in sorted(host.keys() & outlook.keys()):
            instance, got = outlook[event_id], host[event_id]
            want = (_utc(instance.start), _utc(instance.end))
            subject_ok = instance.is_private or got[0] == instance.fields.get("subject")
            if (got[1], got[2]) != want or not subject_ok:
                verdict.mismatched += 1
                verdict.say(
                    f"mismatch: {where}: {event_id}: host {got}, "
                    f"Outlook {instance.fields.get('subject')!r} {want}",
                    got[3],
                    runner.host.done.get((link.resource, got[3] or ""), []),
                )
        twice = Counter(a[3] for a in host.values() if a[3])
        for host_id, n in sorted(twice.items()):
            if n > 1:
                verdict.duplicated += n - 1
                verdict.say(
                    f"duplicated: {where}: host appointment {host_id} is {n} times in the host's view",
                    host_id,
                    runner.host.done.get((link.resource, host_id), []),
                )
    # 2. every host appointment: its latest version in Outlook exactly once (or gone, if cancelled)
    owners = runner.host.owners
    found: dict[tuple[str, str], list[Any]] = {}
    for m, mailbox in enumerate(stack.mailboxes):
        for record in calendar.mailbox(mailbox).events.values():
            if record.transaction_id is None:
                continue
            owner = owners.get(record.transaction_id)
            if owner is None or owner[0] != resource_id(m):
                verdict.duplicated += 1
                verdict.say(
                    f"duplicated: {mailbox}: event {record.id} with a transactionId that no host "
                    "appointment of this mailbox's resource was sent with"
                )
                continue
            found.setdefault(owner, []).append(record)
    for item, (op, version, when) in sorted(runner.host.last.items()):
        records = found.get(item, [])
        name = f"{item[0]}/{item[1]} (v{version} {op})"
        did = runner.host.done.get(item, [])
        if op == "delete":
            if records:
                verdict.zombies += len(records)
                verdict.say(
                    f"zombie: {name}: cancelled by the host, still in Outlook as {[r.id for r in records]}",
                    item[1],
                    did,
                )
            continue
        if len(records) > 1:
            verdict.duplicated += len(records) - 1
            verdict.say(
                f"duplicated: {name}: {len(records)} Outlook events {[r.id for r in records]}", item[1], did
            )
        outlook_last = runner.host.outlook_last.get(item)
        later = outlook_last is not None and outlook_last[1] > when
        content = runner.host.sent[item][version]
        latest = [
            r
            for r in records
            if r.fields.get("subject") == content.subject
            and r.start.utc == content.start
            and r.end.utc == content.end
        ]
        if not later:
            if not records:
                verdict.lost += 1
                verdict.say(f"lost: {name}: not in Outlook", item[1], did)
            elif not latest:
                verdict.lost += 1
                verdict.say(
                    f"lost: {name}: Outlook has an older state "
                    f"{[(r.fields.get('subject'), r.start.utc) for r in records]}",
                    item[1],
                    did,
                )
        elif outlook_last is not None and outlook_last[0] == "edit" and not records:
            verdict.lost += 1
            verdict.say(
                f"lost: {name}: edited in Outlook after the host's last change, and gone", item[1], did
            )
        elif records and not latest and outlook_last is not None and outlook_last[0] == "delete":
            verdict.mismatched += 1
            verdict.say(
                f"mismatch: {name}: deleted in Outlook, then back but not as the host's latest version",
                item[1],
                did,
            )
    return verdict


# --- the whole run -----------------------------------------------------------------------------


@dataclass
class ChaosResult:
    seed: int
    operations: int
    ops_by_kind: dict[str, int]
    noops: dict[str, int]
    faults_by_kind: dict[str, int]
    graph_requests: int
    verdict: Verdict
    anomalies: list[str]
    push_answers: dict[str, int]
    poisoned: dict[str, int]
    final_sync_failures: list[str]
    feed_events: int
    outlook_events: int
    host_appointments: int
    chaos_seconds: float
    drain_seconds: float
    total_seconds: float

    @property
    def faults(self) -> int:
        return sum(self.faults_by_kind.values())

    @property
    def fault_share(self) -> float:
        return self.faults / self.graph_requests if self.graph_requests else 0.0

    @property
    def ok(self) -> bool:
        return self.verdict.converged and not self.anomalies and not self.final_sync_failures

    def summary(self) -> str:
        v = self.verdict
        faults = ", ".join(f"{k} {n}" for k, n in sorted(self.faults_by_kind.items()))
        return (
            f"R1 chaos seed {self.seed} (replay: CHAOS_SEED={self.seed}): {self.operations} operations "
            f"({self.chaos_seconds:.0f} s), {self.graph_requests} Graph requests, "
            f"{self.faults} faults served ({self.fault_share:.1%}: {faults}); "
            f"lost {v.lost}, duplicated {v.duplicated}, zombies {v.zombies}, "
            f"phantoms {v.phantoms}, mismatched {v.mismatched}; {self.outlook_events} Outlook events, "
            f"{self.host_appointments} host appointments, {self.feed_events} feed events; "
            f"poison {self.poisoned}; anomalies {len(self.anomalies)}; "
            f"drained in {self.drain_seconds:.0f} s, whole run {self.total_seconds:.0f} s"
        )

    def details(self, limit: int = 20) -> str:
        lines = [*self.anomalies, *self.final_sync_failures, *self.verdict.problems]
        shown = lines[:limit] + ([f"… and {len(lines) - limit} more"] if len(lines) > limit else [])
        return "\n".join(shown)


async def run_chaos(
    config: ChaosConfig, connection_string: str, work: Path, say: Callable[[str], None] = log.warning
) -> ChaosResult:
    """The whole R1 run on a fresh tenant and stack (Azurite is the caller's); `say` hears
    the seed first, and progress lines."""
    started = time.monotonic()
    rng = random.Random(config.seed)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    ops = plan(rng, config.operations, config.mailboxes, today)
    fault_rng = random.Random(rng.getrandbits(64))  # the fault stream, from the same seed
    say(f"chaos: seed {config.seed}, {len(ops)} operations (replay: CHAOS_SEED={config.seed})")
    async with open_stack(config, connection_string, work) as stack:
        poison_before = await queue_depths(connection_string, POISON_QUEUES)
        runner = Runner(stack, config, say)
        pump = FaultPump(
            stack.graph, fault_rng, config.fault_rate, stack.mailboxes, config.graph_timeout_seconds
        )
        pump.start()
        try:
            await runner.run(ops)
        finally:
            await pump.stop()
        chaos_done = time.monotonic()
        requests = pump.requests
        drained = await drain(stack, config.drain_timeout_seconds)
        feed = Feed()
        failures = await final_syncs(stack, feed)
        verdict = check(stack, runner, feed)
        poison_after = await queue_depths(connection_string, POISON_QUEUES)
        outlook_events = sum(len(stack.graph.calendar.mailbox(m).events) for m in stack.mailboxes)
    return ChaosResult(
        seed=config.seed,
        operations=len(ops),
        ops_by_kind=dict(runner.execution.ops_done),
        noops=dict(runner.execution.noops),
        faults_by_kind=dict(pump.served),
        graph_requests=requests,
        verdict=verdict,
        anomalies=runner.execution.anomalies,
        push_answers=dict(runner.execution.answers),
        poisoned={q: poison_after[q] - poison_before[q] for q in POISON_QUEUES},
        final_sync_failures=failures,
        feed_events=len(feed.events),
        outlook_events=outlook_events,
        host_appointments=len(runner.host.last),
        chaos_seconds=chaos_done - started,
        drain_seconds=drained,
        total_seconds=time.monotonic() - started,
    )
