import hashlib
import hmac
import time


def verify_m365bridge_signature(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    """True if `header` (the M365Bridge-Signature value) signs `body` (the raw request bytes,
    before any JSON parsing) with `secret`, and was made within `tolerance` seconds of now."""
    try:
        pairs = [item.strip().split("=", 1) for item in header.split(",")]
        timestamp = int(next(value for key, value in pairs if key == "t"))
        signatures = [value for key, value in pairs if key == "v1"]
    except (ValueError, StopIteration):
        return False  # malformed header
    if abs(time.time() - timestamp) > tolerance:
        return False  # too old (a replay) or too far in the future
    message = str(timestamp).encode() + b"." + body
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest().encode()
    return any(hmac.compare_digest(expected, signature.encode()) for signature in signatures)
