"""Build valid, collision-free Key Vault secret names from arbitrary parts.

`secret_name("tenant", tenant_id, "client-secret")` joins the encoded parts with "--". A part
that is already lower-case letters and digits, optionally in single-hyphen-separated runs
("client-secret", a lower-case GUID), is kept as it is so names stay readable in the portal;
any other part (upper case, other characters, double or edge hyphens) becomes "-" + the hex of
its UTF-8 bytes, and the empty part becomes "-0" (odd length: never the hex of any bytes).

The encoding is injective, and stays so under Key Vault's case-insensitivity because it emits
only lower case: `split_secret_name` recovers the parts, which is the proof (and the test).
A plain part never starts or ends with '-' nor contains "--", so the first "--" after it is
the separator; an escaped part is '-' + hex digits, so it ends at the next '-'.

Names longer than 127 characters keep a readable prefix and end in "---z" + SHA-256 of the full
encoding. "---z" cannot occur in an unhashed name (there "---" is always a separator followed by
an escaped part, i.e. '-' and a hex digit), so a hashed name never equals an unhashed one, and
two hashed names are equal only if SHA-256 collides.
"""

from __future__ import annotations

import hashlib
import re

from core.secrets.port import MAX_NAME_LENGTH

_SEPARATOR = "--"
_HASH_MARK = "---z"
_PLAIN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_EMPTY = "-0"


def secret_name(*parts: str) -> str:
    """A valid secret name (1-127 of [0-9a-z-]) that is different for every different tuple of
    parts, e.g. `secret_name("tenant", tenant_id, "client-secret")`."""
    if not parts:
        raise ValueError("secret_name needs at least one part")
    encoded = _SEPARATOR.join(_encode(part) for part in parts)
    if len(encoded) <= MAX_NAME_LENGTH:
        return encoded
    digest = hashlib.sha256(encoded.encode("ascii")).hexdigest()
    prefix = encoded[: MAX_NAME_LENGTH - len(_HASH_MARK) - len(digest)].rstrip("-")
    return prefix + _HASH_MARK + digest


def split_secret_name(name: str) -> tuple[str, ...]:
    """The parts `secret_name` was given (for diagnostics). Raises ValueError for a hashed
    (over-long) name, whose parts cannot be recovered, or a name `secret_name` cannot produce."""
    if _HASH_MARK in name:
        raise ValueError("the name was shortened with a hash; its parts cannot be recovered")
    parts: list[str] = []
    i = 0
    while True:
        if name.startswith("-", i):
            end = name.find("-", i + 1)
            end = len(name) if end == -1 else end
            parts.append(_decode(name[i + 1 : end]))
        else:
            end = name.find(_SEPARATOR, i)
            end = len(name) if end == -1 else end
            part = name[i:end]
            if not _PLAIN.fullmatch(part):
                raise ValueError(f"{name!r} is not a name secret_name() produces")
            parts.append(part)
        if end == len(name):
            return tuple(parts)
        if not name.startswith(_SEPARATOR, end):
            raise ValueError(f"{name!r} is not a name secret_name() produces")
        i = end + len(_SEPARATOR)


def _encode(part: str) -> str:
    if not isinstance(part, str):
        raise TypeError(f"secret name parts must be str, not {type(part).__name__}")
    if part == "":
        return _EMPTY
    if _PLAIN.fullmatch(part):
        return part
    # surrogatepass: every str (even one with lone surrogates) has an encoding, so this is total
    return "-" + part.encode("utf-8", "surrogatepass").hex()


def _decode(hex_digits: str) -> str:
    if hex_digits == _EMPTY[1:]:
        return ""
    if not hex_digits or len(hex_digits) % 2 or not re.fullmatch(r"[0-9a-f]+", hex_digits):
        raise ValueError(f"'-{hex_digits}' is not an escaped secret name part")
    return bytes.fromhex(hex_digits).decode("utf-8", "surrogatepass")
