"""R6: secrets (client secret, refresh token, signing secret, API keys) never in logs, Table
Storage, responses or exceptions - except the one response that hands a key or generated secret
over.

The first test drives the operator and tenant APIs with known secret values (including wrong
calls that put a secret where it does not belong). The second runs the secrets through their
whole life on the local stack with the Graph emulator: a client secret signing in to Graph, then
refused by Entra ID after it was replaced there and rotated through the operator API; a user's
delegated sign-in (refresh token), its refresh, its revocation (invalid_grant) and reconnect;
webhook deliveries signed with the signing secret. Each captures every log record of every
logger at DEBUG, every response body, every exception that escaped a function invocation (what
Application Insights records as an exception), and every request the host's webhook received,
then searches all of them and every row of every table."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.exceptions import AzureError

from core.bootstrap import Container
from core.delegated import refresh_token_name
from core.errors import BridgeError
from core.secrets import LocalSecretStore
from core.tenant_schema import client_secret_name, webhook_secret_name
from devtools.funchost.invoker import Invoker
from tests.integration.bridge_api import Api, Reply, api, api_env, app, every_row, link_body, tenant_body
from tests.integration.test_calendar_sync_down import eventually, graph, start_bridge
from tests.integration.test_credential_modes import MEGAN, delegated_tenant

__all__ = ["api", "api_env", "app", "graph", "start_bridge"]  # fixtures

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


def exception_text(exc: BaseException) -> str:
    """All an exception tells: its chain's types, messages, args and tracebacks, as Application
    Insights' exceptions table would record them (and more: repr of every argument)."""
    parts = traceback.format_exception(exc)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [repr(current), repr(current.args), str(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.fixture
def escaped(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """Every exception that escapes a function invocation on the local host."""
    found: list[BaseException] = []
    call = Invoker._call

    async def recorded(self: Invoker, function: Any, kwargs: dict[str, Any]) -> Any:
        try:
            return await call(self, function, kwargs)
        except Exception as exc:
            found.append(exc)
            raise

    monkeypatch.setattr(Invoker, "_call", recorded)
    return found


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """Every app error (`BridgeError`: Graph, storage, secrets errors) and every Azure SDK error
    (azure-identity's refusals among them) made while the test runs, caught later or not."""
    found: list[BaseException] = []
    for cls in (BridgeError, AzureError):
        real = cls.__init__

        def init(self: BaseException, *args: Any, _real: Any = real, **kwargs: Any) -> None:
            found.append(self)
            _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", init)
    return found


async def test_r6_known_secrets_and_keys_put_everywhere_through_the_api_are_never_in_logs_tables_or_responses(
    every_log: list[logging.LogRecord],
    api: Api,
    app: Container,
    api_env: dict[str, str],
    record_property: Callable[[str, Any], None],
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
    exceptions = "\n".join(exception_text(r.exc_info[1]) for r in every_log if r.exc_info and r.exc_info[1])
    leaks = [
        f"{label} in {where}"
        for label, value in secrets.items()
        for where, text in (
            ("Table Storage", stored),
            ("logs", logged),
            ("responses", answered),
            ("exceptions", exceptions),
        )
        if value in text
    ]
    record_property("operations", len(api.responses))
    record_property("secrets_searched", len(secrets))
    record_property("log_records", len(every_log))
    record_property("table_rows", len(rows))
    record_property("leaks", len(leaks))
    assert leaks == []
    # each handed-over response carries only its own key/secret
    assert CLIENT_SECRET_1 not in one.text
    assert WEBHOOK_SECRET_1 not in one.text
    assert key_1 not in rotated.text
    assert key_3 not in one.text


async def test_r6_client_secret_refresh_token_signing_secret_api_keys_not_in_logs_tables_responses_exceptions(
    every_log: list[logging.LogRecord],
    escaped: list[BaseException],
    created: list[BaseException],
    start_bridge: Callable[..., Any],
    graph: Any,
    api_env: dict[str, str],
    record_property: Callable[[str, Any], None],
) -> None:
    """GIVEN a client_secret tenant with a webhook and a delegated tenant WHEN the client secret
    signs in to Graph (a sync), is replaced in Entra ID so the next sign-in is refused
    (invalid_client: a failed run, an exception), then rotated through the operator API (the
    sync works again); events are delivered signed; Megan signs in (a refresh token), her token
    is refreshed (a sync with it), revoked (invalid_grant: a failed run, an exception) and she
    connects again (a second refresh token) THEN none of those values — either client secret,
    both refresh tokens, the signing secret, either API key — is in a log record, a table row,
    a response (but the one that handed a key over), an exception that escaped a function, or
    a request the host's webhook received."""
    async with delegated_tenant(start_bridge, graph) as delegated:
        bridge = delegated.bridge
        api = bridge.api
        outlook = bridge.outlook
        adele = outlook.mailbox("adele")
        await bridge.link("room-4b", {"account": adele, "direction": "down"})
        assert (await bridge.sync("room-4b"))[1]["status"] == "succeeded"
        first_secret = outlook.secret
        signing = await api.secret(webhook_secret_name(bridge.tenant_id))
        assert signing

        # the client secret is replaced in Entra ID: the next sign-in is refused
        rotated = "s-rotated-" + "z" * 30
        graph.app(outlook.tenant_id, outlook.client_id).secrets = [rotated]
        await bridge.app.graphs.close()  # no cached token: the next call signs in
        failed = (await bridge.sync("room-4b", expect="failed"))[1]
        assert "invalid_client" in failed["error"] or "Token" in failed["error"], failed
        patched = await api.operator(
            "PATCH", f"/tenants/{bridge.tenant_id}", json_body={"graph": {"clientSecret": rotated}}
        )
        assert patched.status == 200, patched.text
        assert (await bridge.sync("room-4b"))[1]["status"] == "succeeded"
        for _ in range(2):
            assert (await bridge.call("POST", "/events/test")).status == 202
        await eventually(lambda: len(bridge.receiver.accepted) >= 2, what="signed deliveries")

        # Megan's delegated grant: sign-in, use, revocation, reconnect
        status, _ = await delegated.connect(MEGAN, "megan-desk")
        assert status == 200
        store = LocalSecretStore(api.secrets_dir)
        first_refresh = await store.get(refresh_token_name("delegated-co", MEGAN))
        assert first_refresh
        assert (await delegated.sync("megan-desk"))["status"] == "succeeded"
        graph.identity.revoke_refresh_tokens(delegated.megan_id)
        await bridge.app.graphs.close()
        assert (await delegated.sync("megan-desk"))["status"] == "failed"
        status, _ = await delegated.connect(MEGAN, "megan-desk")
        assert status == 200
        second_refresh = await store.get(refresh_token_name("delegated-co", MEGAN))
        assert second_refresh
        assert second_refresh != first_refresh
        assert (await delegated.sync("megan-desk"))["status"] == "succeeded"
        await store.close()

        secrets = {
            "client secret (first)": first_secret,
            "client secret (rotated)": rotated,
            "refresh token (first)": first_refresh,
            "refresh token (after reconnect)": second_refresh,
            "webhook signing secret": signing,
            "API key (client_secret tenant)": bridge.api_key,
            "API key (delegated tenant)": delegated.key,
        }
        rows = await every_row(api_env["AzureWebJobsStorage"], api_env["BRIDGE_TABLE_PREFIX"])
        received = bridge.receiver.received
    handed_over = [r for r in api.responses if isinstance(r.body, dict) and "apiKey" in r.body]
    assert len(handed_over) == 2  # the two tenants' creation
    stored = "\n".join(f"{key!r} {data!r}" for key, (_, data) in rows.items())
    logged = "\n".join(record_text(r) for r in every_log)
    answered = "\n".join(r.text + repr(dict(r.headers)) for r in api.responses if r not in handed_over)
    raised = [*escaped, *created, *(r.exc_info[1] for r in every_log if r.exc_info and r.exc_info[1])]
    exceptions = "\n".join(exception_text(exc) for exc in raised)
    webhooks = "\n".join(r.body.decode("utf-8", "replace") + repr(r.headers) for r in received)
    kinds = {type(exc).__name__ for exc in raised}
    assert {"GrantRevoked", "ClientAuthenticationError"} & kinds, kinds  # the refusals happened
    leaks = [
        f"{label} in {where}"
        for label, value in secrets.items()
        for where, text in (
            ("Table Storage", stored),
            ("logs", logged),
            ("responses", answered),
            ("exceptions", exceptions),
            ("webhook requests", webhooks),
        )
        if value in text
    ]
    record_property("operations", len(api.responses))
    record_property("secrets_searched", len(secrets))
    record_property("log_records", len(every_log))
    record_property("exceptions", len(raised))
    record_property("table_rows", len(rows))
    record_property("leaks", len(leaks))
    assert leaks == []
