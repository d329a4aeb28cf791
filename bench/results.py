"""`bench/RESULTS.md`: one section per TARGETS row (or rows), written by the script it names.

A script replaces its own section (the one whose heading starts `## <rows>`) or, the first
time, adds it before the first section of a later row, so the file reads in TARGETS order.
"""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = (
    "# Benchmark results\n\n"
    "Each section is written by the script it names; rerun its command to refresh it. Timings\n"
    "are ratios against a baseline run in the same process (TARGETS.md).\n\n"
)
_ROW = re.compile(r"^## P(\d+)", re.M)


def record_section(rows: str, text: str, results: Path = RESULTS) -> None:
    """Write `text` (starting with `## <rows> …`, e.g. rows "P5" or "P1, P2") into `results`."""
    if not text.startswith(f"## {rows}"):
        raise ValueError(f"the section must start with '## {rows}'")
    current = results.read_text(encoding="utf-8") if results.exists() else HEADER
    text = text.rstrip("\n") + "\n\n"
    own = re.compile(rf"^## {re.escape(rows)}\b.*?(?=^## |\Z)", re.S | re.M)
    if own.search(current):
        updated = own.sub(lambda _: text, current)
    else:
        first = int(re.search(r"\d+", rows).group())  # type: ignore[union-attr]  # rows names a P-row
        later = next((m for m in _ROW.finditer(current) if int(m.group(1)) > first), None)
        at = later.start() if later else len(current)
        updated = current[:at].rstrip("\n") + "\n\n" + text + current[at:]
    results.write_text(updated.rstrip("\n") + "\n", encoding="utf-8")
