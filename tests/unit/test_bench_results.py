"""`bench/results.py`: each script's section of RESULTS.md is replaced in place, or added in
TARGETS order."""

from __future__ import annotations

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
