"""JSON Web Tokens, HS256, signed with a key made fresh for each emulator.

Why real JWTs and not opaque tokens: code under test (the bridge's "test settings" report) reads
the `roles`/`scp` claims out of the access token the way one does with Entra's tokens, and the
managed-identity flow hands an emulator-issued token back to the token endpoint as a client
assertion. Why HS256: only the emulator ever verifies its own tokens, so a shared secret is
enough and needs no JWKS endpoint or key rotation story. Nothing here is meant to be secure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any


class TokenError(ValueError):
    """The token is not a well-formed JWT, or its signature is wrong."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("IDX14102: Unable to decode the JWT segment as Base64Url encoded string.") from exc


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a JWT without checking its signature."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("IDX14100: JWT is not well formed, there are no dots (.).")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
    except ValueError as exc:
        raise TokenError("IDX14102: Unable to decode the JWT header or payload as JSON.") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("IDX14102: The JWT header and payload must be JSON objects.")
    return header, claims


class TokenSigner:
    def __init__(self, key: bytes | None = None, key_id: str = "graph-emulator") -> None:
        self._key = key or secrets.token_bytes(32)
        self.key_id = key_id

    def encode(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "HS256", "kid": self.key_id}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature)

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of a token this signer made; TokenError for anything else."""
        header, claims = decode_unverified(token)
        if header.get("alg") != "HS256" or header.get("kid") != self.key_id:
            raise TokenError("IDX10503: Signature validation failed. The token's kid is not known.")
        signing_input, _, signature = token.rpartition(".")
        expected = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature)):
            raise TokenError("IDX10511: Signature validation failed.")
        return claims
