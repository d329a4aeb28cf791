"""R4: every HTTP endpoint fuzzed from the OpenAPI document the app serves (schemathesis).

The real `function_app` on the local Functions host against Azurite and the Graph emulator, with a
tenant onboarded through the operator API and given state the deeper paths reach (a linked
resource, a pushed appointment, a mail import, a booking calendar with a reservation, a monitored
user, a sender profile with a mail). The schema is loaded from `GET /api/v1/openapi.json` over
HTTP with the Functions key, as a host system would, and every operation in it is fuzzed
stateless with the keys the document declares for it (and now and then a wrong, missing or
swapped key), then sent input no generator writes (bodies that are not JSON objects, raw JSON
values such as 1e400 or a lone surrogate in the documented examples, odd query, header and path
parameters): see `bench/r4_fuzz.py`, which runs the same fuzzing for bench/RESULTS.md.

Every answer must be below 500; every 4xx the app answers must be problem+json with `status`,
`title` and `detail`; a wrong or missing bearer key must be a 401; and each answer must have a
documented status, a documented Content-Type and fit its documented schema. Set R4_FUZZ_SEED to
replay a run (the seed is recorded as a test property and in the failure message).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest

from bench.r4_fuzz import FuzzReport, Target, fuzz, host_router, operator_target_body, seed_world
from tests.integration.bridge_api import api_env  # noqa: F401 - fixture
from tests.integration.test_calendar_sync_down import (  # noqa: F401 - fixtures
    graph,
    start_bridge,
)

pytestmark = [
    pytest.mark.integration,
    # schemathesis draws its case ids from `random` while hypothesis generates; nothing to act on
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

# cases per operation of each kind (positive, negative, odd body values, odd parameters):
CI_EXAMPLES = 25  # 1-1.5 minutes here (2 cores)
LONG_EXAMPLES = 150  # about 8 minutes


async def fuzz_the_app(start_bridge: Callable[..., Any], examples: int) -> FuzzReport:
    seed = int(os.environ["R4_FUZZ_SEED"]) if os.environ.get("R4_FUZZ_SEED") else None
    async with start_bridge() as bridge:

        async def call(method: str, path: str, body: Any) -> tuple[int, Any]:
            reply = await bridge.call(method, path, json_body=body)
            return reply.status, reply.body

        outlook = bridge.outlook
        world = await seed_world(call, bridge.graph, outlook.tenant_id, outlook.client_id, outlook.domain)
        target_body = operator_target_body(outlook.tenant_id, outlook.client_id)
        created = await bridge.api.operator("POST", "/tenants", json_body=target_body)
        assert created.status == 201, created.text
        target = Target(
            base_url=bridge.api.host.base_url,
            function_key=bridge.api.host.function_key,
            tenant_id=bridge.tenant_id,
            tenant_key=bridge.api_key,
            operator_key=bridge.api.operator_key,
            world=world,
            route=host_router(bridge.api.host),
            operator_target_body=target_body,
        )
        # the fuzzer's HTTP client blocks: it runs in a thread while this loop serves the host
        return await asyncio.to_thread(fuzz, target, examples=examples, seed=seed)


def check(report: FuzzReport, record_property: Callable[[str, object], None]) -> None:
    record_property("seed", report.seed)
    record_property("operations", len(report.operations))
    record_property("requests", report.requests)
    record_property("responses_5xx", report.responses_5xx)
    record_property("non_problem_4xx", report.non_problem_4xx)
    record_property("findings", len(report.findings))
    summary = report.summary()
    assert report.errors == [], summary + "\n" + "\n".join(report.errors)
    assert len(report.operations) >= 45, summary
    unfuzzed = [op for op in report.operations if report.by_operation[op] == 0]
    assert unfuzzed == [], f"operations no request reached: {unfuzzed}"
    # both kinds of 4xx were exercised: the app's, and the Functions host's own 401/404
    assert report.app_4xx > 0, summary
    assert report.host_answered > 0, summary
    assert report.responses_5xx == 0, summary + "\n" + "\n".join(report.lines())
    assert report.non_problem_4xx == 0, summary + "\n" + "\n".join(report.lines())
    assert report.lines() == [], summary + "\n" + "\n".join(report.lines())


@pytest.mark.timeout(300)
async def test_r4_fuzzing_every_operation_of_the_served_document_finds_no_5xx_and_only_problem_4xx(
    start_bridge: Callable[..., Any], record_property: Callable[[str, object], None]
) -> None:
    """GIVEN the app on the local stack with a seeded tenant WHEN every operation of its served
    OpenAPI document is fuzzed (examples, then CI_EXAMPLES positive and negative cases each)
    THEN no answer is ≥ 500, every 4xx from the app is problem+json, wrong keys get 401, and
    every answer is one the document describes."""
    check(await fuzz_the_app(start_bridge, CI_EXAMPLES), record_property)


@pytest.mark.long
@pytest.mark.timeout(3600)
async def test_r4_long_fuzzing_every_operation_finds_no_5xx_and_only_problem_4xx(
    start_bridge: Callable[..., Any], record_property: Callable[[str, object], None]
) -> None:
    """The same, with LONG_EXAMPLES positive and negative cases per operation."""
    check(await fuzz_the_app(start_bridge, LONG_EXAMPLES), record_property)
