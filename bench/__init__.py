"""Benchmarks (TARGETS.md): each script prints its figures and records them in RESULTS.md."""

from __future__ import annotations
