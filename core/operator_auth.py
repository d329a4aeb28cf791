"""The operator key: one bearer key for the operator API, configured as its SHA-256.

The app setting `BRIDGE_OPERATOR_KEY_SHA256` holds the digest(s), never the key: reading the
settings (portal, `az functionapp config appsettings list`, a leaked `local.settings.json`)
does not give access. Two digests, comma-separated, let an operator roll to a new key without
a gap. `python -m core.operator_auth` prints a new key and the digest to configure.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from core.request_errors import Unauthenticated

OPERATOR_KEY_PREFIX = "m365op_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_operator_key() -> tuple[str, str]:
    """(key, its SHA-256 hex digest)."""
    key = OPERATOR_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, digest(key)


def check_operator_key(configured: Sequence[str], presented: str | None) -> None:
    """Raise `Unauthenticated` unless `presented` hashes to one of the `configured` digests.
    Every digest is compared, each in constant time."""
    if not configured:
        raise Unauthenticated(
            "The operator API is not enabled: set BRIDGE_OPERATOR_KEY_SHA256 to the SHA-256 of an "
            "operator key (python -m core.operator_auth makes one)."
        )
    if not presented:
        raise Unauthenticated("This route needs the operator key: send 'Authorization: Bearer <key>'.")
    presented_digest = digest(presented)
    matched = False
    for expected in configured:
        matched |= hmac.compare_digest(presented_digest, expected)
    if not matched:
        raise Unauthenticated("The operator key is not valid.")


if __name__ == "__main__":
    key, key_digest = new_operator_key()
    print(f"operator key (give it to the operator, store it in a password manager): {key}")
    print(f"BRIDGE_OPERATOR_KEY_SHA256={key_digest}")
