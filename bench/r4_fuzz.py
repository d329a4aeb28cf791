"""TARGETS R4: every HTTP endpoint fuzzed from the served OpenAPI document (schemathesis); 0
responses ≥ 500, and every 4xx the app answers is RFC 9457 problem+json.

The real `function_app` runs on the local Functions host against Azurite and the Graph emulator
(in this process). A tenant is onboarded through the operator API with its own app registration
in the emulator, and given state for the deeper paths to reach: a linked resource with a pushed
appointment, a mail import, a booking calendar with a reservation, a monitored user, a sender
profile with a queued mail. The schema is then loaded as a host system would, from
`GET /api/v1/openapi.json` over HTTP with the Functions key, and every operation in it is fuzzed
(stateless): its documented examples, then `--examples` positive and as many negative cases
(schemathesis' generation modes), each sent with the keys the document declares for it or, now
and then, with a wrong, missing or swapped key. Path parameters name the seeded state most of
the time (the tenant's own id, the linked resource, ...), otherwise what schemathesis generates.
Then input no generator writes (`Fuzzer._odd`): bodies that are not UTF-8, not objects or too
deep, the documented examples with one value at a time replaced by JSON a Python value cannot
say (1e400, 2**64, a lone surrogate, a NUL, year 1 or 9999, ...), and each query, header and
path parameter set to odd text (far dates, huge numbers, 5,000 characters, ...); `--examples`
of each per operation, chosen by the seed. DELETE operations run last, so they do not empty the
state the others reach. Operator routes act on a second tenant (re-created when a fuzzed DELETE
removed it), never the fuzzed one.

Each answer is checked: no status ≥ 500; every 4xx the app answered (the Functions key was
valid and the host routed the path to a function) is problem+json with `status` equal to the
answer's status and a non-empty `title` and `detail`; a wrong or missing bearer key is a 401; and
schemathesis' cheap conformance checks: the status is documented for the operation, the
Content-Type is one documented for that status, the body fits the documented schema; and a body
that says it is JSON is JSON (no NaN or Infinity). A 401 or 404 the Functions host answers itself
(no Functions key, or a path that routes to no function) carries the platform's empty body, as in
Azure; those are counted apart.

    .venv/bin/python -m bench.r4_fuzz                  # updates bench/RESULTS.md
    .venv/bin/python -m bench.r4_fuzz --examples 5 --no-record

tests/integration/test_r4_fuzz.py runs the same fuzzing (`fuzz`, `seed_world`) in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import os
import random
import re
import secrets
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bench.results import RESULTS, commit, provenance, record_section

if TYPE_CHECKING:
    from typing import TypeAlias

    from schemathesis import APIOperation, Case
    from schemathesis.core.transport import Response

    Operation: TypeAlias = APIOperation[Any, Any, Any, Any]
    FuzzCase: TypeAlias = Case[Any]

    from devtools.funchost import FunctionHost
    from devtools.graph_emulator import GraphEmulator

COMMAND = ".venv/bin/python -m bench.r4_fuzz"
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = 100  # cases per operation of each kind (positive, negative, odd values, odd parameters)
OPENAPI_PATH = "/api/v1/openapi.json"
OPERATOR_TARGET = "fuzz-operator-target"
PROBLEM_JSON = "application/problem+json"
# What the Graph side of the seeded tenant needs (admin consent in the emulator).
PERMISSIONS = ("Calendars.ReadWrite", "User.Read.All", "Mail.ReadWrite", "Mail.Send")
SLOTS = 80  # bookable slots in the seeded booking calendar

# How a case authenticates. "valid": the document's keys for the operation (Functions key
# header + the tenant's or the operator's bearer key); "code": the Functions key as the `code`
# query parameter instead. The others must not get past the guards.
VALID = "valid"
CODE = "code"
NO_BEARER = "no-bearer"
WRONG_BEARER = "wrong-bearer"
SWAPPED_BEARER = "swapped-bearer"  # the operator key on a tenant route, the tenant's on an operator one
NO_FUNCTION_KEY = "no-function-key"
AUTH_VARIANTS = (VALID,) * 8 + (CODE, NO_BEARER, WRONG_BEARER, SWAPPED_BEARER, NO_FUNCTION_KEY)
REJECTED_BY_APP = (NO_BEARER, WRONG_BEARER, SWAPPED_BEARER)
# Where path parameters come from: the seeded state (and the fuzzed tenant), only the tenant's id
# (the rest generated), or all generated (another tenant: the guard's 404).
KNOWN, TENANT_ONLY, GENERATED = "known", "tenant-only", "generated"
PATH_POLICIES = (KNOWN,) * 5 + (TENANT_ONLY,) * 2 + (GENERATED,)
# Whole request bodies no generator writes, and JSON values a Python value cannot say (sent raw).
ODD_BODIES = (
    b"\xff\xfe\x00{",  # not UTF-8
    b"[]",
    b"null",
    b'"text"',
    b"1e400",
    b"[" * 50_000 + b"]" * 50_000,  # deeper than any parser recursion
    b'{"a": 1} trailing',
    b"{" + b'"k": 1, ' * 10_000 + b'"k": 2}',  # one key 10,001 times
)
ODD_VALUES = (
    "1e400",  # inf as a float
    "-1e400",
    "18446744073709551616",  # 2**64
    "-9223372036854775809",  # below int64
    "1" * 5000,  # more digits than Python converts by default
    "0.5",
    "-1",
    "true",
    "null",
    '""',
    '" \\t "',
    '"\\u0000"',
    '"\\ud800"',  # a lone surrogate
    '"' + "\\u202e" * 3 + '"',  # right-to-left overrides
    '"' + "x" * 70_000 + '"',  # above Table Storage's 64 KiB per string
    '"9999-12-31T23:59:59"',  # the far ends of what a date can say
    '"0001-01-01"',
    '"0001-01-01T00:00:00-14:00"',
    "[]",
    "{}",
    '["a", 1, null]',
)
# Query, header and path parameter text no generator writes on purpose.
ODD_PARAMETERS = (
    "",
    " ",
    "0",
    "-1",
    "1e400",
    "99999999999999999999",
    "9999-12-31",
    "0001-01-01",
    "9999-12-31T23:59:59+14:00",
    "0001-01-01T00:00:00-14:00",
    "2026-02-30",
    "2026-12-01T25:00",
    "true",
    "\u0000",
    "%",
    "a,,b,",
    "x" * 5000,
    "æøå 😀",
)
_PATH_PARAM = re.compile(r"\{(\w+)\}")
_SENTINEL = "\u0000r4-odd-value\u0000"


def say(line: str = "") -> None:
    print(line, flush=True)


# --- what is fuzzed, and what came back -------------------------------------------------------


Router = Callable[[str, str], "str | None"]


@dataclass(frozen=True)
class Target:
    """The running app and what the fuzzer needs to reach it."""

    base_url: str  # http://127.0.0.1:PORT
    function_key: str
    tenant_id: str  # tenant routes act on this tenant, with its key
    tenant_key: str
    operator_key: str
    world: World  # values naming the seeded state
    route: Router  # (method, decoded path) -> the function the host serves it with, or None
    operator_target: str = OPERATOR_TARGET  # operator routes with {tenantId} act on this tenant
    operator_target_body: Mapping[str, Any] = field(default_factory=dict)  # to (re-)create it


@dataclass(frozen=True)
class Finding:
    """One kind of defect on one operation; `example` is the first request that showed it."""

    operation: str
    kind: str
    status: int
    detail: str
    example: str


@dataclass
class FuzzReport:
    seed: int
    examples: int
    operations: list[str] = field(default_factory=list)
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)  # per operation
    app_4xx: int = 0  # 4xx the app answered (each checked for problem+json)
    host_answered: int = 0  # 401/404 the Functions host answered itself (no key, no route)
    unsendable: int = 0  # cases the HTTP client refused to send (e.g. a header with a newline)
    findings: dict[tuple[str, str, int, str], Finding] = field(default_factory=dict)
    counts: Counter[tuple[str, str, int, str]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # operations schemathesis could not fuzz
    no_negative: list[str] = field(default_factory=list)  # operations with nothing to make invalid
    seconds: float = 0.0

    def add(self, operation: str, kind: str, status: int, detail: str, example: str) -> None:
        key = (operation, kind, status, detail)
        self.counts[key] += 1
        self.findings.setdefault(key, Finding(operation, kind, status, detail, example))

    def count(self, kind: str) -> int:
        return sum(n for key, n in self.counts.items() if key[1] == kind)

    @property
    def responses_5xx(self) -> int:
        return sum(n for status, n in self.by_status.items() if status >= 500)

    @property
    def non_problem_4xx(self) -> int:
        return self.count("non-problem 4xx")

    def lines(self) -> list[str]:
        """Every distinct finding, with how often it occurred and its first request."""
        out = []
        for key, finding in sorted(self.findings.items()):
            out.append(
                f"{finding.operation}: {finding.kind} (HTTP {finding.status}, x{self.counts[key]}): "
                f"{finding.detail} — e.g. {finding.example}"
            )
        return out + [f"could not fuzz {e}" for e in self.errors]

    def summary(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))
        return (
            f"{len(self.operations)} operations, {self.requests} requests in {self.seconds:.0f} s "
            f"(seed {self.seed}); 5xx {self.responses_5xx}, non-problem 4xx {self.non_problem_4xx}, "
            f"other findings {self.other_findings}; "
            f"app 4xx {self.app_4xx}, host 401/404 {self.host_answered}, unsendable {self.unsendable}; "
            f"statuses {{{statuses}}}"
        )

    @property
    def other_findings(self) -> int:
        """Distinct findings besides 5xx and non-problem 4xx, and operations not fuzzed."""
        others = [f for f in self.findings.values() if f.kind not in ("5xx", "non-problem 4xx")]
        return len(others) + len(self.errors)


# --- the fuzzer --------------------------------------------------------------------------------


def host_router(host: FunctionHost) -> Router:
    """Which function the local Functions host serves `method path` with (path decoded, as
    aiohttp decodes it), or None when the host answers 404 itself."""

    def route(method: str, path: str) -> str | None:
        prefix = "/" + host.config.route_prefix.strip("/")
        if not path.lower().startswith(prefix.lower() + "/"):
            return None
        relative = path[len(prefix) :]
        for candidate in host.routes:
            if candidate.template.match(relative) is not None and candidate.allows(method):
                return candidate.name
        return None

    return route


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_defect(response: Response) -> str | None:
    """Why the body of a response that says it is JSON is not (RFC 8259: no NaN, no Infinity)."""
    content_type = (response.headers.get("content-type") or [""])[0].split(";")[0].strip().lower()
    if not (content_type.endswith("/json") or content_type.endswith("+json")):
        return None
    try:
        json.loads(response.content, parse_constant=_no_constant)
    except ValueError as exc:
        return f"{content_type} body is not JSON: {str(exc)[:80]}"
    return None


def problem_defect(response: Response) -> str | None:
    """Why `response` (a 4xx) is not the problem+json the API promises, or None."""
    content_type = (response.headers.get("content-type") or [""])[0].split(";")[0].strip().lower()
    if content_type != PROBLEM_JSON:
        return f"Content-Type is {content_type or 'missing'}, not {PROBLEM_JSON}"
    try:
        body = json.loads(response.content)
    except ValueError:
        return "the body is not JSON"
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if body.get("status") != response.status_code:
        return f"`status` is {body.get('status')!r}, not {response.status_code}"
    for name in ("title", "detail"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            return f"no `{name}`"
    return None


class Fuzzer:
    def __init__(self, target: Target, *, examples: int, seed: int, log: Callable[[str], None]) -> None:
        import requests

        self.target = target
        self.examples = examples
        self.log = log
        self.report = FuzzReport(seed=seed, examples=examples)
        self.session = requests.Session()

    # -- the schema, as a host system loads it

    def load(self) -> Any:
        import schemathesis

        config = schemathesis.Config.from_dict(
            # the keys are the fuzzer's to choose per case (AUTH_VARIANTS), not generated
            {"generation": {"with-security-parameters": False}}
        )
        return schemathesis.openapi.from_url(
            self.target.base_url + OPENAPI_PATH,
            config=config,
            headers={"x-functions-key": self.target.function_key},
            timeout=60,
        )

    def run(self, deadline: float | None = None) -> FuzzReport:
        started = time.monotonic()
        try:
            schema = self.load()
            operations: list[Operation] = []
            for result in schema.get_all_operations():
                try:
                    operations.append(result.ok())
                except Exception as exc:  # an operation schemathesis cannot read is a finding
                    self.report.errors.append(f"an operation of the document: {exc}")
            # DELETEs last: they would otherwise remove the state the other operations reach
            operations.sort(key=lambda op: op.method.upper() == "DELETE")
            for operation in operations:
                if deadline is not None and time.monotonic() > deadline:
                    self.report.errors.append(f"{self._label(operation)}: not fuzzed, out of time")
                    continue
                self._operation(operation)
        finally:
            self.session.close()
        self.report.seconds = time.monotonic() - started
        return self.report

    @staticmethod
    def _label(operation: Operation) -> str:
        return f"{operation.method.upper()} {operation.path}"

    def _operation(self, operation: Operation) -> None:
        from hypothesis.errors import Unsatisfiable
        from schemathesis import GenerationMode

        label = self._label(operation)
        self.report.operations.append(label)
        before = self.report.requests
        for phase in ("examples", "positive", "negative", "odd"):
            try:
                if phase == "odd":
                    self._odd(operation)
                    continue
                if phase == "examples":
                    strategies = operation.get_strategies_from_examples()
                    budget = 2 * len(strategies)
                else:
                    mode = GenerationMode.POSITIVE if phase == "positive" else GenerationMode.NEGATIVE
                    strategies = [operation.as_strategy(mode)]
                    budget = self.examples
                if strategies:
                    self._given(operation, strategies, budget, examples=phase == "examples")
            except Unsatisfiable:
                if phase != "negative":
                    raise
                # nothing of the operation can be made invalid (no parameters, no body)
                self.report.no_negative.append(label)
            except Exception as exc:
                self.report.errors.append(f"{label} ({phase}): {type(exc).__name__}: {exc}"[:400])
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.report.statuses.get(label, {}).items()))
        self.log(f"{label}: {self.report.requests - before} requests ({statuses})")

    def _given(self, operation: Operation, strategies: Sequence[Any], budget: int, *, examples: bool) -> None:
        from hypothesis import HealthCheck, Phase, Verbosity, given, settings
        from hypothesis import seed as hypothesis_seed
        from hypothesis import strategies as st

        cases = st.one_of(*strategies) if len(strategies) > 1 else strategies[0]
        auth = st.just(VALID) if examples else st.sampled_from(AUTH_VARIANTS)
        paths = st.just(KNOWN) if examples else st.sampled_from(PATH_POLICIES)

        @settings(
            max_examples=budget,
            deadline=None,
            database=None,
            derandomize=False,
            phases=[Phase.explicit, Phase.generate],  # every answer is recorded, nothing raised to shrink
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
        )
        @given(case=cases, auth=auth, paths=paths)
        def send(case: FuzzCase, auth: str, paths: str) -> None:
            self.send(operation, case, auth, paths)

        hypothesis_seed(self.report.seed)(send)()

    # -- one case

    @staticmethod
    def _bearer_scheme(operation: Operation) -> str | None:
        """The bearer key the document declares for `operation`: tenantKey, operatorKey or None."""
        for requirement in operation.definition.raw.get("security") or []:
            for name in requirement:
                if name in ("tenantKey", "operatorKey"):
                    return str(name)
        return None

    def _authenticate(self, operation: Operation, case: FuzzCase, auth: str) -> None:
        from requests.structures import CaseInsensitiveDict

        t = self.target
        anonymous = operation.definition.raw.get("security") == []
        scheme = self._bearer_scheme(operation)
        operator = scheme == "operatorKey"
        headers = CaseInsensitiveDict(
            {
                k: v
                for k, v in (case.headers or {}).items()
                if k.lower() not in ("x-functions-key", "authorization")
            }
        )
        query = case.query
        if isinstance(query, Mapping):
            query = {k: v for k, v in query.items() if k != "code"}
        if not anonymous or auth != VALID:
            if auth == CODE and isinstance(query, dict):
                query["code"] = t.function_key
            elif auth != NO_FUNCTION_KEY:
                headers["x-functions-key"] = t.function_key
        own = t.operator_key if operator else t.tenant_key
        bearer = {
            VALID: own,
            CODE: own,
            NO_FUNCTION_KEY: own,
            NO_BEARER: None,
            WRONG_BEARER: (
                "m365op_" + secrets.token_urlsafe(32)
                if operator
                else f"m365b_{t.tenant_id}_{secrets.token_urlsafe(32)[:43]}"
            ),
            SWAPPED_BEARER: t.tenant_key if operator else t.operator_key,
        }[auth]
        if bearer is not None and scheme is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        case.headers = headers
        case.query = query

    def _paths(self, operation: Operation, case: FuzzCase, paths: str) -> None:
        if paths == GENERATED or not case.path_parameters:
            return
        t = self.target
        operator = operation.path.startswith("/api/v1/operator/")
        fixed: dict[str, Any] = {"tenantId": t.operator_target if operator else t.tenant_id}
        if paths == KNOWN:
            fixed.update({k: v for k, v in t.world.path_values.items() if k != "tenantId"})
        case.path_parameters = {name: fixed.get(name, value) for name, value in case.path_parameters.items()}

    def send(self, operation: Operation, case: FuzzCase, auth: str, paths: str) -> None:
        import requests

        label = f"{operation.method.upper()} {operation.path}"
        self._paths(operation, case, paths)
        self._authenticate(operation, case, auth)
        try:
            response = case.call(
                base_url=self.target.base_url, session=self.session, timeout=60, allow_redirects=False
            )
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, ValueError, UnicodeError):
            self.report.unsendable += 1  # the client refused it; nothing reached the server
            return
        except requests.RequestException as exc:
            self.report.requests += 1
            self.report.add(label, "no answer", 0, type(exc).__name__, self._describe(case, None))
            return
        self._record(operation, case, response, auth)

    def _record(self, operation: Operation, case: FuzzCase, response: Response, auth: str) -> None:
        label = self._label(operation)
        status = response.status_code
        self.report.requests += 1
        self.report.by_operation[label] += 1
        self.report.statuses.setdefault(label, Counter())[status] += 1
        self.report.by_status[status] += 1
        self._check(operation, case, response, auth, label)
        if (
            status < 300
            and operation.method.upper() == "DELETE"
            and operation.path == "/api/v1/operator/tenants/{tenantId}"
            and case.path_parameters.get("tenantId") == self.target.operator_target
        ):
            self._recreate_operator_target()

    # -- odd values in the documented examples

    def _odd(self, operation: Operation) -> None:
        """Odd input no generator writes, with the valid keys and the seeded state's path values.

        The body: each documented request example, made to name the seeded state
        (`World.body_values`, a fresh idempotency key, no stale slot version), sent as it is,
        then whole-body odd (not UTF-8, not an object, too deep, ...) and with one value at a
        time replaced by an odd JSON value (1e400, 2**64, a lone surrogate, a NUL, ...) that a
        Python value cannot say. Parameters: each query and header parameter, and each path
        parameter, set to odd text one at a time (far dates, huge numbers, a NUL, ...). Of the
        body replacements and the parameter values, `examples` each per operation, by seed."""
        from schemathesis.core.transport import Response

        from core.store.limits import is_control

        t = self.target
        rng = random.Random(f"{self.report.seed}:{operation.label}")
        body = (operation.definition.raw.get("requestBody") or {}).get("content", {})
        media = next(iter(body), None)
        examples = [e["value"] for e in body[media].get("examples", {}).values()] if media else []
        pools = {name: itertools.cycle(values) for name, values in t.world.body_values.items()}

        def fit(value: Any) -> Any:
            if isinstance(value, list):
                return [fit(v) for v in value]
            if not isinstance(value, dict):
                return value
            out = {
                k: next(pools[k]) if k in pools else fit(v) for k, v in value.items() if k != "slotVersion"
            }
            if "idempotencyKey" in out:
                out["idempotencyKey"] = "r4-" + uuid.uuid4().hex
            return out

        def whole(example: Any) -> bytes:
            return json.dumps(fit(example)).encode()

        def replaced(index: int, path: tuple[str | int, ...], raw: str) -> bytes:
            return _with_raw(fit(examples[index]), path, raw)

        def valid_body() -> bytes | None:
            return whole(examples[0]) if examples else None

        # (body maker, where a parameter is odd, its name, its value); bodies are made when sent:
        # each takes its own slot and idempotency key
        variants: list[tuple[Callable[[], bytes | None], str, str, str]] = [
            (functools.partial(whole, e), "", "", "") for e in examples
        ]
        if media:
            variants += [(functools.partial(bytes, b), "", "", "") for b in ODD_BODIES]
        choices = [
            (i, path, raw) for i, e in enumerate(examples) for path in _paths_in(fit(e)) for raw in ODD_VALUES
        ]
        for i, path, raw in rng.sample(choices, min(self.examples, len(choices))):
            variants.append((functools.partial(replaced, i, path, raw), "", "", ""))
        parameters = [
            (p["in"], p["name"])
            for p in operation.definition.raw.get("parameters", [])
            if p["name"] != "tenantId"
        ]
        odd_parameters = [(where, name, value) for where, name in parameters for value in ODD_PARAMETERS]
        for where, name, value in rng.sample(odd_parameters, min(self.examples, len(odd_parameters))):
            variants.append((valid_body, where, name, value))

        operator = self._bearer_scheme(operation) == "operatorKey"
        for make_body, where, name, value in variants:
            path_parameters = {
                key: (t.operator_target if operator else t.tenant_id)
                if key == "tenantId"
                else t.world.path_values[key]
                for key in _PATH_PARAM.findall(operation.path)
            }
            query: dict[str, str] = {}
            headers: dict[str, str] = {}
            if where == "path":
                path_parameters[name] = value
            elif where == "query":
                query[name] = value
            elif where == "header":
                if any(is_control(ch) for ch in value):
                    # not a field value HTTP allows (RFC 9110 5.5): the server's HTTP parser
                    # refuses it with its own 400 before any function runs, locally and in Azure
                    self.report.unsendable += 1
                    continue
                headers[name] = value
            case = operation.Case(path_parameters=path_parameters, query=query, media_type=media)
            self._authenticate(operation, case, VALID)
            try:
                reply = self.session.request(
                    operation.method.upper(),
                    t.base_url + case.formatted_path,
                    data=make_body(),
                    headers={**dict(case.headers), **headers, **({"Content-Type": media} if media else {})},
                    params=case.query,
                    timeout=60,
                    allow_redirects=False,
                )
            except (ValueError, UnicodeError):  # e.g. a header requests will not send
                self.report.unsendable += 1
                continue
            self._record(operation, case, Response.from_requests(reply, verify=True), VALID)

    def _check(self, operation: Operation, case: FuzzCase, response: Response, auth: str, label: str) -> None:
        from yarl import URL

        status = response.status_code
        decoded = URL(response.request.url or "").path  # as aiohttp decodes it for the host
        served_by = self.target.route(operation.method.upper(), decoded)
        anonymous = operation.definition.raw.get("security") == []
        example = self._describe(case, response)
        if status >= 500:
            self.report.add(label, "5xx", status, _problem_detail(response), example)
            return
        if served_by is None or (auth == NO_FUNCTION_KEY and not anonymous):
            # the Functions host answered without running the app: 404 no route, 401 no key
            expected = 404 if served_by is None else 401
            self.report.host_answered += 1
            if status != expected:
                self.report.add(label, f"host answered {status}", status, f"expected {expected}", example)
            return
        defect = json_defect(response)
        if defect is not None:
            self.report.add(label, "invalid JSON body", status, defect, example)
        if 400 <= status < 500:
            self.report.app_4xx += 1
            defect = problem_defect(response)
            if defect is not None:
                self.report.add(label, "non-problem 4xx", status, defect, example)
        if auth in REJECTED_BY_APP and self._bearer_scheme(operation) is not None and status != 401:
            self.report.add(label, "wrong key not refused", status, f"{auth} answered {status}", example)
        if served_by != operation.definition.raw.get("operationId"):
            return  # the host routed it elsewhere (e.g. a literal path segment won): not this contract
        self._conformance(case, response, label, example)

    def _conformance(self, case: FuzzCase, response: Response, label: str, example: str) -> None:
        from schemathesis.core.failures import FailureGroup
        from schemathesis.specs.openapi.checks import (
            content_type_conformance,
            response_schema_conformance,
            status_code_conformance,
        )

        try:
            case.validate_response(
                response,
                checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
            )
        except FailureGroup as group:
            for failure in group.exceptions:
                self.report.add(
                    label, failure.title, response.status_code, _first_line(failure.message), example
                )
        except Exception as exc:
            self.report.add(
                label, "check error", response.status_code, f"{type(exc).__name__}: {exc}", example
            )

    def _recreate_operator_target(self) -> None:
        t = self.target
        reply = self.session.post(
            t.base_url + "/api/v1/operator/tenants",
            json=dict(t.operator_target_body),
            headers={"x-functions-key": t.function_key, "Authorization": f"Bearer {t.operator_key}"},
            timeout=60,
        )
        if reply.status_code not in (201, 409):
            raise RuntimeError(f"could not re-create {t.operator_target}: {reply.status_code} {reply.text}")

    def _describe(self, case: FuzzCase, response: Response | None) -> str:
        """The request, without keys: method, path and query, body (shortened)."""
        request = response.request if response is not None else None
        url = (request.url or "") if request is not None else case.formatted_path
        parts = urlsplit(url)
        query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("code="))
        text = f"{case.method.upper()} {parts.path}{'?' + query if query else ''}"
        body = request.body if request is not None else None
        if body:
            raw = body if isinstance(body, bytes) else str(body).encode()
            text += f" body {raw[:160]!r}{'…' if len(raw) > 160 else ''}"
        return text


def _paths_in(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """The path of every value inside `value` (objects' members, arrays' items), depth first."""
    out: list[tuple[str | int, ...]] = []
    items: Any = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, inner in items:
        out.append((*path, key))
        out.extend(_paths_in(inner, (*path, key)))
    return out


def _with_raw(example: Any, path: tuple[str | int, ...], raw: str) -> bytes:
    """`example` as JSON with the value at `path` replaced by the JSON text `raw`."""
    copy = json.loads(json.dumps(example))
    holder = copy
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = _SENTINEL
    return json.dumps(copy, ensure_ascii=False).replace(json.dumps(_SENTINEL), raw).encode()


def _problem_detail(response: Response) -> str:
    try:
        body = json.loads(response.content)
    except ValueError:
        return response.content[:120].decode(errors="replace")
    return str(body.get("detail", body))[:160] if isinstance(body, dict) else str(body)[:160]


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[:2])[:240]


def fuzz(
    target: Target,
    *,
    examples: int,
    seed: int | None = None,
    deadline: float | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> FuzzReport:
    """Fuzz every operation of the served document against `target` (blocking: call it in a
    thread while the event loop serves the host)."""
    chosen = seed if seed is not None else secrets.randbits(32)
    return Fuzzer(target, examples=examples, seed=chosen, log=log).run(deadline)


# --- the seeded tenant -------------------------------------------------------------------------


Call = Callable[[str, str, Any], Awaitable[tuple[int, Any]]]


def next_weekday(days_ahead: int = 7) -> date:
    day = datetime.now(UTC).date() + timedelta(days=days_ahead)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


@dataclass(frozen=True)
class World:
    """The seeded state, as values that name it: path parameters, and request body members
    (each request takes the next of its values, e.g. a slot not booked yet)."""

    path_values: Mapping[str, str]
    body_values: Mapping[str, Sequence[str]]


async def seed_world(
    call: Call, graph: GraphEmulator, graph_tenant: str, client_id: str, domain: str
) -> World:
    """State for the deeper paths to reach, made through the tenant's API (`call(method, path
    under /api/v1/tenants/{id}, body) -> (status, body)`) and Outlook (the emulator)."""
    graph.grant(graph_tenant, client_id, *PERMISSIONS)

    def mailbox(name: str) -> str:
        upn = f"{name}@{domain}".lower()
        graph.add_user(graph_tenant, upn)
        return upn

    async def ok(method: str, path: str, body: Any, *expected: int) -> Any:
        status, answer = await call(method, path, body)
        if status not in expected:
            raise RuntimeError(f"seeding: {method} {path} answered {status}: {answer}")
        return answer

    adele, invoices, forms = mailbox("adele"), mailbox("invoices"), mailbox("forms")
    await ok(
        "PUT",
        "/resources/room-4b",
        {"displayName": "Møterom 4B", "accounts": [{"account": adele, "direction": "both"}]},
        201,
    )
    day = next_weekday()
    appointment = {
        "hostAppointmentId": "SO-1001",
        "resourceId": "room-4b",
        "version": 1,
        "op": "upsert",
        "subject": "Service: varmepumpe",
        "start": f"{day.isoformat()}T10:00",
        "end": f"{day.isoformat()}T11:00",
        "timeZone": "Europe/Oslo",
    }
    await ok("POST", "/appointments", appointment, 202)

    mail = graph.module("mail").mail
    mail.ensure_folder_path(invoices, "Inbox/Invoices")
    mail.ensure_folder_path(invoices, "Archive/Invoices")
    await ok(
        "PUT",
        "/mail-imports/invoices",
        {
            "mailbox": invoices,
            "importFolder": "Inbox/Invoices",
            "archiveFolder": "Archive/Invoices",
            "forwardTo": "regnskap@kunde.example",
        },
        201,
    )

    calendar_id = graph.calendar.create_calendar(adele, "Bookable slots").id
    await ok(
        "PUT",
        "/booking-calendars/advice",
        {
            "displayName": "Rådgivning",
            "owner": adele,
            "calendar": "Bookable slots",
            "firstHour": 0,
            "lastHour": 24,
            "showWeekend": True,
        },
        201,
    )
    slots = []
    first = datetime.combine(day, datetime.min.time())
    for n in range(SLOTS):  # hourly, day and night: the calendar's rules offer every hour
        start, end = first + timedelta(hours=n), first + timedelta(hours=n + 1)
        times = {
            "start": {"dateTime": start.isoformat(), "timeZone": "Europe/Oslo"},
            "end": {"dateTime": end.isoformat(), "timeZone": "Europe/Oslo"},
        }
        record, _ = graph.calendar.create_event(
            adele, {"subject": "Konsultasjon", **times}, calendar_id=calendar_id
        )
        slots.append(str(record.id))
    reservation = await ok(
        "POST",
        "/booking-calendars/advice/reservations",
        {"slotId": slots[0], "booker": {"name": "Åse Nordmann", "email": "ase@example.org"}, "fields": {}},
        201,
    )

    await ok("PUT", f"/presence/monitors/{adele}", {"displayName": "Adele"}, 201)
    await ok("PUT", "/mail-senders/forms", {"mailbox": forms}, 201)
    message = await ok(
        "POST",
        "/mail-senders/forms/messages",
        {"idempotencyKey": "r4-seed-1", "to": [adele], "subject": "Kvittering", "body": "Takk for søknaden."},
        202,
    )
    return World(
        path_values={
            "resourceId": "room-4b",
            "account": adele,
            "hostAppointmentId": "SO-1001",
            "importId": "invoices",
            "bookingCalendarId": "advice",
            "reservationId": str(reservation["id"]),
            "email": adele,
            "senderId": "forms",
            "messageId": str(message["id"]),
        },
        body_values={
            "slotId": tuple(slots[1:]),  # free slots, one per request that books
            "resourceId": ("room-4b",),
            "mailbox": (invoices,),
            "owner": (adele,),
        },
    )


def operator_target_body(graph_tenant: str, client_id: str) -> dict[str, Any]:
    """The tenant the operator routes are fuzzed on (no Graph calls are made for it)."""
    return {
        "id": OPERATOR_TARGET,
        "displayName": "Fuzzed by the operator routes",
        "graph": {"tenantId": graph_tenant, "clientId": client_id, "credentialMode": "managed"},
        "host": {},
        "defaults": {"language": "nb", "timeZone": "Europe/Oslo"},
    }


# --- the benchmark's own stack -----------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    target: Target
    call: Call  # the fuzzed tenant's API, as seeded
    graph: GraphEmulator


@asynccontextmanager
async def bench_stack(work: Path) -> AsyncIterator[Stack]:
    """Azurite, the Graph emulator and the local Functions host with the real app; the fuzzed
    tenant (its own app registration in the emulator, no webhook) with its seeded state, and the
    operator routes' target tenant."""
    import aiohttp

    import function_app
    from core import bootstrap
    from core.operator_auth import new_operator_key
    from devtools.azurite import Azurite
    from devtools.funchost import FunctionHost
    from devtools.graph_emulator import GraphEmulator

    with Azurite() as azurite:
        async with GraphEmulator(directory=work / "graph") as graph:
            operator_key, digest = new_operator_key()
            never = "0 0 0 1 1 *"
            env = {
                "AzureWebJobsStorage": azurite.connection_string,
                "BRIDGE_TABLE_PREFIX": "r4" + uuid.uuid4().hex[:8],
                "LOCAL_SECRETS_DIR": str(work / "secrets"),
                "HOUSEKEEPING_SCHEDULE": never,
                "MAIL_IMPORT_SCHEDULE": never,
                "GRAPH_SUBSCRIPTION_SCHEDULE": never,
                "CALENDAR_SYNC_SCHEDULE": never,
                "GRAPH_BASE_URL": graph.graph_url,
                "GRAPH_AUTHORITY_HOST": graph.authority,
                "GRAPH_CA_BUNDLE": str(graph.ca_cert),
                "BRIDGE_OPERATOR_KEY_SHA256": digest,
                "LOG_LEVEL": "WARNING",
            }
            os.environ.update(env)  # the app's settings are read from the process environment
            await bootstrap.reset()
            domain = "fuzz.onmicrosoft.com"
            emulated = graph.add_tenant(name="Fuzz", domain=domain)
            secret = "s-" + uuid.uuid4().hex
            app = graph.add_app(emulated.id, secrets=[secret], application_permissions=PERMISSIONS)
            try:
                async with (
                    FunctionHost(function_app.app, host_json=ROOT / "host.json", port=0, env=env) as host,
                    aiohttp.ClientSession() as http,
                ):
                    keys = {"x-functions-key": host.function_key}

                    async def raw(method: str, path: str, body: Any, bearer: str) -> tuple[int, Any]:
                        async with http.request(
                            method,
                            host.base_url + path,
                            json=body,
                            headers={**keys, "Authorization": f"Bearer {bearer}"},
                        ) as resp:
                            text = await resp.text()
                            return resp.status, json.loads(text) if text else None

                    tenant_id = "fuzz-tenant"
                    tenant = {
                        "id": tenant_id,
                        "displayName": "Fuzz AS",
                        "graph": {
                            "tenantId": emulated.id,
                            "clientId": app.client_id,
                            "credentialMode": "client_secret",
                            "clientSecret": secret,
                        },
                        "host": {},
                        "defaults": {"language": "nb", "timeZone": "Europe/Oslo"},
                    }
                    status, created = await raw("POST", "/api/v1/operator/tenants", tenant, operator_key)
                    if status != 201:
                        raise RuntimeError(f"creating the tenant answered {status}: {created}")
                    tenant_key = created["apiKey"]

                    async def call(method: str, path: str, body: Any) -> tuple[int, Any]:
                        return await raw(method, f"/api/v1/tenants/{tenant_id}{path}", body, tenant_key)

                    world = await seed_world(call, graph, emulated.id, app.client_id, domain)
                    target_body = operator_target_body(emulated.id, app.client_id)
                    status, answer = await raw("POST", "/api/v1/operator/tenants", target_body, operator_key)
                    if status != 201:
                        raise RuntimeError(f"creating the operator's target answered {status}: {answer}")
                    target = Target(
                        base_url=host.base_url,
                        function_key=host.function_key,
                        tenant_id=tenant_id,
                        tenant_key=tenant_key,
                        operator_key=operator_key,
                        world=world,
                        route=host_router(host),
                        operator_target_body=target_body,
                    )
                    yield Stack(target, call, graph)
            finally:
                await bootstrap.reset()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"commit": commit()}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-r4-") as tmp:
        async with bench_stack(Path(tmp)) as stack:
            result["report"] = await asyncio.to_thread(
                fuzz, stack.target, examples=args.examples, seed=args.seed, log=say
            )
    result["total_time"] = time.perf_counter() - started
    result["commit_after"] = commit()
    return result


def section(r: dict[str, Any], command: str) -> str:
    from schemathesis import __version__ as schemathesis_version

    report: FuzzReport = r["report"]
    met = report.responses_5xx == 0 and report.non_problem_4xx == 0
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(report.by_status.items()))
    findings = report.lines()
    lines = [
        "## R4 — fuzzing every HTTP endpoint from the OpenAPI document",
        "",
        "Target: 0 responses ≥ 500; every 4xx is problem+json.",
        "",
        "| operations fuzzed | requests sent | responses ≥ 500 | 4xx not problem+json "
        "| 4xx from the app | 401/404 from the Functions host | other findings |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(report.operations)} | {report.requests} | {report.responses_5xx} | {report.non_problem_4xx} "
        f"| {report.app_4xx} | {report.host_answered} "
        f"| {report.other_findings} |",
        "",
        f"**R4: {report.responses_5xx} responses ≥ 500, {report.non_problem_4xx} non-problem 4xx** — target: "
        f"{'met' if met else 'NOT met'}.",
        "",
        f"- schemathesis {schemathesis_version}, stateless, on the schema served at `GET {OPENAPI_PATH}` "
        f"(loaded over HTTP with the Functions key): per operation its documented examples, then "
        f"{report.examples} positive and {report.examples} negative cases (hypothesis seed {report.seed}); "
        "keys as the document declares per operation, about 1 case in 3 with the Functions key as `code`, "
        "no bearer, a wrong or swapped bearer key, or no Functions key. Then input no generator writes, "
        f"with valid keys: bodies not UTF-8, not objects or too deep; up to {report.examples} copies of "
        "the documented examples with one value replaced by raw JSON a Python value cannot say (1e400, "
        "2**64, a lone surrogate, a NUL, year 1 or 9999, ...); up to "
        f"{report.examples} query, header or path parameters set to odd text (far dates, huge numbers, "
        "5,000 characters, ...).",
        "- The real `function_app` on the local Functions host, Azurite and the Graph emulator; a tenant "
        "with a linked resource, a pushed appointment, a mail import, a booking calendar with a reservation, "
        "a monitored user and a sender profile with a mail, which path parameters name most of the time. "
        "Operator routes act on a second tenant; DELETEs run last.",
        "- Checked on every answer: status < 500; a 4xx the app answered is problem+json with `status`, "
        "`title` and `detail`; a wrong or missing bearer key is 401; the status is documented, the "
        "Content-Type documented for it, the body fits its schema (schemathesis' status_code_conformance, "
        "content_type_conformance, response_schema_conformance); a JSON body is JSON (no NaN or Infinity). "
        "401/404 answered by the Functions host "
        "itself (no Functions key, or a path no function's route matches) carry the platform's empty body "
        "and are counted apart.",
        f"- Statuses: {statuses}; {report.unsendable} generated cases the HTTP client would not send.",
    ]
    if findings:
        lines.append("- Findings:")
        lines.extend(f"  - {line}" for line in findings)
    lines += [*(f"- {p}" for p in provenance(r, command)), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--examples",
        type=int,
        default=EXAMPLES,
        help="cases per operation of each kind (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    from hypothesis.errors import HypothesisDeprecationWarning

    # schemathesis draws its case ids from `random` while hypothesis generates; nothing to act on
    warnings.filterwarnings("ignore", category=HypothesisDeprecationWarning)
    result = asyncio.run(run(args))
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    text = section(result, command)
    say()
    say(text)
    if not args.no_record:
        record_section("R4", text)
        say(f"recorded in {RESULTS}")
    report: FuzzReport = result["report"]
    return 0 if report.responses_5xx == 0 and report.non_problem_4xx == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
