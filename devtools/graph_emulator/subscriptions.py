"""Change notifications on the Graph surface, and their control API.

Graph paths (any valid token; each operation checks the read permission of the resource):
  POST   /subscriptions                       create: validation handshake with notificationUrl
                                              (and lifecycleNotificationUrl), then 201
  GET    /subscriptions                       the calling app's subscriptions
  GET    /subscriptions/{id}                  PATCH (renew: expirationDateTime; notificationUrl)
  DELETE /subscriptions/{id}                  POST /subscriptions/{id}/reauthorize
Every change a domain module emits through `ctx.hooks` (calendar events now; mail messages once
the mail module emits them) is matched against the live subscriptions by tenant, mailbox,
collection, container (calendar / mail folder) and change type, and delivered asynchronously by
subscriptions_delivery.py.

Control API (under /_emulator; each route calls the Python method named in brackets):
  GET    /subscriptions                       every live subscription, all tenants [subscriptions()]
  GET    /subscriptions/{id}                  one, with its delivery stats [get(), stats()]
  GET    /subscriptions/{id}/deliveries       its delivery attempts [deliveries(id)]
  POST   /subscriptions/{id}/lifecycle        {"lifecycleEvent": "reauthorizationRequired" |
                                              "subscriptionRemoved" | "missed"} [lifecycle()]
  POST   /subscriptions/{id}/expire           expire it now on the emulator clock [expire()]
  GET    /notifications/deliveries            every attempt; ?kind=&subscriptionId= [deliveries()]
  GET    /notifications/stats                 stats of every subscription ever made [all_stats()]
  GET|PATCH /notifications/settings           camelCase NotificationSettings [configure()]
  POST   /notifications/drain                 {timeoutSeconds?} -> {"drained"} [drain()]
  GET|DELETE /notifications/requests          Graph requests to /subscriptions by operation,
                                              and reset them [request_counts(),
                                              reset_request_counts()]
(The request counts are under /notifications: a control path under /subscriptions/... would be
taken for a subscription id.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devtools.graph_emulator import calendar_module
from devtools.graph_emulator.context import (
    AuthContext,
    EmulatorContext,
    Permissions,
    graph_call,
    json_response,
    read_json,
)
from devtools.graph_emulator.directory import User
from devtools.graph_emulator.errors import GraphError, access_denied, bad_request, invalid_user
from devtools.graph_emulator.hooks import Change
from devtools.graph_emulator.ids import guid
from devtools.graph_emulator.odata import collection
from devtools.graph_emulator.routing import ControlRouter, GraphRouter, Handler, ModuleBase
from devtools.graph_emulator.subscriptions_delivery import Deliverer, DeliveryAttempt, DeliveryStats
from devtools.graph_emulator.subscriptions_store import (
    LIFECYCLE_EVENTS,
    NotificationSettings,
    Pending,
    Subscription,
    Target,
    change_notification,
    check_client_state,
    check_tls_version,
    check_url,
    expiration,
    invalid,
    lifecycle_notification,
    parse_change_types,
    parse_resource,
)

if TYPE_CHECKING:
    from devtools.graph_emulator.server import GraphEmulator

# The read permission of each resource is what creating (and renewing) a subscription needs.
READ_BY_COLLECTION: dict[str, Permissions] = {
    "events": calendar_module.READ,
    "messages": Permissions.of("Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic", "Mail.ReadBasic.All"),
    "contacts": Permissions.of("Contacts.Read", "Contacts.ReadWrite"),
}
TICK_SECONDS = 0.1  # how often the early-reauthorization check runs when it is switched on
# The Graph operations on /subscriptions, as the request counts name them. These requests name no
# mailbox, so the per-mailbox counters (`/_emulator/counters`) do not see them.
OPERATIONS = (
    "POST /subscriptions",
    "GET /subscriptions",
    "GET /subscriptions/{id}",
    "PATCH /subscriptions/{id}",
    "DELETE /subscriptions/{id}",
    "POST /subscriptions/{id}/reauthorize",
)


def not_found(subscription_id: str) -> GraphError:
    return GraphError(404, "ResourceNotFound", f"The subscription '{subscription_id}' was not found.")


def forbidden(operation: str) -> GraphError:
    # How the subscription service reports the resource's 403 (it wraps the workload's answer).
    return GraphError(
        403,
        "ExtensionError",
        f"Operation: {operation}; Exception: [Status Code: Forbidden; Reason: Access is denied. "
        "Check credentials and try again.]",
    )


class SubscriptionsModule(ModuleBase):
    name = "subscriptions"

    def __init__(self, settings: NotificationSettings | None = None) -> None:
        self.settings = settings or NotificationSettings()
        self._deliverer: Deliverer | None = None
        self._subs: dict[str, Subscription] = {}
        self.ended: dict[str, str] = {}  # subscription id -> "deleted" | "expired" | "removed"
        self.reauthorizations: list[str] = []  # ids of POST /subscriptions/{id}/reauthorize, in order
        # Graph requests to /subscriptions that passed authentication, by operation (OPERATIONS),
        # whatever they answered; `failed` counts those answered with an error.
        self.requests: collections.Counter[str] = collections.Counter()
        self.failed: collections.Counter[str] = collections.Counter()
        self._ticker: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, emulator: GraphEmulator) -> SubscriptionsModule:
        """The module of a running emulator, typed (`graph.module("subscriptions")` is `Any`)."""
        module = emulator.module(cls.name)
        assert isinstance(module, cls)
        return module

    @property
    def deliverer(self) -> Deliverer:
        if self._deliverer is None:
            raise RuntimeError("the subscriptions module is not set up")
        return self._deliverer

    def setup(self, ctx: EmulatorContext) -> None:
        super().setup(ctx)
        self._deliverer = Deliverer(ctx.clock, self.settings)
        ctx.hooks.subscribe(self._on_change)

    def reset(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self.deliverer.reset()
        self._subs.clear()
        self.ended.clear()
        self.reauthorizations.clear()
        self.reset_request_counts()

    # -- routes ------------------------------------------------------------------------------

    def graph_routes(self, router: GraphRouter) -> None:
        handlers = (self._create, self._list, self._get, self._update, self._delete, self._reauthorize)
        for operation, handler in zip(OPERATIONS, handlers, strict=True):
            method, path = operation.split(" ", 1)
            router.add(method, path, self._counted(operation, handler), permissions=None)
        # Deliveries and their retries are tasks of their own; they must end with the server. The
        # module protocol has no stop hook, so this reaches the aiohttp app behind the router.
        router._app.on_cleanup.append(self._on_cleanup)

    def control_routes(self, router: ControlRouter) -> None:
        r = router.add
        r("GET", "/subscriptions", self._control_list)
        r("GET", "/subscriptions/{id}", self._control_get)
        r("GET", "/subscriptions/{id}/deliveries", self._control_deliveries)
        r("POST", "/subscriptions/{id}/lifecycle", self._control_lifecycle)
        r("POST", "/subscriptions/{id}/expire", self._control_expire)
        r("GET", "/notifications/deliveries", self._control_deliveries)
        r("GET", "/notifications/stats", self._control_stats)
        r("GET", "/notifications/settings", self._control_settings)
        r("PATCH", "/notifications/settings", self._control_update_settings)
        r("POST", "/notifications/drain", self._control_drain)
        r("GET", "/notifications/requests", self._control_requests)
        r("DELETE", "/notifications/requests", self._control_reset_requests)

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.deliverer.close()

    # -- the Python API ----------------------------------------------------------------------

    def subscriptions(
        self, tenant_id: str | None = None, application_id: str | None = None
    ) -> list[Subscription]:
        """Live subscriptions (expired ones are gone), optionally of one tenant / app."""
        self._purge()
        return [
            s
            for s in self._subs.values()
            if (tenant_id is None or s.tenant_id == tenant_id)
            and (application_id is None or s.application_id == application_id)
        ]

    def get(self, subscription_id: str) -> Subscription:
        self._purge()
        found = self._subs.get(subscription_id)
        if found is None:
            raise KeyError(f"no live subscription {subscription_id}")
        return found

    def stats(self, subscription_id: str) -> DeliveryStats:
        """What was queued for a subscription and what became of it (kept after it ends)."""
        return self.deliverer.stats_for(subscription_id)

    def all_stats(self) -> list[DeliveryStats]:
        return list(self.deliverer.stats.values())

    def deliveries(
        self, subscription_id: str | None = None, kind: str | None = None
    ) -> list[DeliveryAttempt]:
        """Delivery attempts, oldest first: validation handshakes (no subscription id yet), change
        and lifecycle notifications, dropped and given-up batches."""
        return [
            a
            for a in self.deliverer.log
            if (subscription_id is None or subscription_id in a.subscription_ids)
            and (kind is None or a.kind == kind)
        ]

    def configure(self, **values: Any) -> NotificationSettings:
        """Change NotificationSettings (snake_case or camelCase names)."""
        self.settings.update(values)
        self._ensure_ticker()
        return self.settings

    async def drain(self, seconds: float = 10.0) -> bool:
        """Wait until queued notifications are delivered or given up (change listeners first)."""
        await self.ctx.hooks.drain()
        return await self.deliverer.drain(seconds)

    def lifecycle(self, subscription_id: str, event: str) -> bool:
        """Send a lifecycle notification as Graph would; False if the subscription has no
        lifecycleNotificationUrl (Graph then sends nothing). `subscriptionRemoved` also deletes
        the subscription, as Graph has."""
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"lifecycleEvent must be one of {', '.join(LIFECYCLE_EVENTS)}")
        sub = self.get(subscription_id)
        sent = self._send_lifecycle(sub, event)
        if event == "subscriptionRemoved":
            self._end(sub.id, "removed")
        return sent

    def reauthorization_required(self, subscription_id: str) -> bool:
        return self.lifecycle(subscription_id, "reauthorizationRequired")

    def remove(self, subscription_id: str) -> bool:
        return self.lifecycle(subscription_id, "subscriptionRemoved")

    def missed(self, subscription_id: str) -> bool:
        return self.lifecycle(subscription_id, "missed")

    def request_counts(self) -> dict[str, Any]:
        """Graph requests to /subscriptions since the last reset: `total`, `requests` and
        `failed` (answered with an error) by operation (every operation listed, 0 if none)."""
        return {
            "total": sum(self.requests.values()),
            "requests": {op: self.requests[op] for op in OPERATIONS},
            "failed": {op: self.failed[op] for op in OPERATIONS},
        }

    def reset_request_counts(self) -> None:
        self.requests.clear()
        self.failed.clear()

    def expire(self, subscription_id: str) -> Subscription:
        """Make a subscription expire now (emulator clock): it stops delivering and disappears."""
        sub = self.get(subscription_id)
        sub.expiration = self.ctx.clock.now()
        self._purge()
        return sub

    # -- internals ---------------------------------------------------------------------------

    def _purge(self) -> None:
        now = self.ctx.clock.now()
        for sub in [s for s in self._subs.values() if s.expired(now)]:
            self._end(sub.id, "expired")

    def _end(self, subscription_id: str, reason: str) -> None:
        if self._subs.pop(subscription_id, None) is not None:
            self.ended[subscription_id] = reason

    def _on_change(self, change: Change) -> None:
        self._purge()
        for sub in list(self._subs.values()):
            if sub.matches(change):
                item = change_notification(sub, change)
                self.deliverer.enqueue(Pending(sub.notification_url, "change", sub.id, item))

    def _send_lifecycle(self, sub: Subscription, event: str) -> bool:
        if not sub.lifecycle_notification_url:
            return False
        item = lifecycle_notification(sub, event)
        self.deliverer.enqueue(Pending(sub.lifecycle_notification_url, "lifecycle", sub.id, item))
        return True

    def _ensure_ticker(self) -> None:
        if self.settings.reauthorize_before_seconds is None:
            return
        if self._ticker is not None and not self._ticker.done():
            return
        try:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        except RuntimeError:  # no event loop yet: the next create/renew starts it
            self._ticker = None

    async def _tick(self) -> None:
        while self.settings.reauthorize_before_seconds is not None:
            self._reauthorize_expiring(self.settings.reauthorize_before_seconds)
            await asyncio.sleep(TICK_SECONDS)

    def _reauthorize_expiring(self, lead_seconds: float) -> None:
        """Graph's challenge before a subscription expires, once per expiration."""
        self._purge()
        horizon = self.ctx.clock.now() + dt.timedelta(seconds=lead_seconds)
        for sub in list(self._subs.values()):
            if sub.expiration <= horizon and sub.reauthorization_sent_for != sub.expiration:
                sub.reauthorization_sent_for = sub.expiration
                self._send_lifecycle(sub, "reauthorizationRequired")

    def _mailbox(self, auth: AuthContext, key: str) -> User:
        if key.lower() == "me":
            if auth.user_id is None:
                raise bad_request(
                    "/me request is only valid with delegated authentication flow.", "BadRequest"
                )
            user = self.ctx.directory.user(auth.tenant_id, auth.user_id)
        else:
            user = self.ctx.directory.user(auth.tenant_id, key)
        if user is None:
            raise invalid_user(key)
        if auth.delegated and user.id != auth.user_id:
            raise access_denied()
        return user

    def _authorize(self, auth: AuthContext, collection_name: str, operation: str) -> None:
        needed = READ_BY_COLLECTION.get(collection_name)
        if needed is not None and not needed.allows(auth):
            raise forbidden(operation)

    def _container_id(self, user: User, target: Target) -> str | None:
        """The id change hooks will carry for the resource's container. Calendars are resolved
        here (404 if unknown; `calendar/events` is the default calendar). Other domains resolve
        their own (well-known folder names like 'inbox') by offering
        `resolve_subscription_container(user, container_kind, key) -> id | None` on their module;
        without one the key is compared with the changes' container ids as written."""
        if target.container_kind is None:
            return None
        if target.container_kind == "calendar":
            calendar = self.ctx.modules.get("calendar")
            if isinstance(calendar, calendar_module.CalendarModule):
                return calendar.calendars.calendar(user, target.container_key).id
            return target.container_key
        for module in self.ctx.modules.values():
            resolve = getattr(module, "resolve_subscription_container", None)
            if callable(resolve):
                found = resolve(user, target.container_kind, target.container_key)
                if found is not None:
                    return str(found)
        return target.container_key

    def _visible(self, auth: AuthContext, sub: Subscription) -> bool:
        """An app sees only its own subscriptions; a delegated caller only those made for it."""
        return (
            sub.tenant_id == auth.tenant_id
            and sub.application_id == auth.client_id
            and (not auth.delegated or sub.delegated_user_id == auth.user_id)
        )

    def _find(self, auth: AuthContext, subscription_id: str) -> Subscription:
        self._purge()
        sub = self._subs.get(subscription_id)
        if sub is None or not self._visible(auth, sub):
            raise not_found(subscription_id)
        return sub

    def _entity(self, sub: Subscription) -> dict[str, Any]:
        return {"@odata.context": f"{self.ctx.graph_url}/$metadata#subscriptions/$entity", **sub.to_graph()}

    async def _validate(self, *urls: str | None) -> None:
        for url in urls:
            if url:
                await self.deliverer.validate(url)

    # -- Graph handlers ----------------------------------------------------------------------

    def _counted(self, operation: str, handler: Handler) -> Handler:
        async def counted(request: web.Request) -> web.StreamResponse:
            self.requests[operation] += 1
            try:
                response = await handler(request)
            except GraphError:
                self.failed[operation] += 1
                raise
            if response.status >= 400:
                self.failed[operation] += 1
            return response

        return counted

    async def _create(self, request: web.Request) -> web.StreamResponse:
        auth = graph_call(request).caller
        body = await read_json(request)
        if body.get("includeResourceData"):
            raise invalid(
                "includeResourceData (rich notifications with encrypted resource data) is not emulated."
            )
        change_types = parse_change_types(body.get("changeType"))
        notification_url = check_url(body.get("notificationUrl"), "notificationUrl")
        lifecycle_url = (
            check_url(body["lifecycleNotificationUrl"], "lifecycleNotificationUrl")
            if body.get("lifecycleNotificationUrl") is not None
            else None
        )
        resource = body.get("resource")
        if not isinstance(resource, str) or not resource.strip():
            raise invalid("resource is a required property for subscription creation.")
        client_state = check_client_state(body.get("clientState"))
        tls_version = check_tls_version(body.get("latestSupportedTlsVersion"))
        now = self.ctx.clock.now()
        expires = expiration(body.get("expirationDateTime"), now, self.settings)
        target = parse_resource(resource)
        user = self._mailbox(auth, target.user_key)
        self._authorize(auth, target.collection, "Create")
        container_id = self._container_id(user, target)
        # Graph validates the endpoints last, and creates nothing if either fails.
        await self._validate(notification_url, lifecycle_url)
        app = self.ctx.directory.app(auth.tenant_id, auth.client_id)
        sub = Subscription(
            id=guid(),
            tenant_id=auth.tenant_id,
            application_id=auth.client_id,
            creator_id=auth.user_id or (app.service_principal_id if app else auth.client_id),
            delegated_user_id=auth.user_id,
            resource=resource,
            change_types=change_types,
            notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url,
            client_state=client_state,
            expiration=expires,
            latest_supported_tls_version=tls_version,
            user_id=user.id,
            collection=target.collection,
            container_kind=target.container_kind,
            container_id=container_id,
            created=now,
        )
        self._subs[sub.id] = sub
        self.deliverer.stats_for(sub.id)
        self._ensure_ticker()
        return json_response(self._entity(sub), 201)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        auth = graph_call(request).caller
        self._purge()
        items = [s.to_graph() for s in self._subs.values() if self._visible(auth, s)]
        return json_response(collection(items, context=f"{self.ctx.graph_url}/$metadata#subscriptions"))

    async def _get(self, request: web.Request) -> web.StreamResponse:
        sub = self._find(graph_call(request).caller, request.match_info["id"])
        return json_response(self._entity(sub))

    async def _update(self, request: web.Request) -> web.StreamResponse:
        auth = graph_call(request).caller
        body = await read_json(request)
        sub = self._find(auth, request.match_info["id"])
        # Renewing also reauthorizes: an app that lost the resource's permission cannot renew.
        self._authorize(auth, sub.collection, "Update")
        lifecycle = body.get("lifecycleNotificationUrl")
        if lifecycle is not None and lifecycle != sub.lifecycle_notification_url:
            raise invalid("lifecycleNotificationUrl cannot be changed; create a new subscription instead.")
        new_expiration = (
            expiration(body["expirationDateTime"], self.ctx.clock.now(), self.settings)
            if body.get("expirationDateTime") is not None
            else None
        )
        new_url = body.get("notificationUrl")
        if new_url is not None and new_url != sub.notification_url:
            new_url = check_url(new_url, "notificationUrl")
            await self._validate(new_url)
            sub.notification_url = new_url
        if new_expiration is not None:
            sub.expiration = new_expiration
            sub.reauthorization_sent_for = None
        self._ensure_ticker()
        return json_response(self._entity(sub))

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        sub = self._find(graph_call(request).caller, request.match_info["id"])
        self._end(sub.id, "deleted")
        return web.Response(status=204)

    async def _reauthorize(self, request: web.Request) -> web.StreamResponse:
        auth = graph_call(request).caller
        sub = self._find(auth, request.match_info["id"])
        self._authorize(auth, sub.collection, "Reauthorize")
        self.reauthorizations.append(sub.id)
        return web.Response(status=204)

    # -- control handlers --------------------------------------------------------------------

    def _control_json(self, sub: Subscription) -> dict[str, Any]:
        return {
            **sub.to_graph(),
            "tenantId": sub.tenant_id,
            "userId": sub.user_id,
            "containerId": sub.container_id,
            "stats": self.stats(sub.id).to_json(),
        }

    def _control_sub(self, request: web.Request) -> Subscription:
        try:
            return self.get(request.match_info["id"])
        except KeyError:
            raise not_found(request.match_info["id"]) from None

    async def _control_list(self, request: web.Request) -> web.StreamResponse:
        return json_response({"value": [self._control_json(s) for s in self.subscriptions()]})

    async def _control_get(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._control_json(self._control_sub(request)))

    async def _control_deliveries(self, request: web.Request) -> web.StreamResponse:
        sub_id = request.match_info.get("id") or request.query.get("subscriptionId")
        found = self.deliveries(sub_id, request.query.get("kind"))
        return json_response({"value": [a.to_json() for a in found]})

    async def _control_lifecycle(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        sub = self._control_sub(request)
        event = str(body.get("lifecycleEvent") or "")
        try:
            sent = self.lifecycle(sub.id, event)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return json_response({"subscriptionId": sub.id, "lifecycleEvent": event, "sent": sent})

    async def _control_expire(self, request: web.Request) -> web.StreamResponse:
        sub = self.expire(self._control_sub(request).id)
        return json_response({"subscriptionId": sub.id, "expired": True})

    async def _control_stats(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {"value": [{**s.to_json(), "ended": self.ended.get(s.subscription_id)} for s in self.all_stats()]}
        )

    async def _control_settings(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.settings.to_json())

    async def _control_update_settings(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        try:
            self.configure(**body)
        except (ValueError, TypeError) as exc:
            raise bad_request(str(exc)) from None
        return json_response(self.settings.to_json())

    async def _control_requests(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.request_counts())

    async def _control_reset_requests(self, request: web.Request) -> web.StreamResponse:
        self.reset_request_counts()
        return web.Response(status=204)

    async def _control_drain(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request) if request.can_read_body else {}
        try:
            seconds = float(body.get("timeoutSeconds", 10.0))
        except (TypeError, ValueError):
            raise bad_request("timeoutSeconds must be a number.") from None
        return json_response({"drained": await self.drain(seconds)})
