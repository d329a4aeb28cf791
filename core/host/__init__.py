"""Talking to host systems: the outbox capabilities emit to, signed webhook delivery with
retries and dead-lettering, and the pull feed.

Capabilities call only `Outbox.emit` (through `Container.outbox()`); the delivery trigger calls
`Dispatcher.dispatch`, the safety-net timer `nudge_due_tenants`, the feed route `read_feed`.
"""

from __future__ import annotations

from core.host.delivery import DeliveryConfig, Dispatcher, DispatchResult, Stop, previous_webhook_secret_name
from core.host.envelope import envelope, envelope_bytes
from core.host.feed import BadFeedQuery, FeedPage, parse_cursor, parse_limit, read_feed
from core.host.outbox import Emission, EmitFailed, Outbox
from core.host.queues import (
    DELIVERY_QUEUE,
    POISON_QUEUE,
    AzureDeliveryQueue,
    DeliveryQueue,
    InMemoryDeliveryQueue,
    parse_nudge,
)
from core.host.signing import Reason, SignatureInvalid, sign, verify
from core.host.sweep import nudge_due_tenants
from core.host.webhook import AiohttpWebhookSender, InMemoryWebhookSender, WebhookSender

__all__ = [
    "DELIVERY_QUEUE",
    "POISON_QUEUE",
    "AiohttpWebhookSender",
    "AzureDeliveryQueue",
    "BadFeedQuery",
    "DeliveryConfig",
    "DeliveryQueue",
    "DispatchResult",
    "Dispatcher",
    "Emission",
    "EmitFailed",
    "FeedPage",
    "InMemoryDeliveryQueue",
    "InMemoryWebhookSender",
    "Outbox",
    "Reason",
    "SignatureInvalid",
    "Stop",
    "WebhookSender",
    "envelope",
    "envelope_bytes",
    "nudge_due_tenants",
    "parse_cursor",
    "parse_limit",
    "parse_nudge",
    "previous_webhook_secret_name",
    "read_feed",
    "sign",
    "verify",
]
