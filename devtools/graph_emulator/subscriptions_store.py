"""The pure parts of change notifications: settings, the subscription record, what a `resource`
path names, whether a change matches a subscription, and the JSON Graph sends and answers.

Documentation followed (Microsoft Graph v1.0): "subscription resource type", "Create subscription",
"Receive change notifications through webhooks", "Reduce missing subscriptions and change
notifications" (lifecycle notifications). Where the docs are silent the emulator's choice is
written next to the code and in README.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from devtools.graph_emulator.errors import GraphError
from devtools.graph_emulator.hooks import Change
from devtools.graph_emulator.ids import guid
from devtools.graph_emulator.timezones import format_instant, parse_instant

CHANGE_TYPES = ("created", "updated", "deleted")
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
MAX_CLIENT_STATE = 128
# Sources disagree on Outlook's maximum (older pages and the service's own error text say 4,230
# minutes; the current "subscription resource type" page says 10,080 minutes - under 7 days - for
# Outlook message, event and contact subscriptions without resource data). The current page wins;
# `max_expiration_minutes=4230` reproduces the older limit.
OUTLOOK_MAX_EXPIRATION_MINUTES = 10_080

# `kind` of a hooks.Change -> the collection segment a subscription names for it. Unknown kinds
# fall back to kind + "s", so a new domain's changes match without touching this table.
COLLECTION_OF_KIND = {"event": "events", "message": "messages", "contact": "contacts"}
ODATA_TYPE_OF_KIND = {
    "event": "#Microsoft.Graph.Event",
    "message": "#Microsoft.Graph.Message",
    "contact": "#Microsoft.Graph.Contact",
}


def collection_of(kind: str) -> str:
    return COLLECTION_OF_KIND.get(kind, kind + "s")


@dataclass
class NotificationSettings:
    """How the emulator delivers notifications; `graph.module("subscriptions").configure(...)` or
    `PATCH /_emulator/notifications/settings` (camelCase names) change them."""

    # Changes to the same URL arriving within this window go out in one POST (Graph batches too).
    batch_window_seconds: float = 0.05
    max_batch: int = 100
    # Graph's HTTP client gives a receiver 3 s; after that the attempt counts as failed.
    timeout_seconds: float = 3.0
    validation_timeout_seconds: float = 10.0
    # Retries: exponential from `retry_initial_seconds`, capped at `retry_max_interval_seconds`,
    # given up after `retry_for_seconds` (Graph: "multiple times, for up to 4 hours").
    retry_initial_seconds: float = 1.0
    retry_max_interval_seconds: float = 60.0
    retry_for_seconds: float = 4 * 3600.0
    # Knobs for tests: delay every delivery (slow notifications) or lose them all (Graph missing
    # changes; recorded as "dropped" - the test then triggers a `missed` lifecycle event).
    delay_seconds: float = 0.0
    drop: bool = False
    verify_tls: bool = True
    max_expiration_minutes: int = OUTLOOK_MAX_EXPIRATION_MINUTES
    # True: an expirationDateTime beyond the maximum is cut to it and the subscription says so
    # (clients must use the returned value). False: 400, as the service has also been seen doing.
    cap_expiration: bool = True
    # Send `reauthorizationRequired` this long before a subscription expires (None: never).
    reauthorize_before_seconds: float | None = None

    _JSON = {
        "batchWindowSeconds": "batch_window_seconds",
        "maxBatch": "max_batch",
        "timeoutSeconds": "timeout_seconds",
        "validationTimeoutSeconds": "validation_timeout_seconds",
        "retryInitialSeconds": "retry_initial_seconds",
        "retryMaxIntervalSeconds": "retry_max_interval_seconds",
        "retryForSeconds": "retry_for_seconds",
        "delaySeconds": "delay_seconds",
        "drop": "drop",
        "verifyTls": "verify_tls",
        "maxExpirationMinutes": "max_expiration_minutes",
        "capExpiration": "cap_expiration",
        "reauthorizeBeforeSeconds": "reauthorize_before_seconds",
    }

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, attr) for key, attr in self._JSON.items()}

    def update(self, values: dict[str, Any]) -> None:
        names = {f.name: f for f in dataclasses.fields(self)}
        for key, value in values.items():
            attr = self._JSON.get(key, key)
            if attr not in names or attr.startswith("_"):
                raise ValueError(f"unknown notification setting {key}")
            if attr == "reauthorize_before_seconds":
                setattr(self, attr, None if value is None else float(value))
            elif isinstance(getattr(self, attr), bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
                setattr(self, attr, value)
            else:
                setattr(self, attr, type(getattr(self, attr))(value))


# -- what a resource path names ---------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A subscription's `resource`, parsed: whose mailbox, which collection, which container.

    `container_kind` None means the whole mailbox (`users/{id}/events`, `users/{id}/messages`);
    "calendar" with `container_key` None is the default calendar (`users/{id}/calendar/events`).
    """

    user_key: str  # "me" or the id/UPN as written
    collection: str  # "events", "messages", ...
    container_kind: str | None = None  # "calendar" | "mailFolder" | None
    container_key: str | None = None  # id or well-known name as written


# `mailFolders('inbox')` and `calendars('id')` are the OData key forms of `mailFolders/inbox`.
_KEY_FORM = re.compile(r"\(\s*'([^']*)'\s*\)|\(([^)']+)\)")
_CONTAINERS = {"calendars": "calendar", "mailfolders": "mailFolder", "contactfolders": "contactFolder"}


def unsupported_resource(resource: str) -> GraphError:
    return GraphError(
        400,
        "InvalidRequest",
        f"The resource '{resource}' is not supported for change notifications by the emulator "
        "(Outlook events, messages and contacts of one mailbox are).",
    )


def parse_resource(resource: str) -> Target:
    """Parse the Outlook resource paths of the docs ("Use the Microsoft Graph API to get change
    notifications"): `{me|users/{id}}/events`, `.../calendar/events`, `.../calendars/{id}/events`,
    `.../messages`, `.../mailFolders('{id}')/messages`, `.../contacts`, `.../contactFolders/{id}/contacts`.
    Segment names are case-insensitive, as Graph's are. Query options in a resource (rich
    notifications' `$filter`) are not emulated."""
    raw = resource.strip()
    if not raw or "?" in raw or "://" in raw:
        raise unsupported_resource(resource)
    path = _KEY_FORM.sub(lambda m: "/" + (m.group(1) if m.group(1) is not None else m.group(2)), raw)
    parts = [p for p in path.strip("/").split("/") if p]
    lower = [p.lower() for p in parts]
    if lower[:1] == ["me"]:
        user, rest, rest_lower = "me", parts[1:], lower[1:]
    elif len(lower) >= 2 and lower[0] == "users":
        user, rest, rest_lower = parts[1], parts[2:], lower[2:]
    else:
        raise unsupported_resource(resource)
    if len(rest) == 1 and rest_lower[0] in ("events", "messages", "contacts"):
        return Target(user, rest_lower[0])
    if rest_lower == ["calendar", "events"]:
        return Target(user, "events", "calendar", None)
    if (
        len(rest) == 3
        and rest_lower[0] in _CONTAINERS
        and rest_lower[2] in ("events", "messages", "contacts")
    ):
        kind = _CONTAINERS[rest_lower[0]]
        expected = {"calendar": "events", "mailFolder": "messages", "contactFolder": "contacts"}[kind]
        if rest_lower[2] != expected:
            raise unsupported_resource(resource)
        return Target(user, expected, kind, rest[1])
    raise unsupported_resource(resource)


# -- the subscription ---------------------------------------------------------------------------


@dataclass
class Subscription:
    id: str
    tenant_id: str
    application_id: str  # the client id of the app that created it
    creator_id: str  # service principal id (app-only) or user id (delegated)
    delegated_user_id: str | None
    resource: str  # as the client wrote it; Graph echoes it back
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_notification_url: str | None
    client_state: str | None
    expiration: dt.datetime
    latest_supported_tls_version: str
    user_id: str  # the mailbox, resolved
    collection: str
    container_kind: str | None
    container_id: str | None  # resolved id (the default calendar's id for `calendar/events`)
    created: dt.datetime
    # The expiration for which the emulator already sent an early `reauthorizationRequired`.
    reauthorization_sent_for: dt.datetime | None = None

    @property
    def change_type(self) -> str:
        return ",".join(self.change_types)

    def to_graph(self) -> dict[str, Any]:
        """The `subscription` JSON of the docs."""
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_notification_url,
            "expirationDateTime": format_instant(self.expiration),
            "creatorId": self.creator_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": self.latest_supported_tls_version,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }

    def matches(self, change: Change) -> bool:
        """Does this change fall under the subscription's resource and change types?"""
        if change.tenant_id != self.tenant_id or change.user_id != self.user_id:
            return False
        if change.change_type not in self.change_types or collection_of(change.kind) != self.collection:
            return False
        if self.container_id is None:
            return True
        return (change.container_id or "").lower() == self.container_id.lower()

    def expired(self, now: dt.datetime) -> bool:
        return self.expiration <= now


# -- request bodies -----------------------------------------------------------------------------


def invalid(message: str) -> GraphError:
    return GraphError(400, "InvalidRequest", message)


def parse_change_types(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str) or not value.strip():
        raise invalid("changeType is a required property for subscription creation.")
    wanted = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [c for c in wanted if c not in CHANGE_TYPES]
    if unknown:
        raise invalid(
            f"Invalid changeType '{unknown[0]}'; the supported values are created, updated and deleted."
        )
    return tuple(c for c in CHANGE_TYPES if c in wanted)


def check_url(value: Any, name: str) -> str:
    """Graph requires HTTPS; the emulator also takes plain http to a loopback address, so a test
    can receive notifications without a certificate of its own."""
    if not isinstance(value, str) or not value:
        raise invalid(f"{name} is a required property for subscription creation.")
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return value
    raise invalid(
        f"The {name} '{value}' must use the HTTPS protocol (the emulator also allows http to loopback)."
    )


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_client_state(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("clientState must be a string.")
    if len(value) > MAX_CLIENT_STATE:
        raise invalid(f"clientState must be at most {MAX_CLIENT_STATE} characters long.")
    return value


def check_tls_version(value: Any) -> str:
    if value is None:
        return "v1_2"  # Graph's default
    if value not in TLS_VERSIONS:
        raise invalid(f"Invalid latestSupportedTlsVersion '{value}'; use one of {', '.join(TLS_VERSIONS)}.")
    return str(value)


def expiration(value: Any, now: dt.datetime, settings: NotificationSettings) -> dt.datetime:
    """The expiration a subscription gets for the `expirationDateTime` asked for."""
    if value is None:
        raise invalid("expirationDateTime is a required property for subscription creation.")
    try:
        asked = parse_instant(str(value))
    except ValueError:
        raise invalid(f"Invalid expirationDateTime '{value}'.") from None
    if asked <= now:
        raise invalid("Subscription expiration must be in the future.")
    limit = now + dt.timedelta(minutes=settings.max_expiration_minutes)
    if asked <= limit:
        return asked
    if settings.cap_expiration:
        return limit
    raise GraphError(
        400,
        "ExtensionError",
        f"Subscription expiration can only be {settings.max_expiration_minutes} minutes in the future.",
    )


# -- notification payloads ----------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """One notification waiting to go out to `url`."""

    url: str
    kind: str  # "change" | "lifecycle"
    subscription_id: str
    item: dict[str, Any]


def change_notification(sub: Subscription, change: Change) -> dict[str, Any]:
    """A basic change notification (no resource data content): what Outlook sends."""
    resource_data: dict[str, Any] = {
        "@odata.type": ODATA_TYPE_OF_KIND.get(change.kind, f"#Microsoft.Graph.{change.kind.capitalize()}"),
        "@odata.id": change.resource,
    }
    if change.change_key and change.change_type != "deleted":
        resource_data["@odata.etag"] = f'W/"{change.change_key}"'
    resource_data["id"] = change.resource_id
    return {
        "id": guid(),
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": format_instant(sub.expiration),
        "changeType": change.change_type,
        "resource": change.resource,
        "resourceData": resource_data,
        "clientState": sub.client_state,
        "tenantId": sub.tenant_id,
    }


def lifecycle_notification(sub: Subscription, event: str) -> dict[str, Any]:
    """The lifecycle notification of the docs: no resource, the subscription's state."""
    return {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": format_instant(sub.expiration),
        "tenantId": sub.tenant_id,
        "clientState": sub.client_state,
        "lifecycleEvent": event,
    }
