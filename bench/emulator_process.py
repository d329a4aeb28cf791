"""The Graph emulator in a process of its own, seeded with a benchmark's mailboxes.

Benchmarks of the product's own process (TARGETS P2: "one instance") must not share that
process's event loop and GIL with the emulator, which stands in for a remote service. So the
emulator runs here, in a child process:

    python -m bench.emulator_process --dir D --mailboxes 250 --calendars-per-mailbox 4 --events 20

seeds one tenant, an app registration with a random secret, the mailboxes (a default calendar
plus named ones) and their events, prints one JSON line with what a client needs (URLs, CA,
tenant, client id, secret, mailboxes with their calendars' ids and one event id per calendar),
then serves until its stdin closes or it gets SIGTERM. The parent side is `EmulatorProcess`
(an async context manager), which talks to the emulator's control API (`/_emulator/...`) for
latency, counters, "a person edits an event in Outlook", change-notification delivery and its
request counts, and the emulator's clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import ssl
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

PERMISSIONS = ("Calendars.ReadWrite", "User.Read.All")
NAMED_CALENDARS = ("Planning", "Bookings", "Support", "Projects", "Travel", "Training", "Leave")
DOMAIN = "bench.onmicrosoft.com"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SeededCalendar:
    name: str  # as linked: "default" or the calendar's display name
    calendar_id: str
    event_id: str  # one of its events (the one a "person in Outlook" edits)


@dataclass(frozen=True)
class SeededMailbox:
    upn: str
    calendars: list[SeededCalendar]


@dataclass(frozen=True)
class Seeded:
    graph_url: str
    authority: str
    ca_cert: str
    control_url: str
    tenant_id: str
    client_id: str
    secret: str
    mailboxes: list[SeededMailbox]
    events: int  # events created in total


# --- the child ---------------------------------------------------------------------------------


def _event(mailbox: int, calendar: int, i: int, today: datetime) -> dict[str, Any]:
    """An ordinary appointment, as a person or a booking system would create it: spread over
    the sync window (some in the past month, most in the coming months)."""
    day = today + timedelta(days=-25 + i * 15 + (mailbox + calendar) % 7, hours=8 + (i * 3 + calendar) % 9)
    minutes = (30, 45, 60, 90)[(mailbox + i) % 4]
    n = (mailbox * 100 + calendar) * 100 + i
    return {
        "subject": f"Customer meeting {n}",
        "body": {
            "contentType": "html",
            "content": (
                f"<html><body><p>Agenda for meeting {n}: review of the open orders, the delivery "
                "plan for the next quarter and the service agreement.</p><p>Please bring the "
                "latest figures.</p></body></html>"
            ),
        },
        "start": {"dateTime": day.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {
            "dateTime": (day + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S"),
            "timeZone": "UTC",
        },
        "location": {"displayName": f"Meeting room {1 + n % 12}"},
        "attendees": [
            {
                "type": "required",
                "emailAddress": {"name": f"Customer {n % 97}", "address": f"customer{n % 97}@example.com"},
            }
        ],
        "showAs": "busy",
        "categories": ["Customer"] if i % 3 == 0 else [],
    }


def seed(graph: Any, mailboxes: int, calendars_per_mailbox: int, events: int) -> Seeded:
    """One tenant and app; `mailboxes` users, each with its default calendar and
    `calendars_per_mailbox - 1` named ones, each calendar with `events` events."""
    if not 1 <= calendars_per_mailbox <= len(NAMED_CALENDARS) + 1:
        raise ValueError(f"calendars per mailbox: 1 to {len(NAMED_CALENDARS) + 1}")
    tenant = graph.add_tenant(name="Bench", domain=DOMAIN)
    secret = secrets.token_urlsafe(24)
    app = graph.add_app(tenant.id, secrets=[secret], application_permissions=PERMISSIONS)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    seeded: list[SeededMailbox] = []
    for m in range(mailboxes):
        user = graph.add_user(tenant.id, f"person{m:04d}@{DOMAIN}", display_name=f"Person {m}")
        calendars: list[SeededCalendar] = []
        for c in range(calendars_per_mailbox):
            if c == 0:
                name, calendar_id = "default", graph.calendar.calendar(user).id
            else:
                name = NAMED_CALENDARS[c - 1]
                calendar_id = graph.calendar.create_calendar(user, name).id
            ids = [
                graph.calendar.create_event(user, _event(m, c, i, today), calendar_id=calendar_id)[0].id
                for i in range(events)
            ]
            calendars.append(SeededCalendar(name, calendar_id, ids[0] if ids else ""))
        seeded.append(SeededMailbox(user.user_principal_name, calendars))
    return Seeded(
        graph_url=graph.graph_url,
        authority=graph.authority,
        ca_cert=str(graph.ca_cert),
        control_url=f"{graph.url}/_emulator",
        tenant_id=tenant.id,
        client_id=app.client_id,
        secret=secret,
        mailboxes=seeded,
        events=mailboxes * calendars_per_mailbox * events,
    )


def _to_json(seeded: Seeded) -> str:
    body = {
        **{k: v for k, v in seeded.__dict__.items() if k != "mailboxes"},
        "mailboxes": [
            {"upn": m.upn, "calendars": [[c.name, c.calendar_id, c.event_id] for c in m.calendars]}
            for m in seeded.mailboxes
        ],
    }
    return json.dumps(body, separators=(",", ":"))


def _from_json(line: str) -> Seeded:
    raw = json.loads(line)
    mailboxes = [
        SeededMailbox(m["upn"], [SeededCalendar(*c) for c in m["calendars"]]) for m in raw.pop("mailboxes")
    ]
    return Seeded(mailboxes=mailboxes, **raw)


async def _serve(args: argparse.Namespace) -> None:
    from devtools.graph_emulator import GraphEmulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    def watch_stdin() -> None:  # the parent closing our stdin (or dying) stops us
        # os.read on the descriptor, not sys.stdin: a daemon thread blocked inside the buffered
        # reader holds its lock, and the interpreter aborts at exit when it cannot take it
        with contextlib.suppress(OSError):
            while os.read(0, 65536):
                pass
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True, name="stdin-watch").start()
    async with GraphEmulator(directory=Path(args.dir), latency=args.latency) as graph:
        seeded = seed(graph, args.mailboxes, args.calendars_per_mailbox, args.events)
        print(_to_json(seeded), flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", required=True, help="where the emulator writes its CA and certificate")
    parser.add_argument("--mailboxes", type=int, default=250)
    parser.add_argument("--calendars-per-mailbox", type=int, default=4)
    parser.add_argument("--events", type=int, default=20, help="events per calendar")
    parser.add_argument("--latency", type=float, default=0.0)
    asyncio.run(_serve(parser.parse_args(argv)))


# --- the parent --------------------------------------------------------------------------------


class EmulatorProcess:
    """`async with EmulatorProcess(dir, mailboxes=..., ...) as graph:` — the seeded emulator in a
    child process; `graph.seeded` says what is in it. Leaving the block stops the child (stdin
    closed, then SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        directory: Path,
        *,
        mailboxes: int,
        calendars_per_mailbox: int,
        events: int,
        start_timeout: float = 300.0,
    ) -> None:
        self.directory = directory
        self.mailboxes = mailboxes
        self.calendars_per_mailbox = calendars_per_mailbox
        self.events = events
        self.start_timeout = start_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._seeded: Seeded | None = None

    @property
    def seeded(self) -> Seeded:
        if self._seeded is None:
            raise RuntimeError("the emulator process is not running")
        return self._seeded

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> EmulatorProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.emulator_process",
            "--dir",
            str(self.directory),
            "--mailboxes",
            str(self.mailboxes),
            "--calendars-per-mailbox",
            str(self.calendars_per_mailbox),
            "--events",
            str(self.events),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,  # the seed line lists every calendar
            cwd=str(ROOT),
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop it
        )
        try:
            assert self._proc.stdout is not None
            line = await asyncio.wait_for(self._proc.stdout.readline(), self.start_timeout)
            if not line:
                raise RuntimeError(
                    f"the emulator process exited during start-up (code {await self._proc.wait()})"
                )
            self._seeded = _from_json(line.decode())
            context = ssl.create_default_context(cafile=self._seeded.ca_cert)
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=16))
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        for action in (None, proc.terminate, proc.kill):
            if action is not None:
                with contextlib.suppress(ProcessLookupError):
                    action()
            try:
                await asyncio.wait_for(proc.wait(), 10)
                return
            except TimeoutError:
                continue

    async def __aenter__(self) -> EmulatorProcess:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- the control API ---------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        if self._http is None:
            raise RuntimeError("the emulator process is not running")
        async with self._http.request(method, self.seeded.control_url + path, json=body) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise RuntimeError(f"emulator control {method} {path}: HTTP {resp.status}: {text[:300]}")
            return json.loads(text) if text else None

    async def set_latency(self, seconds: float) -> None:
        await self._call("PATCH", "/settings", {"latencySeconds": seconds})

    async def reset_counters(self) -> None:
        await self._call("DELETE", "/counters")

    async def counters(self) -> list[dict[str, Any]]:
        """Per mailbox: requests, bytesIn, bytesOut, maxConcurrent, throttled, faults."""
        body = await self._call("GET", "/counters")
        return list(body["value"])

    async def update_event(self, upn: str, event_id: str, patch: dict[str, Any]) -> None:
        """A person edits the event in Outlook."""
        await self._call("PATCH", f"/users/{quote(upn, safe='')}/events/{quote(event_id, safe='')}", patch)

    # change notifications (devtools/graph_emulator/subscriptions.py) and the emulator's clock

    async def notification_settings(self, **values: Any) -> dict[str, Any]:
        """Change how notifications are delivered (camelCase NotificationSettings, e.g.
        `drop=True`: every notification is lost); the settings now in force."""
        settings: dict[str, Any] = await self._call("PATCH", "/notifications/settings", values)
        return settings

    async def subscriptions(self) -> list[dict[str, Any]]:
        """Every live subscription, with its delivery stats."""
        body = await self._call("GET", "/subscriptions")
        return list(body["value"])

    async def drain_notifications(self, seconds: float = 10.0) -> bool:
        """Until queued notifications are delivered or given up; False after `seconds`."""
        body = await self._call("POST", "/notifications/drain", {"timeoutSeconds": seconds})
        return bool(body["drained"])

    async def subscription_requests(self) -> dict[str, Any]:
        """Graph requests to /subscriptions since the last reset (the per-mailbox counters do
        not see them): {"total", "requests": {operation: n}, "failed": {operation: n}}."""
        counts: dict[str, Any] = await self._call("GET", "/notifications/requests")
        return counts

    async def reset_subscription_requests(self) -> None:
        await self._call("DELETE", "/notifications/requests")

    async def advance_clock(self, seconds: float) -> str:
        """Move the emulator's clock (subscription expirations, timestamps) forward; its now."""
        body = await self._call("POST", "/clock", {"advanceSeconds": seconds})
        return str(body["now"])


if __name__ == "__main__":
    main()
