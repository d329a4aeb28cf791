"""Near-real-time sync: Graph change-notification subscriptions on each synced calendar and
each mail import's folder (`manager.py`, planned by `plan.py`), the notifications they bring
(`notifications.py`), and the `graph-subscriptions` queue's messages (`queue.py`)."""

from core.subscriptions.manager import (
    FUNCTION,
    NotificationConfig,
    SubscriptionManager,
    request_reconcile,
    request_reconciles,
)
from core.subscriptions.notifications import Accepted, accept, parse_notifications, validation_token
from core.subscriptions.queue import (
    SUBSCRIPTIONS_QUEUE,
    AzureSubscriptionQueue,
    InMemorySubscriptionQueue,
    Lifecycle,
    Reconcile,
    SubscriptionQueue,
    decode,
)

__all__ = [
    "FUNCTION",
    "SUBSCRIPTIONS_QUEUE",
    "Accepted",
    "AzureSubscriptionQueue",
    "InMemorySubscriptionQueue",
    "Lifecycle",
    "NotificationConfig",
    "Reconcile",
    "SubscriptionManager",
    "SubscriptionQueue",
    "accept",
    "decode",
    "parse_notifications",
    "request_reconcile",
    "request_reconciles",
    "validation_token",
]
