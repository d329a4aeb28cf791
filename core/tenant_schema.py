"""The operator API's tenant shapes: what a create or patch body may say, the pure planning of
the stored tenant and the secret writes from it, and the view the API returns.

Write-only secrets (the Graph client secret, the webhook signing secret) never reach a
`Tenant`: the plan carries them as `SecretStr` to the secrets port, and the tenant keeps only
their names. The view says whether each is set, never its value, and never a key hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

from core.request_errors import FieldProblem, InvalidInput
from core.secrets import secret_name
from core.store.records import CredentialMode, Tenant
from core.validators import (
    ApiModel,
    DisplayName,
    Guid,
    Language,
    TenantId,
    TimeZoneName,
    WebhookUrl,
    plain_text,
)

MAX_GRACE_HOURS = 720


def client_secret_name(tenant_id: str) -> str:
    return secret_name("tenant", tenant_id, "client-secret")


def webhook_secret_name(tenant_id: str) -> str:
    return secret_name("tenant", tenant_id, "webhook-signing")


def _valid_client_secret(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value()
    if not raw or len(raw) > 1024:
        raise ValueError("must be 1-1024 characters")
    plain_text(raw)
    return value


def _valid_webhook_secret(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value()
    if not 32 <= len(raw) <= 256:
        raise ValueError("must be 32-256 characters (omit it to have one generated)")
    if not all("!" <= ch <= "~" for ch in raw):
        raise ValueError("must be printable ASCII without spaces")
    return value


ClientSecret = Annotated[SecretStr, AfterValidator(_valid_client_secret)]
WebhookSecret = Annotated[SecretStr, AfterValidator(_valid_webhook_secret)]


# --- create ------------------------------------------------------------------------------------


class GraphIn(ApiModel):
    tenant_id: Guid
    client_id: Guid | None = None
    credential_mode: CredentialMode
    client_secret: ClientSecret | None = None


class HostIn(ApiModel):
    webhook_url: WebhookUrl | None = None
    webhook_secret: WebhookSecret | None = None


class DefaultsIn(ApiModel):
    language: Language = "en"
    time_zone: TimeZoneName = "UTC"


class TenantCreate(ApiModel):
    id: TenantId | None = None
    display_name: DisplayName
    enabled: bool = True
    graph: GraphIn
    host: HostIn = Field(default_factory=HostIn)
    defaults: DefaultsIn = Field(default_factory=DefaultsIn)


# --- patch (JSON merge patch: absent = unchanged, null = removed where that is allowed) -------


def _not_null(value: object) -> object:
    if value is None:
        raise ValueError("must not be null (leave the field out to keep its value)")
    return value


NotNull = BeforeValidator(_not_null)


class GraphPatch(ApiModel):
    tenant_id: Annotated[Guid | None, NotNull] = None
    client_id: Guid | None = None  # null: the deployment's own app registration (managed mode)
    credential_mode: Annotated[CredentialMode | None, NotNull] = None
    client_secret: Annotated[ClientSecret | None, NotNull] = None


class HostPatch(ApiModel):
    webhook_url: WebhookUrl | None = None  # null: no webhook, the host pulls the event feed
    webhook_secret: Annotated[WebhookSecret | None, NotNull] = None


class DefaultsPatch(ApiModel):
    language: Annotated[Language | None, NotNull] = None
    time_zone: Annotated[TimeZoneName | None, NotNull] = None


class TenantPatch(ApiModel):
    display_name: Annotated[DisplayName | None, NotNull] = None
    enabled: Annotated[bool | None, NotNull] = None
    graph: Annotated[GraphPatch | None, NotNull] = None
    host: Annotated[HostPatch | None, NotNull] = None
    defaults: Annotated[DefaultsPatch | None, NotNull] = None


class RotateIn(ApiModel):
    # 0 revokes the previous keys at once (a leaked key); absent = API_KEY_GRACE_HOURS. Strict:
    # `false` or "0" must not be read as 0 and revoke every key.
    grace_hours: float | None = Field(None, ge=0, le=MAX_GRACE_HOURS, strict=True)


def _credential_problems(
    mode: CredentialMode, client_id: str | None, has_secret: bool, new_secret: bool
) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    if mode in (CredentialMode.CLIENT_SECRET, CredentialMode.DELEGATED) and client_id is None:
        problems.append(FieldProblem("graph.clientId", f"is required with credentialMode {mode.value}"))
    if mode is CredentialMode.CLIENT_SECRET and not has_secret:
        problems.append(FieldProblem("graph.clientSecret", "is required with credentialMode client_secret"))
    if mode is CredentialMode.MANAGED_IDENTITY and new_secret:
        # delegated may have one: a confidential client's (redirect URI registered as Web)
        problems.append(
            FieldProblem("graph.clientSecret", "is only used with credentialMode client_secret or delegated")
        )
    return problems


# --- plans -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretWrites:
    """What a change does to the secrets port. Values stay `SecretStr` until written."""

    set: dict[str, SecretStr] = field(default_factory=dict)
    delete: tuple[str, ...] = ()


def plan_create(
    body: TenantCreate, tenant_id: str, now: datetime, webhook_secret: SecretStr
) -> tuple[Tenant, SecretWrites]:
    """The tenant to insert (without keys) and the secrets to write: `webhook_secret` is the
    body's or one the caller generated."""
    graph = body.graph
    problems = _credential_problems(
        graph.credential_mode,
        graph.client_id,
        graph.client_secret is not None,
        graph.client_secret is not None,
    )
    if problems:
        raise InvalidInput(problems)
    writes: dict[str, SecretStr] = {webhook_secret_name(tenant_id): webhook_secret}
    if graph.client_secret is not None:
        writes[client_secret_name(tenant_id)] = graph.client_secret
    tenant = Tenant(
        tenant_id=tenant_id,
        display_name=body.display_name,
        enabled=body.enabled,
        graph_tenant_id=graph.tenant_id,
        graph_client_id=graph.client_id,
        credential_mode=graph.credential_mode,
        client_secret_name=client_secret_name(tenant_id) if graph.client_secret is not None else None,
        webhook_secret_name=webhook_secret_name(tenant_id),
        webhook_url=body.host.webhook_url,
        language=body.defaults.language,
        time_zone=body.defaults.time_zone,
        created_at=now,
        updated_at=now,
    )
    return tenant, SecretWrites(set=writes)


def plan_patch(current: Tenant, patch: TenantPatch, now: datetime) -> tuple[Tenant, SecretWrites]:
    """The tenant after merging `patch` and the secret writes it implies. Raises InvalidInput
    for credential settings that do not fit together (checked on the merged result, so a patch
    may switch mode and add the secret at once)."""
    graph = patch.graph or GraphPatch()
    host = patch.host or HostPatch()
    defaults = patch.defaults or DefaultsPatch()
    mode = graph.credential_mode or current.credential_mode
    client_id = graph.client_id if "client_id" in graph.model_fields_set else current.graph_client_id
    new_secret = graph.client_secret
    problems = _credential_problems(
        mode,
        client_id,
        current.client_secret_name is not None or new_secret is not None,
        new_secret is not None,
    )
    if problems:
        raise InvalidInput(problems)

    writes: dict[str, SecretStr] = {}
    deletes: list[str] = []
    secret_ref = current.client_secret_name
    if new_secret is not None:
        secret_ref = client_secret_name(current.tenant_id)
        writes[secret_ref] = new_secret
    elif mode is CredentialMode.MANAGED_IDENTITY and secret_ref is not None:
        deletes.append(secret_ref)  # a secret the mode does not use is a liability: remove it
        secret_ref = None
    webhook_ref = current.webhook_secret_name or webhook_secret_name(current.tenant_id)
    if host.webhook_secret is not None:
        writes[webhook_ref] = host.webhook_secret

    changes: dict[str, Any] = {
        "display_name": patch.display_name or current.display_name,
        "enabled": current.enabled if patch.enabled is None else patch.enabled,
        "graph_tenant_id": graph.tenant_id or current.graph_tenant_id,
        "graph_client_id": client_id,
        "credential_mode": mode,
        "client_secret_name": secret_ref,
        "webhook_secret_name": webhook_ref,
        "webhook_url": host.webhook_url if "webhook_url" in host.model_fields_set else current.webhook_url,
        "language": defaults.language or current.language,
        "time_zone": defaults.time_zone or current.time_zone,
    }
    updated = current.model_copy(update=changes)
    if updated.model_dump() != current.model_dump() or writes or deletes:
        updated = updated.model_copy(update={"updated_at": now})
    return updated, SecretWrites(set=writes, delete=tuple(deletes))


# --- the view ----------------------------------------------------------------------------------


def tenant_view(tenant: Tenant, now: datetime, *, admin_consent_url: str | None = None) -> dict[str, Any]:
    """What the operator API shows of a tenant: no secret values, no key hashes; in managed mode
    the URL its admin opens once to consent to the deployment's app."""
    view: dict[str, Any] = {
        "id": tenant.tenant_id,
        "displayName": tenant.display_name,
        "enabled": tenant.enabled,
        "graph": {
            "tenantId": tenant.graph_tenant_id,
            "clientId": tenant.graph_client_id,
            "credentialMode": tenant.credential_mode.value,
            "clientSecretSet": tenant.client_secret_name is not None,
        },
        "host": {
            "webhookUrl": tenant.webhook_url,
            "webhookSecretSet": tenant.webhook_secret_name is not None,
        },
        "defaults": {"language": tenant.language, "timeZone": tenant.time_zone},
        "apiKeys": [
            {
                "keyId": entry.key_id,
                "createdAt": entry.created_at.isoformat(),
                "expiresAt": entry.expires_at.isoformat() if entry.expires_at else None,
                "active": entry.live(now),
            }
            for entry in tenant.api_keys
        ],
        "createdAt": tenant.created_at.isoformat() if tenant.created_at else None,
        "updatedAt": tenant.updated_at.isoformat() if tenant.updated_at else None,
    }
    if admin_consent_url is not None:
        view["graph"]["adminConsentUrl"] = admin_consent_url
    return view
