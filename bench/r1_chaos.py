"""TARGETS R1: 10,000 sync operations with 20% injected Graph faults (429 + Retry-After, 503,
504, timeouts, dropped connections, 410 sync-state expiry) → host and Outlook converge; 0 lost,
0 duplicated appointments.

The run is `tests/integration/chaos.py` (what the R1 tests run too; its docstring says what is
done and checked), here on an Azurite of its own, with the host's and the app's logs in
`.local/bench/r1_chaos.log` rather than on the terminal. The seed is printed first; `--seed N`
(or `CHAOS_SEED=N`) runs the same plan and fault stream again.

    .venv/bin/python -m bench.r1_chaos                      # 10,000 operations; updates bench/RESULTS.md
    .venv/bin/python -m bench.r1_chaos --operations 500 --seed 7 --no-record
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.results import RESULTS, commit, provenance, record_section
from bench.stack import log_to

COMMAND = ".venv/bin/python -m bench.r1_chaos"
LOG = Path(__file__).resolve().parent.parent / ".local" / "bench" / "r1_chaos.log"


def say(line: str = "") -> None:
    print(line, flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from devtools.azurite import Azurite
    from tests.integration.chaos import ChaosConfig, run_chaos, seed_from_env

    seed = args.seed if args.seed is not None else seed_from_env()
    config = ChaosConfig(
        operations=args.operations,
        seed=seed,
        concurrency=args.concurrency,
        progress_every=max(100, args.operations // 20),
    )
    started = time.perf_counter()
    result: dict[str, Any] = {"commit": commit()}
    with Azurite() as azurite, tempfile.TemporaryDirectory(prefix="bench-r1-") as tmp:
        result["chaos"] = await run_chaos(config, azurite.connection_string, Path(tmp), say=say)
    result["total_time"] = time.perf_counter() - started
    result["commit_after"] = commit()
    return result


def section(r: dict[str, Any], command: str) -> str:
    c = r["chaos"]
    v = c.verdict
    met = c.ok and v.lost == 0 and v.duplicated == 0
    faults = "\n".join(
        f"| {kind} | {n} | {n / c.faults:.0%} |"
        for kind, n in sorted(c.faults_by_kind.items(), key=lambda x: -x[1])
    )
    ops = ", ".join(f"{kind} {n}" for kind, n in sorted(c.ops_by_kind.items(), key=lambda x: -x[1]))
    noops = ", ".join(f"{kind} {n}" for kind, n in sorted(c.noops.items())) or "none"
    lines = [
        "## R1 — sync operations under injected Graph faults",
        "",
        "Target: 10,000 sync operations with 20% injected Graph faults (429 + Retry-After, 503, 504,",
        "timeouts, dropped connections, 410 sync-state expiry) → host and Outlook converge; 0 lost,",
        "0 duplicated appointments.",
        "",
        f"**R1: {c.operations:,} operations, {c.faults:,} faults in {c.graph_requests:,} Graph requests "
        f"({c.fault_share:.1%}); lost {v.lost}, duplicated {v.duplicated}; "
        f"{'converged' if v.converged else 'NOT converged'}** — target: {'met' if met else 'NOT met'}.",
        "",
        "| fault | served | share |",
        "|---|---:|---:|",
        faults,
        "",
        f"- Seed {c.seed} (replay: `{COMMAND} --operations {c.operations} --seed {c.seed}`, or "
        f"`CHAOS_SEED={c.seed}` for the tests). One `random.Random(seed)` drew the plan and seeds the "
        "fault stream; which request meets each fault is the stack's timing.",
        "- Faults: one-shot emulator faults meeting the next Graph request (any mailbox, any "
        "operation, `$batch` parts included), dealt from a shuffled deck so every kind comes up in "
        "every 20; 429 with Retry-After 0-2 s or 25 s (past the 20 s retry budget: re-queued), 503/504 "
        "sometimes with Retry-After, timeout = an answer 1 s past `GRAPH_TIMEOUT_SECONDS` (3 s), "
        "drop_after = carried out, answer lost; 410 = on a mailbox's next delta request; "
        "410_expiry = the emulator forgot a mailbox's delta states (counted once; its next rounds "
        "get 410 SyncStateNotFound). The share is of the Graph requests the emulator counted.",
        "- Found by these runs and fixed (`tests/unit/test_calendar_unseen_push.py`): a pushed event "
        "a person deleted before any down round saw it stayed at the host until the next full round "
        "(delta never reports it); the host could hear an older state after a newer one (a round's "
        "upsert of what it read before a push, after the push's newer version) and keep it; a PATCH "
        "whose answer was lost met its own write as a 412, taken for a later Outlook edit, so that "
        "version and the next ones were never written.",
        f"- Operations: {ops}. Found nothing to act on (an Outlook edit of a push still on its way, "
        f"a replay before the first version got through): {noops}.",
        f"- Push answers: {dict(sorted(c.push_answers.items()))}; anomalies {len(c.anomalies)}; "
        f"final syncs failed {len(c.final_sync_failures)}; poisoned messages {c.poisoned}.",
        f"- At the end: {c.outlook_events:,} events in Outlook, {c.host_appointments:,} host appointments, "
        f"{c.feed_events:,} events in the feed; zombies {v.zombies}, phantoms {v.phantoms}, "
        f"mismatched {v.mismatched}.",
        f"- Timing: operations and faults {c.chaos_seconds:.0f} s, queues drained in "
        f"{c.drain_seconds:.0f} s, whole chaos run {c.total_seconds:.0f} s.",
        "- Stack: Azurite, the Graph emulator (in process) over HTTPS, the local Functions host with the "
        "real `function_app` (msgraph-sdk request adapter, azure-identity); four mailboxes, four "
        "resources linked `both`, one calendar also linked `down` to a second resource.",
        *(f"- {p}" for p in provenance(r, command)),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operations", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=None, help="default: CHAOS_SEED, else a random one")
    parser.add_argument("--concurrency", type=int, default=8, help="operations in flight at once")
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    log_to(LOG)
    # every Storage request at INFO would be most of the file (and of the logging's CPU)
    logging.getLogger("azure").setLevel(logging.WARNING)
    result = asyncio.run(run(args))
    chaos = result["chaos"]
    say(chaos.summary())
    if chaos.details():
        say(chaos.details(limit=40))
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    text = section(result, command)
    say()
    say(text)
    if not args.no_record:
        record_section("R1", text)
        say(f"recorded in {RESULTS}")
    return 0 if chaos.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
