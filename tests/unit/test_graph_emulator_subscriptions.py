"""The pure parts of the emulator's change notifications: which resource paths a subscription
may name, what a change must have to match it, expiration capping and the settings' names."""

from __future__ import annotations

import datetime as dt

import pytest

from devtools.graph_emulator.errors import GraphError
from devtools.graph_emulator.hooks import Change
from devtools.graph_emulator.subscriptions_store import (
    NotificationSettings,
    Subscription,
    Target,
    check_client_state,
    check_url,
    expiration,
    parse_change_types,
    parse_resource,
)

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("resource", "target"),
    [
        ("users/u1/events", Target("u1", "events")),
        ("/Users/adele@contoso.com/Events", Target("adele@contoso.com", "events")),
        ("me/events", Target("me", "events")),
        ("users/u1/calendar/events", Target("u1", "events", "calendar", None)),
        ("/users/u1/calendars/AAMkC1/events", Target("u1", "events", "calendar", "AAMkC1")),
        ("users/u1/calendars('AAMkC1')/events", Target("u1", "events", "calendar", "AAMkC1")),
        ("users/u1/messages", Target("u1", "messages")),
        ("users/u1/mailFolders('inbox')/messages", Target("u1", "messages", "mailFolder", "inbox")),
        ("/me/mailfolders('AAMkF==')/messages", Target("me", "messages", "mailFolder", "AAMkF==")),
        ("users/u1/contacts", Target("u1", "contacts")),
    ],
)
def test_outlook_resource_paths_parse(resource: str, target: Target) -> None:
    assert parse_resource(resource) == target


@pytest.mark.parametrize(
    "resource",
    [
        "",
        "users",
        "users/u1",
        "users/u1/calendarView",
        "users/u1/mailFolders('inbox')/events",
        "users/u1/calendars/c1/messages",
        "groups/g1/conversations",
        "users/u1/messages?$filter=isRead eq false",
        "https://graph.microsoft.com/v1.0/users/u1/events",
    ],
)
def test_other_resources_are_400(resource: str) -> None:
    with pytest.raises(GraphError) as caught:
        parse_resource(resource)
    assert caught.value.status == 400


def subscription(**overrides: object) -> Subscription:
    values: dict[str, object] = {
        "id": "s1",
        "tenant_id": "t1",
        "application_id": "app",
        "creator_id": "sp",
        "delegated_user_id": None,
        "resource": "users/u1/events",
        "change_types": ("created", "deleted"),
        "notification_url": "https://example.com/n",
        "lifecycle_notification_url": None,
        "client_state": None,
        "expiration": NOW + dt.timedelta(days=1),
        "latest_supported_tls_version": "v1_2",
        "user_id": "u1",
        "collection": "events",
        "container_kind": None,
        "container_id": None,
        "created": NOW,
    }
    values.update(overrides)
    return Subscription(**values)  # type: ignore[arg-type]


def change(**overrides: str | None) -> Change:
    values: dict[str, str | None] = {
        "kind": "event",
        "change_type": "created",
        "tenant_id": "t1",
        "user_id": "u1",
        "resource_id": "e1",
        "resource": "Users/u1/Events/e1",
        "container_id": "c1",
    }
    values.update(overrides)
    return Change(**values)  # type: ignore[arg-type]


def test_a_change_matches_on_tenant_mailbox_collection_container_and_type() -> None:
    sub = subscription()
    assert sub.matches(change())
    assert not sub.matches(change(change_type="updated"))  # not subscribed
    assert not sub.matches(change(user_id="u2"))
    assert not sub.matches(change(tenant_id="t2"))
    assert not sub.matches(change(kind="message"))
    in_calendar = subscription(container_kind="calendar", container_id="C1")
    assert in_calendar.matches(change(container_id="c1"))  # ids compare case-insensitively
    assert not in_calendar.matches(change(container_id="c2"))
    messages = subscription(collection="messages", container_kind="mailFolder", container_id="f1")
    assert messages.matches(change(kind="message", container_id="f1"))
    assert subscription(collection="widgets").matches(change(kind="widget"))  # unknown kinds: kind + "s"


def test_expiration_is_capped_or_refused_and_must_be_in_the_future() -> None:
    settings = NotificationSettings()
    assert expiration("2024-05-02T12:00:00Z", NOW, settings) == NOW + dt.timedelta(days=1)
    assert expiration("2024-06-01T00:00:00Z", NOW, settings) == NOW + dt.timedelta(minutes=10_080)
    settings.update({"maxExpirationMinutes": 4230, "capExpiration": False})
    with pytest.raises(GraphError) as caught:
        expiration("2024-05-05T12:00:00Z", NOW, settings)
    assert caught.value.code == "ExtensionError"
    assert caught.value.message == "Subscription expiration can only be 4230 minutes in the future."
    for bad in (None, "yesterday", "2024-05-01T11:00:00Z"):
        with pytest.raises(GraphError):
            expiration(bad, NOW, settings)


def test_body_checks() -> None:
    assert parse_change_types("updated, created") == ("created", "updated")
    for bad in (None, "", "created,moved"):
        with pytest.raises(GraphError):
            parse_change_types(bad)
    assert check_client_state("x" * 128) == "x" * 128
    with pytest.raises(GraphError):
        check_client_state("x" * 129)
    assert check_url("https://hooks.example.com/n?code=1", "notificationUrl")
    assert check_url("http://127.0.0.1:8080/n", "notificationUrl")
    assert check_url("http://localhost/n", "notificationUrl")
    assert check_url("http://[::1]:80/n", "notificationUrl")
    for bad in ("http://example.com/n", "ftp://127.0.0.1/n", "", None):
        with pytest.raises(GraphError):
            check_url(bad, "notificationUrl")


def test_settings_take_camel_or_snake_case_and_refuse_unknown_names() -> None:
    settings = NotificationSettings()
    settings.update({"timeoutSeconds": "1.5", "retry_initial_seconds": 0.1, "drop": True})
    assert (settings.timeout_seconds, settings.retry_initial_seconds, settings.drop) == (1.5, 0.1, True)
    assert settings.to_json()["timeoutSeconds"] == 1.5
    settings.update({"reauthorizeBeforeSeconds": 60})
    assert settings.reauthorize_before_seconds == 60.0
    settings.update({"reauthorizeBeforeSeconds": None})
    assert settings.to_json()["reauthorizeBeforeSeconds"] is None
    with pytest.raises(ValueError, match="unknown"):
        settings.update({"nope": 1})
    with pytest.raises(ValueError, match="true or false"):
        settings.update({"drop": "yes"})
