"""Sending mail for a host system end to end on the local stack: the real `function_app` on the
local Functions host (the mail-sender routes and the `mail-send` queue worker), Azurite (tables,
queue, the staged mail) and the Graph emulator over HTTPS with the real msgraph-sdk and
azure-identity clients. What arrives is read from the recipients' emulated inboxes; what the host
hears, from its webhook receiver."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from core.store.records import OutgoingMessage
from devtools.graph_emulator.mail_module import mail_api
from devtools.graph_emulator.mail_ops import Mail
from tests.integration.bridge_api import api_env  # noqa: F401 - fixture
from tests.integration.test_calendar_sync_down import (  # noqa: F401 - fixtures
    Bridge,
    eventually,
    graph,
    start_bridge,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RECEIPT = b"%PDF-1.7\n% Kvittering\n" + b"0" * 3000
# Above 3 MB: the worker must make a draft and upload it through an upload session.
SCAN = b"%PDF-1.7\n" + bytes(range(256)) * (5 * 1024 * 1024 // 256)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mail_of(bridge: Bridge) -> Mail:
    return mail_api(bridge.graph)


def received(bridge: Bridge, kind: str) -> list[dict[str, Any]]:
    return [
        json.loads(r.body) for r in bridge.receiver.accepted if r.headers.get("M365Bridge-Event-Type") == kind
    ]


async def sender(bridge: Bridge, *permissions: str, **profile: Any) -> str:
    """A sender profile 'forms' over a new mailbox, the app granted `permissions` (before its
    first token, so the token carries them)."""
    if permissions:
        bridge.graph.grant(bridge.outlook.tenant_id, bridge.outlook.client_id, *permissions)
    mailbox = bridge.outlook.mailbox("skjema")
    reply = await bridge.call("PUT", "/mail-senders/forms", json_body={"mailbox": mailbox, **profile})
    assert reply.status == 201, reply.text
    return mailbox


def mail_body(key: str, to: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "idempotencyKey": key,
        "to": to,
        "subject": "Kvittering for søknaden",
        "body": {"contentType": "html", "content": "<p>Vi har mottatt søknaden din.</p>"},
        "attachments": [
            {"name": "kvittering.pdf", "contentType": "application/pdf", "contentBase64": b64(RECEIPT)}
        ],
        **extra,
    }


async def until_done(bridge: Bridge, location: str) -> dict[str, Any]:
    """GET the mail's Location until it is sent or failed."""
    path = location.split(f"/tenants/{bridge.tenant_id}", 1)[1]

    async def done() -> dict[str, Any] | None:
        reply = await bridge.call("GET", path)
        assert reply.status == 200, reply.text
        return reply.body if reply.body["status"] != "queued" else None

    found: dict[str, Any] = await eventually(done, what="the mail to be sent or fail")
    return found


def inbox(bridge: Bridge, user: str) -> list[Any]:
    return mail_of(bridge).messages(user, "inbox")


def files(message: Any) -> dict[str, bytes]:
    return {a.name: a.blob.read() for a in message.attachments}


async def test_a_plain_mail_reaches_the_recipient_and_the_host_hears_it(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a sender profile and Mail.Send WHEN the host POSTs a mail with a PDF to a colleague
    and an outside address THEN 202 queued with a Location; the worker sends it in one sendMail;
    the colleague's inbox holds it (subject, HTML body, the PDF byte for byte), the outside
    address is in the outbox, the sender keeps a copy, the status says sent and the host hears
    mail.sent — which carries no subject, body or address."""
    async with start_bridge() as bridge:
        mailbox = await sender(bridge, "Mail.Send")
        megan = bridge.outlook.mailbox("megan")
        body = mail_body("soknad-1", [megan], cc=["arkiv@fabrikam.example"], importance="high")
        reply = await bridge.call("POST", "/mail-senders/forms/messages", json_body=body)
        assert reply.status == 202, reply.text
        assert reply.body["status"] == "queued"
        assert reply.headers["Location"].endswith(f"/mail-senders/forms/messages/{reply.body['id']}")

        status = await until_done(bridge, reply.headers["Location"])
        assert status["status"] == "sent"
        assert (status["recipients"], status["error"], status["outcomeUnknown"]) == (2, None, False)
        [got] = inbox(bridge, megan)
        assert (got.subject, got.body_type, got.importance) == ("Kvittering for søknaden", "html", "high")
        assert "mottatt søknaden" in got.body
        assert files(got) == {"kvittering.pdf": RECEIPT}
        assert got.from_ is not None
        assert got.from_.address == mailbox
        assert [e.external for e in mail_of(bridge).outbox(mailbox)] == [["arkiv@fabrikam.example"]]
        assert [m.subject for m in mail_of(bridge).messages(mailbox, "sentitems")] == [
            "Kvittering for søknaden"
        ]

        await eventually(lambda: received(bridge, "mail.sent") or None, what="mail.sent")
        [event] = received(bridge, "mail.sent")
        assert event["data"]["messageId"] == reply.body["id"]
        assert event["data"]["path"] == "sendMail"
        assert "Kvittering" not in json.dumps(event)
        assert megan not in json.dumps(event)
        row = await bridge.app.tables.repo(OutgoingMessage).get(
            *OutgoingMessage.key(bridge.tenant_id, reply.body["id"])
        )
        assert row is not None
        assert megan not in row.model_dump_json()


async def test_a_5_mb_attachment_goes_through_a_draft_and_an_upload_session(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN Mail.Send and Mail.ReadWrite WHEN a mail carries a 5 MB scan and a PDF THEN the
    worker makes a draft, uploads the scan through an upload session, sends the draft; the
    recipient gets both files intact and the sender's Drafts folder is empty again."""
    async with start_bridge() as bridge:
        mailbox = await sender(bridge, "Mail.Send", "Mail.ReadWrite")
        megan = bridge.outlook.mailbox("megan")
        sessions_before = bridge.graph.counters(mailbox).upload_sessions
        scan = {"name": "skann.pdf", "contentType": "application/pdf", "contentBase64": b64(SCAN)}
        body = mail_body("soknad-2", [megan])
        body["attachments"].append(scan)
        reply = await bridge.call("POST", "/mail-senders/forms/messages", json_body=body)
        assert reply.status == 202, reply.text
        assert [a["size"] for a in reply.body["attachments"]] == [len(RECEIPT), len(SCAN)]

        status = await until_done(bridge, reply.headers["Location"])
        assert status["status"] == "sent", status
        [got] = inbox(bridge, megan)
        assert files(got) == {"kvittering.pdf": RECEIPT, "skann.pdf": SCAN}
        assert bridge.graph.counters(mailbox).upload_sessions == sessions_before + 1
        assert mail_of(bridge).messages(mailbox, "drafts") == []
        await eventually(lambda: received(bridge, "mail.sent") or None, what="mail.sent")
        assert [e["data"]["path"] for e in received(bridge, "mail.sent")] == ["draft"]


async def test_the_same_request_posted_twice_sends_one_mail(start_bridge: Callable[..., Any]) -> None:
    """WHEN the host POSTs the same mail twice at once and once more after it went THEN every
    answer names the same message, the recipient's inbox holds exactly one mail with the right
    attachments and the host hears mail.sent once; the key with another mail is a 409."""
    async with start_bridge() as bridge:
        mailbox = await sender(bridge, "Mail.Send")
        megan = bridge.outlook.mailbox("megan")
        body = mail_body("soknad-3", [megan])
        first, second = await asyncio.gather(
            bridge.call("POST", "/mail-senders/forms/messages", json_body=body),
            bridge.call("POST", "/mail-senders/forms/messages", json_body=body),
        )
        assert (first.status, second.status) == (202, 202), (first.text, second.text)
        assert first.body["id"] == second.body["id"]
        assert (await until_done(bridge, first.headers["Location"]))["status"] == "sent"
        third = await bridge.call("POST", "/mail-senders/forms/messages", json_body=body)
        assert (third.status, third.body["id"], third.body["status"]) == (202, first.body["id"], "sent")

        await asyncio.sleep(1.0)  # a duplicate would have had time to arrive
        [got] = inbox(bridge, megan)
        assert files(got) == {"kvittering.pdf": RECEIPT}
        assert len(mail_of(bridge).sent_mail(mailbox)) == 1
        await eventually(lambda: received(bridge, "mail.sent") or None, what="mail.sent")
        assert len(received(bridge, "mail.sent")) == 1

        other = await bridge.call(
            "POST", "/mail-senders/forms/messages", json_body={**body, "subject": "Noe annet"}
        )
        assert other.is_problem(409), other.text
        assert len(inbox(bridge, megan)) == 1


async def test_without_mail_send_the_mail_fails_with_the_fix(start_bridge: Callable[..., Any]) -> None:
    """GIVEN an app without Mail.Send WHEN a mail is POSTed THEN it fails at once (no retries)
    with the reason and the fix in plain words, in the status and the host's mail.failed; the
    recipient gets nothing."""
    async with start_bridge() as bridge:
        mailbox = await sender(bridge)
        megan = bridge.outlook.mailbox("megan")
        reply = await bridge.call(
            "POST", "/mail-senders/forms/messages", json_body=mail_body("soknad-4", [megan])
        )
        assert reply.status == 202, reply.text
        status = await until_done(bridge, reply.headers["Location"])
        assert status["status"] == "failed"
        assert status["error"] == f"The app may not send mail as {mailbox}: Mail.Send is not granted for it."
        assert "Grant the application permission Mail.Send to the app" in status["fix"]
        assert "Grant admin consent" in status["fix"]
        assert status["outcomeUnknown"] is False
        await eventually(lambda: received(bridge, "mail.failed") or None, what="mail.failed")
        [event] = received(bridge, "mail.failed")
        assert (event["data"]["reason"], event["data"]["fix"]) == (status["error"], status["fix"])
        assert inbox(bridge, megan) == []
        assert bridge.graph.counters(mailbox).requests == 1  # refused once, not retried


async def test_a_throttled_send_is_sent_after_retry_after(start_bridge: Callable[..., Any]) -> None:
    """GIVEN Graph answers the first sendMail 429 with Retry-After 3 s, longer than the gateway
    waits itself WHEN a mail is POSTed THEN the worker queues it again for after Retry-After and
    it is sent then: one mail, no sooner than 3 s after the refusal."""
    async with start_bridge(GRAPH_RETRY_BUDGET_SECONDS="1") as bridge:
        mailbox = await sender(bridge, "Mail.Send")
        megan = bridge.outlook.mailbox("megan")
        bridge.graph.add_fault("status", status=429, retry_after=3, count=1, mailbox=mailbox, path="sendMail")
        reply = await bridge.call(
            "POST", "/mail-senders/forms/messages", json_body=mail_body("soknad-5", [megan])
        )
        assert reply.status == 202, reply.text
        status = await until_done(bridge, reply.headers["Location"])
        assert status["status"] == "sent", status
        assert bridge.graph.counters(mailbox).faults == 1
        waited = datetime.fromisoformat(status["sentAt"]) - datetime.fromisoformat(status["createdAt"])
        assert waited.total_seconds() >= 3
        assert len(inbox(bridge, megan)) == 1
        assert len(mail_of(bridge).sent_mail(mailbox)) == 1


async def test_send_as_goes_out_from_the_shared_address_once_exchange_allows_it(
    start_bridge: Callable[..., Any],
) -> None:
    """A sender that sends as post@ fails with the Exchange fix while the mailbox lacks Send As,
    and goes out from post@ once it has it."""
    async with start_bridge() as bridge:
        shared = f"post@{bridge.outlook.domain}"
        mailbox = await sender(bridge, "Mail.Send", sendAs=shared)
        megan = bridge.outlook.mailbox("megan")
        refused = await bridge.call("POST", "/mail-senders/forms/messages", json_body=mail_body("a", [megan]))
        status = await until_done(bridge, refused.headers["Location"])
        assert status["status"] == "failed"
        assert f"{mailbox} may not send as {shared}" in status["error"]
        assert "Send as" in status["fix"]

        mail_of(bridge).grant_send_as(mailbox, shared)
        allowed = await bridge.call("POST", "/mail-senders/forms/messages", json_body=mail_body("b", [megan]))
        assert (await until_done(bridge, allowed.headers["Location"]))["status"] == "sent"
        [got] = inbox(bridge, megan)
        assert got.from_ is not None
        assert got.from_.address == shared


async def test_a_bad_mail_is_refused_whole_and_nothing_is_kept(start_bridge: Callable[..., Any]) -> None:
    async with start_bridge() as bridge:
        await sender(bridge, "Mail.Send")
        body = mail_body("bad", ["not-an-address"])
        body["attachments"].append(
            {"name": "verktøy.exe", "contentType": "application/x-msdownload", "contentBase64": "TVo="}
        )
        reply = await bridge.call("POST", "/mail-senders/forms/messages", json_body=body)
        assert reply.is_problem(422), reply.text
        assert {e["field"] for e in reply.body["errors"]} == {"to[0]", "attachments[1].name"}
        rows = [r async for r in bridge.app.tables.repo(OutgoingMessage).list(bridge.tenant_id)]
        assert rows == []
        missing = await bridge.call(
            "POST", "/mail-senders/nobody/messages", json_body=mail_body("x", ["a@b.no"])
        )
        assert missing.is_problem(404), missing.text
