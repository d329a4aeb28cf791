"""Change-notification subscriptions over memory tables, the fake Graph and in-memory queues
with a settable clock: what the configuration wants (pure), reconciling with Graph, renewal
before expiry, lifecycle events, and checking incoming notifications."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from core.calendar.requests import InMemorySyncQueue, SyncRequest
from core.graph.errors import ConsentMissing, GraphUnavailable
from core.graph.fake import InMemoryGraph
from core.mail.importer import ImportRequest, InMemoryImportQueue
from core.request_errors import MalformedRequest
from core.store import Tables, memory_tables
from core.store.records import (
    Direction,
    LinkedAccount,
    MailImport,
    ResourceLink,
    Subscription,
    SubscriptionKind,
    SubscriptionStatus,
    Tenant,
    subscription_target,
)
from core.subscriptions import (
    InMemorySubscriptionQueue,
    Lifecycle,
    NotificationConfig,
    Reconcile,
    SubscriptionManager,
    accept,
    decode,
    parse_notifications,
    validation_token,
)
from core.subscriptions.plan import Create, Drop, calendar_resource, folder_resource, plan, wanted
from core.subscriptions.queue import encode
from tests.unit.calendar_world import ADELE, GRADY, T0, Clock, FakeGraphs

INVOICES = "invoices@acme.example"
CONFIG = NotificationConfig("https://bridge.example", timedelta(minutes=4230))


class World:
    def __init__(self) -> None:
        self.tables: Tables = memory_tables()
        self.graph = InMemoryGraph()
        self.clock = Clock(T0)
        self.graph.clock = self.clock
        for upn in (ADELE, GRADY, INVOICES):
            self.graph.add_user(upn)
        self.sync_queue = InMemorySyncQueue()
        self.import_queue = InMemoryImportQueue()
        self.subscription_queue = InMemorySubscriptionQueue()
        self.tenant = Tenant(tenant_id="acme")
        self.manager = SubscriptionManager(
            self.tables, FakeGraphs(self.graph), CONFIG, self.sync_queue, self.import_queue, clock=self.clock
        )

    async def link(self, resource: str, *accounts: LinkedAccount) -> ResourceLink:
        return await self.tables.repo(ResourceLink).upsert(
            ResourceLink(tenant_id="acme", resource_id=resource, accounts=list(accounts))
        )

    async def mail_import(self, folder: str = "Inbox/Faktura", **kw: Any) -> MailImport:
        found = self.graph.add_mail_folder(INVOICES, folder)
        archive = self.graph.add_mail_folder(INVOICES, "Archive")
        return await self.tables.repo(MailImport).upsert(
            MailImport(
                tenant_id="acme",
                import_id="invoices",
                mailbox=INVOICES,
                import_folder=folder,
                import_folder_id=found.id,
                archive_folder="Archive",
                archive_folder_id=archive.id,
                forward_to="accounts@acme.example",
                **kw,
            )
        )

    async def rows(self) -> dict[str, Subscription]:
        return {r.target: r for r in await self.manager.rows("acme")}

    def at_graph(self) -> dict[str, Any]:
        """Graph's side: subscription id -> (resource, expiration)."""
        return {
            i: (request.resource, expires) for i, (_, request, expires) in self.graph.subscriptions.items()
        }


@pytest.fixture
def world() -> World:
    return World()


def calendar_target(resource: str, account: str, calendar: str = "default") -> str:
    return subscription_target(SubscriptionKind.CALENDAR, resource, account, calendar)


# --- the plan (pure) ------------------------------------------------------------------------------


def test_each_synced_calendar_and_each_enabled_import_is_wanted_and_nothing_else() -> None:
    link = ResourceLink(
        tenant_id="acme",
        resource_id="room-4b",
        accounts=[
            LinkedAccount(account=ADELE, direction=Direction.DOWN, calendars=["default", "Ferie"]),
            LinkedAccount(account=GRADY, direction=Direction.UP),
        ],
    )
    config = MailImport(
        tenant_id="acme",
        import_id="invoices",
        mailbox=INVOICES,
        import_folder="Inbox",
        import_folder_id="F1",
        archive_folder="Archive",
        archive_folder_id="F2",
        forward_to="x@acme.example",
    )
    wants = wanted([link], [config, config.model_copy(update={"import_id": "off", "enabled": False})])
    assert {(w.kind.value, w.mailbox, w.calendar, w.import_id) for w in wants.values()} == {
        ("calendar", ADELE, "default", None),
        ("calendar", ADELE, "Ferie", None),
        ("mail", INVOICES, None, "invoices"),
    }
    mail = wants[subscription_target(SubscriptionKind.MAIL, "invoices")]
    assert mail.resource == folder_resource(INVOICES, "F1") == f"/users/{INVOICES}/mailFolders('F1')/messages"
    assert mail.change_types == ("created",)
    assert calendar_resource(ADELE, None) == f"/users/{ADELE}/calendar/events"


def _row(target: str, **kw: Any) -> Subscription:
    values: dict[str, Any] = {
        "tenant_id": "acme",
        "target": target,
        "kind": SubscriptionKind.CALENDAR,
        "mailbox": ADELE,
        "subscription_id": "s1",
        "expiration": T0 + timedelta(days=2),
        "status": SubscriptionStatus.ACTIVE,
        **kw,
    }
    return Subscription(**values)


def test_the_plan_makes_what_is_missing_renews_what_expires_soon_and_drops_what_is_unwanted() -> None:
    link = ResourceLink(
        tenant_id="acme",
        resource_id="r",
        accounts=[
            LinkedAccount(account=a, direction=Direction.DOWN) for a in (ADELE, GRADY, "c@acme.example")
        ],
    )
    wants = wanted([link], [])
    adele, grady, third = (calendar_target("r", a) for a in (ADELE, GRADY, "c@acme.example"))
    rows = [
        _row(adele, expiration=T0 + timedelta(hours=20)),  # less than half of 70.5 h left
        _row(grady),  # fine
        _row(calendar_target("gone", ADELE)),  # no longer linked
    ]
    drop, *rest = plan(wants, rows, T0, CONFIG.renew_before)  # drops first: they free quota
    assert isinstance(drop, Drop)
    assert drop.row.target == calendar_target("gone", ADELE)
    named = {(type(a).__name__, a.want.target if isinstance(a, Create) else a.row.target) for a in rest}
    assert named == {("Renew", adele), ("Create", third)}


@pytest.mark.parametrize(
    ("row", "remade"),
    [
        ({"status": SubscriptionStatus.REMOVED}, True),
        ({"status": SubscriptionStatus.FAILED, "subscription_id": None}, True),
        ({"expiration": T0}, True),  # expired
        ({"status": SubscriptionStatus.CREATING, "created_at": T0 - timedelta(minutes=1)}, False),
        ({"status": SubscriptionStatus.CREATING, "created_at": T0 - timedelta(minutes=5)}, True),
    ],
)
def test_a_removed_failed_expired_or_abandoned_subscription_is_made_again(
    row: dict[str, Any], remade: bool
) -> None:
    link = ResourceLink(
        tenant_id="acme", resource_id="r", accounts=[LinkedAccount(account=ADELE, direction=Direction.BOTH)]
    )
    target = calendar_target("r", ADELE)
    actions = plan(wanted([link], []), [_row(target, **row)], T0, CONFIG.renew_before)
    if not remade:
        assert actions == []
        return
    [action] = actions
    assert isinstance(action, Create)
    assert action.replaces == _row(target, **row)


def test_a_mail_import_whose_folder_changed_gets_a_subscription_on_the_new_folder() -> None:
    config = MailImport(
        tenant_id="acme",
        import_id="invoices",
        mailbox=INVOICES,
        import_folder="Inbox/Ny",
        import_folder_id="NEW",
        archive_folder="Archive",
        archive_folder_id="F2",
        forward_to="x@acme.example",
    )
    target = subscription_target(SubscriptionKind.MAIL, "invoices")
    old = _row(
        target, kind=SubscriptionKind.MAIL, mailbox=INVOICES, resource=folder_resource(INVOICES, "OLD")
    )
    [action] = plan(wanted([], [config]), [old], T0, CONFIG.renew_before)
    assert isinstance(action, Create)
    assert action.want.resource == folder_resource(INVOICES, "NEW")


def test_messages_round_trip_and_bad_ones_are_refused() -> None:
    for message in (Reconcile("acme"), Lifecycle("acme", "c-" + "0" * 32, "missed")):
        assert decode(encode(message)) == message
    for bad in ("[]", "{}", '{"kind":"lifecycle","tenantId":"a","target":"t","event":"other"}', "x"):
        with pytest.raises(ValueError, match="graph-subscriptions"):
            decode(bad)


# --- reconciling with Graph ---------------------------------------------------------------------


async def test_a_linked_calendar_and_an_import_get_subscriptions_with_only_a_hash_of_their_client_state(
    world: World,
) -> None:
    """GIVEN Adele's default and 'Ferie' calendars linked down and a mail import WHEN
    reconciled THEN Graph holds three subscriptions on the right resources, each row names
    Graph's id and granted expiration and keeps only the clientState's SHA-256, and the
    notification URL names the tenant and the row; reconciling again changes nothing."""
    ferie = world.graph.add_calendar(ADELE, "Ferie")
    await world.link(
        "room-4b", LinkedAccount(account=ADELE, direction=Direction.DOWN, calendars=["default", "Ferie"])
    )
    config = await world.mail_import()
    run = await world.manager.reconcile(world.tenant)
    assert run is not None
    assert run.counts == {"created": 3}
    rows = await world.rows()
    assert {r.status for r in rows.values()} == {SubscriptionStatus.ACTIVE}
    assert sorted(resource for resource, _ in world.at_graph().values()) == sorted(
        [
            f"/users/{ADELE}/calendar/events",
            f"/users/{ADELE}/calendars/{ferie.id}/events",
            folder_resource(INVOICES, config.import_folder_id),
        ]
    )
    for row in rows.values():
        _, request, granted = world.graph.subscriptions[row.subscription_id or ""]
        assert row.expiration == granted == T0 + timedelta(minutes=4230)
        assert request.client_state not in json.dumps(row.model_dump(), default=str)
        assert row.client_state_matches(request.client_state)
        assert (
            request.notification_url
            == f"https://bridge.example/api/v1/graph/notifications?tenantId=acme&target={row.target}"
        )
    # each new subscription is followed by a catch-up: the new calendars sync, the import runs, now
    assert all(isinstance(r, SyncRequest) for r in world.sync_queue.sent)
    assert sorted(getattr(r, "calendar", "") or "" for r in world.sync_queue.sent) == [
        "Ferie",
        "default",
    ]
    assert world.import_queue.sent == [ImportRequest("acme", "invoices", reason="notification")]
    assert await world.manager.reconcile(world.tenant) is None  # nothing to do, no run recorded


async def test_subscriptions_are_renewed_before_they_expire_with_the_expiration_graph_grants(
    world: World,
) -> None:
    await world.link("room-4b", LinkedAccount(account=ADELE, direction=Direction.DOWN))
    await world.manager.reconcile(world.tenant)
    [first] = (await world.rows()).values()
    world.clock.advance(timedelta(hours=34))  # more than half left: kept
    assert await world.manager.reconcile(world.tenant) is None
    world.clock.advance(timedelta(hours=2))  # less than half left: renewed
    run = await world.manager.reconcile(world.tenant)
    assert run is not None
    assert run.counts == {"renewed": 1}
    [renewed] = (await world.rows()).values()
    assert renewed.subscription_id == first.subscription_id
    assert renewed.expiration == world.clock.now + timedelta(minutes=4230) > first.expiration  # type: ignore[operator]


async def test_unlinking_drops_the_subscription_at_graph_and_its_row(world: World) -> None:
    await world.link("room-4b", LinkedAccount(account=ADELE, direction=Direction.DOWN))
    await world.manager.reconcile(world.tenant)
    await world.link("room-4b", LinkedAccount(account=ADELE, direction=Direction.UP))  # no longer down
    run = await world.manager.reconcile(world.tenant)
    assert run is not None
    assert run.counts == {"dropped": 1}
    assert world.at_graph() == {}
    assert await world.rows() == {}


async def test_notifications_off_or_a_disabled_tenant_drops_everything(world: World) -> None:
    await world.link("room-4b", LinkedAccount(account=ADELE, direction=Direction.DOWN))
    await world.manager.reconcile(world.tenant)
    await world.manager.reconcile(world.tenant.model_copy(update={"enabled": False}))
    assert world.at_graph() == {}
    assert await world.rows() == {}


async def test_a_refusal_is_recorded_in_plain_words_and_a_transient_failure_fails_the_run(
    world: World,
) -> None:
    await world.link("room-4b", LinkedAccount(account=ADELE, direction=Direction.DOWN))
    world.graph.inject(
        ADELE, ConsentMissing("create_subscription: admin consent missing", permission="Calendars.Read")
    )
    run = await world.manager.reconcile(world.tenant)
    assert run is not None
    assert run.counts == {"failed": 1}
    [row] = (await world.rows()).values()
    assert row.status is SubscriptionStatus.FAILED
    assert row.error is not None
    assert "ConsentMissing" in row.error
    world.graph.inject(ADELE, GraphUnavailable("create_subscription: 503"))
    with pytest.raises(GraphUnavailable):
        await world.manager.reconcile(world.tenant)  # the queue retries it
    await world.manager.reconcile(world.tenant)
    [row] = (await world.rows()).values()
    assert row.status is SubscriptionStatus.ACTIVE
    assert len(world.at_graph()) == 1


async def test_a_subscription_graph_lost_is_made_again_at_renewal_and_caught_up(world: World) -> None:
    await world.link("room-4b", LinkedAccount(account=ADELE, direction=Direction.DOWN))
    await world.manager.reconcile(world.tenant)
    world.sync_queue.sent.clear()  # the first catch-up
    world.graph.subscriptions.clear()  # Graph removed it without telling
    world.clock.advance(timedelta(hours=40))
    await world.manager.reconcile(world.tenant)
    [row] = (await world.rows()).values()
    assert row.status is SubscriptionStatus.ACTIVE
    assert list(world.at_graph()) == [row.subscription_id]
    assert world.sync_queue.sent == [SyncRequest("acme", "room-4b", ADELE, "default", reason="notification")]


# --- lifecycle events -------------------------------------------------------------------------


async def test_each_lifecycle_event_is_handled(world: World) -> None:
    """reauthorizationRequired → reauthorized at Graph; subscriptionRemoved → made again
    (new id, new clientState) and caught up by delta; missed → caught up."""
    await world.link("room-4b", LinkedAccount(account=ADELE, direction=Direction.DOWN))
    await world.mail_import()
    await world.manager.reconcile(world.tenant)
    rows = await world.rows()
    calendar = next(r for r in rows.values() if r.kind is SubscriptionKind.CALENDAR)
    mail = next(r for r in rows.values() if r.kind is SubscriptionKind.MAIL)
    world.sync_queue.sent.clear()  # the first catch-ups
    world.import_queue.sent.clear()

    await world.manager.lifecycle(world.tenant, calendar.target, "reauthorizationRequired")
    assert world.graph.reauthorized == [calendar.subscription_id]
    assert world.sync_queue.sent == []

    await world.manager.lifecycle(world.tenant, calendar.target, "subscriptionRemoved")
    remade = (await world.rows())[calendar.target]
    assert remade.subscription_id not in (None, calendar.subscription_id)
    assert remade.client_state_sha256 != calendar.client_state_sha256
    assert calendar.subscription_id not in world.at_graph()
    assert world.sync_queue.sent == [SyncRequest("acme", "room-4b", ADELE, "default", reason="notification")]

    await world.manager.lifecycle(world.tenant, mail.target, "missed")
    assert world.import_queue.sent == [ImportRequest("acme", "invoices", reason="notification")]

    world.graph.subscriptions.clear()  # reauthorizing one Graph no longer has: made again
    await world.manager.lifecycle(world.tenant, mail.target, "reauthorizationRequired")
    assert (await world.rows())[mail.target].subscription_id in world.at_graph()


# --- notifications -----------------------------------------------------------------------------


def _body(*items: dict[str, Any]) -> bytes:
    return json.dumps({"value": list(items)}).encode()


async def test_a_notification_with_the_right_client_state_queues_one_catch_up_and_a_forged_one_nothing(
    world: World,
) -> None:
    await world.link("room-4b", LinkedAccount(account=ADELE, direction=Direction.DOWN))
    await world.manager.reconcile(world.tenant)
    [row] = (await world.rows()).values()
    _, request, _ = world.graph.subscriptions[row.subscription_id or ""]
    world.sync_queue.sent.clear()  # the first catch-up
    queues = (world.sync_queue, world.import_queue, world.subscription_queue)
    good = {
        "subscriptionId": row.subscription_id,
        "clientState": request.client_state,
        "changeType": "updated",
    }
    forged = {**good, "clientState": "guess"}

    accepted = await accept(
        world.tables, queues, "acme", row.target, parse_notifications(_body(good, good, forged))
    )
    assert (accepted.verified, accepted.refused, accepted.caught_up) == (2, 1, True)
    assert world.sync_queue.sent == [SyncRequest("acme", "room-4b", ADELE, "default", reason="notification")]

    for tenant, target in (
        ("acme", row.target),
        ("other", row.target),
        ("acme", "c-" + "1" * 32),
        (None, None),
    ):
        result = await accept(world.tables, queues, tenant, target, parse_notifications(_body(forged)))
        assert (result.verified, result.refused) == (0, 1)
    assert len(world.sync_queue.sent) == 1

    lifecycle = {**good, "lifecycleEvent": "reauthorizationRequired"}
    accepted = await accept(world.tables, queues, "acme", row.target, parse_notifications(_body(lifecycle)))
    assert (accepted.lifecycle, accepted.caught_up) == (("reauthorizationRequired",), False)
    assert world.subscription_queue.sent == [Lifecycle("acme", row.target, "reauthorizationRequired")]


def test_a_notification_body_or_validation_token_graph_would_not_send_is_refused() -> None:
    assert validation_token(None) is None
    assert validation_token("Validation: Testing client application reachability") is not None
    for token in ("", "x" * 2000, "a\nb"):
        with pytest.raises(MalformedRequest):
            validation_token(token)
    for body in (b"not json", b"[]", b'{"value": 3}', b"x" * (1024 * 1024 + 1)):
        with pytest.raises(MalformedRequest):
            parse_notifications(body)
    assert parse_notifications(b'{"value": [1, {"subscriptionId": "s"}, {"clientState": "c"}]}') == []
