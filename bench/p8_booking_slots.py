"""TARGETS P8: the booking slots of a 31-day window with 500 slot events, p99 ≤ 300 ms in process.

What is timed is what `GET …/booking-calendars/{id}/slots` does after authentication, in this
process: `core.booking.slots.list_slots` — the booking calendar's calendarView over the window
through the real Graph gateway (msgraph-sdk's request adapter, the lean parser, every page), the
reservations of the booking calendar (memory tables here: their read is one partition query in
Azure), and the rules (hours, weekends, notice, in Europe/Oslo). The Graph emulator runs in a
child process (`bench/emulator_process.py`), so its work is not this process's; by default it
answers at once (the figure is the bridge's own cost), and a second run adds 20 ms per Graph
request for a realistic network.

Setup (not timed): 500 events in one mailbox's calendar over the next 31 days — mostly 30-minute
slots on weekdays 08-16, some at weekends and outside the hours (filtered), some booked — made
through the gateway. Then `list_slots` runs `--rounds` times (after 3 warm-up calls); p50, p90,
p99 and max are reported, with the share spent reading Graph.

    .venv/bin/python -m bench.p8_booking_slots              # updates bench/RESULTS.md
    .venv/bin/python -m bench.p8_booking_slots --no-record
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.emulator_process import EmulatorProcess
from bench.results import RESULTS, commit, provenance, record_section

TARGET_P99 = 0.300
EVENTS = 500
ZONE = "Europe/Oslo"
COMMAND = ".venv/bin/python -m bench.p8_booking_slots"


def say(line: str = "") -> None:
    print(line, flush=True)


def slot_times(first_day: date, count: int) -> list[tuple[datetime, datetime, str]]:
    """`count` (start, end, subject): 20-minute slots 08-16 on weekdays, every 7th at a weekend
    or an odd hour (the rules drop those), every 10th already booked — 500 fit in 31 days."""
    zone = ZoneInfo(ZONE)
    out: list[tuple[datetime, datetime, str]] = []
    day, hour_slot, n = first_day, 0, 0
    while len(out) < count:
        if day.weekday() < 5 or n % 7 == 0:
            start = datetime.combine(day, clock_time(8), zone) + timedelta(minutes=20 * hour_slot)
            if n % 7 == 3:
                start = datetime.combine(day, clock_time(6, 30), zone)  # before the first hour
            subject = "Consultation - Booked" if n % 10 == 9 else "Consultation"
            out.append((start.astimezone(UTC), (start + timedelta(minutes=20)).astimezone(UTC), subject))
            n += 1
        hour_slot += 1
        if hour_slot >= 24 or day.weekday() >= 5:
            hour_slot = 0
            day += timedelta(days=1)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from azure.identity.aio import ClientSecretCredential

    from core.booking.slots import list_slots
    from core.graph import MailboxLimiter
    from core.graph.client import GraphClientOptions
    from core.graph.gateway import open_gateway
    from core.graph.model import EventDraft, transaction_id
    from core.store import memory_tables
    from core.store.records import BookingCalendar, Tenant

    result: dict[str, Any] = {"commit": commit(), "events": args.events, "runs": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-p8-") as tmp:
        async with EmulatorProcess(
            Path(tmp) / "graph", mailboxes=1, calendars_per_mailbox=1, events=0
        ) as graph:
            seeded = graph.seeded
            owner = seeded.mailboxes[0].upn
            credential = ClientSecretCredential(
                seeded.tenant_id,
                seeded.client_id,
                seeded.secret,
                authority=seeded.authority,
                disable_instance_discovery=True,
                connection_verify=seeded.ca_cert,
            )
            gateway = open_gateway(
                credential,
                GraphClientOptions(base_url=seeded.graph_url, ca_bundle=seeded.ca_cert),
                limiter=MailboxLimiter(),
            )
            try:
                first_day = datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=1)
                times = slot_times(first_day, args.events)
                gate = asyncio.Semaphore(4)

                async def make(i: int, start: datetime, end: datetime, subject: str) -> None:
                    async with gate:
                        draft = EventDraft(subject=subject, start=start, end=end)
                        await gateway.create_event(owner, None, draft, transaction_id(f"p8-{i}", 1))

                await asyncio.gather(*(make(i, *t) for i, t in enumerate(times)))
                tenant = Tenant(tenant_id="bench-p8", time_zone=ZONE)
                config = BookingCalendar(
                    tenant_id="bench-p8",
                    booking_id="advice",
                    owner=owner,
                    time_zone=ZONE,
                    booked_suffix=" - Booked",
                    notice_days=2,
                )
                tables = memory_tables()

                class Graphs:
                    async def gateway(self, _: Tenant) -> Any:
                        return gateway

                zone = ZoneInfo(ZONE)
                window_start = datetime.combine(datetime.now(zone).date(), clock_time(0), zone).astimezone(
                    UTC
                )
                window_end = window_start + timedelta(days=31)
                for latency in (0.0, 0.02):
                    await graph.set_latency(latency)
                    timings: list[float] = []
                    reads: list[float] = []
                    slots: list[Any] = []
                    for round_no in range(args.rounds + 3):
                        t0 = time.perf_counter()
                        events = await gateway.calendar_view(owner, None, window_start, window_end)
                        t1 = time.perf_counter()
                        slots = await list_slots(
                            tables, Graphs(), tenant, config, window_start, window_end, datetime.now(UTC)
                        )
                        t2 = time.perf_counter()
                        if round_no >= 3:
                            timings.append(t2 - t1)
                            reads.append(t1 - t0)
                    result["runs"].append(
                        {
                            "latency": latency,
                            "events_in_window": len(events),
                            "slots": len(slots),
                            "available": sum(1 for s in slots if s.available),
                            "p50": statistics.median(timings),
                            "p90": percentile(timings, 0.9),
                            "p99": percentile(timings, 0.99),
                            "max": max(timings),
                            "read_p50": statistics.median(reads),
                        }
                    )
                    say(line(result["runs"][-1]))
            finally:
                await gateway.close()
                await credential.close()
    result["total_time"] = time.perf_counter() - started
    result["commit_after"] = commit()
    return result


def line(r: dict[str, Any]) -> str:
    return (
        f"{r['latency'] * 1000:.0f} ms Graph latency: {r['events_in_window']} events → {r['slots']} slots "
        f"({r['available']} available); p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms, "
        f"max {r['max'] * 1000:.1f} ms (the calendarView read alone: p50 {r['read_p50'] * 1000:.1f} ms)"
    )


def section(r: dict[str, Any], command: str) -> str:
    verdict = r["runs"][0]["p99"] <= TARGET_P99

    def ms(x: dict[str, Any], name: str) -> str:
        return f"{x[name] * 1000:.1f} ms"

    rows = "\n".join(
        f"| {x['latency'] * 1000:.0f} ms | {x['events_in_window']} "
        f"| {x['slots']} ({x['available']} available) | "
        + " | ".join(ms(x, n) for n in ("p50", "p90", "p99", "max", "read_p50"))
        + " |"
        for x in r["runs"]
    )
    first = r["runs"][0]
    lines = [
        "## P8 — booking slots for a 31-day window with 500 slot events",
        "",
        "Target: p99 ≤ 300 ms in process for `list_slots` (the slots route's work after",
        "authentication: the calendarView read through the real gateway, the reservations, the rules).",
        "",
        "| Graph latency | events in the window | slots | p50 | p90 | p99 | max "
        "| calendarView read alone, p50 |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
        rows,
        "",
        f"**P8: p99 {first['p99'] * 1000:.1f} ms** (Graph answering at once) — target ≤ 300 ms: "
        f"{'met' if verdict else 'NOT met'}.",
        "",
        f"- {r['events']} events made in one mailbox's calendar over the next 31 days "
        "(weekday 20-minute slots 08-16, some at weekends or before 08:00, every 10th booked); rules "
        "08-16, no weekends, 2 days' notice, Europe/Oslo. Rounds after 3 warm-up calls; the emulator "
        "runs in a child process.",
        *(f"- {p}" for p in provenance(r, command)),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    text = section(result, command)
    say()
    say(text)
    if not args.no_record:
        record_section("P8", text)
        say(f"recorded in {RESULTS}")
    return 0 if result["runs"][0]["p99"] <= TARGET_P99 else 1


if __name__ == "__main__":
    raise SystemExit(main())
