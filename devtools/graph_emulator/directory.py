"""The emulated Entra ID directory: tenants, their app registrations, users, managed identities.

This is the state the identity platform (identity.py) issues tokens from and the Graph surface
resolves `/users/{id|upn}` against. Permissions are plain Graph permission names
("Calendars.ReadWrite"); granting or revoking one changes what the *next* token carries, like
admin consent does in Entra (a token already issued keeps the roles it was issued with).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devtools.graph_emulator.ids import guid

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 - an audience, not a secret


@dataclass
class FederatedCredential:
    """A federated identity credential on an app: assertions whose `iss`, `sub` and `aud` match
    are accepted instead of a secret (how a managed identity signs in as the app)."""

    issuer: str
    subject: str
    audiences: tuple[str, ...] = (TOKEN_EXCHANGE_AUDIENCE,)
    name: str = "federated"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "issuer": self.issuer,
            "subject": self.subject,
            "audiences": list(self.audiences),
        }


@dataclass
class App:
    client_id: str
    display_name: str
    tenant_id: str
    secrets: list[str] = field(default_factory=list)
    application_permissions: set[str] = field(default_factory=set)  # app roles granted (admin consent)
    delegated_permissions: set[str] = field(default_factory=set)  # scopes users have consented to
    federated_credentials: list[FederatedCredential] = field(default_factory=list)
    redirect_uris: list[str] = field(default_factory=list)  # empty: any redirect URI is accepted
    service_principal_id: str = field(default_factory=guid)

    def to_json(self) -> dict[str, Any]:
        return {
            "clientId": self.client_id,
            "displayName": self.display_name,
            "tenantId": self.tenant_id,
            "servicePrincipalId": self.service_principal_id,
            "applicationPermissions": sorted(self.application_permissions),
            "delegatedPermissions": sorted(self.delegated_permissions),
            "federatedCredentials": [f.to_json() for f in self.federated_credentials],
            "redirectUris": list(self.redirect_uris),
            "secretCount": len(self.secrets),
        }


@dataclass
class User:
    id: str
    user_principal_name: str
    display_name: str
    tenant_id: str
    mail: str
    given_name: str | None = None
    surname: str | None = None
    job_title: str | None = None

    def to_graph(self) -> dict[str, Any]:
        return {
            "businessPhones": [],
            "displayName": self.display_name,
            "givenName": self.given_name,
            "jobTitle": self.job_title,
            "mail": self.mail,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": self.surname,
            "userPrincipalName": self.user_principal_name,
            "id": self.id,
        }


@dataclass
class ManagedIdentity:
    """A user-assigned managed identity: `client_id` is what code asks for, `principal_id` is the
    `sub` of its tokens (and what a federated credential names as subject)."""

    client_id: str
    principal_id: str
    tenant_id: str

    def to_json(self) -> dict[str, Any]:
        return {"clientId": self.client_id, "principalId": self.principal_id, "tenantId": self.tenant_id}


@dataclass
class Tenant:
    id: str
    name: str
    domain: str
    apps: dict[str, App] = field(default_factory=dict)  # by client id (lower case)
    users: dict[str, User] = field(default_factory=dict)  # by id
    managed_identities: dict[str, ManagedIdentity] = field(default_factory=dict)  # by client id

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "domain": self.domain,
            "apps": [a.to_json() for a in self.apps.values()],
            "users": [u.to_graph() for u in self.users.values()],
            "managedIdentities": [m.to_json() for m in self.managed_identities.values()],
        }


class DirectoryError(ValueError):
    """A control-API request that contradicts the directory (duplicate, unknown tenant...)."""


class Directory:
    def __init__(self) -> None:
        self.tenants: dict[str, Tenant] = {}

    def reset(self) -> None:
        self.tenants.clear()

    # -- lookups ---------------------------------------------------------------------------

    def tenant(self, key: str) -> Tenant | None:
        """A tenant by id or by (verified) domain name, case-insensitive."""
        key = key.lower()
        found = self.tenants.get(key)
        if found is not None:
            return found
        return next((t for t in self.tenants.values() if t.domain.lower() == key), None)

    def app(self, tenant_id: str, client_id: str) -> App | None:
        tenant = self.tenant(tenant_id)
        return None if tenant is None else tenant.apps.get(client_id.lower())

    def user(self, tenant_id: str, key: str) -> User | None:
        """A user of one tenant by object id or by UPN / mail (case-insensitive)."""
        tenant = self.tenant(tenant_id)
        return None if tenant is None else _find_user(tenant, key)

    def any_user(self, key: str) -> User | None:
        """A user of any tenant (the control API names users without their tenant)."""
        for tenant in self.tenants.values():
            found = _find_user(tenant, key)
            if found is not None:
                return found
        return None

    def users(self) -> list[User]:
        return [u for t in self.tenants.values() for u in t.users.values()]

    def managed_identity(self, client_id: str) -> ManagedIdentity | None:
        for tenant in self.tenants.values():
            found = tenant.managed_identities.get(client_id.lower())
            if found is not None:
                return found
        return None

    # -- changes ---------------------------------------------------------------------------

    def add_tenant(
        self, tenant_id: str | None = None, name: str = "Contoso", domain: str | None = None
    ) -> Tenant:
        tid = (tenant_id or guid()).lower()
        if tid in self.tenants:
            raise DirectoryError(f"tenant {tid} already exists")
        domain = domain or f"{name.lower().replace(' ', '')}{len(self.tenants) or ''}.onmicrosoft.com"
        tenant = Tenant(tid, name, domain)
        self.tenants[tid] = tenant
        return tenant

    def _tenant(self, tenant_id: str) -> Tenant:
        tenant = self.tenant(tenant_id)
        if tenant is None:
            raise DirectoryError(f"unknown tenant {tenant_id}")
        return tenant

    def add_app(
        self,
        tenant_id: str,
        *,
        client_id: str | None = None,
        display_name: str = "m365-bridge",
        secrets: list[str] | None = None,
        application_permissions: set[str] | list[str] | None = None,
        delegated_permissions: set[str] | list[str] | None = None,
        federated_credentials: list[FederatedCredential] | None = None,
        redirect_uris: list[str] | None = None,
    ) -> App:
        tenant = self._tenant(tenant_id)
        cid = (client_id or guid()).lower()
        if cid in tenant.apps:
            raise DirectoryError(f"app {cid} already exists in tenant {tenant.id}")
        app = App(
            client_id=cid,
            display_name=display_name,
            tenant_id=tenant.id,
            secrets=list(secrets or []),
            application_permissions=set(application_permissions or ()),
            delegated_permissions=set(delegated_permissions or ()),
            federated_credentials=list(federated_credentials or []),
            redirect_uris=list(redirect_uris or []),
        )
        tenant.apps[cid] = app
        return app

    def add_user(
        self,
        tenant_id: str,
        user_principal_name: str,
        *,
        display_name: str | None = None,
        user_id: str | None = None,
        mail: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
        job_title: str | None = None,
    ) -> User:
        tenant = self._tenant(tenant_id)
        if _find_user(tenant, user_principal_name) is not None:
            raise DirectoryError(f"user {user_principal_name} already exists")
        uid = (user_id or guid()).lower()
        user = User(
            id=uid,
            user_principal_name=user_principal_name,
            display_name=display_name or user_principal_name.split("@")[0],
            tenant_id=tenant.id,
            mail=mail or user_principal_name,
            given_name=given_name,
            surname=surname,
            job_title=job_title,
        )
        tenant.users[uid] = user
        return user

    def add_managed_identity(
        self, tenant_id: str, *, client_id: str | None = None, principal_id: str | None = None
    ) -> ManagedIdentity:
        tenant = self._tenant(tenant_id)
        mi = ManagedIdentity((client_id or guid()).lower(), (principal_id or guid()).lower(), tenant.id)
        tenant.managed_identities[mi.client_id] = mi
        return mi


def _find_user(tenant: Tenant, key: str) -> User | None:
    lowered = key.lower()
    found = tenant.users.get(lowered)
    if found is not None:
        return found
    return next(
        (u for u in tenant.users.values() if lowered in (u.user_principal_name.lower(), u.mail.lower())),
        None,
    )
