"""Tenant API keys: made here, shown once, stored only as SHA-256 hashes.

A key reads `m365b_<tenant id>_<43 characters of base64url>`: the prefix makes a leaked key
recognisable (secret scanners, logs), the tenant id says whose it is (so authentication needs
one point read, and a key used on another tenant's route is told apart from a wrong key), and
the 32 random bytes make it unguessable. Because the key is random and long, a plain SHA-256
is the right hash (a slow password hash buys nothing against 256 bits of entropy).

Rotation adds a key and gives the existing ones an expiry (the grace period), so a host can
switch over without downtime; a key past its expiry no longer verifies and is dropped at the
next rotation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.store.records import ApiKeyEntry

KEY_PREFIX = "m365b_"
_SECRET_BYTES = 32
_SECRET_CHARS = 43  # base64url of 32 bytes, no padding
# Tenant ids are slugs (core.tenant_input.TENANT_ID): no '_', so the first '_' ends the id.
_KEY = re.compile(
    rf"{KEY_PREFIX}(?P<tenant>[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?)_[A-Za-z0-9_-]{{{_SECRET_CHARS}}}"
)
# Live keys kept per tenant; a rotation beyond this expires the oldest at once.
MAX_KEYS = 10


@dataclass(frozen=True)
class NewKey:
    """A freshly made key: the value (shown once) and the entry to store."""

    value: str
    entry: ApiKeyEntry

    def __repr__(self) -> str:  # never the value, whatever prints it
        return f"NewKey(key_id={self.entry.key_id!r})"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key(tenant_id: str, now: datetime) -> NewKey:
    value = f"{KEY_PREFIX}{tenant_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    if key_tenant(value) != tenant_id:
        raise ValueError("tenant id cannot be part of an API key (not a tenant id slug)")
    entry = ApiKeyEntry(key_id=uuid.uuid4().hex[:12], sha256=hash_key(value), created_at=now)
    return NewKey(value, entry)


def key_tenant(key: str) -> str | None:
    """The tenant id a well-formed key names, or None for anything else."""
    match = _KEY.fullmatch(key)
    return match["tenant"] if match else None


def verify(entries: Sequence[ApiKeyEntry], key: str, now: datetime) -> bool:
    """True if `key` matches a live entry. Every entry is compared, in constant time each, so
    the time taken does not tell which entry (if any) came close."""
    digest = hash_key(key)
    matched = False
    for entry in entries:
        same = hmac.compare_digest(digest, entry.sha256)
        matched |= same and entry.live(now)
    return matched


def rotate(
    entries: Sequence[ApiKeyEntry], fresh: ApiKeyEntry, now: datetime, grace: timedelta
) -> list[ApiKeyEntry]:
    """The entries after adding `fresh`: keys still live end at `now + grace` at the latest
    (grace 0 revokes them now), expired ones are dropped, and at most MAX_KEYS stay."""
    cutoff = now + grace
    kept = [
        entry.model_copy(
            update={"expires_at": cutoff if entry.expires_at is None else min(entry.expires_at, cutoff)}
        )
        for entry in entries
        if entry.live(now)
    ]
    kept = [entry for entry in kept if entry.live(now)]
    return [*kept[-(MAX_KEYS - 1) :], fresh] if MAX_KEYS > 1 else [fresh]
