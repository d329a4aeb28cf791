"""`bench/results.py`: each script's section of RESULTS.md is replaced in place, or added in
TARGETS order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.results import HEADER, record_section


def test_sections_land_in_row_order_and_are_replaced_in_place(tmp_path: Path):
    results = tmp_path / "RESULTS.md"
    record_section("P5", "## P5 — push\n\nfirst\n", results)
    record_section("P1, P2", "## P1, P2 — sync\n\nsync\n", results)
    record_section("P3", "## P3 — parse\n\nparse\n", results)
    record_section("P5", "## P5 — push\n\nsecond\n", results)
    text = results.read_text(encoding="utf-8")
    assert text.startswith(HEADER)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## P1, P2 — sync", "## P3 — parse", "## P5 — push"]
    assert "second" in text
    assert "first" not in text


def test_a_section_must_start_with_its_heading(tmp_path: Path):
    with pytest.raises(ValueError, match="must start with"):
        record_section("P5", "## P6 — other\n", tmp_path / "RESULTS.md")


def test_the_one_bench_command_covers_every_performance_row_and_reads_each_verdict(tmp_path: Path):
    from bench.run_all import BENCHES, verdict_lines

    targets = (Path(__file__).resolve().parents[2].parent / "shared" / "TARGETS.md").read_text("utf-8")
    rows = sorted(set(re.findall(r"^\| (P\d+) \|", targets, re.M)), key=lambda r: int(r[1:]))
    covered = sorted({r.strip() for b in BENCHES for r in b.rows.split(",")}, key=lambda r: int(r[1:]))
    assert covered == rows
    results = tmp_path / "RESULTS.md"
    verdict = "**Cold start 0.9 s** — target ≤ 0.8 s: NOT met."
    record_section("P4", f"## P4 — cold\n\n| a | b |\n\n{verdict}\n", results)
    assert verdict_lines("P4", results) == [verdict]
    assert verdict_lines("P8", results) == []


def test_the_cold_start_bench_sums_import_time_by_where_modules_come_from():
    from bench.p4_cold_start import GROUPS, OTHER, import_groups

    trace = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:      1000 |       1000 |   azure.functions._abc",
            "import time:      2000 |       2000 |     azure.storage.queue._shared",
            "import time:       500 |       3500 |   core.store.records",
            "import time:       250 |        250 | functions",
            "import time:       100 |        100 | json",
            "import time:       300 |        300 |   azurefoo",
        ]
    )
    groups = import_groups(trace)
    names = [name for name, _ in GROUPS]
    assert groups[names[0]] == 0.001  # azure-functions
    assert groups[names[1]] == 0.002  # Storage SDKs
    assert groups[names[-1]] == pytest.approx(0.00075)  # own code: core.* and functions
    assert groups[OTHER] == pytest.approx(0.0004)  # json, and azurefoo (a prefix is not a package)


def test_reliability_sections_follow_every_performance_section_in_row_order(tmp_path: Path):
    results = tmp_path / "RESULTS.md"
    record_section("R4", "## R4 — fuzz\n\nfuzz\n", results)
    record_section("P8", "## P8 — slots\n\nslots\n", results)
    record_section("R1", "## R1 — chaos\n\nchaos\n", results)
    record_section("P1, P2", "## P1, P2 — sync\n\nsync\n", results)
    headings = [line for line in results.read_text("utf-8").splitlines() if line.startswith("## ")]
    assert headings == ["## P1, P2 — sync", "## P8 — slots", "## R1 — chaos", "## R4 — fuzz"]
    with pytest.raises(ValueError, match="must name TARGETS rows"):
        record_section("X1", "## X1 — other\n", results)
