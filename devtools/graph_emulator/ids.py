"""Identifiers shaped like the real service's.

Outlook item ids are opaque base64 strings ("AAMkAD..."); tests and clients must treat them as
opaque, so the emulator makes them random and unguessable. Occurrence ids are derived from the
series id and the occurrence's original start (so they are stable across reads and need no
storage) and can be decoded back.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import uuid

_OCCURRENCE_PREFIX = "AAMkOC"


def guid() -> str:
    return str(uuid.uuid4())


def outlook_id(prefix: str = "AAMkAD") -> str:
    """A new opaque item id, URL-safe base64 like Graph's immutable ids."""
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(33)).decode()


def change_key() -> str:
    return base64.b64encode(secrets.token_bytes(12)).decode()


def occurrence_id(series_id: str, original_start: dt.datetime) -> str:
    stamp = original_start.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = f"{series_id}|{stamp}".encode()
    return _OCCURRENCE_PREFIX + base64.urlsafe_b64encode(raw).decode()


def parse_occurrence_id(item_id: str) -> tuple[str, dt.datetime] | None:
    """(series id, original start) for an occurrence id, None for any other id."""
    if not item_id.startswith(_OCCURRENCE_PREFIX):
        return None
    try:
        raw = base64.urlsafe_b64decode(item_id[len(_OCCURRENCE_PREFIX) :].encode()).decode()
        series_id, _, stamp = raw.rpartition("|")
        when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return (series_id, when) if series_id else None


def ical_uid() -> str:
    # The Outlook form: a fixed class id, then a per-item part.
    return "040000008200E00074C5B7101A82E00800000000" + secrets.token_hex(28).upper()
