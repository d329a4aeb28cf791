"""R6: client secrets, webhook signing secrets and API keys never reach Table Storage, a log
record or a response - except the one response that hands a key or generated secret over.

The test drives the operator and tenant APIs with known secret values (including wrong calls
that put a secret where it does not belong), capturing every log record of every logger at
DEBUG and every response body, then searches all of them and every row of every table."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from core.bootstrap import Container
from core.tenant_schema import client_secret_name, webhook_secret_name
from tests.integration.bridge_api import Api, Reply, api, api_env, app, every_row, link_body, tenant_body

__all__ = ["api", "api_env", "app"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLIENT_SECRET_1 = "Q~cs1-2b7d1c0e9a8f4e3d2c1b0a9f8e7d6c5b"
CLIENT_SECRET_2 = "Q~cs2-4e3d2c1b0a9f8e7d6c5b2b7d1c0e9a8f"
WEBHOOK_SECRET_1 = "whsec_ws1-7f3e9a2c4b6d8e0f1a3c5e7b9d2f4a6c"
WEBHOOK_SECRET_2 = "whsec_ws2-1a3c5e7b9d2f4a6c7f3e9a2c4b6d8e0f"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Every record of every logger at DEBUG (including loggers the app quiets), from before
    the host starts until the test ends."""
    collect = Collect()
    logging.root.addHandler(collect)
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    try:
        yield collect.records
    finally:
        logging.root.removeHandler(collect)


def record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(vars(record))]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


async def test_given_known_secrets_and_keys_when_tenants_are_created_patched_rotated_and_used_then_none_leaks(
    every_log: list[logging.LogRecord], api: Api, app: Container, api_env: dict[str, str]
) -> None:
    handed_over: list[Reply] = []  # the responses allowed to carry a key or a generated secret

    one = await api.operator(
        "POST",
        "/tenants",
        json_body=tenant_body(
            "tenant-1",
            graph={"credentialMode": "client_secret", "clientSecret": CLIENT_SECRET_1},
            host={"webhookSecret": WEBHOOK_SECRET_1},
        ),
    )
    assert one.status == 201, one.text
    handed_over.append(one)
    two = await api.operator("POST", "/tenants", json_body=tenant_body("tenant-2"))
    assert two.status == 201
    handed_over.append(two)
    key_1, key_2, generated = one.body["apiKey"], two.body["apiKey"], two.body["webhookSecret"]

    patched = await api.operator(
        "PATCH",
        "/tenants/tenant-1",
        json_body={"graph": {"clientSecret": CLIENT_SECRET_2}, "host": {"webhookSecret": WEBHOOK_SECRET_2}},
    )
    assert patched.status == 200, patched.text
    rotated = await api.operator("POST", "/tenants/tenant-1/keys/rotate")
    assert rotated.status == 200
    handed_over.append(rotated)
    key_3 = rotated.body["apiKey"]

    # ordinary use, and every way of putting a secret where it does not belong
    await api.call(
        "PUT", "/api/v1/tenants/tenant-1/resources/r1", bearer=key_3, json_body=link_body("a@x.example")
    )
    await api.call("GET", "/api/v1/tenants/tenant-1/resources", bearer=key_1)
    await api.call("GET", "/api/v1/tenants/tenant-1/runs", bearer=key_2)  # another tenant's key
    await api.call("GET", "/api/v1/tenants/tenant-2/runs", bearer=CLIENT_SECRET_1)  # a secret as the key
    await api.call("GET", "/api/v1/operator/tenants", bearer=key_3)  # a tenant key as the operator key
    await api.operator("GET", "/tenants/tenant-1")
    await api.operator("GET", "/tenants")
    bad = [
        {"graph": {"clientSecret": CLIENT_SECRET_1, "credentialMode": "managed"}},  # secret in the wrong mode
        {"host": {"webhookSecret": WEBHOOK_SECRET_1 + " with a space"}},  # invalid secret
        {"displayName": CLIENT_SECRET_1 * 10},  # a secret in a field that is too long
        {"password": CLIENT_SECRET_2, "graph": {"tenantId": WEBHOOK_SECRET_2}},  # unknown field, wrong type
        {"defaults": {"timeZone": key_1, "language": key_2}},  # keys in validated fields
    ]
    for body in bad:
        reply = await api.operator("PATCH", "/tenants/tenant-1", json_body=body)
        assert reply.is_problem(422), reply.text
    reply = await api.operator(
        "POST", "/tenants", json_body=tenant_body("tenant-3", graph={"tenantId": CLIENT_SECRET_2})
    )
    assert reply.is_problem(422)
    await api.call(
        "PUT",
        "/api/v1/tenants/tenant-1/resources/r2",
        bearer=key_3,
        json_body={"accounts": [{"account": key_1}]},
    )

    # the secrets are where they belong
    assert await api.secret(client_secret_name("tenant-1")) == CLIENT_SECRET_2
    assert await api.secret(webhook_secret_name("tenant-1")) == WEBHOOK_SECRET_2
    assert await api.secret(webhook_secret_name("tenant-2")) == generated

    secrets = {
        "client secret 1": CLIENT_SECRET_1,
        "client secret 2": CLIENT_SECRET_2,
        "webhook secret 1": WEBHOOK_SECRET_1,
        "webhook secret 2": WEBHOOK_SECRET_2,
        "generated webhook secret": generated,
        "api key 1": key_1,
        "api key 2": key_2,
        "api key 3": key_3,
    }
    rows = await every_row(api_env["AzureWebJobsStorage"], api_env["BRIDGE_TABLE_PREFIX"])
    assert any(table.endswith("tenants") for table, _, _ in rows)
    stored = "\n".join(f"{key!r} {data!r}" for key, (_, data) in rows.items())
    logged = "\n".join(record_text(r) for r in every_log)
    assert len(every_log) > 20
    answered = "\n".join(r.text + repr(dict(r.headers)) for r in api.responses if r not in handed_over)
    assert len(api.responses) - len(handed_over) >= 15
    leaks = [
        f"{label} in {where}"
        for label, value in secrets.items()
        for where, text in (("Table Storage", stored), ("logs", logged), ("responses", answered))
        if value in text
    ]
    assert leaks == []
    # each handed-over response carries only its own key/secret
    assert CLIENT_SECRET_1 not in one.text
    assert WEBHOOK_SECRET_1 not in one.text
    assert key_1 not in rotated.text
    assert key_3 not in one.text
