"""`bench/RESULTS.md`: one section per TARGETS row (or rows), written by the script it names.

A script replaces its own section (the one whose heading starts `## <rows>`) or, the first
time, adds it before the first section of a later row, so the file reads in TARGETS order.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = (
    "# Benchmark results\n\n"
    "Each section is written by the script it names; rerun its command to refresh it. Timings\n"
    "are ratios against a baseline run in the same process (TARGETS.md).\n\n"
)
_ROW = re.compile(r"^## ([PR])(\d+)", re.M)


def _order(kind: str, number: str) -> tuple[int, int]:
    """TARGETS order: every performance row (P) before every reliability row (R)."""
    return ("PR".index(kind), int(number))


def record_section(rows: str, text: str, results: Path = RESULTS) -> None:
    """Write `text` (starting with `## <rows> …`, e.g. rows "P5", "P1, P2" or "R1") into
    `results`."""
    if not text.startswith(f"## {rows}"):
        raise ValueError(f"the section must start with '## {rows}'")
    current = results.read_text(encoding="utf-8") if results.exists() else HEADER
    text = text.rstrip("\n") + "\n\n"
    own = re.compile(rf"^## {re.escape(rows)}\b.*?(?=^## |\Z)", re.S | re.M)
    if own.search(current):
        updated = own.sub(lambda _: text, current)
    else:
        named = re.match(r"([PR])(\d+)", rows)
        if named is None:
            raise ValueError(f"rows must name TARGETS rows such as 'P5' or 'R1', not {rows!r}")
        first = _order(named.group(1), named.group(2))
        later = next((m for m in _ROW.finditer(current) if _order(m.group(1), m.group(2)) > first), None)
        at = later.start() if later else len(current)
        updated = current[:at].rstrip("\n") + "\n\n" + text + current[at:]
    results.write_text(updated.rstrip("\n") + "\n", encoding="utf-8")


ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    """CPUs this process may use, the CPU model, and the Python that ran the benchmark."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"nproc {cpus}, {model}, Python {platform.python_version()} ({platform.machine()})"


def commit() -> str:
    """The product code measured: HEAD, and whether its files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "core", "functions", "function_app.py", "host.json"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} (with uncommitted changes to the product code)" if dirty else head


def provenance(result: Mapping[str, Any], command: str) -> list[str]:
    """The lines every section ends with: which code ran (HEAD at the start and, if it moved,
    at the end), the command and how long it took, the machine, the date."""
    moved = result["commit_after"] != result["commit"]
    code = f"Code: commit {result['commit']}" + (
        f" (HEAD moved to {result['commit_after']} during the run; modules load at its start)"
        if moved
        else ""
    )
    return [
        code + ".",
        f"Command: `{command}` (whole run {result['total_time']:.0f} s)",
        f"Machine: {machine()}",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
    ]
