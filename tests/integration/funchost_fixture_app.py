"""A test-only Function App for `devtools.funchost`: one function per behaviour the tests prove.

Queue names and timer schedules are `%SETTING%` references, so every test gives the host its own
queues and schedule. What functions receive is recorded in module-level structures (the host runs
functions in-process); tests tell their own records apart by unique message bodies.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

RECEIVED: list[dict[str, Any]] = []  # record_message: what each queue message looked like
FAIL_ATTEMPTS: Counter[str] = Counter()  # always_fails: attempts per message body
TIMER_RUNS: list[dict[str, Any]] = []  # tick: one entry per run


@app.route(route="hello/{name:alpha}/{n:int?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def hello(req: func.HttpRequest) -> func.HttpResponse:
    """Sync and anonymous: echoes its route values and the thread it ran on."""
    payload = {"route": dict(req.route_params), "thread": threading.current_thread().name}
    return func.HttpResponse(json.dumps(payload), mimetype="application/json")


@app.route(route="items/{id:guid}", methods=["POST", "PUT"])
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    """Async, function-level: returns the body unchanged, route/query/header values in headers."""
    return func.HttpResponse(
        req.get_body(),
        status_code=201,
        headers={
            "X-Route-Id": req.route_params["id"],
            "X-Query": req.params.get("q", ""),
            "X-Echo": req.headers.get("x-test", ""),
            "X-Method": req.method,
            "X-Thread": threading.current_thread().name,
        },
        mimetype="application/octet-stream",
        charset="",
    )


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom (raised on purpose by the funchost fixture app)")


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> str:
    """Returns a plain str, which the worker turns into a 200 text/plain response."""
    return "admin ok"


@app.queue_trigger(arg_name="msg", queue_name="%FUNCHOST_TEST_QUEUE%", connection="AzureWebJobsStorage")
async def record_message(msg: func.QueueMessage) -> None:
    RECEIVED.append(
        {
            "id": msg.id,
            "body": msg.get_body(),
            "dequeue_count": msg.dequeue_count,
            "insertion_time": msg.insertion_time,
        }
    )


@app.queue_trigger(arg_name="msg", queue_name="%FUNCHOST_TEST_FAIL_QUEUE%", connection="AzureWebJobsStorage")
def always_fails(msg: func.QueueMessage) -> None:
    FAIL_ATTEMPTS[msg.get_body().decode("utf-8")] += 1
    raise RuntimeError("always_fails raised on purpose")


@app.timer_trigger(schedule="%FUNCHOST_TEST_SCHEDULE%", arg_name="timer", run_on_startup=False)
def tick(timer: func.TimerRequest, context: func.Context) -> None:
    TIMER_RUNS.append(
        {
            "past_due": timer.past_due,
            "invocation_id": context.invocation_id,
            "function_name": context.function_name,
        }
    )


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
async def tick_fails(timer: func.TimerRequest) -> None:
    raise RuntimeError("tick_fails raised on purpose")
