"""Webhook signatures: what `sign` produces, what `verify` and the README's host snippet accept,
and why each rejection happens. No network."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from core.host.signing import Reason, SignatureInvalid, delivery_headers, parse, sign, verify
from tests.host_snippet import ROOT, load_verifier, readme_python_blocks, snippet_code

SECRET = "whsec_test_0123456789abcdef"
BODY = (
    b'{"id":"e1","type":"appointment.upserted","tenantId":"t1",'
    b'"occurredAt":"2026-01-01T00:00:00.000000Z","data":{"x":"\xc3\xa6"}}'
)
T = 1_790_000_000


def rejects(reason: Reason, *args: object, **kwargs: object) -> None:
    with pytest.raises(SignatureInvalid) as err:
        verify(*args, **kwargs)  # type: ignore[arg-type]
    assert err.value.reason is reason


def test_given_a_signed_body_when_verified_within_the_tolerance_then_it_is_accepted() -> None:
    header = sign(SECRET, BODY, T)
    assert header.startswith(f"t={T},v1=")
    verify(SECRET, BODY, header, T)
    verify(SECRET, BODY, header, T + 300)
    verify(SECRET, BODY, header, datetime.fromtimestamp(T - 300, UTC))


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, T) == f"t={T},v1={expected}"


def test_given_a_tampered_body_then_mismatch() -> None:
    header = sign(SECRET, BODY, T)
    rejects(Reason.MISMATCH, SECRET, BODY.replace(b"e1", b"e2"), header, T)
    rejects(Reason.MISMATCH, SECRET, BODY + b" ", header, T)


def test_given_another_secret_then_mismatch() -> None:
    rejects(Reason.MISMATCH, "another-secret", BODY, sign(SECRET, BODY, T), T)


def test_given_a_replayed_old_delivery_then_too_old() -> None:
    rejects(Reason.TOO_OLD, SECRET, BODY, sign(SECRET, BODY, T), T + 301)


def test_given_a_timestamp_from_the_future_then_from_the_future() -> None:
    rejects(Reason.FROM_THE_FUTURE, SECRET, BODY, sign(SECRET, BODY, T + 301), T)


def test_given_a_changed_timestamp_with_the_old_mac_then_mismatch() -> None:
    # a replayer cannot refresh the timestamp: it is inside the MAC
    mac = sign(SECRET, BODY, T).split(",v1=")[1]
    rejects(Reason.MISMATCH, SECRET, BODY, f"t={T + 400},v1={mac}", T + 400)


@pytest.mark.parametrize(
    "header",
    ["", "garbage", "t=abc,v1=00", "v1=00", "t=,v1=00", "t=1,t=2,v1=00", "t=-5,v1=00", "t=١٢٣,v1=00"],
)
def test_given_a_malformed_header_then_malformed(header: str) -> None:
    rejects(Reason.MALFORMED, SECRET, BODY, header, T)
    rejects(Reason.MALFORMED, SECRET, BODY, None, T)


def test_given_only_a_timestamp_then_no_signature() -> None:
    rejects(Reason.NO_SIGNATURE, SECRET, BODY, f"t={T}", T)
    rejects(Reason.NO_SIGNATURE, SECRET, BODY, f"t={T},v2=abc", T)


def test_given_a_rotation_then_both_secrets_verify_and_unknown_schemes_are_ignored() -> None:
    header = sign(["new-secret", "old-secret"], BODY, T)
    assert parse(header)[0] == T
    assert len(parse(header)[1]) == 2
    verify("new-secret", BODY, header, T)
    verify("old-secret", BODY, header, T)
    rejects(Reason.MISMATCH, "third-secret", BODY, header, T)
    verify("new-secret", BODY, header + ",v2=whatever", T)


def test_a_rejection_never_quotes_the_header_or_body() -> None:
    with pytest.raises(SignatureInvalid) as err:
        verify(SECRET, BODY, "t=1,v1=deadbeef", T)
    assert "deadbeef" not in str(err.value)
    assert "appointment" not in str(err.value)


def test_delivery_headers_name_the_event() -> None:
    headers = delivery_headers(SECRET, BODY, T, event_id="e1", event_type="appointment.upserted", sequence=7)
    assert headers["M365Bridge-Event-Id"] == "e1"
    assert headers["M365Bridge-Event-Type"] == "appointment.upserted"
    assert headers["M365Bridge-Sequence"] == "7"
    verify(SECRET, BODY, headers["M365Bridge-Signature"], T)


# --- the README snippet ---------------------------------------------------------------------


def test_the_snippet_uses_only_the_standard_library() -> None:
    imports = [line for line in snippet_code().splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import hashlib", "import hmac", "import time"]


def test_given_fresh_signatures_the_snippet_accepts_them_and_rejects_tampering_replay_and_junk() -> None:
    check = load_verifier()
    now = int(time.time())
    header = sign(SECRET, BODY, now)
    assert check(SECRET, BODY, header) is True
    assert check(SECRET, BODY.replace(b"e1", b"e2"), header) is False  # tampered body
    assert check("another-secret", BODY, header) is False  # wrong secret
    assert check(SECRET, BODY, sign(SECRET, BODY, now - 301)) is False  # replayed old delivery
    assert check(SECRET, BODY, sign(SECRET, BODY, now + 301)) is False  # from the future
    for junk in ("", "garbage", "t=abc,v1=00", "v1=00", f"t={now}", f"t={now},v1=\u00e9\u00e9"):
        assert check(SECRET, BODY, junk) is False
    rotated = sign(["new-secret", SECRET], BODY, now)
    assert check(SECRET, BODY, rotated) is True
    assert check("new-secret", BODY, rotated) is True


def test_the_readme_carries_the_snippet_verbatim_once_it_documents_signatures() -> None:
    """The README's verification snippet must be this file, character for character. Before the
    README documents webhook signatures at all there is nothing to compare."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    if "M365Bridge-Signature" not in readme:
        return
    assert snippet_code() in readme_python_blocks(readme)
