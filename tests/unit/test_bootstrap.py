"""The composition root wires Graph from settings and keeps `function_app` cheap to import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from core.bootstrap import build_container, graph_client_options
from core.settings import Settings
from devtools.tls import generate_tls

ROOT = Path(__file__).resolve().parents[2]
AZURITE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def test_given_graph_settings_when_wired_then_the_gateway_options_carry_them(tmp_path: Path) -> None:
    tls = generate_tls(tmp_path)
    settings = Settings.from_env(
        {
            **AZURITE,
            "GRAPH_BASE_URL": "https://127.0.0.1:8443/v1.0",
            "GRAPH_CA_BUNDLE": str(tls.ca_cert),
            "GRAPH_TIMEOUT_SECONDS": "7.5",
        }
    )
    options = graph_client_options(settings)
    assert options.base_url == "https://127.0.0.1:8443/v1.0"
    assert options.ca_bundle == str(tls.ca_cert)
    assert options.timeout_seconds == 7.5
    # The token is for Microsoft Graph whichever host serves it (the emulator checks that too).
    assert options.scopes == ("https://graph.microsoft.com/.default",)


def test_given_default_settings_when_wired_then_the_gateway_trusts_only_the_public_roots() -> None:
    options = graph_client_options(Settings.from_env(AZURITE))
    assert (options.base_url, options.ca_bundle) == ("https://graph.microsoft.com/v1.0", None)


async def test_the_queue_and_blob_clients_retry_within_seconds_not_after_15(tmp_path: Path) -> None:
    settings = Settings.from_env({**AZURITE, "LOCAL_SECRETS_DIR": str(tmp_path)})
    container = build_container(settings)
    try:
        for client in (container.queues, container.blobs):
            policy: Any = client._config.retry_policy
            assert (policy.initial_backoff, policy.increment_base, policy.total_retries) == (1, 3, 3)
    finally:
        await container.close()


def test_importing_the_function_app_loads_no_graph_sdk_and_no_blob_sdk() -> None:
    # msgraph-sdk, kiota, httpx and azure-identity cost ~0.3 s of cold start (TARGETS P4): they
    # load with the first gateway; azure-storage-blob (~0.15 s) with the first staged document.
    heavy = ("msgraph", "kiota", "httpx", "azure.identity", "azure.storage.blob", "fpdf")
    code = f"import sys, function_app; print(sorted({{m for m in sys.modules if m.startswith({heavy!r})}}))"
    out = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
