"""A tenant's presence settings (`…/presence/settings`), its monitored users
(`…/presence/monitors/{email}`: enabled one by one, as in the guide) and what the switchboard
asks (`GET …/presence?users=`), answered from stored state without a Graph call."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from core.errors import AlreadyExists, NotFound
from core.presence.monitor import PresenceQueue, request_reads, settings_of
from core.request_errors import InvalidInput, ItemNotFound
from core.runs import Clock
from core.store import Tables
from core.store.records import Presence, PresenceSettings, PresenceStatus, Tenant
from core.validators import Account, ApiModel, parse, valid_display_name, valid_email

ShowAsName = Literal["free", "tentative", "busy", "oof", "workingElsewhere"]
MAX_USERS_PER_QUERY = 100


def _distinct(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("must not repeat a value")
    return values


class PresenceSettingsIn(ApiModel):
    busy_statuses: Annotated[list[ShowAsName], Field(min_length=1), AfterValidator(_distinct)] = Field(
        default_factory=lambda: list[ShowAsName](["busy"])
    )
    show_subjects: bool = True
    refresh_minutes: Annotated[int, Field(ge=1, le=60, strict=True)] = 5
    monitor_account: Account | None = None


class MonitorIn(ApiModel):
    display_name: Annotated[str, AfterValidator(valid_display_name)] | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def settings_view(settings: PresenceSettings) -> dict[str, Any]:
    return {
        "busyStatuses": settings.busy_statuses,
        "showSubjects": settings.show_subjects,
        "refreshMinutes": settings.refresh_minutes,
        "monitorAccount": settings.monitor_account,
        "lastReadAt": _iso(settings.last_poll_at),
    }


def presence_view(row: Presence) -> dict[str, Any]:
    out: dict[str, Any] = {
        "email": row.email,
        "displayName": row.display_name,
        "status": row.status.value,
        "since": _iso(row.since),
        "until": _iso(row.until),
        "showAs": row.show_as,
        "location": row.location,
        "readAt": _iso(row.read_at),
    }
    if row.subject is not None:
        out["subject"] = row.subject
    if row.status is PresenceStatus.UNKNOWN:
        out["reason"] = row.reason or "not read yet"
    return out


def _email(value: str, field: str = "email") -> str:
    try:
        return valid_email(value)
    except ValueError as exc:
        raise InvalidInput.one(field, str(exc)) from None


class PresenceService:
    def __init__(self, tables: Tables, queue: PresenceQueue, tenant: Tenant, clock: Clock) -> None:
        self._tables = tables
        self._rows = tables.repo(Presence)
        self._settings = tables.repo(PresenceSettings)
        self._queue = queue
        self._tenant = tenant
        self._clock = clock

    @property
    def _tenant_id(self) -> str:
        return self._tenant.tenant_id

    async def settings(self) -> PresenceSettings:
        return await settings_of(self._tables, self._tenant_id)

    async def put_settings(self, body: object) -> PresenceSettings:
        """Replace the settings; every monitored user is read again under them at once."""
        spec = parse(PresenceSettingsIn, body)
        update = {
            "busy_statuses": list(spec.busy_statuses),
            "show_subjects": spec.show_subjects,
            "refresh_minutes": spec.refresh_minutes,
            "monitor_account": spec.monitor_account,
            "updated_at": self._clock(),
        }

        def replaced(current: PresenceSettings | None) -> PresenceSettings:
            return (current or PresenceSettings(tenant_id=self._tenant_id)).model_copy(update=update)

        saved = await self._settings.mutate(*PresenceSettings.key(self._tenant_id), replaced)
        await self.refresh()
        return await self._settings.get(*PresenceSettings.key(self._tenant_id)) or saved

    async def put_monitor(self, email: str, body: object) -> tuple[Presence, bool]:
        """Enable a user (201), or rename one (200). A new user is read at once."""
        address = _email(email)
        spec = parse(MonitorIn, body)
        current = await self._rows.get(*Presence.key(self._tenant_id, address))
        if current is not None:
            if spec.display_name is not None and spec.display_name != current.display_name:
                current = await self._rows.save(
                    current.model_copy(update={"display_name": spec.display_name})
                )
            return current, False
        now = self._clock()
        row = Presence(
            tenant_id=self._tenant_id,
            email=address,
            display_name=spec.display_name or "",
            created_at=now,
            updated_at=now,
        )
        try:
            row = await self._rows.insert(row)
        except AlreadyExists:  # enabled concurrently
            found = await self._rows.get(*Presence.key(self._tenant_id, address))
            if found is None:
                raise
            return found, False
        await request_reads(self._tables, self._queue, self._tenant_id, [address], now)
        return row, True

    async def monitor(self, email: str) -> Presence:
        found = await self._rows.get(*Presence.key(self._tenant_id, _email(email)))
        if found is None:
            raise ItemNotFound(f"'{email[:256]}' is not monitored.")
        return found

    async def delete_monitor(self, email: str) -> None:
        row = await self.monitor(email)
        with contextlib.suppress(NotFound):
            await self._rows.delete(row.model_copy(update={"etag": None}))

    async def monitors(self) -> list[Presence]:
        return [row async for row in self._rows.list(Presence.key(self._tenant_id, "-")[0])]

    async def presence(self, users: str | None) -> list[dict[str, Any]]:
        """The asked users' presence, in the order asked (all monitored users without a list);
        one not monitored is `unknown` with that reason."""
        if not users:
            return [presence_view(r) for r in await self.monitors()]
        asked = [u for u in (part.strip() for part in users.split(",")) if u]
        if len(asked) > MAX_USERS_PER_QUERY:
            raise InvalidInput.one("users", f"must name at most {MAX_USERS_PER_QUERY} users")
        out = []
        for raw in asked:
            address = _email(raw, "users")
            row = await self._rows.get(*Presence.key(self._tenant_id, address))
            if row is None:
                out.append({"email": address, "status": "unknown", "reason": "not monitored"})
            else:
                out.append(presence_view(row))
        return out

    async def refresh(self) -> int:
        """Read every monitored user now ("Run now"): the number of getSchedule batches queued."""
        emails = [r.email for r in await self.monitors()]
        if not emails:
            return 0
        return await request_reads(self._tables, self._queue, self._tenant_id, emails, self._clock())
