"""Every performance row of TARGETS.md, one after another, each against its baseline in the same
run, then one table: the row, whether it met its target (the script's exit code), how long the
script took, and the verdict lines it wrote to `bench/RESULTS.md`.

    make bench                                  # all of them (about 25 minutes), RESULTS.md updated
    .venv/bin/python -m bench.run_all --only P4 P8 --no-record

Each script runs in a process of its own, so one's memory, threads and event loop never reach
the next (P4 and P7 measure a process's own start and memory).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.results import RESULTS, ROOT, machine


@dataclass(frozen=True)
class Bench:
    rows: str  # as in the RESULTS.md heading: "P1, P2", "P3", ...
    module: str
    what: str


BENCHES = (
    Bench(
        "P1, P2",
        "bench.p1_p2_calendar_sync",
        "down-sync cycle of 1,000 calendars: requests, bytes, wall time",
    ),
    Bench("P3", "bench.p3_parse", "a 500-event delta page into domain objects vs msgraph-sdk models"),
    Bench("P4", "bench.p4_cold_start", "cold start: import function_app, first HTTP call that touches Graph"),
    Bench("P5", "bench.p5_push_latency", "host POST of an appointment → event in Outlook"),
    Bench("P6", "bench.p6_notifications", "Outlook change → host webhook, with change notifications"),
    Bench("P7", "bench.p7_mail_import_memory", "mail import of a 100 MB attachment: peak RSS growth"),
    Bench("P8", "bench.p8_booking_slots", "booking slots, 31 days, 500 slot events"),
)


def verdict_lines(rows: str, results: Path = RESULTS) -> list[str]:
    """The bold verdict lines ("**…** — target …: met") of a row's section in RESULTS.md."""
    if not results.exists():
        return []
    text = results.read_text(encoding="utf-8")
    section = re.search(rf"^## {re.escape(rows)}\b.*?(?=^## |\Z)", text, re.S | re.M)
    if section is None:
        return []
    return [
        line.strip() for line in section.group(0).splitlines() if line.startswith("**") and "target" in line
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", metavar="ROW", help="rows to run, e.g. P1 P4 (default: all)")
    parser.add_argument("--no-record", action="store_true", help="leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)
    wanted = {r.upper() for r in args.only} if args.only else None
    chosen = [b for b in BENCHES if wanted is None or wanted & {r.strip() for r in b.rows.split(",")}]
    outcomes: list[tuple[Bench, int, float]] = []
    for bench in chosen:
        print(f"\n=== {bench.rows}: {bench.what}  (python -m {bench.module})", flush=True)
        started = time.perf_counter()
        command = [sys.executable, "-m", bench.module, *(["--no-record"] if args.no_record else [])]
        code = subprocess.run(command, cwd=ROOT, check=False).returncode  # noqa: S603 - our modules
        outcomes.append((bench, code, time.perf_counter() - started))
    print(f"\nTARGETS.md performance rows — {machine()}\n")
    print("| rows | what | target | took | verdicts (bench/RESULTS.md) |")
    print("|---|---|---|---:|---|")
    for bench, code, took in outcomes:
        verdict = "met" if code == 0 else ("interrupted" if code == 130 else "NOT met")
        lines = "" if args.no_record else "<br>".join(verdict_lines(bench.rows))
        print(f"| {bench.rows} | {bench.what} | {verdict} | {took:.0f} s | {lines} |")
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
