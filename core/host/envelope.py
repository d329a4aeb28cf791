"""The event envelope hosts receive, by webhook and through the feed alike:

    {"id": …, "type": …, "tenantId": …, "occurredAt": "2025-01-31T12:00:00.000000Z", "data": {…}}

The webhook body is exactly `envelope_bytes(event)`, and the signature covers those bytes.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from core.store.records import OutboxEvent

MAX_EVENT_ID_LENGTH = 200  # ids go into row keys (1 KiB escaped) and a header
# A queue message holds 64 KiB; base64 makes 3 bytes 4, so a poison message carries at most this.
MAX_QUEUE_BYTES = 48 * 1024
_TYPE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")  # e.g. appointment.upserted


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z` and microseconds, the same for every event."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def envelope(event: OutboxEvent) -> dict[str, Any]:
    return {
        "id": event.event_id,
        "type": event.type,
        "tenantId": event.tenant_id,
        "occurredAt": iso_utc(event.occurred_at),
        "data": event.payload,
    }


def envelope_bytes(event: OutboxEvent) -> bytes:
    """The exact bytes POSTed (compact JSON, UTF-8)."""
    return json.dumps(envelope(event), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def dead_letter_bytes(event: OutboxEvent) -> bytes:
    """What goes to the poison queue: the envelope, or, when it would not fit in a queue message,
    the envelope without its data (`"dataOmitted": true`); the feed still has the whole event."""
    body = envelope_bytes(event)
    if len(body) <= MAX_QUEUE_BYTES:
        return body
    stub = {**envelope(event), "data": {}, "dataOmitted": True, "sequence": event.sequence}
    return json.dumps(stub, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def check_event(type_: str, data: object, event_id: str | None) -> None:
    """Raise ValueError naming what is wrong with an event a capability wants to emit (never
    quoting its data)."""
    if not _TYPE.fullmatch(type_):
        raise ValueError(f"event type {type_!r} must be dotted lower-case words, e.g. 'appointment.upserted'")
    if not isinstance(data, dict):
        raise ValueError("event data must be a JSON object (a dict)")
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError(f"the data of a {type_} event is not JSON-serialisable") from None
    if event_id is not None and (
        not isinstance(event_id, str)
        or not event_id.strip()
        or len(event_id) > MAX_EVENT_ID_LENGTH
        or not (event_id.isascii() and event_id.isprintable())
    ):
        # ASCII: the id travels in the M365Bridge-Event-Id header as well as in the body
        raise ValueError(f"an event id must be 1-{MAX_EVENT_ID_LENGTH} printable ASCII characters")
