"""One validated, immutable settings object, built once from environment variables.

The variable names are the ones Azure app settings use (and `local.settings.json` sets
locally). `Settings.from_env` reports every missing or invalid setting in one
`SettingsError` that names each of them; tests build `Settings` directly.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from core import __version__
from core.errors import SettingsError

# Azurite's well-known development account (published in Azure's documentation; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_PORTS = {"Blob": 10000, "Queue": 10001, "Table": 10002}


def azurite_connection_string(host: str = "127.0.0.1", ports: Mapping[str, int] | None = None) -> str:
    """The connection string for an Azurite instance listening on `ports` (service -> port)."""
    ports = ports or AZURITE_PORTS
    parts = [
        "DefaultEndpointsProtocol=http",
        f"AccountName={AZURITE_ACCOUNT}",
        f"AccountKey={AZURITE_KEY}",
    ]
    parts += [f"{svc}Endpoint=http://{host}:{port}/{AZURITE_ACCOUNT}" for svc, port in ports.items()]
    return ";".join(parts) + ";"


def parse_connection_string(value: str) -> dict[str, str]:
    """Split `Key=Value;Key=Value` (values may contain '=') into a dict."""
    out: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, sep, val = part.partition("=")
        if not sep:
            raise ValueError("is not a storage connection string (expected Key=Value pairs)")
        out[key.strip()] = val.strip()
    return out


class StorageSettings(BaseModel):
    """Where Table, Queue and Blob Storage are, and how to authenticate.

    Either a connection string (Azurite, or a key-based account) or, in Azure, identity-based
    access: the account name (or service URIs) plus the managed identity's client id.
    """

    model_config = ConfigDict(frozen=True)

    connection_string: SecretStr | None = None
    account_name: str | None = None
    table_uri: str | None = None
    queue_uri: str | None = None
    blob_uri: str | None = None
    client_id: str | None = None

    @model_validator(mode="after")
    def _one_way_in(self) -> StorageSettings:
        if (
            self.connection_string is None
            and not self.account_name
            and not (self.table_uri and self.queue_uri and self.blob_uri)
        ):
            raise ValueError(
                "is missing: set it to a storage connection string (locally "
                "'UseDevelopmentStorage=true'), or AzureWebJobsStorage__accountName for "
                "managed-identity access"
            )
        return self

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None

    def service_uri(self, service: str) -> str:
        """`service` is 'table', 'queue' or 'blob'."""
        explicit = {"table": self.table_uri, "queue": self.queue_uri, "blob": self.blob_uri}[service]
        if explicit:
            return explicit
        if self.connection_string is not None:
            parts = parse_connection_string(self.connection_string.get_secret_value())
            endpoint = parts.get(f"{service.capitalize()}Endpoint")
            if endpoint:
                return endpoint
            protocol = parts.get("DefaultEndpointsProtocol", "https")
            suffix = parts.get("EndpointSuffix", "core.windows.net")
            return f"{protocol}://{parts['AccountName']}.{service}.{suffix}"
        return f"https://{self.account_name}.{service}.core.windows.net"


class LogFormat(StrEnum):
    FIELDS = "fields"  # the context as record attributes
    MESSAGE = "message"  # also appended to the message as JSON (Azure: Application Insights)


class SecretsProvider(StrEnum):
    LOCAL = "local"
    KEYVAULT = "keyvault"


def _valid_ncrontab(value: str) -> str:
    if value.startswith("%") and value.endswith("%"):
        return value  # an app-setting reference, resolved by the Functions host
    fields = value.split()
    if len(fields) != 6 or not croniter.is_valid(value, second_at_beginning=True):
        raise ValueError(
            f"{value!r} is not a six-field NCRONTAB expression "
            "('{second} {minute} {hour} {day} {month} {day-of-week}')"
        )
    return value


def _valid_table_prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,19}", value):
        raise ValueError("must be 1-20 letters or digits, starting with a letter")
    return value


Ncrontab = Annotated[str, AfterValidator(_valid_ncrontab)]


def _sha256_digests(value: object) -> tuple[str, ...]:
    # One or more SHA-256 hex digests, comma-separated (two while a key is being rotated).
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        raise ValueError("must be SHA-256 hex digests, comma-separated")
    digests = tuple(str(part).strip().lower() for part in value if str(part).strip())
    for digest in digests:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("must be SHA-256 hex digests (64 hex characters each), comma-separated")
    return digests


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (where plain http is allowed for tests)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _valid_graph_base_url(value: str) -> str:
    # Tokens and mail go to this URL: https only, except plain http on loopback (a local test
    # server). The SDK fills `{+baseurl}` with it, so it must be exactly scheme://host/version.
    parts = urlsplit(value.strip())
    host = parts.hostname or ""
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(host)):
        raise ValueError("must be an https:// URL (http:// only on loopback)")
    if not host or parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must be scheme://host[:port]/version, nothing more")
    if parts.path.strip("/") == "":
        raise ValueError("must end in the Graph API version, e.g. https://graph.microsoft.com/v1.0")
    return value.strip().rstrip("/")


def _valid_authority_host(value: str) -> str:
    # azure-identity refuses a non-TLS authority ("must be a TLS protected (https) URL"; FACTS):
    # fail at start-up with the setting's name rather than at the first token request.
    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("must be an https:// URL, e.g. https://login.microsoftonline.com")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must be the identity platform's host only (https://host[:port]), no path")
    return value.strip().rstrip("/")


def _valid_ca_bundle(value: Path) -> Path:
    # Loaded now so that a wrong path or a non-PEM file is named at start-up, not as a TLS
    # failure on the first Graph call.
    if not value.is_file():
        raise ValueError("must be the path of a PEM file of CA certificates (no such file)")
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(value))
    except (ssl.SSLError, OSError, ValueError):
        raise ValueError("is not a readable PEM file of CA certificates") from None
    return value


class Settings(BaseModel):
    """Every setting the app reads. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    storage: StorageSettings
    table_prefix: Annotated[str, AfterValidator(_valid_table_prefix)] = Field(
        "bridge", alias="BRIDGE_TABLE_PREFIX"
    )
    secrets_provider: SecretsProvider = Field(SecretsProvider.LOCAL, alias="SECRETS_PROVIDER")
    key_vault_uri: str | None = Field(None, alias="KEY_VAULT_URI")
    local_secrets_dir: Path = Field(Path(".local/secrets"), alias="LOCAL_SECRETS_DIR")
    secrets_cache_seconds: int = Field(300, ge=0, le=86_400, alias="SECRETS_CACHE_SECONDS")
    managed_identity_client_id: str | None = Field(None, alias="AZURE_CLIENT_ID")
    # The deployment's own app registration (made by infra/): tenants in `managed` mode use it
    # through the managed identity, secretless.
    bridge_app_client_id: str | None = Field(None, alias="BRIDGE_APP_CLIENT_ID")
    # The Function App's public https URL, for the delegated sign-in's redirect URI (default:
    # the URL the start request came to).
    bridge_public_url: str | None = Field(None, alias="BRIDGE_PUBLIC_URL")
    housekeeping_schedule: Ncrontab = Field("0 17 3 * * *", alias="HOUSEKEEPING_SCHEDULE")
    run_retention_days: int = Field(30, ge=1, le=3650, alias="RUN_RETENTION_DAYS")
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", alias="LOG_LEVEL")
    # `message` in Azure: the Functions Python worker forwards a record's message to Application
    # Insights and drops its attributes, so the context (tenant, run id, function, extras) must
    # travel in the message to be queryable; `fields` keeps it in attributes (the local host).
    log_format: LogFormat = Field(LogFormat.FIELDS, alias="LOG_FORMAT")
    # Microsoft Graph. Locally the base URL, authority and CA point at the Graph emulator
    # (devtools/graph_emulator): the same gateway code runs against it.
    graph_base_url: Annotated[str, AfterValidator(_valid_graph_base_url)] = Field(
        "https://graph.microsoft.com/v1.0", alias="GRAPH_BASE_URL"
    )
    graph_authority_host: Annotated[str, AfterValidator(_valid_authority_host)] = Field(
        "https://login.microsoftonline.com", alias="GRAPH_AUTHORITY_HOST"
    )
    # Trusted in addition to the public roots (the emulator's generated CA, or a corporate
    # TLS-inspecting proxy's).
    graph_ca_bundle: Annotated[Path, AfterValidator(_valid_ca_bundle)] | None = Field(
        None, alias="GRAPH_CA_BUNDLE"
    )
    # How long one Graph request may spend waiting on Retry-After and backoff before the caller
    # gets Throttled/GraphUnavailable and requeues; bounded well below a queue invocation's time.
    graph_retry_budget_seconds: float = Field(60.0, ge=0, le=600, alias="GRAPH_RETRY_BUDGET_SECONDS")
    graph_timeout_seconds: float = Field(30.0, gt=0, le=300, alias="GRAPH_TIMEOUT_SECONDS")
    # The operator API's key as SHA-256 digest(s), so no secret sits in app settings; unset =
    # the operator API refuses every call. `python -m core.operator_auth` makes a key.
    operator_key_sha256: Annotated[tuple[str, ...], BeforeValidator(_sha256_digests)] = Field(
        (), alias="BRIDGE_OPERATOR_KEY_SHA256"
    )
    # How long a tenant's previous API key keeps working after a rotation.
    api_key_grace_hours: float = Field(24.0, ge=0, le=720, alias="API_KEY_GRACE_HOURS")
    # Delivery to host webhooks (core/host). A failed POST is retried with exponential backoff
    # and full jitter (base, doubling, capped) until the event is older than the retry budget,
    # then dead-lettered; the 24 h default comfortably outlasts an hour-long host outage (R8).
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=120, alias="WEBHOOK_TIMEOUT_SECONDS")
    webhook_backoff_base_seconds: float = Field(2.0, gt=0, le=3600, alias="WEBHOOK_BACKOFF_BASE_SECONDS")
    webhook_backoff_cap_seconds: float = Field(300.0, gt=0, le=86_400, alias="WEBHOOK_BACKOFF_CAP_SECONDS")
    webhook_retry_budget_seconds: float = Field(
        86_400.0, gt=0, le=30 * 86_400, alias="WEBHOOK_RETRY_BUDGET_SECONDS"
    )
    # How long a reserved outbox sequence may stay unwritten before readers close it as a gap.
    outbox_gap_grace_seconds: float = Field(10.0, gt=0, le=3600, alias="OUTBOX_GAP_GRACE_SECONDS")
    outbox_retention_days: int = Field(30, ge=1, le=3650, alias="OUTBOX_RETENTION_DAYS")
    # Calendar sync down (core/calendar). The timer fans out one queue message per down-linked
    # calendar; each reads `calendarView/delta` over [now - days back, now + days ahead], padded
    # ahead by the slack so the delta link stays usable for that many days before the window
    # has to roll forward (which takes one full re-read).
    calendar_sync_schedule: Ncrontab = Field("0 */15 * * * *", alias="CALENDAR_SYNC_SCHEDULE")
    calendar_days_back: int = Field(30, ge=0, le=365, alias="CALENDAR_SYNC_DAYS_BACK")
    calendar_days_ahead: int = Field(365, ge=1, le=1825, alias="CALENDAR_SYNC_DAYS_AHEAD")
    calendar_window_slack_days: int = Field(7, ge=1, le=90, alias="CALENDAR_SYNC_WINDOW_SLACK_DAYS")
    # A calendar whose change-notification subscription is healthy is read by the timer only
    # when its last successful sync is older than this (0: every timer run, as without one).
    calendar_sync_subscribed_hours: float = Field(6.0, ge=0, le=168, alias="CALENDAR_SYNC_SUBSCRIBED_HOURS")
    # Change notifications (core/subscriptions), on when BRIDGE_PUBLIC_URL is set: how long a
    # subscription is asked for (Outlook grants at most 4,230 or 10,080 minutes, by source; it
    # is renewed once half is left) and when the timer reconciles and renews them.
    graph_subscription_minutes: int = Field(4230, ge=45, le=10_080, alias="GRAPH_SUBSCRIPTION_MINUTES")
    graph_subscription_schedule: Ncrontab = Field("0 20 * * * *", alias="GRAPH_SUBSCRIPTION_SCHEDULE")
    # Mail document import (core/mail). The timer fans out one queue message per import; the
    # host's download URLs for staged documents live this long (a delegation key's 7 days at most).
    mail_import_schedule: Ncrontab = Field("0 0 */2 * * *", alias="MAIL_IMPORT_SCHEDULE")
    mail_document_url_seconds: int = Field(7 * 86_400, ge=1, le=7 * 86_400, alias="MAIL_DOCUMENT_URL_SECONDS")
    # Sending mail for hosts (core/mail/outgoing.py): the most a mail may weigh as Exchange counts
    # it, files base64-encoded (Exchange Online's default send size limit is 35 MB; an admin can
    # raise a mailbox's to 150 MB).
    mail_send_max_mb: int = Field(35, ge=1, le=150, alias="MAIL_SEND_MAX_MB")
    version: str = __version__

    @model_validator(mode="after")
    def _key_vault_needs_uri(self) -> Settings:
        if self.secrets_provider is SecretsProvider.KEYVAULT:
            if not self.key_vault_uri:
                raise ValueError("KEY_VAULT_URI is missing: SECRETS_PROVIDER=keyvault needs the vault URI")
            if not self.key_vault_uri.startswith("https://"):
                raise ValueError("KEY_VAULT_URI must be an https:// URL")
        return self

    @model_validator(mode="after")
    def _backoff_cap_not_below_base(self) -> Settings:
        if self.webhook_backoff_cap_seconds < self.webhook_backoff_base_seconds:
            raise ValueError("WEBHOOK_BACKOFF_CAP_SECONDS must be at least WEBHOOK_BACKOFF_BASE_SECONDS")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: `os.environ`); raise one `SettingsError`
        naming every missing or invalid setting."""
        env = os.environ if env is None else env
        raw: dict[str, Any] = {
            name: value for name, value in env.items() if name in _ENV_NAMES and value.strip() != ""
        }
        problems: list[str] = []
        storage: StorageSettings | None = None
        try:
            storage = StorageSettings.model_validate(_storage_from_env(env))
        except ValidationError as exc:
            problems += [f"AzureWebJobsStorage {_message(err)}" for err in exc.errors()]
        except ValueError as exc:
            problems.append(f"AzureWebJobsStorage {exc}")
        try:
            settings = cls.model_validate({**raw, "storage": storage or _PLACEHOLDER_STORAGE})
        except ValidationError as exc:
            problems += [_describe(err) for err in exc.errors()]
        if problems:
            raise SettingsError(problems)
        return settings


_ENV_NAMES = {field.alias for field in Settings.model_fields.values() if field.alias is not None}
# Settings whose wrong values are not repeated in errors: an operator may paste the key itself
# where its digest belongs.
_NOT_ECHOED = {"BRIDGE_OPERATOR_KEY_SHA256"}
_PLACEHOLDER_STORAGE = StorageSettings(account_name="placeholder")


def _storage_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    prefix = "AzureWebJobsStorage"
    conn = env.get(prefix, "").strip()
    if conn:
        if conn.replace(" ", "").lower() == "usedevelopmentstorage=true":
            conn = azurite_connection_string()
        else:
            parsed = parse_connection_string(conn)  # raises ValueError with a clear message
            if "AccountName" not in parsed and not any(k.endswith("Endpoint") for k in parsed):
                raise ValueError("has no AccountName and no service endpoints")
        return {"connection_string": conn, "client_id": env.get(f"{prefix}__clientId")}
    return {
        "account_name": env.get(f"{prefix}__accountName") or None,
        "table_uri": env.get(f"{prefix}__tableServiceUri") or None,
        "queue_uri": env.get(f"{prefix}__queueServiceUri") or None,
        "blob_uri": env.get(f"{prefix}__blobServiceUri") or None,
        "client_id": env.get(f"{prefix}__clientId") or None,
    }


def _message(err: Any) -> str:
    msg = str(err.get("msg", "is invalid"))
    return msg.removeprefix("Value error, ")


def _describe(err: Any) -> str:
    loc = [str(part) for part in err.get("loc", ())]
    name = loc[0] if loc else ""
    msg = _message(err)
    if not name:
        return msg
    if err.get("type") == "missing":
        return f"{name} is missing"
    if name == "storage":
        return f"AzureWebJobsStorage {msg}"
    if name not in _ENV_NAMES:
        return f"{name} is not a known setting"
    value = err.get("input")
    shown = f" (got {value!r})" if isinstance(value, str) and len(value) < 100 else ""
    if name in _NOT_ECHOED:
        shown = ""
    return f"{name} {msg}{shown}"
