"""POST …/events/test: a host checks its receiver end to end — the event arrives signed (and
passes the README's verification), appears in the feed, and a retried request emits once."""

from __future__ import annotations

import pytest

from tests.host_snippet import load_verifier
from tests.integration.bridge_api import Api, api, api_env  # noqa: F401 - fixtures
from tests.waiting import eventually
from tests.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_given_a_webhook_when_the_host_asks_for_a_test_event_then_it_arrives_signed_and_in_the_feed(
    api: Api,
) -> None:
    async with WebhookReceiver() as receiver:
        created = await api.create_tenant("contoso", host={"webhookUrl": receiver.url})
        key = created.body["apiKey"]
        secret = created.body["webhookSecret"]

        first = await api.call(
            "POST", "/api/v1/tenants/contoso/events/test", bearer=key, headers={"Idempotency-Key": "check-1"}
        )
        again = await api.call(
            "POST", "/api/v1/tenants/contoso/events/test", bearer=key, headers={"Idempotency-Key": "check-1"}
        )
        assert first.status == 202, first.text
        assert again.body["id"] == first.body["id"]  # a retried request emits one event

        await eventually(lambda: receiver.accepted, what="the test event at the receiver")
        (delivered,) = receiver.accepted
        assert delivered.event_id == first.body["id"]
        assert delivered.headers["M365Bridge-Event-Type"] == "bridge.test"
        verify = load_verifier()
        assert verify(secret, delivered.body, delivered.headers["M365Bridge-Signature"])
        assert not verify(secret, delivered.body + b" ", delivered.headers["M365Bridge-Signature"])

    feed = await api.call("GET", "/api/v1/tenants/contoso/events", bearer=key)
    assert [e["id"] for e in feed.body["events"]] == [first.body["id"]]


async def test_a_blank_idempotency_key_is_a_problem_and_emits_nothing(api: Api) -> None:
    created = await api.create_tenant("fabrikam")
    key = created.body["apiKey"]
    bad = await api.call(
        "POST", "/api/v1/tenants/fabrikam/events/test", bearer=key, headers={"Idempotency-Key": " "}
    )
    assert bad.is_problem(400)
    feed = await api.call("GET", "/api/v1/tenants/fabrikam/events", bearer=key)
    assert feed.body["events"] == []
