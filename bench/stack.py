"""What the stack benchmarks share: the app's settings for a local stack (Azurite, the Graph
emulator in its child process) and the log file the host and the app write to."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench.emulator_process import Seeded
from devtools.azurite import Azurite

NEVER = "0 0 0 1 1 *"  # timers that must not fire by themselves


def app_env(azurite: Azurite, seeded: Seeded, work: Path) -> tuple[dict[str, str], str]:
    """App settings for `function_app` on this stack, and the operator key they admit."""
    from core.operator_auth import new_operator_key

    operator_key, operator_digest = new_operator_key()
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "BRIDGE_TABLE_PREFIX": "bench",
        "SECRETS_PROVIDER": "local",
        "LOCAL_SECRETS_DIR": str(work / "secrets"),
        "CALENDAR_SYNC_SCHEDULE": NEVER,
        "HOUSEKEEPING_SCHEDULE": NEVER,
        "MAIL_IMPORT_SCHEDULE": NEVER,
        "GRAPH_SUBSCRIPTION_SCHEDULE": NEVER,
        "GRAPH_BASE_URL": seeded.graph_url,
        "GRAPH_AUTHORITY_HOST": seeded.authority,
        "GRAPH_CA_BUNDLE": seeded.ca_cert,
        "BRIDGE_OPERATOR_KEY_SHA256": operator_digest,
        "LOG_LEVEL": "INFO",
    }
    return env, operator_key


def log_to(path: Path) -> None:
    """The host and the app log at INFO, as in Azure; to `path` here, not the terminal, in the
    app's own format (with context and extras)."""
    from core.observability import JsonFormatter

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def tenant_body(seeded: Seeded, tenant_id: str, display_name: str, time_zone: str = "UTC") -> dict[str, Any]:
    """The operator's `POST …/operator/tenants` body for the emulator tenant: its own app
    registration with a client secret, and no webhook (a benchmark's host pulls the feed)."""
    return {
        "id": tenant_id,
        "displayName": display_name,
        "graph": {
            "tenantId": seeded.tenant_id,
            "clientId": seeded.client_id,
            "credentialMode": "client_secret",
            "clientSecret": seeded.secret,
        },
        "host": {},
        "defaults": {"language": "en", "timeZone": time_zone},
    }
