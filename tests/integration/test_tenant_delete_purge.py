"""Deleting a tenant forgets everything keyed by it, delivery state included, so a tenant
re-created under the same id starts clean: its events are delivered, not deduplicated onto
the old tenant's settled history."""

from __future__ import annotations

import pytest

from tests.integration.bridge_api import Api, api, api_env, every_row  # noqa: F401 - fixtures
from tests.waiting import eventually
from tests.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_given_a_delivered_event_when_its_tenant_is_deleted_and_recreated_then_it_starts_clean(
    api: Api, api_env: dict[str, str]
) -> None:
    async with WebhookReceiver() as receiver:
        created = await api.create_tenant("contoso", host={"webhookUrl": receiver.url})
        key = created.body["apiKey"]
        test = "/api/v1/tenants/contoso/events/test"
        first = await api.call("POST", test, bearer=key, headers={"Idempotency-Key": "check"})
        await eventually(lambda: len(receiver.accepted) == 1, what="the first delivery")

        deleted = await api.operator("DELETE", "/tenants/contoso")
        assert deleted.status == 204, deleted.text
        rows = await every_row(api_env["AzureWebJobsStorage"], api_env["BRIDGE_TABLE_PREFIX"])
        left = [(table, pk, rk) for table, pk, rk in rows if "contoso" in pk or "contoso" in rk]
        assert left == []

        again = await api.create_tenant("contoso", host={"webhookUrl": receiver.url})
        second = await api.call(
            "POST", test, bearer=again.body["apiKey"], headers={"Idempotency-Key": "check"}
        )
        assert second.status == 202, second.text
        assert second.body["sequence"] == 1  # a fresh outbox, not the old tenant's
        await eventually(lambda: len(receiver.accepted) == 2, what="delivery to the re-created tenant")
    assert receiver.accepted[1].event_id == second.body["id"]
    assert first.body["id"] == second.body["id"]  # same tenant id and key: same event id, delivered anew
