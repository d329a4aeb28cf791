"""The contract suite's one Graph emulator, started once per test session.

Starting it is cheap (~15 ms), but one server for the whole suite keeps the test run to one
CA and one port; each test isolates itself with a fresh tenant (`EmulatedTenant.create`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devtools.graph_emulator import GraphEmulator


@pytest.fixture(scope="session")
async def graph_emulator() -> AsyncIterator[GraphEmulator]:
    async with GraphEmulator(latency=0.0) as emulator:
        yield emulator
