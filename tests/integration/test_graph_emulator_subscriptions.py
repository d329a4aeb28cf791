"""Change notifications through the real msgraph-sdk: subscriptions are created (after the
validation handshake with a real HTTP receiver on loopback), listed, renewed and deleted with the
SDK; Outlook changes made through Graph or by "a person in Outlook" (the control API) reach the
receiver as Graph's change notifications; lifecycle notifications, expiry, retries and the
control API's delivery log."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from msgraph.generated.models.event import Event
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.subscription import Subscription

from devtools.graph_emulator import Change, EmulatorModule, GraphEmulator
from devtools.graph_emulator.calendar_module import CalendarModule
from devtools.graph_emulator.subscriptions import SubscriptionsModule
from devtools.graph_emulator.users import UsersModule
from tests.integration.graph_clients import Seed, event, graph_client, secret_credential, seeded

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
UTC = dt.UTC
STATE = "s3cret-client-state"


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers the validation handshake (or fails it on purpose),
    records notification POSTs per path, and can fail or stall the next ones."""

    base: str = ""
    validation: str = "echo"  # "echo" | "wrong" | "status"
    fail_next: int = 0  # answer 500 to this many notification POSTs
    stall_next: int = 0  # answer this many notification POSTs after `stall_seconds`
    stall_seconds: float = 0.0
    validations: list[tuple[str, str]] = field(default_factory=list)  # (path, token)
    posts: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)  # (path, value)

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def items(self, path: str) -> list[dict[str, Any]]:
        return [item for name, value in self.posts if name == path for item in value]

    async def wait_for(self, path: str, count: int, seconds: float = 5.0) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + seconds
        while len(self.items(path)) < count:
            assert asyncio.get_running_loop().time() < deadline, f"{path}: {self.items(path)}"
            await asyncio.sleep(0.02)
        return self.items(path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        token = request.query.get("validationToken")
        if token is not None:
            self.validations.append((path, token))
            if self.validation == "wrong":
                return web.Response(text="not the token", content_type="text/plain")
            if self.validation == "status":
                return web.Response(status=404)
            return web.Response(text=token, content_type="text/plain")
        body = await request.json()
        if self.stall_next > 0:
            self.stall_next -= 1
            await asyncio.sleep(self.stall_seconds)
            return web.Response(status=202)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500)
        self.posts.append((path, body["value"]))
        return web.Response(status=202)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/{path}", found.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    found.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    await web.SockSite(runner, sock).start()
    try:
        yield found
    finally:
        await runner.cleanup()


@pytest.fixture
async def seed(tmp_path: Path) -> AsyncIterator[Seed]:
    async with seeded(tmp_path / "graph") as s:
        # Fast retries so failure tests finish in well under a second.
        SubscriptionsModule.of(s.graph).configure(retry_initial_seconds=0.05)
        yield s


def subs(seed: Seed) -> SubscriptionsModule:
    return SubscriptionsModule.of(seed.graph)


def request(
    receiver: Receiver,
    resource: str,
    *,
    days: float = 2,
    change_type: str = "created,updated,deleted",
    client_state: str | None = STATE,
    lifecycle: bool = True,
) -> Subscription:
    return Subscription(
        change_type=change_type,
        notification_url=receiver.url("notify"),
        lifecycle_notification_url=receiver.url("lifecycle") if lifecycle else None,
        resource=resource,
        expiration_date_time=dt.datetime.now(UTC) + dt.timedelta(days=days),
        client_state=client_state,
    )


async def create(seed: Seed, body: Subscription) -> Subscription:
    created = await seed.client.subscriptions.post(body)
    assert created is not None
    assert created.id
    return created


async def odata_error(call: Any) -> ODataError:
    with pytest.raises(ODataError) as caught:
        await call
    return caught.value


async def test_create_validates_both_urls_and_caps_the_expiration(seed: Seed, receiver: Receiver) -> None:
    asked = dt.datetime.now(UTC) + dt.timedelta(days=30)
    body = request(receiver, f"users/{seed.adele.id}/events")
    body.expiration_date_time = asked
    created = await create(seed, body)
    # Graph's handshake: one POST per URL with a URL-encoded token the receiver echoed decoded.
    assert [path for path, _ in receiver.validations] == ["notify", "lifecycle"]
    assert all(token.startswith("Validation: ") for _, token in receiver.validations)
    # Capped at Outlook's maximum (10,080 minutes); the returned value is the one that counts.
    assert created.expiration_date_time is not None
    limit = seed.graph.now() + dt.timedelta(minutes=10_080)
    assert abs((created.expiration_date_time - limit).total_seconds()) < 10
    assert created.change_type == "created,updated,deleted"
    assert created.client_state == STATE
    assert created.application_id == seed.app.client_id
    assert created.resource == f"users/{seed.adele.id}/events"

    assert created.id is not None
    fetched = await seed.client.subscriptions.by_subscription_id(created.id).get()
    assert fetched is not None
    assert fetched.expiration_date_time == created.expiration_date_time
    listed = await seed.client.subscriptions.get()
    assert listed is not None
    assert [s.id for s in listed.value or []] == [created.id]

    # Another app of the tenant sees none of them.
    other = seed.graph.add_app(seed.tenant.id, secrets=["other"], application_permissions=["Calendars.Read"])
    credential = secret_credential(seed.graph, seed.tenant.id, other.client_id, "other")
    client, http = graph_client(seed.graph, credential)
    try:
        theirs = await client.subscriptions.get()
        assert theirs is not None
        assert theirs.value == []
        error = await odata_error(client.subscriptions.by_subscription_id(created.id).get())
        assert error.response_status_code == 404
    finally:
        await http.aclose()
        await credential.close()


async def test_creation_fails_400_when_the_handshake_or_the_body_is_wrong(
    seed: Seed, receiver: Receiver
) -> None:
    resource = f"users/{seed.adele.id}/events"
    receiver.validation = "wrong"
    error = await odata_error(seed.client.subscriptions.post(request(receiver, resource)))
    assert error.response_status_code == 400
    assert error.error is not None
    assert error.error.code == "ValidationError"
    assert "must exactly match validationToken" in (error.error.message or "")

    receiver.validation = "status"
    error = await odata_error(seed.client.subscriptions.post(request(receiver, resource)))
    assert error.response_status_code == 400
    assert "HTTP status code is 'NotFound'" in (error.error.message or "" if error.error else "")
    assert subs(seed).subscriptions() == []

    receiver.validation = "echo"
    handshakes = len(receiver.validations)
    error = await odata_error(
        seed.client.subscriptions.post(request(receiver, resource, client_state="x" * 129))
    )
    assert error.response_status_code == 400
    assert error.error is not None
    assert "clientState" in (error.error.message or "")
    assert len(receiver.validations) == handshakes  # a bad body never reaches the endpoint

    remote = request(receiver, resource)
    remote.notification_url = "http://example.com/notify"  # https is required off loopback
    assert (await odata_error(seed.client.subscriptions.post(remote))).response_status_code == 400
    # 128 characters are fine.
    assert (await create(seed, request(receiver, resource, client_state="y" * 128))).client_state == "y" * 128


async def test_subscribing_needs_the_resources_read_permission(tmp_path: Path, receiver: Receiver) -> None:
    async with seeded(tmp_path / "graph", permissions=("Mail.Read",)) as seed:
        error = await odata_error(
            seed.client.subscriptions.post(request(receiver, f"users/{seed.adele.id}/events"))
        )
        assert error.response_status_code == 403
        assert error.error is not None
        assert "Access is denied" in (error.error.message or "")
        assert receiver.validations == []
        unknown = await odata_error(
            seed.client.subscriptions.post(request(receiver, "users/nobody@x.com/events"))
        )
        assert unknown.response_status_code == 404


async def test_event_changes_via_graph_and_via_outlook_are_notified(seed: Seed, receiver: Receiver) -> None:
    sub = await create(seed, request(receiver, f"users/{seed.adele.id}/events"))
    events = seed.user_client(seed.adele.id).events
    created = await events.post(event("Graph", "2024-05-01T09:00:00", "2024-05-01T10:00:00"))
    assert created is not None
    assert created.id is not None
    await events.by_event_id(created.id).patch(Event(subject="Graph, moved"))
    await events.by_event_id(created.id).delete()
    # Separate POSTs may overtake each other (Graph does not promise an order either).
    by_type = {i["changeType"]: i for i in await receiver.wait_for("notify", 3)}
    assert sorted(by_type) == ["created", "deleted", "updated"]
    items = [by_type["created"], by_type["updated"], by_type["deleted"]]
    for item in items:
        assert item["subscriptionId"] == sub.id
        assert item["clientState"] == STATE
        assert item["tenantId"] == seed.tenant.id
        assert item["resource"] == f"Users/{seed.adele.id}/Events/{created.id}"
        assert item["resourceData"]["id"] == created.id
        assert item["resourceData"]["@odata.type"] == "#Microsoft.Graph.Event"
        assert item["subscriptionExpirationDateTime"]
    assert items[0]["resourceData"]["@odata.etag"] == f'W/"{created.change_key}"'
    assert "@odata.etag" not in items[2]["resourceData"]

    # Adele in Outlook (the control API's Python side): three changes at once go out in one POST.
    calendar = seed.graph.calendar
    posts_before = len(receiver.posts)
    record, _ = calendar.create_event(
        seed.adele.user_principal_name,
        {
            "subject": "Outlook",
            "start": {"dateTime": "2024-05-02T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2024-05-02T10:00:00", "timeZone": "UTC"},
        },
    )
    calendar.update_event(seed.adele.id, record.id, {"subject": "Outlook, edited"})
    calendar.delete_event(seed.adele.id, record.id)
    items = await receiver.wait_for("notify", 6)
    assert [(i["changeType"], i["resourceData"]["id"]) for i in items[3:]] == [
        ("created", record.id),
        ("updated", record.id),
        ("deleted", record.id),
    ]
    assert len(receiver.posts) == posts_before + 1

    # Megan's mailbox is not Adele's.
    seed.graph.calendar.create_event(
        seed.megan.id,
        {
            "subject": "elsewhere",
            "start": {"dateTime": "2024-05-02T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2024-05-02T10:00:00", "timeZone": "UTC"},
        },
    )
    assert await subs(seed).drain()
    assert len(receiver.items("notify")) == 6
    stats = subs(seed).stats(sub.id or "")
    assert (stats.queued, stats.delivered, stats.failures, stats.last_status) == (6, 6, 0, 202)


async def test_change_types_and_a_single_calendar_narrow_what_is_sent(seed: Seed, receiver: Receiver) -> None:
    work = seed.graph.calendar.create_calendar(seed.adele.id, "Work")
    await create(
        seed,
        request(
            receiver,
            f"/users/{seed.adele.user_principal_name}/calendars('{work.id}')/events",
            change_type="created",
        ),
    )
    body = {
        "subject": "x",
        "start": {"dateTime": "2024-05-02T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2024-05-02T10:00:00", "timeZone": "UTC"},
    }
    in_work, _ = seed.graph.calendar.create_event(seed.adele.id, dict(body), calendar_id=work.id)
    seed.graph.calendar.create_event(seed.adele.id, dict(body))  # the default calendar
    seed.graph.calendar.update_event(seed.adele.id, in_work.id, {"subject": "y"})  # not subscribed
    assert await subs(seed).drain()
    assert [(i["changeType"], i["resourceData"]["id"]) for i in receiver.items("notify")] == [
        ("created", in_work.id)
    ]
    error = await odata_error(
        seed.client.subscriptions.post(
            request(receiver, f"users/{seed.adele.id}/calendars/AAMkACnope/events")
        )
    )
    assert error.response_status_code == 404


async def test_renew_extends_and_delete_stops_notifications(seed: Seed, receiver: Receiver) -> None:
    sub = await create(seed, request(receiver, f"users/{seed.adele.id}/events", days=1))
    assert sub.id is not None
    assert sub.expiration_date_time is not None
    item = seed.client.subscriptions.by_subscription_id(sub.id)
    renewed = await item.patch(Subscription(expiration_date_time=dt.datetime.now(UTC) + dt.timedelta(days=3)))
    assert renewed is not None
    assert renewed.expiration_date_time is not None
    assert renewed.expiration_date_time - sub.expiration_date_time > dt.timedelta(days=1, hours=23)
    assert (await item.get()).expiration_date_time == renewed.expiration_date_time  # type: ignore[union-attr]

    await item.delete()
    assert (await odata_error(item.get())).response_status_code == 404
    seed.graph.calendar.create_event(
        seed.adele.id,
        {
            "subject": "after",
            "start": {"dateTime": "2024-05-02T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2024-05-02T10:00:00", "timeZone": "UTC"},
        },
    )
    assert await subs(seed).drain()
    assert receiver.items("notify") == []
    assert subs(seed).ended[sub.id] == "deleted"


async def test_lifecycle_notifications_reach_the_lifecycle_url(seed: Seed, receiver: Receiver) -> None:
    sub = await create(seed, request(receiver, f"users/{seed.adele.id}/events"))
    assert sub.id is not None
    assert subs(seed).reauthorization_required(sub.id)
    assert subs(seed).missed(sub.id)
    assert subs(seed).remove(sub.id)
    items = await receiver.wait_for("lifecycle", 3)
    assert [i["lifecycleEvent"] for i in items] == [
        "reauthorizationRequired",
        "missed",
        "subscriptionRemoved",
    ]
    for notification in items:
        assert notification["subscriptionId"] == sub.id
        assert notification["clientState"] == STATE
        assert notification["tenantId"] == seed.tenant.id
        assert notification["subscriptionExpirationDateTime"]
    assert receiver.items("notify") == []  # lifecycle events never go to the notification URL
    # subscriptionRemoved: the subscription is gone.
    item = seed.client.subscriptions.by_subscription_id(sub.id)
    assert (await odata_error(item.get())).response_status_code == 404

    # The SDK's reauthorize action answers 204 for a live subscription.
    other = await create(seed, request(receiver, f"users/{seed.adele.id}/events", lifecycle=False))
    assert other.id is not None
    await seed.client.subscriptions.by_subscription_id(other.id).reauthorize.post()
    assert not subs(seed).missed(other.id)  # no lifecycle URL: Graph sends nothing


async def test_expired_subscriptions_deliver_nothing_and_disappear(seed: Seed, receiver: Receiver) -> None:
    now_expired = await create(seed, request(receiver, f"users/{seed.adele.id}/events"))
    assert now_expired.id is not None
    subs(seed).expire(now_expired.id)
    item = seed.client.subscriptions.by_subscription_id(now_expired.id)
    assert (await odata_error(item.get())).response_status_code == 404

    by_time = await create(seed, request(receiver, f"users/{seed.adele.id}/events", days=1))
    seed.graph.advance(dt.timedelta(days=1, minutes=1))
    listed = await seed.client.subscriptions.get()
    assert listed is not None
    assert listed.value == []
    seed.graph.calendar.create_event(
        seed.adele.id,
        {
            "subject": "late",
            "start": {"dateTime": "2024-05-02T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2024-05-02T10:00:00", "timeZone": "UTC"},
        },
    )
    assert await subs(seed).drain()
    assert receiver.items("notify") == []
    assert subs(seed).ended == {now_expired.id: "expired", by_time.id: "expired"}


async def test_reauthorization_is_requested_shortly_before_expiry(seed: Seed, receiver: Receiver) -> None:
    subs(seed).configure(reauthorize_before_seconds=3600)
    sub = await create(seed, request(receiver, f"users/{seed.adele.id}/events", days=0.25))
    assert sub.id is not None
    await asyncio.sleep(0.3)
    assert receiver.items("lifecycle") == []  # six hours left
    seed.graph.advance(dt.timedelta(hours=5, minutes=30))
    items = await receiver.wait_for("lifecycle", 1)
    assert items[0]["lifecycleEvent"] == "reauthorizationRequired"
    # Renewing answers the challenge: no second one for the old expiration.
    await seed.client.subscriptions.by_subscription_id(sub.id).patch(
        Subscription(expiration_date_time=seed.graph.now() + dt.timedelta(days=2))
    )
    await asyncio.sleep(0.3)
    assert len(receiver.items("lifecycle")) == 1


async def test_failing_and_slow_receivers_are_retried_and_logged(seed: Seed, receiver: Receiver) -> None:
    sub = await create(seed, request(receiver, f"users/{seed.adele.id}/events"))
    assert sub.id is not None
    body = {
        "subject": "x",
        "start": {"dateTime": "2024-05-02T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2024-05-02T10:00:00", "timeZone": "UTC"},
    }
    receiver.fail_next = 2
    seed.graph.calendar.create_event(seed.adele.id, dict(body))
    await receiver.wait_for("notify", 1)
    # The receiver has the POST before the emulator logs its answer: drain before reading the log.
    assert await subs(seed).drain()
    attempts = subs(seed).deliveries(sub.id, kind="change")
    assert [(a.attempt, a.outcome, a.status) for a in attempts] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "delivered", 202),
    ]
    stats = subs(seed).stats(sub.id)
    assert (stats.delivered, stats.attempts, stats.failures, stats.last_status) == (1, 3, 2, 202)

    # More than the timeout (3 s at Graph; shortened here) counts as a failure and is retried.
    subs(seed).configure(timeout_seconds=0.2)
    receiver.stall_next, receiver.stall_seconds = 1, 0.5
    seed.graph.calendar.create_event(seed.adele.id, dict(body))
    await receiver.wait_for("notify", 2)
    assert await subs(seed).drain()
    outcomes = [a.outcome for a in subs(seed).deliveries(sub.id, kind="change")][3:]
    assert outcomes == ["timeout", "delivered"]

    # Knobs: slow notifications, and lost ones.
    subs(seed).configure(delay_seconds=0.3)
    started = asyncio.get_running_loop().time()
    seed.graph.calendar.create_event(seed.adele.id, dict(body))
    await receiver.wait_for("notify", 3)
    assert asyncio.get_running_loop().time() - started >= 0.3
    subs(seed).configure(delay_seconds=0.0, drop=True)
    seed.graph.calendar.create_event(seed.adele.id, dict(body))
    assert await subs(seed).drain()
    assert len(receiver.items("notify")) == 3
    assert subs(seed).deliveries(sub.id)[-1].outcome == "dropped"
    assert subs(seed).stats(sub.id).dropped == 1

    # Retries end: after retry_for_seconds the batch is given up.
    subs(seed).configure(drop=False, retry_for_seconds=0.2)
    receiver.fail_next = 100
    seed.graph.calendar.create_event(seed.adele.id, dict(body))
    assert await subs(seed).drain(5)
    assert subs(seed).deliveries(sub.id)[-1].outcome == "gaveUp"
    assert subs(seed).stats(sub.id).dropped == 2


async def test_message_subscriptions_match_on_mailbox_and_folder(tmp_path: Path, receiver: Receiver) -> None:
    """Mail changes arrive through the same hooks (resource paths like users/{id}/messages);
    a mail module is not needed to prove the matching, only the changes it will emit."""
    modules: list[EmulatorModule] = [UsersModule(), CalendarModule(), SubscriptionsModule()]
    async with GraphEmulator(directory=tmp_path / "graph", modules=modules) as graph:
        tenant = graph.add_tenant()
        app = graph.add_app(tenant.id, secrets=["pw"], application_permissions=["Mail.Read"])
        adele = graph.add_user(tenant.id, "adele@contoso.onmicrosoft.com")
        credential = secret_credential(graph, tenant.id, app.client_id, "pw")
        client, http = graph_client(graph, credential)
        try:
            in_folder = await client.subscriptions.post(
                request(receiver, f"users/{adele.id}/mailFolders('AAMkFolderImport')/messages")
            )
            whole = await client.subscriptions.post(
                request(receiver, f"users/{adele.user_principal_name}/messages")
            )
            assert in_folder is not None
            assert whole is not None

            def mail(message_id: str, folder: str) -> Change:
                return Change(
                    kind="message",
                    change_type="created",
                    tenant_id=tenant.id,
                    user_id=adele.id,
                    resource_id=message_id,
                    resource=f"Users/{adele.id}/Messages/{message_id}",
                    container_id=folder,
                    change_key="CQAAABYAAAD",
                )

            graph.ctx.hooks.emit(mail("AAMkMsg1", "AAMkFolderImport"))
            graph.ctx.hooks.emit(mail("AAMkMsg2", "AAMkFolderInbox"))
            assert await SubscriptionsModule.of(graph).drain()
            got = {(i["subscriptionId"], i["resourceData"]["id"]) for i in receiver.items("notify")}
            assert got == {(in_folder.id, "AAMkMsg1"), (whole.id, "AAMkMsg1"), (whole.id, "AAMkMsg2")}
            assert {i["resourceData"]["@odata.type"] for i in receiver.items("notify")} == {
                "#Microsoft.Graph.Message"
            }
            # Mail.Read does not cover events.
            error = await odata_error(
                client.subscriptions.post(request(receiver, f"users/{adele.id}/events"))
            )
            assert error.response_status_code == 403
        finally:
            await http.aclose()
            await credential.close()


async def test_the_control_api_lists_triggers_and_expires(seed: Seed, receiver: Receiver) -> None:
    sub = await create(seed, request(receiver, f"users/{seed.adele.id}/events"))
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(seed.graph.ca_cert)))
    base = f"{seed.graph.url}/_emulator"
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call(method: str, path: str, body: Any = None, expect: int = 200) -> Any:
            async with session.request(method, base + path, json=body) as response:
                assert response.status == expect, await response.text()
                return await response.json()

        listed = await call("GET", "/subscriptions")
        assert [s["id"] for s in listed["value"]] == [sub.id]
        assert listed["value"][0]["userId"] == seed.adele.id
        # Acting as Adele in Outlook over HTTP.
        await call(
            "POST",
            f"/users/{seed.adele.user_principal_name}/events",
            {
                "subject": "via HTTP",
                "start": {"dateTime": "2024-05-02T09:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2024-05-02T10:00:00", "timeZone": "UTC"},
            },
            201,
        )
        await receiver.wait_for("notify", 1)
        await call("POST", "/notifications/drain", {"timeoutSeconds": 5})
        one = await call("GET", f"/subscriptions/{sub.id}")
        assert one["stats"]["delivered"] == 1
        log = await call("GET", f"/subscriptions/{sub.id}/deliveries")
        assert [a["outcome"] for a in log["value"]] == ["delivered"]
        everything = await call("GET", "/notifications/deliveries?kind=validation")
        assert [a["outcome"] for a in everything["value"]] == ["validated", "validated"]

        sent = await call("POST", f"/subscriptions/{sub.id}/lifecycle", {"lifecycleEvent": "missed"})
        assert sent["sent"] is True
        assert (await receiver.wait_for("lifecycle", 1))[0]["lifecycleEvent"] == "missed"
        await call("POST", f"/subscriptions/{sub.id}/lifecycle", {"lifecycleEvent": "bogus"}, 400)

        settings = await call("PATCH", "/notifications/settings", {"timeoutSeconds": 2.5})
        assert settings["timeoutSeconds"] == 2.5
        assert settings["maxExpirationMinutes"] == 10_080
        await call("PATCH", "/notifications/settings", {"noSuchKnob": 1}, 400)

        await call("POST", f"/subscriptions/{sub.id}/expire")
        await call("GET", f"/subscriptions/{sub.id}", expect=404)
        stats = await call("GET", "/notifications/stats")
        assert stats["value"][0]["ended"] == "expired"


async def test_subscription_requests_are_counted_by_operation(seed: Seed, receiver: Receiver) -> None:
    """The /subscriptions requests name no mailbox, so the per-mailbox counters miss them; the
    module counts them by operation (failures too) for benchmarks, over Python and the control
    API, and a reset starts again from zero."""
    module = subs(seed)
    seed.graph.reset_counters()
    sub = await create(seed, request(receiver, f"users/{seed.adele.id}/events"))
    assert sub.id is not None
    item = seed.client.subscriptions.by_subscription_id(sub.id)
    await item.patch(Subscription(expiration_date_time=dt.datetime.now(UTC) + dt.timedelta(days=2)))
    await item.reauthorize.post()
    await item.get()
    await seed.client.subscriptions.get()
    await item.delete()
    assert (await odata_error(item.get())).response_status_code == 404  # counted, and as failed

    counts = module.request_counts()
    assert counts["total"] == 7
    assert counts["requests"] == {
        "POST /subscriptions": 1,
        "GET /subscriptions": 1,
        "GET /subscriptions/{id}": 2,
        "PATCH /subscriptions/{id}": 1,
        "DELETE /subscriptions/{id}": 1,
        "POST /subscriptions/{id}/reauthorize": 1,
    }
    assert counts["failed"]["GET /subscriptions/{id}"] == 1
    assert sum(counts["failed"].values()) == 1
    assert sum(c.requests for c in seed.graph.all_counters().values()) == 0  # no mailbox saw them

    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(seed.graph.ca_cert)))
    base = f"{seed.graph.url}/_emulator/notifications/requests"
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(base) as response:
            assert response.status == 200
            assert await response.json() == counts
        async with session.delete(base) as response:
            assert response.status == 204
        async with session.get(base) as response:
            assert (await response.json())["total"] == 0
    await create(seed, request(receiver, f"users/{seed.adele.id}/events"))
    assert module.request_counts()["requests"]["POST /subscriptions"] == 1
    seed.graph.reset()
    assert module.request_counts()["total"] == 0
