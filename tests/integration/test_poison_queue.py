"""TARGETS R7 on the local stack: a message that fails 5 times lands in `<queue>-poison`, raises
an alert, and loses nothing.

The real `function_app` on the local Functions host (the real host.json's maxDequeueCount 5;
its queue retry shortened to half a second so five tries take seconds), Azurite and the Graph
emulator. The failing work is a real one: "Run import" of a mail import whose folder was
deleted in Outlook, so every delivery of its `mail-import` message fails its run. The alert is
the one `infra/monitoring/alerts.bicep` deploys: its KQL is read from the Bicep file (as
tests/infra does) and applied to the lines the host logged.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from core.mail.importer import MAIL_POISON_QUEUE, MAIL_QUEUE
from core.queues import TextQueue
from devtools.graph_emulator.mail_ops import file
from tests.infra.test_infra import config, resources, variable
from tests.integration.bridge_api import api_env  # noqa: F401 - fixture
from tests.integration.test_calendar_sync_down import (  # noqa: F401 - fixtures
    Bridge,
    eventually,
    graph,
    start_bridge,
)
from tests.integration.test_mail_import import MAIL_PERMISSIONS, setup_import, subjects

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

ALERTS = "monitoring/alerts.bicep"
MAX_DEQUEUE_COUNT = 5  # host.json


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def host_log() -> Iterator[list[str]]:
    """Every line the local host's queue listener logs (the traces Application Insights gets)."""
    handler = Lines()
    logger = logging.getLogger("devtools.funchost.queues")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _has(term: str, line: str) -> bool:
    """KQL `has`: the term (a word or a phrase of words) as whole words, any case."""
    return re.search(rf"(?<![0-9A-Za-z]){re.escape(term)}(?![0-9A-Za-z])", line, re.I) is not None


def poison_alert(lines: list[str]) -> dict[str, int]:
    """The deployed poison-message alert's query, over `lines` as the `traces` table: its
    `message has` filters, its `extract` of the queue, `summarize moved = count() by queue`."""
    query = variable(ALERTS, "poisonQuery")
    terms = re.findall(r'message has "([^"]+)"', query)
    extract = re.search(r'extract\(@"(.+?)", 1, message\)', query)
    assert terms, query
    assert extract is not None, query
    assert "summarize moved = count() by queue" in query
    pattern = re.compile(extract.group(1))
    moved: dict[str, int] = {}
    for line in lines:
        if all(_has(term, line) for term in terms) and (found := pattern.search(line)):
            moved[found.group(1)] = moved.get(found.group(1), 0) + 1
    return moved


def alert_threshold() -> tuple[str, float]:
    """The poison rule's measure column and the threshold it must pass, from the Bicep file."""
    rules = {rule["name"]: rule for rule in variable(ALERTS, "rules")}
    [resource] = resources(ALERTS, "Microsoft.Insights/scheduledQueryRules").values()
    [criterion] = config(resource)["properties"]["criteria"]["allOf"]
    assert criterion["operator"] == "GreaterThan"
    return str(rules["poison-messages"]["measure"]), float(criterion["threshold"])


async def raw_messages(connection_string: str, queue: str) -> list[str]:
    """The queue's messages as stored (no decoding), without taking them."""
    async with QueueClient.from_connection_string(connection_string, queue) as client:
        try:
            return [str(m.content) for m in await client.peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            return []


def _decoded(content: str) -> str:
    try:
        return base64.b64decode(content, validate=True).decode("utf-8")
    except ValueError:
        return ""


async def test_r7_a_message_that_fails_5_times_lands_in_its_poison_queue_raises_an_alert_and_loses_nothing(
    start_bridge: Callable[..., Any],
    api_env: dict[str, str],
    host_log: list[str],
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, Any], None],
) -> None:
    """GIVEN two mail imports of one tenant, the 'invoices' one's import folder deleted in
    Outlook, each with a mail holding a PDF WHEN the host runs both imports
    THEN the invoices message is tried exactly 5 times (5 failed runs naming the folder) and
    lands in `mail-import-poison` byte-identical to what the app queued; the host's line for it
    is what the deployed alert's query counts (moved = 1 for mail-import-poison, over the
    rule's threshold); the other import's message is processed as usual; nothing is moved,
    archived or announced for the failing import; AND WHEN the folder is back and the operator
    moves the message back to `mail-import` THEN that mail is imported: its document announced
    once, the mail archived. Nothing was lost."""
    sent: list[tuple[str, str]] = []
    send = TextQueue.send

    async def recorded(self: TextQueue, text: str, *, delay: float = 0.0) -> None:
        sent.append((self.name, text))
        await send(self, text, delay=delay)

    monkeypatch.setattr(TextQueue, "send", recorded)
    connection = api_env["AzureWebJobsStorage"]
    async with start_bridge(queue_visibility=0.5) as bridge:
        box, mail = await setup_import(bridge)
        receipts = await _second_import(bridge)
        pdf = b"%PDF-1.7 invoice 7001"
        mail.deliver_mail(
            box, "Inbox/Invoices", subject="Invoice 7001", attachments=[file("i.pdf", pdf, "application/pdf")]
        )
        receipt = file("r.pdf", b"%PDF receipt", "application/pdf")
        mail.deliver_mail(receipts, "Inbox/Receipts", subject="Receipt 1", attachments=[receipt])
        folder = mail.resolve_folder(box, "Inbox/Invoices")
        mail.mailbox(box).folders.pop(folder.key)  # deleted in Outlook

        failing = await bridge.call("POST", "/mail-imports/invoices/run")
        healthy = await bridge.call("POST", "/mail-imports/receipts/run")
        assert (failing.status, healthy.status) == (202, 202)
        [queued] = [text for queue, text in sent if queue == MAIL_QUEUE and failing.body["runId"] in text]

        async def parked() -> list[str] | None:
            found = await raw_messages(connection, MAIL_POISON_QUEUE)
            return [m for m in found if failing.body["runId"] in _decoded(m)] or None

        [poisoned] = await eventually(parked, within=90, what="the message in mail-import-poison")

        async def runs_of(run_id: str) -> list[dict[str, Any]]:
            reply = await bridge.call("GET", "/runs", params={"runId": run_id, "limit": "50"})
            return list(reply.body["runs"])

        tries = await runs_of(failing.body["runId"])
        [ok] = await eventually(
            lambda: _ended(runs_of(healthy.body["runId"])), what="the healthy import's run"
        )
        await bridge.read_feed()
        announced_while_parked = [
            e["data"]["fileName"] for e in bridge.feed if e["type"] == "document.imported"
        ]
        # (the queues are shared by the test session: only this queue's lines are this test's)
        moving = [
            line for line in host_log if "Moving message to queue" in line and MAIL_POISON_QUEUE in line
        ]
        moved = poison_alert(host_log)
        measure, threshold = alert_threshold()

        # the operator fixes the cause (the folder is back in Outlook: same folder, same id,
        # its mail still in it) and moves the message back to its queue
        mail.mailbox(box).folders[folder.key] = folder
        in_folder_while_parked = subjects(mail, box, "Inbox/Invoices")
        async with QueueClient.from_connection_string(connection, MAIL_QUEUE) as work:
            await work.send_message(poisoned)
        async with QueueClient.from_connection_string(connection, MAIL_POISON_QUEUE) as poison:
            async for message in poison.receive_messages(max_messages=32):
                if message.content == poisoned:
                    await poison.delete_message(message)

        async def archived() -> bool | None:
            return subjects(mail, box, "Archive/Invoices") == ["Invoice 7001"] or None

        await eventually(archived, within=30, what="the replayed import to archive the mail")
        await eventually(lambda: _announced(bridge, "i.pdf"), what="the replayed document announced")
        await bridge.read_feed()
        imported = [e["data"]["fileName"] for e in bridge.feed if e["type"] == "document.imported"]
        left_after = subjects(mail, box, "Inbox/Invoices")

    record_property("operations", 2)
    record_property("deliveries_of_the_failing_message", len(tries))
    record_property("faults_injected", sum(r["status"] == "failed" for r in tries))
    record_property("poisoned", 1)
    record_property("alert_moved", moved.get(MAIL_POISON_QUEUE, 0))
    record_property("lost", len({"i.pdf", "r.pdf"} - set(imported)) + len(left_after))
    record_property("duplicated", len(imported) - len(set(imported)))
    # fails 5 times: five deliveries, each a failed run naming the folder
    assert len(tries) == MAX_DEQUEUE_COUNT, tries
    assert all(r["status"] == "failed" and "Inbox/Invoices" in r["error"] for r in tries), tries
    # lands in <queue>-poison, byte-identical to what the app queued
    assert poisoned == base64.b64encode(queued.encode("utf-8")).decode("ascii")
    assert base64.b64decode(poisoned).decode("utf-8") == queued
    # raises an alert: the deployed query counts this one move, for this queue, over the threshold
    assert len(moving) == 1, moving
    assert moved.get(MAIL_POISON_QUEUE) == 1
    assert measure == "moved"
    assert moved[MAIL_POISON_QUEUE] > threshold
    # loses nothing: the other work went on, the failing mail waited where it was, untouched
    assert ok["status"] == "succeeded"
    assert announced_while_parked == ["r.pdf"]
    assert in_folder_while_parked == ["Invoice 7001"]
    # and the parked message, moved back, did the work
    assert sorted(imported) == ["i.pdf", "r.pdf"]
    assert left_after == []


async def _second_import(bridge: Bridge) -> str:
    """A healthy import 'receipts' of another mailbox of the same tenant."""
    bridge.graph.grant(bridge.outlook.tenant_id, bridge.outlook.client_id, *MAIL_PERMISSIONS)
    box = bridge.outlook.mailbox("receipts")
    mail = bridge.graph.module("mail").mail
    mail.ensure_folder_path(box, "Inbox/Receipts")
    mail.ensure_folder_path(box, "Archive/Receipts")
    body = {
        "mailbox": box,
        "importFolder": "Inbox/Receipts",
        "archiveFolder": "Archive/Receipts",
        "forwardTo": "accounts@customer.example",
    }
    reply = await bridge.call("PUT", "/mail-imports/receipts", json_body=body)
    assert reply.status == 201, reply.text
    return box


async def _ended(runs: Any) -> list[dict[str, Any]] | None:
    found = [r for r in await runs if r["status"] in ("succeeded", "failed")]
    return found or None


def _announced(bridge: Bridge, name: str) -> bool | None:
    return (
        any(
            r.headers.get("M365Bridge-Event-Type") == "document.imported" and name.encode() in r.body
            for r in bridge.receiver.accepted
        )
        or None
    )
