"""The local Functions host against Azurite and real HTTP: queue, timer and HTTP triggers.

Every test starts its own host on a free port with its own queue names (the fixture app's
`%SETTING%` references are filled through the host's `env`), so tests never see each other's
messages. Queue tests use a host.json with a 1 s maxPollingInterval and visibilityTimeout 0, so
retries happen in well under a second.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import azure.functions as func
import pytest
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from devtools.funchost import FunctionHost, FunctionHostError
from tests.integration import funchost_fixture_app as fixture_app
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
NEVER = "0 0 0 1 1 *"  # once a year: the schedule of timers a test does not want firing


def host_json(tmp_path: Path, **queues: Any) -> Path:
    settings = {"maxPollingInterval": "00:00:01", "visibilityTimeout": "00:00:00", **queues}
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"version": "2.0", "extensions": {"queues": settings}}), encoding="utf-8")
    return path


def host_env(connection_string: str, **extra: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {
        "AzureWebJobsStorage": connection_string,
        "FUNCHOST_TEST_QUEUE": f"rec-{suffix}",
        "FUNCHOST_TEST_FAIL_QUEUE": f"fail-{suffix}",
        "FUNCHOST_TEST_SCHEDULE": NEVER,
        **extra,
    }


@asynccontextmanager
async def running_host(env: dict[str, str], tmp_path: Path, **queues: Any) -> AsyncIterator[FunctionHost]:
    async with FunctionHost(
        fixture_app.app, host_json=host_json(tmp_path, **queues), port=0, env=env, shutdown_timeout=5
    ) as host:
        yield host


def queue_client(connection_string: str, name: str, *, base64_text: bool = True) -> QueueClient:
    if base64_text:
        return QueueClient.from_connection_string(
            connection_string,
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )
    return QueueClient.from_connection_string(connection_string, name)


async def message_count(client: QueueClient) -> int:
    # approximate_message_count includes invisible messages, so 0 means deleted, not in flight
    props = await client.get_queue_properties()
    return int(props.approximate_message_count or 0)


# -- queue trigger -----------------------------------------------------------------------------


async def test_queue_message_is_delivered_decoded_and_deleted(storage_connection_string, tmp_path):
    """GIVEN a host polling a queue that does not exist yet
    WHEN the queue is created and a message is put on it with the SDK's base64 text encoding
    THEN the function receives the decoded body once, and the message is deleted."""
    env = host_env(storage_connection_string)
    body = f"hello ünïcode <&> {uuid.uuid4()}"
    async with running_host(env, tmp_path):
        await asyncio.sleep(0.3)  # a few polls of the missing queue must not stop the listener
        async with queue_client(storage_connection_string, env["FUNCHOST_TEST_QUEUE"]) as queue:
            await queue.create_queue()
            sent = await queue.send_message(body)
            received = await eventually(
                lambda: [r for r in fixture_app.RECEIVED if r["body"] == body.encode("utf-8")],
                what="the queue function to run",
            )
            await eventually(lambda: _is_zero(queue), what="the message to be deleted")
    assert len(received) == 1
    assert received[0]["id"] == sent.id
    assert received[0]["dequeue_count"] == 1
    assert received[0]["insertion_time"] is not None


async def _is_zero(queue: QueueClient) -> bool:
    return await message_count(queue) == 0


async def test_failing_function_is_tried_max_dequeue_count_times_then_poisoned(
    storage_connection_string, tmp_path
):
    """GIVEN a queue function that always raises and host.json maxDequeueCount 5
    WHEN a message arrives
    THEN it is attempted exactly 5 times, its original text lands in `<queue>-poison`,
    and the source queue is empty."""
    env = host_env(storage_connection_string)
    name = env["FUNCHOST_TEST_FAIL_QUEUE"]
    body = f"poison-me {uuid.uuid4()}"
    async with (
        queue_client(storage_connection_string, name) as queue,
        queue_client(storage_connection_string, f"{name}-poison", base64_text=False) as poison,
    ):
        await queue.create_queue()
        await queue.send_message(body)
        async with running_host(env, tmp_path, maxDequeueCount=5):
            peeked = await eventually(lambda: _peek(poison), what="the poison queue to get the message")
            await asyncio.sleep(0.5)  # room for a sixth attempt, which must not happen
            assert fixture_app.FAIL_ATTEMPTS[body] == 5
            assert await message_count(queue) == 0
    # the poison copy is the original stored text: still base64, as the sender wrote it
    assert [m.content for m in peeked] == [base64.b64encode(body.encode("utf-8")).decode("ascii")]


async def _peek(queue: QueueClient) -> list[Any]:
    try:
        return list(await queue.peek_messages(max_messages=32))
    except Exception:  # the poison queue does not exist until the host creates it
        return []


async def test_message_already_past_max_dequeue_count_is_poisoned_without_running(
    storage_connection_string, tmp_path
):
    """GIVEN a message that was already dequeued twice (a crashed host, say) and maxDequeueCount 2
    WHEN the host receives it for the third time
    THEN it goes to the poison queue and the function never runs."""
    env = host_env(storage_connection_string)
    name = env["FUNCHOST_TEST_FAIL_QUEUE"]
    body = f"too-late {uuid.uuid4()}"
    async with (
        queue_client(storage_connection_string, name) as queue,
        queue_client(storage_connection_string, f"{name}-poison") as poison,
    ):
        await queue.create_queue()
        await queue.send_message(body)
        for _ in range(2):  # receive and release at once: each receive adds one to the dequeue count
            message = await queue.receive_message(visibility_timeout=30)
            assert message is not None
            await queue.update_message(message.id, message.pop_receipt, visibility_timeout=0)
        async with running_host(env, tmp_path, maxDequeueCount=2):
            peeked = await eventually(lambda: _peek(poison), what="the poison queue to get the message")
            assert await message_count(queue) == 0
    assert [m.content for m in peeked] == [body]
    assert fixture_app.FAIL_ATTEMPTS[body] == 0


async def test_message_that_is_not_base64_fails_and_is_poisoned_unread(storage_connection_string, tmp_path):
    """GIVEN messageEncoding base64 (the default)
    WHEN a message that is not base64 arrives
    THEN each attempt fails without running the function, and it ends in the poison queue as sent."""
    env = host_env(storage_connection_string)
    name = env["FUNCHOST_TEST_QUEUE"]
    text = f"not base64! {uuid.uuid4()}"
    async with (
        queue_client(storage_connection_string, name, base64_text=False) as queue,
        queue_client(storage_connection_string, f"{name}-poison", base64_text=False) as poison,
    ):
        await queue.create_queue()
        await queue.send_message(text)
        async with running_host(env, tmp_path, maxDequeueCount=2):
            peeked = await eventually(lambda: _peek(poison), what="the poison queue to get the message")
    assert [m.content for m in peeked] == [text]
    assert not [r for r in fixture_app.RECEIVED if text.encode("utf-8") in r["body"]]


async def test_message_encoding_none_passes_text_through(storage_connection_string, tmp_path):
    """GIVEN host.json messageEncoding "none" WHEN a plain-text message arrives THEN the body is that text."""
    env = host_env(storage_connection_string)
    text = f"plain {uuid.uuid4()}"
    async with queue_client(
        storage_connection_string, env["FUNCHOST_TEST_QUEUE"], base64_text=False
    ) as queue:
        await queue.create_queue()
        await queue.send_message(text)
        async with running_host(env, tmp_path, messageEncoding="none"):
            await eventually(
                lambda: [r for r in fixture_app.RECEIVED if r["body"] == text.encode("utf-8")],
                what="the queue function to run",
            )


# -- timer trigger -----------------------------------------------------------------------------


async def test_timer_runs_on_its_schedule_from_a_setting(storage_connection_string, tmp_path):
    """GIVEN a timer whose schedule is `%FUNCHOST_TEST_SCHEDULE%`, set to every second
    WHEN the host runs for a while THEN the timer fires by itself, on time (not past due)."""
    env = host_env(storage_connection_string, FUNCHOST_TEST_SCHEDULE="* * * * * *")
    fixture_app.TIMER_RUNS.clear()
    async with running_host(env, tmp_path) as host:
        assert host.timer_specs["tick"].schedule.expression == "* * * * * *"
        await eventually(lambda: len(fixture_app.TIMER_RUNS) >= 2, within=5, what="two scheduled runs")
    runs = list(fixture_app.TIMER_RUNS)
    assert all(run["past_due"] is False for run in runs)
    assert all(run["function_name"] == "tick" for run in runs)
    assert len({run["invocation_id"] for run in runs}) == len(runs)


async def test_timer_runs_on_demand_through_the_admin_api_with_the_master_key(
    storage_connection_string, tmp_path
):
    """GIVEN a timer that would not fire for a year
    WHEN POST /admin/functions/tick is called THEN it is refused without the master key (401)
    and accepted with it (202), after which the function runs once."""
    env = host_env(storage_connection_string)
    fixture_app.TIMER_RUNS.clear()
    async with running_host(env, tmp_path) as host, aiohttp.ClientSession() as http:
        url = f"{host.base_url}/admin/functions/tick"
        for headers in ({}, {"x-functions-key": "wrong"}, {"x-functions-key": host.function_key}):
            async with http.post(url, json={"input": ""}, headers=headers) as resp:
                assert resp.status == 401
        await asyncio.sleep(0.2)
        assert fixture_app.TIMER_RUNS == []
        async with http.post(url, json={"input": ""}, headers={"x-functions-key": host.master_key}) as resp:
            assert resp.status == 202
        await eventually(lambda: len(fixture_app.TIMER_RUNS) == 1, what="the timer to run")
        async with http.post(
            f"{host.base_url}/admin/functions/nosuchfunction", json={}, params={"code": host.master_key}
        ) as resp:
            assert resp.status == 404


async def test_invoke_timer_runs_the_function_and_raises_its_error(storage_connection_string, tmp_path):
    """WHEN `invoke_timer` is awaited THEN the function has run when it returns,
    and an exception raised by the function reaches the caller."""
    env = host_env(storage_connection_string)
    fixture_app.TIMER_RUNS.clear()
    async with running_host(env, tmp_path) as host:
        await host.invoke_timer("tick")
        assert len(fixture_app.TIMER_RUNS) == 1
        assert fixture_app.TIMER_RUNS[0]["past_due"] is False
        with pytest.raises(RuntimeError, match="tick_fails raised on purpose"):
            await host.invoke_timer("tick_fails")
        await host.invoke_timer("TICK")  # function names are case-insensitive, as in the admin API
        assert len(fixture_app.TIMER_RUNS) == 2


async def test_queue_function_runs_on_demand_with_the_input_as_body(storage_connection_string, tmp_path):
    """WHEN POST /admin/functions/record_message {"input": ...} THEN the function gets the input as body."""
    env = host_env(storage_connection_string)
    text = f"admin input {uuid.uuid4()}"
    async with running_host(env, tmp_path) as host, aiohttp.ClientSession() as http:
        async with http.post(
            f"{host.base_url}/admin/functions/record_message",
            json={"input": text},
            headers={"x-functions-key": host.master_key},
        ) as resp:
            assert resp.status == 202
        await eventually(
            lambda: [r for r in fixture_app.RECEIVED if r["body"] == text.encode("utf-8")],
            what="the queue function to run",
        )


# -- HTTP trigger ------------------------------------------------------------------------------


@pytest.fixture
async def http_host(
    storage_connection_string, tmp_path
) -> AsyncIterator[tuple[FunctionHost, aiohttp.ClientSession]]:
    async with (
        running_host(host_env(storage_connection_string), tmp_path) as host,
        aiohttp.ClientSession() as http,
    ):
        yield host, http


async def test_http_route_params_reach_a_sync_anonymous_function(http_host):
    """GIVEN an anonymous route `hello/{name:alpha}/{n:int?}` served by a sync function
    THEN route values arrive with their case, the optional one may be left out, literals match
    in any case, constraints and methods are enforced (404), and the function ran in a thread."""
    host, http = http_host
    async with http.get(f"{host.base_url}/api/hello/World/7") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        payload = await resp.json()
    assert payload["route"] == {"name": "World", "n": "7"}
    assert payload["thread"] != "MainThread"
    async with http.get(f"{host.base_url}/API/Hello/World") as resp:
        assert resp.status == 200
        assert (await resp.json())["route"] == {"name": "World"}
    assert host.route_url("hello", name="Ada", n=3) == f"{host.base_url}/api/hello/Ada/3"
    for bad in ("/api/hello/W0rld", "/api/hello/World/seven", "/api/hello"):
        async with http.get(host.base_url + bad) as resp:
            assert resp.status == 404, bad
    async with http.post(f"{host.base_url}/api/hello/World") as resp:
        assert resp.status == 404  # method not allowed is a 404 on the real host


async def test_http_function_key_is_required_at_function_level(http_host):
    """GIVEN a function-level route THEN no key or a wrong key gives 401, and the function key in
    `code` or `x-functions-key` (or the master key) is accepted."""
    host, http = http_host
    url = f"{host.base_url}/api/items/{uuid.uuid4()}"
    async with http.post(url, data=b"x") as resp:
        assert resp.status == 401
    async with http.post(url, data=b"x", params={"code": "not-the-key"}) as resp:
        assert resp.status == 401
    async with http.post(url, data=b"x", headers={"x-functions-key": host.function_key[:-1]}) as resp:
        assert resp.status == 401
    async with http.post(url, data=b"x", params={"code": host.function_key}) as resp:
        assert resp.status == 201
    async with http.put(url, data=b"x", headers={"x-functions-key": host.function_key}) as resp:
        assert resp.status == 201
    async with http.post(url, data=b"x", headers={"x-functions-key": host.master_key}) as resp:
        assert resp.status == 201


async def test_http_admin_level_needs_the_master_key_and_str_results_are_text(http_host):
    host, http = http_host
    url = f"{host.base_url}/api/admin-only"
    async with http.get(url, params={"code": host.function_key}) as resp:
        assert resp.status == 401
    async with http.get(url, params={"code": host.master_key}) as resp:
        assert resp.status == 200
        assert await resp.text() == "admin ok"
        assert resp.headers["Content-Type"].startswith("text/plain")


async def test_http_body_headers_and_query_round_trip_through_an_async_function(http_host):
    """GIVEN an async function that echoes its request
    WHEN bytes that are not UTF-8, a header and a query parameter are sent
    THEN they come back unchanged with the function's status, headers and mimetype."""
    host, http = http_host
    item = str(uuid.uuid4())
    body = bytes(range(256))
    async with http.post(
        f"{host.base_url}/api/items/{item}",
        data=body,
        params={"q": "a b&c", "code": host.function_key},
        headers={"X-Test": "hello header"},
    ) as resp:
        assert resp.status == 201
        assert await resp.read() == body
        assert resp.headers["X-Route-Id"] == item
        assert resp.headers["X-Query"] == "a b&c"
        assert resp.headers["X-Echo"] == "hello header"
        assert resp.headers["X-Method"] == "POST"
        assert resp.headers["X-Thread"] == "MainThread"  # async functions run on the host loop
        assert resp.headers["Content-Type"].startswith("application/octet-stream")


async def test_http_raising_function_gives_500_and_unknown_routes_404(http_host):
    host, http = http_host
    async with http.get(f"{host.base_url}/api/boom") as resp:
        assert resp.status == 500
        assert await resp.read() == b""
    for path in ("/api/nope", "/nope", "/api/items/not-a-guid", "/admin/nope"):
        async with http.post(host.base_url + path, params={"code": host.master_key}) as resp:
            assert resp.status == 404, path


async def test_http_a_path_with_an_encoded_newline_is_routed_by_the_host_like_any_other(http_host):
    """GIVEN paths whose decoded form ends in a newline WHEN called THEN the host's own routing
    answers (its empty-bodied 404, as for any unknown route), not aiohttp's text/plain 404, and a
    literal route does not match with a newline after it."""
    host, http = http_host
    for path in ("/api/nope%0A", "/api/boom%0A", "/api/hello/World%0A"):
        async with http.get(host.base_url + path) as resp:
            assert resp.status == 404, path
            assert await resp.read() == b"", path


async def test_http_landing_page_and_host_status(http_host):
    host, http = http_host
    async with http.get(host.base_url + "/") as resp:
        assert resp.status == 200
    async with http.get(f"{host.base_url}/admin/host/status") as resp:
        assert resp.status == 401
    async with http.get(
        f"{host.base_url}/admin/host/status", headers={"x-functions-key": host.function_key}
    ) as resp:
        assert resp.status == 401
    async with http.get(
        f"{host.base_url}/admin/host/status", headers={"x-functions-key": host.master_key}
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["state"] == "Running"


async def test_keys_come_from_settings_when_set(storage_connection_string, tmp_path):
    env = host_env(
        storage_connection_string, FUNCHOST_FUNCTION_KEY="fk-fixed", FUNCHOST_MASTER_KEY="mk-fixed"
    )
    async with running_host(env, tmp_path) as host, aiohttp.ClientSession() as http:
        assert (host.function_key, host.master_key) == ("fk-fixed", "mk-fixed")
        async with http.put(f"{host.base_url}/api/items/{uuid.uuid4()}", params={"code": "fk-fixed"}) as resp:
            assert resp.status == 201
    other = FunctionHost(fixture_app.app, env=host_env(storage_connection_string))
    assert other.function_key != host.function_key  # random per start otherwise
    assert len(other.master_key) >= 32


# -- start-up errors ---------------------------------------------------------------------------


def test_a_missing_setting_fails_start_up_naming_it(storage_connection_string):
    env = host_env(storage_connection_string)
    del env["FUNCHOST_TEST_FAIL_QUEUE"]
    with pytest.raises(FunctionHostError, match="FUNCHOST_TEST_FAIL_QUEUE") as err:
        FunctionHost(fixture_app.app, env=env)
    assert "always_fails" in str(err.value)


def test_an_unsupported_binding_fails_start_up_naming_function_and_type():
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="in-queue", connection="AzureWebJobsStorage")
    @app.queue_output(arg_name="out", queue_name="out-queue", connection="AzureWebJobsStorage")
    def forwards(msg: func.QueueMessage, out: func.Out[str]) -> None:
        out.set(msg.get_body().decode())

    with pytest.raises(FunctionHostError, match=r"function 'forwards'.*type 'queue'"):
        FunctionHost(app, env={"AzureWebJobsStorage": "UseDevelopmentStorage=true"})


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_prints_routes_timers_queues_and_keys_and_stops_cleanly_on_sigterm(
    storage_connection_string, tmp_path
):
    """GIVEN local.settings.json with the app's settings and a fixed master key
    WHEN `python -m devtools.funchost` starts THEN it prints the base URL, routes, timers, queues and
    keys and serves requests; and SIGTERM stops it with exit code 0."""
    values = {**host_env(storage_connection_string), "FUNCHOST_MASTER_KEY": "cli-master-key"}
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values, "Host": {"LocalHttpPort": 0}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUNCHOST_")}
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        [
            sys.executable,
            "-m",
            "devtools.funchost",
            "--app",
            "tests.integration.funchost_fixture_app:app",
            "--settings",
            str(settings),
            "--host-json",
            str(host_json(tmp_path)),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while not any(line.strip().startswith("Master key") for line in lines):
            assert time.monotonic() < deadline, lines
            line = proc.stdout.readline()
            assert line, f"the host exited early: {lines}"
            lines.append(line)
        output = "".join(lines)
        match = re.search(r"running at (http://127\.0\.0\.1:\d+)", output)
        assert match, output
        base = match.group(1)
        assert f"{base}/api/items/{{id:guid}}  (authLevel=function)" in output
        assert "tick: timerTrigger '0 0 0 1 1 *', next run" in output
        assert f"queueTrigger on '{values['FUNCHOST_TEST_QUEUE']}'" in output
        assert "Master key:   cli-master-key" in output
        status = _get(f"{base}/admin/host/status", {"x-functions-key": "cli-master-key"})
        assert status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _get(url: str, headers: dict[str, str]) -> int:
    import urllib.request

    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - a loopback http URL
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        return int(resp.status)
