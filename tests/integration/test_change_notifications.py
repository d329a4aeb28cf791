"""Near-real-time sync on the local stack: the real app on the local Functions host (its public
URL reachable by the emulator), Azurite, and the Graph emulator delivering real change and
lifecycle notifications over HTTP to `POST /api/v1/graph/notifications`. The timers never fire
here on their own (their schedules are set to never), so whatever reaches the host's webhook
came through a notification (or a catch-up the bridge asked for)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from core.store.records import Subscription, SubscriptionStatus
from devtools.graph_emulator.mail_ops import file
from devtools.graph_emulator.subscriptions import SubscriptionsModule
from tests.integration.bridge_api import api_env  # noqa: F401 - fixture
from tests.integration.test_calendar_sync_down import (  # noqa: F401 - fixtures
    Bridge,
    create_event,
    event_json,
    eventually,
    graph,
    start_bridge,
    today_at,
)
from tests.integration.test_mail_import import setup_import

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def emulator_as_it_was(graph: Any) -> Iterator[None]:
    """The emulator is shared by the session: its notification knobs and clock go back after
    each test here."""
    yield
    SubscriptionsModule.of(graph).configure(drop=False)
    graph.ctx.clock.reset()


def subscriptions(bridge: Bridge) -> SubscriptionsModule:
    return SubscriptionsModule.of(bridge.graph)


async def active_rows(bridge: Bridge, count: int = 1) -> list[Subscription]:
    async def ready() -> list[Subscription] | None:
        rows = await bridge.app.subscriptions().rows(bridge.tenant_id)
        active = [r for r in rows if r.status is SubscriptionStatus.ACTIVE]
        return active if len(active) >= count else None

    rows: list[Subscription] = await eventually(ready, what=f"{count} active subscription(s)")
    return rows


def subjects(bridge: Bridge) -> list[str]:
    """The subjects of every appointment.upserted the host's webhook received, in order."""
    out = []
    for request in bridge.receiver.accepted:
        event = json.loads(request.body)
        if event["type"] == "appointment.upserted":
            out.append(event["data"]["appointment"]["subject"])
    return out


async def arrives(bridge: Bridge, subject: str, within: float = 20) -> float:
    """Wait until the host's webhook got an appointment with `subject`; when it arrived."""

    async def seen() -> bool | None:
        return subject in subjects(bridge) or None

    await eventually(seen, what=f"'{subject}' at the host's webhook", within=within)
    return time.monotonic()


async def linked_and_subscribed(bridge: Bridge) -> tuple[str, Subscription]:
    adele = bridge.outlook.mailbox("adele")
    create_event(bridge.graph, adele, event_json("Kickoff", today_at(9, 1)))
    await bridge.link("room-4b", {"account": adele, "direction": "down"})
    [row] = await active_rows(bridge)
    await arrives(bridge, "Kickoff")  # the catch-up after subscribing: the first sync, at once
    return adele, row


async def test_an_outlook_edit_reaches_the_host_through_a_notification_within_seconds(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a calendar linked down while notifications are on WHEN it is linked THEN the bridge
    subscribes to it at Graph (the handshake answered by the real endpoint), with a URL naming
    tenant and row and a clientState only Graph and the row's hash know, and syncs it at once;
    WHEN Adele edits an appointment in Outlook THEN Graph notifies, and the change reaches the
    host's webhook seconds later — no timer involved."""
    async with start_bridge(notifications=True) as bridge:
        adele, row = await linked_and_subscribed(bridge)
        [held] = subscriptions(bridge).subscriptions(bridge.outlook.tenant_id)
        assert held.id == row.subscription_id
        assert held.resource == f"/users/{adele}/calendar/events"
        query = parse_qs(urlsplit(held.notification_url).query)
        assert query == {"tenantId": [bridge.tenant_id], "target": [row.target]}
        assert held.client_state is not None
        assert row.client_state_matches(held.client_state)

        event_id = create_event(bridge.graph, adele, event_json("Budsjett", today_at(10, 2)))
        started = time.monotonic()
        bridge.graph.calendar.update_event(adele, event_id, {"subject": "Budsjett (flyttet)"})
        took = await arrives(bridge, "Budsjett (flyttet)") - started
        assert took < 10, took
        stats = subscriptions(bridge).stats(held.id)
        assert stats.delivered >= 1


async def test_a_forged_notification_changes_nothing(start_bridge: Callable[..., Any]) -> None:
    """GIVEN a subscribed calendar WHEN someone posts notifications for it with a wrong
    clientState (and for a tenant or row that does not exist) THEN each is answered 202 like
    any other, and nothing is synced or sent to the host."""
    async with start_bridge(notifications=True) as bridge:
        adele, row = await linked_and_subscribed(bridge)
        subscriptions(bridge).configure(drop=True)  # Graph's own notification of it is lost
        create_event(bridge.graph, adele, event_json("Hemmelig", today_at(11, 3)))
        await subscriptions(bridge).drain(5)
        before = (len(bridge.receiver.accepted), len(await bridge.runs()))
        forged = {"subscriptionId": row.subscription_id, "clientState": "guess", "changeType": "updated"}
        url = bridge.api.host.base_url + "/api/v1/graph/notifications"
        for query in (
            {"tenantId": bridge.tenant_id, "target": row.target},
            {"tenantId": "nobody", "target": row.target},
            {"tenantId": bridge.tenant_id, "target": "c-" + "0" * 32},
        ):
            async with bridge.api.http.post(url, params=query, json={"value": [forged] * 3}) as resp:
                assert resp.status == 202, await resp.text()
        async with bridge.api.http.post(url, params={"validationToken": "abc<script>"}) as resp:
            assert (resp.status, await resp.text(), resp.content_type) == (200, "abc<script>", "text/plain")
        async with bridge.api.http.post(url, data=b"not json") as resp:
            assert resp.status == 400
            assert resp.content_type == "application/problem+json"
        await asyncio.sleep(1.5)  # what a wrongly accepted notification would have set off
        assert (len(bridge.receiver.accepted), len(await bridge.runs())) == before
        assert "Hemmelig" not in subjects(bridge)


async def test_each_lifecycle_event_is_handled(start_bridge: Callable[..., Any]) -> None:
    """reauthorizationRequired → the bridge reauthorizes at Graph; subscriptionRemoved → it
    subscribes again and catches up by delta (an edit made while removed arrives); missed →
    it catches up by delta (an edit whose notification Graph lost arrives)."""
    async with start_bridge(notifications=True) as bridge:
        adele, row = await linked_and_subscribed(bridge)
        module = subscriptions(bridge)

        assert module.lifecycle(row.subscription_id or "", "reauthorizationRequired")

        async def reauthorized() -> bool | None:
            return row.subscription_id in module.reauthorizations or None

        await eventually(reauthorized, what="the reauthorization")

        module.configure(drop=True)  # Graph loses notifications from here on
        event_id = create_event(bridge.graph, adele, event_json("Tapt", today_at(12, 4)))
        bridge.graph.calendar.update_event(adele, event_id, {"subject": "Tapt (endret)"})
        await module.drain(5)
        assert "Tapt (endret)" not in subjects(bridge)
        module.configure(drop=False)
        assert module.lifecycle(row.subscription_id or "", "missed")
        await arrives(bridge, "Tapt (endret)")

        assert module.lifecycle(row.subscription_id or "", "subscriptionRemoved")  # Graph drops it
        removed_at = subjects(bridge)
        bridge.graph.calendar.update_event(adele, event_id, {"subject": "Mens borte"})

        async def remade() -> Subscription | None:
            rows = await bridge.app.subscriptions().rows(bridge.tenant_id)
            fresh = [r for r in rows if r.subscription_id not in (None, row.subscription_id)]
            return fresh[0] if fresh and fresh[0].status is SubscriptionStatus.ACTIVE else None

        new = await eventually(remade, what="a new subscription")
        assert [s.id for s in module.subscriptions(bridge.outlook.tenant_id)] == [new.subscription_id]
        await arrives(bridge, "Mens borte")  # the catch-up after subscribing again
        assert len(subjects(bridge)) > len(removed_at)
        bridge.graph.calendar.update_event(adele, event_id, {"subject": "Tilbake"})
        await arrives(bridge, "Tilbake")  # and the new subscription notifies


class Clock:
    """The bridge's clock, moved together with the emulator's."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def test_a_subscription_is_renewed_before_it_expires_under_a_controllable_clock(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN subscriptions asked for 60 minutes WHEN 35 minutes pass (both clocks moved) and the
    renewal timer runs THEN the subscription is renewed with the expiration Graph grants;
    WHEN 40 more minutes pass — past the first expiration — THEN it still delivers, and an
    Outlook edit reaches the host."""
    async with start_bridge(notifications=True, GRAPH_SUBSCRIPTION_MINUTES="60") as bridge:
        clock = Clock()
        bridge.app.clock = clock
        adele, row = await linked_and_subscribed(bridge)
        module = subscriptions(bridge)
        first_expiration = module.get(row.subscription_id or "").expiration
        assert row.expiration == first_expiration

        def advance(minutes: int) -> None:
            clock.offset += timedelta(minutes=minutes)
            bridge.graph.ctx.clock.advance(timedelta(minutes=minutes))

        advance(35)
        await bridge.fire_timer("graph_subscriptions_timer")

        async def renewed() -> Subscription | None:
            [current] = await bridge.app.subscriptions().rows(bridge.tenant_id)
            assert row.created_at is not None
            fresh = current.renewed_at is not None and current.renewed_at > row.created_at
            return current if fresh else None

        current = await eventually(renewed, what="the renewal")
        assert current.subscription_id == row.subscription_id
        granted = module.get(row.subscription_id or "").expiration
        assert current.expiration == granted
        assert granted > first_expiration

        advance(40)
        assert bridge.graph.ctx.clock.now() > first_expiration
        assert [s.id for s in module.subscriptions(bridge.outlook.tenant_id)] == [row.subscription_id]
        event_id = create_event(bridge.graph, adele, event_json("Etter fornyelse", today_at(14, 5)))
        bridge.graph.calendar.update_event(adele, event_id, {"subject": "Etter fornyelse (ny)"})
        await arrives(bridge, "Etter fornyelse (ny)")


async def test_a_mail_arriving_in_an_import_folder_is_imported_through_a_notification(
    start_bridge: Callable[..., Any],
) -> None:
    """GIVEN a mail import saved while notifications are on THEN the bridge subscribes to its
    folder's new messages; WHEN an invoice arrives THEN Graph notifies and the document reaches
    the host, with no timer and no "Run import"."""
    async with start_bridge(notifications=True) as bridge:
        box, mail = await setup_import(bridge)
        [row] = await active_rows(bridge)
        assert row.resource is not None
        assert row.resource.endswith("/messages")
        mail.deliver_mail(
            box,
            "Inbox/Invoices",
            subject="Faktura 1001",
            attachments=[file("faktura-1001.pdf", b"%PDF-1.7 faktura", "application/pdf")],
        )

        def imported() -> list[str] | None:
            names = [
                json.loads(r.body)["data"]["fileName"]
                for r in bridge.receiver.accepted
                if json.loads(r.body)["type"] == "document.imported"
            ]
            return names or None

        assert await eventually(imported, what="document.imported") == ["faktura-1001.pdf"]
