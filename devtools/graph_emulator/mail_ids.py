"""Mail ids: folder ids, the two message id forms, and attachment ids.

Outlook has two REST id forms for a message, and the emulator makes both, decodably:

- the **regular id** (`AAMkA...`) names the item *where it is*: it encodes the mailbox, the
  folder and a per-location entry key. A move gives the message a new entry key, hence a new
  regular id, and the old one stops resolving (404) - what Graph does without
  `Prefer: IdType="ImmutableId"`;
- the **immutable id** (`AAkALg...`) encodes the mailbox and the item's lifetime key only, so it
  survives moves between folders (Graph docs "Obtain immutable identifiers for Outlook
  resources"). Graph returns it when the request says `Prefer: IdType="ImmutableId"`; either
  form is accepted in a request path with or without the header.

Folders have one id form (containers do not support immutable ids; theirs never change).
Attachment ids are the owning message's id (in whichever form the response uses) followed by
the attachment's key, as Graph's are (`AAMkAGUzY5QKjAAA=` -> `AAMkAGUzY5QKjAAABEgAQAMkpJ...`):
with immutable ids they survive a move too.

The layouts are byte strings chosen so the base64 starts like Graph's (`AAMk`, `AAkALg`) and so
a message id's text is a literal prefix of its attachments' ids (lengths are multiples of 3).
Clients must treat all of them as opaque.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass

KEY_BYTES = 16
_REGULAR = b"\x00\x03\x24\x00\x00"  # "AAMkAAA..." like Exchange's REST ids
_IMMUTABLE = b"\x00\x09\x00\x2e\x00\x00"  # "AAkALgAA..." like Exchange's immutable REST ids
_FOLDER = b"F"
_MESSAGE = b"M"
_ATTACHMENT = b"\x04\x48\x00\x10\x00"  # "BEgAEAA..." - Graph's attachment ids carry a similar marker
_REGULAR_MESSAGE_LEN = len(_REGULAR) + 1 + 3 * KEY_BYTES  # 54
_IMMUTABLE_MESSAGE_LEN = len(_IMMUTABLE) + 1 + 2 * KEY_BYTES  # 39


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def mailbox_tag(user_id: str) -> bytes:
    """The mailbox part of every id: derived from the user's object id, so an id from another
    mailbox is recognised as foreign (404) rather than misread."""
    return hashlib.sha256(user_id.lower().encode()).digest()[:KEY_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _decode(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text.encode() + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


# -- folders -------------------------------------------------------------------------------


def folder_id(mailbox: bytes, folder_key: bytes) -> str:
    return _encode(_REGULAR + _FOLDER + mailbox + folder_key)


def parse_folder_id(text: str) -> tuple[bytes, bytes] | None:
    """(mailbox tag, folder key) of a folder id; None if `text` is not one."""
    raw = _decode(text)
    head = len(_REGULAR) + 1
    if raw is None or len(raw) != head + 2 * KEY_BYTES or raw[:head] != _REGULAR + _FOLDER:
        return None
    return raw[head : head + KEY_BYTES], raw[head + KEY_BYTES :]


# -- messages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageRef:
    """A decoded message id. `item_key` is set for immutable ids; `folder_key` and `entry_key`
    for regular ids."""

    mailbox: bytes
    immutable: bool
    item_key: bytes | None = None
    folder_key: bytes | None = None
    entry_key: bytes | None = None


def regular_id(mailbox: bytes, folder_key: bytes, entry_key: bytes) -> str:
    return _encode(_REGULAR + _MESSAGE + mailbox + folder_key + entry_key)


def immutable_id(mailbox: bytes, item_key: bytes) -> str:
    return _encode(_IMMUTABLE + _MESSAGE + mailbox + item_key)


def _parse_message_raw(raw: bytes) -> MessageRef | None:
    if len(raw) == _REGULAR_MESSAGE_LEN and raw.startswith(_REGULAR + _MESSAGE):
        body = raw[len(_REGULAR) + 1 :]
        return MessageRef(
            body[:KEY_BYTES],
            False,
            folder_key=body[KEY_BYTES : 2 * KEY_BYTES],
            entry_key=body[2 * KEY_BYTES :],
        )
    if len(raw) == _IMMUTABLE_MESSAGE_LEN and raw.startswith(_IMMUTABLE + _MESSAGE):
        body = raw[len(_IMMUTABLE) + 1 :]
        return MessageRef(body[:KEY_BYTES], True, item_key=body[KEY_BYTES:])
    return None


def parse_message_id(text: str) -> MessageRef | None:
    """The decoded form of a regular or immutable message id; None if `text` is neither."""
    raw = _decode(text)
    return None if raw is None else _parse_message_raw(raw)


# -- attachments ---------------------------------------------------------------------------


def attachment_id(message_id: str, attachment_key: bytes) -> str:
    raw = _decode(message_id)
    if raw is None or _parse_message_raw(raw) is None:
        raise ValueError(f"not a message id: {message_id!r}")
    return _encode(raw + _ATTACHMENT + attachment_key)


def parse_attachment_id(text: str) -> tuple[MessageRef, bytes] | None:
    """(the owning message's id, decoded; the attachment key) or None."""
    raw = _decode(text)
    tail = len(_ATTACHMENT) + KEY_BYTES
    if raw is None or len(raw) <= tail or raw[-tail:-KEY_BYTES] != _ATTACHMENT:
        return None
    message = _parse_message_raw(raw[:-tail])
    return None if message is None else (message, raw[-KEY_BYTES:])


# -- other Outlook identifiers ---------------------------------------------------------------


def conversation_id() -> str:
    return _encode(b"\x00\x10\x00" + secrets.token_bytes(KEY_BYTES + 2))


def internet_message_id(domain: str) -> str:
    """An RFC 5322 Message-ID in the shape Exchange Online writes them."""
    local = secrets.token_hex(16).upper()
    host = domain.split(".")[0].upper() or "EMULATOR"
    return f"<{local}@{host}.prod.outlook.com>"
