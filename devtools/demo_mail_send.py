"""The demo's mail-sending job: a forms product sends its receipts through a sender profile, as
seed 004 does instead of SMTP or EWS."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from devtools.demo_support import DemoReceiver, as_check, say, wait_for

RECEIPT = b"%PDF-1.7 demo receipt for application 2026-0042"
SCAN = b"%PDF-1.7 scanned enclosure " + bytes(range(256)) * (4 * 1024 * 1024 // 256)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _sent(receiver: DemoReceiver) -> list[dict[str, Any]]:
    return [
        json.loads(body)["data"] for body, _ in receiver.received if json.loads(body)["type"] == "mail.sent"
    ]


async def job_mail_send(
    http: aiohttp.ClientSession, host: Any, demo: Any, tenant_key: dict[str, str], receiver: DemoReceiver
) -> None:
    """PUT a sender profile over Grady's mailbox; POST a receipt with a PDF and a 4 MB scan to
    Adele (a draft with an upload session, as it is over 3 MB), POST it again as a retrying host
    would; the host hears mail.sent once and Adele's inbox holds one mail with both files."""
    base = host.base_url + "/api/v1/tenants/contoso-demo/mail-senders/forms"
    sender = {"mailbox": demo.grady.user_principal_name, "saveToSentItems": True}
    async with http.put(base, json=sender, headers=tenant_key) as resp:
        saved = resp.status
    mail = {
        "idempotencyKey": "application-2026-0042-receipt",
        "to": [demo.adele.user_principal_name],
        "subject": "Receipt: application 2026-0042",
        "body": {"contentType": "html", "content": "<p>We have received your application.</p>"},
        "attachments": [
            {"name": "receipt.pdf", "contentType": "application/pdf", "contentBase64": _b64(RECEIPT)},
            {"name": "enclosure.pdf", "contentType": "application/pdf", "contentBase64": _b64(SCAN)},
        ],
    }
    answers = []
    for _ in range(2):  # the host retries its POST: still one mail
        async with http.post(base + "/messages", json=mail, headers=tenant_key) as resp:
            answers.append(
                (resp.status, (await resp.json(content_type=None))["id"], resp.headers["Location"])
            )
    await wait_for("job mail send", as_check(lambda: bool(_sent(receiver))))
    async with http.get(host.base_url + answers[0][2], headers=tenant_key) as resp:
        status = await resp.json(content_type=None)
    inbox = [
        m
        for m in demo.graph.module("mail").mail.messages(demo.adele, "inbox")
        if m.subject == mail["subject"]
    ]
    files = {a.name: len(a.blob.read()) for m in inbox for a in m.attachments}
    event = _sent(receiver)[0]
    say(
        f"✓ job mail send: PUT …/mail-senders/forms (HTTP {saved}); POST …/messages twice → "
        f"HTTP {answers[0][0]}/{answers[1][0]}, {'one id' if answers[0][1] == answers[1][1] else 'TWO ids'}; "
        f"status {status['status']}, mail.sent ({event['path']}) x{len(_sent(receiver))}; Adele's inbox "
        f"holds {len(inbox)} mail with {files}"
    )
