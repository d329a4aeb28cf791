"""Tenants: who a request acts for, and the operator's create/read/update/delete of them.

`authenticate` is the one check every tenant route goes through (via `functions.http.
tenant_endpoint`): the key names its tenant, that tenant's stored hashes verify it, and the
tenant must be the one in the route. A key of tenant A on tenant B's route gets the same answer
as a tenant that does not exist, so tenant ids cannot be probed.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import SecretStr

from core import apikeys
from core.errors import AlreadyExists, NotFound, StaleEtag
from core.host.purge import purge_delivery_state
from core.request_errors import (
    EditConflict,
    ItemNotFound,
    PreconditionFailed,
    TenantDisabled,
    TenantInaccessible,
    Unauthenticated,
)
from core.runs import Clock
from core.secrets import SecretStore
from core.store import Tables
from core.store.keys import escape_key
from core.store.records import (
    BookingCalendar,
    CalendarSyncState,
    DelegatedGrant,
    EventMapEntry,
    EventTransaction,
    HostAppointment,
    MailImport,
    MailImportState,
    MailLedgerEntry,
    MailSender,
    OutboxEvent,
    OutgoingMessage,
    Presence,
    PresenceSettings,
    Reservation,
    ResourceLink,
    Run,
    SlotClaim,
    Subscription,
    Tenant,
)
from core.store.repository import Record, Repository
from core.tenant_schema import (
    RotateIn,
    SecretWrites,
    TenantCreate,
    TenantPatch,
    client_secret_name,
    plan_create,
    plan_patch,
    webhook_secret_name,
)
from core.validators import TENANT_ID_PATTERN, parse
from core.versions import check_preconditions

if TYPE_CHECKING:
    from core.bootstrap import Container

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TenantContext:
    """What a tenant route's handler gets: the authenticated tenant and the app's services."""

    tenant: Tenant
    app: Container

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id


async def authenticate(
    tenants: Repository[Tenant], route_tenant_id: str, api_key: str | None, now: datetime
) -> Tenant:
    """The tenant `api_key` belongs to, if that is `route_tenant_id` and it is enabled.

    Raises `Unauthenticated` for no key or a key that verifies for no tenant,
    `TenantInaccessible` for a valid key of another tenant (whether or not the route's tenant
    exists), `TenantDisabled` for the tenant's own key while the operator has disabled it.
    One point read either way: the key says which tenant's hashes to check."""
    if not api_key:
        raise Unauthenticated("This route needs the tenant's API key: send 'Authorization: Bearer <key>'.")
    owner_id = apikeys.key_tenant(api_key)
    owner = await tenants.get(*Tenant.key(owner_id)) if owner_id else None
    if owner is None or not apikeys.verify(owner.api_keys, api_key, now):
        log.info("tenant API key rejected", extra={"route_tenant_id": route_tenant_id})
        raise Unauthenticated("The API key is not valid (it may have expired after a rotation).")
    if owner.tenant_id != route_tenant_id:
        log.warning(
            "tenant API key used on another tenant's route",
            extra={"key_tenant_id": owner.tenant_id, "route_tenant_id": route_tenant_id},
        )
        raise TenantInaccessible(NOT_FOUND_DETAIL)
    if not owner.enabled:
        raise TenantDisabled(f"Tenant '{owner.tenant_id}' is disabled; ask the operator to enable it.")
    return owner


# One text for "no such tenant" and "not your tenant", so the two cannot be told apart.
NOT_FOUND_DETAIL = "No such tenant, or the API key does not give access to it."


# --- the operator's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedTenant:
    """A tenant as just created or re-keyed, with what is shown exactly once."""

    tenant: Tenant
    api_key: str
    webhook_secret: str | None = None

    def __repr__(self) -> str:  # never the key or the secret
        return f"IssuedTenant(tenant_id={self.tenant.tenant_id!r})"


# Tables whose partition is exactly the tenant id: emptied when the tenant is deleted. (Tables
# partitioned by tenant|… belong to capabilities that clean up after themselves.)
TENANT_PARTITIONED: tuple[type[Record], ...] = (
    ResourceLink,
    BookingCalendar,
    SlotClaim,
    Reservation,
    CalendarSyncState,
    EventMapEntry,
    EventTransaction,
    HostAppointment,
    MailImport,
    MailImportState,
    MailLedgerEntry,
    MailSender,
    OutgoingMessage,
    Presence,
    PresenceSettings,
    DelegatedGrant,
    Subscription,
    OutboxEvent,
    Run,
)


class TenantService:
    """Create, read, update, delete and re-key tenants. Validation happens before any write, so
    invalid input changes nothing; the tenant row is written with its ETag, so of concurrent
    changes one wins and the others get PreconditionFailed (with If-Match) or EditConflict."""

    def __init__(
        self, tables: Tables, secrets: SecretStore, clock: Clock, *, grace: timedelta = timedelta(hours=24)
    ) -> None:
        self.tables = tables
        self.repo = tables.repo(Tenant)
        self.secrets = secrets
        self.clock = clock
        self.grace = grace

    async def create(self, body: object) -> IssuedTenant:
        spec = parse(TenantCreate, body)
        now = self.clock()
        tenant_id = spec.id or "t" + uuid.uuid4().hex[:16]
        generated: str | None = None
        webhook_secret = spec.host.webhook_secret
        if webhook_secret is None:
            generated = WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)
            webhook_secret = SecretStr(generated)
        tenant, writes = plan_create(spec, tenant_id, now, webhook_secret)
        key = apikeys.new_key(tenant_id, now)
        try:
            stored = await self.repo.insert(tenant.model_copy(update={"api_keys": [key.entry]}))
        except AlreadyExists:
            raise EditConflict(f"Tenant '{tenant_id}' exists already.") from None
        try:
            await self._write(writes)
        except BaseException:
            # The id is claimed before any secret is written (so a clash never overwrites another
            # tenant's secrets); a failed secret write gives it back.
            for name in writes.set:
                with contextlib.suppress(Exception):
                    await self.secrets.delete(name)
            with contextlib.suppress(Exception):
                await self.repo.delete(stored)
            raise
        log.info("tenant created", extra={"tenant_id": tenant_id, "key_id": key.entry.key_id})
        return IssuedTenant(stored, key.value, generated)

    async def get(self, tenant_id: str) -> Tenant:
        tenant = await self.repo.get(*Tenant.key(tenant_id)) if _plausible_id(tenant_id) else None
        if tenant is None:
            raise ItemNotFound(f"Tenant '{tenant_id}' does not exist.")
        return tenant

    async def list(self) -> list[Tenant]:
        return [tenant async for tenant in self.repo.list(Tenant.PARTITION)]

    async def update(self, tenant_id: str, body: object, if_match: str | None = None) -> Tenant:
        patch = parse(TenantPatch, body)
        current = await self.get(tenant_id)
        check_preconditions(current, if_match)
        updated, writes = plan_patch(current, patch, self.clock())
        if not writes.set and not writes.delete and updated.model_dump() == current.model_dump():
            return current  # nothing changes
        try:
            saved = await self.repo.save(updated)
        except (StaleEtag, NotFound):
            # Someone else wrote (or deleted) the tenant between our read and write: theirs stands,
            # and nothing of this request was applied (secrets are written after the row).
            if if_match:
                raise PreconditionFailed(
                    "The tenant changed since you read it; re-read it and retry."
                ) from None
            raise EditConflict(
                "The tenant changed while this request was applied; re-read it and retry."
            ) from None
        await self._write(writes)
        log.info("tenant updated", extra={"tenant_id": tenant_id, "secrets_written": len(writes.set)})
        return saved

    async def rotate_key(self, tenant_id: str, body: object) -> IssuedTenant:
        """A new key; the previous ones keep working for the grace period (`graceHours`, default
        API_KEY_GRACE_HOURS; 0 revokes them now)."""
        spec = parse(RotateIn, body)
        await self.get(tenant_id)
        now = self.clock()
        grace = self.grace if spec.grace_hours is None else timedelta(hours=spec.grace_hours)
        key = apikeys.new_key(tenant_id, now)

        def rotated(current: Tenant | None) -> Tenant:
            if current is None:
                raise ItemNotFound(f"Tenant '{tenant_id}' does not exist.")
            entries = apikeys.rotate(current.api_keys, key.entry, now, grace)
            return current.model_copy(update={"api_keys": entries, "updated_at": now})

        saved = await self.repo.mutate(*Tenant.key(tenant_id), rotated)
        log.info("tenant key rotated", extra={"tenant_id": tenant_id, "key_id": key.entry.key_id})
        return IssuedTenant(saved, key.value)

    async def delete(self, tenant_id: str, if_match: str | None = None) -> None:
        """Disable the tenant (its keys get 403 from now on), remove its secrets and its
        tenant-partitioned state, then delete its row. The row goes last, so a DELETE retried
        after a half-finished one finds the tenant and completes the cleanup, and its id cannot
        be taken by a new tenant until the old one is gone."""
        current = await self.get(tenant_id)
        check_preconditions(current, if_match)
        try:
            if current.enabled:
                current = await self.repo.save(
                    current.model_copy(update={"enabled": False, "updated_at": self.clock()})
                )
            removed = await self._purge(tenant_id)
            await self.repo.delete(current)
        except (StaleEtag, NotFound):
            raise EditConflict(
                "The tenant changed while it was being deleted; re-read it and retry."
            ) from None
        log.info("tenant deleted", extra={"tenant_id": tenant_id, "rows_removed": removed})

    async def _write(self, writes: SecretWrites) -> None:
        for name, value in writes.set.items():
            await self.secrets.set(name, value.get_secret_value())
        for name in writes.delete:
            await self.secrets.delete(name)

    async def _purge(self, tenant_id: str) -> int:
        """Remove the tenant's secrets and tenant-partitioned rows (idempotent)."""
        for name in (client_secret_name(tenant_id), webhook_secret_name(tenant_id)):
            await self.secrets.delete(name)
        removed = 0
        partition = escape_key(tenant_id)
        for record_type in TENANT_PARTITIONED:
            removed += await self.tables.store(record_type).delete_partition(partition)
        return removed + await purge_delivery_state(self.tables, tenant_id)


WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


def _plausible_id(tenant_id: str) -> bool:
    # Anything else cannot be a tenant: no store call for it (and no key-escaping surprises).
    return bool(TENANT_ID_PATTERN.fullmatch(tenant_id))
