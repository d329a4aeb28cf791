"""The test event a host asks for to check its webhook receiver end to end."""

from __future__ import annotations

import uuid

from core.request_errors import MalformedRequest

TEST_EVENT = "bridge.test"
_NAMESPACE = uuid.UUID("6f1c3b8e-4f5a-4f0e-9a53-2f3f1d3c9b10")


def idempotent_test_event_id(tenant_id: str, idempotency_key: str | None) -> str | None:
    """The event id for a test event: derived from the tenant and the host's Idempotency-Key
    (so a retried request emits one event), or None (a fresh id) without a key."""
    if idempotency_key is None:
        return None
    key = idempotency_key.strip()
    if not key or len(key) > 200 or not key.isprintable():
        raise MalformedRequest("Idempotency-Key must be 1-200 printable characters.")
    return str(uuid.uuid5(_NAMESPACE, f"{tenant_id}|{key}"))
