"""Webhook signatures: HMAC-SHA256 over `"{t}.{body}"`, in the `M365Bridge-Signature` header.

    M365Bridge-Signature: t=1718000000,v1=5257a869e7ec…

`t` is the signing time in Unix seconds and each `v1` a hex HMAC-SHA256 of the timestamp, a
dot and the exact body bytes, keyed with the tenant's webhook signing secret. While a secret is
being rotated the bridge signs with both the new and the previous one (two `v1` values), so a
host may switch its secret at any moment. The timestamp is inside the MAC, so a host that
rejects timestamps outside a few minutes rejects replays of old deliveries; it dedupes the rest
by event id (`M365Bridge-Event-Id`).

`verify` is what the bridge's own tests (and any Python host) use; the README's
standard-library snippet (`docs/webhook_verification.py`) is the same check for hosts.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

SIGNATURE_HEADER = "M365Bridge-Signature"
EVENT_ID_HEADER = "M365Bridge-Event-Id"
EVENT_TYPE_HEADER = "M365Bridge-Event-Type"
SEQUENCE_HEADER = "M365Bridge-Sequence"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300  # seconds a signature stays acceptable, either side of the receiver's clock


class Reason(StrEnum):
    MALFORMED = "malformed"  # not `t=<int>,v1=<hex>[,v1=<hex>…]`
    NO_SIGNATURE = "no_signature"  # a timestamp but no v1 value
    TOO_OLD = "too_old"  # older than the tolerance: a replay, or a badly skewed clock
    FROM_THE_FUTURE = "from_the_future"  # newer than the tolerance
    MISMATCH = "mismatch"  # no v1 value matches: a tampered body or another secret


class SignatureInvalid(ValueError):
    """The signature does not verify; `reason` says why (never echoes the header or body)."""

    def __init__(self, reason: Reason) -> None:
        self.reason = reason
        super().__init__(f"webhook signature rejected: {reason.value}")


def _unix(now: datetime | float) -> int:
    return int(now.timestamp() if isinstance(now, datetime) else now)


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str | Sequence[str], body: bytes, now: datetime | float) -> str:
    """The `M365Bridge-Signature` value for `body` signed at `now`: one `v1` per secret (the
    current one first; the previous one as well while it is being rotated)."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets or not all(secrets):
        raise ValueError("signing needs at least one non-empty secret")
    timestamp = _unix(now)
    return ",".join([f"t={timestamp}", *(f"{SCHEME}={_mac(s, timestamp, body)}" for s in secrets)])


def parse(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures) of a header value; unknown schemes are ignored, so a later
    `v2` can be added alongside. Raises SignatureInvalid(MALFORMED)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureInvalid(Reason.MALFORMED)
        if key == "t":
            if timestamp is not None or not value.isdigit() or not value.isascii():
                raise SignatureInvalid(Reason.MALFORMED)
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise SignatureInvalid(Reason.MALFORMED)
    return timestamp, signatures


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    now: datetime | float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Accept `body` if `header` carries a v1 HMAC of it made with `secret` within `tolerance`
    seconds of `now`; otherwise raise SignatureInvalid with the reason. Compares in constant time."""
    if not header:
        raise SignatureInvalid(Reason.MALFORMED)
    timestamp, signatures = parse(header)
    if not signatures:
        raise SignatureInvalid(Reason.NO_SIGNATURE)
    age = _unix(now) - timestamp
    if age > tolerance:
        raise SignatureInvalid(Reason.TOO_OLD)
    if age < -tolerance:
        raise SignatureInvalid(Reason.FROM_THE_FUTURE)
    expected = _mac(secret, timestamp, body)
    # every value is compared (no early exit), so timing says nothing about which one matched
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected.encode("ascii"), candidate.encode("utf-8", "replace"))
    if not matched:
        raise SignatureInvalid(Reason.MISMATCH)


def delivery_headers(
    secret: str | Sequence[str],
    body: bytes,
    now: datetime | float,
    *,
    event_id: str,
    event_type: str,
    sequence: int,
) -> dict[str, str]:
    """Every header of a webhook POST but the transport's own."""
    return {
        "Content-Type": "application/json; charset=utf-8",
        SIGNATURE_HEADER: sign(secret, body, now),
        EVENT_ID_HEADER: event_id,
        EVENT_TYPE_HEADER: event_type,
        SEQUENCE_HEADER: str(sequence),
    }
