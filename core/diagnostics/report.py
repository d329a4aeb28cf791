"""What a test of the settings answers: one line per check and target, and the report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Check(StrEnum):
    TOKEN = "token"  # noqa: S105 - the name of a check, not a token
    PERMISSIONS = "permissions"
    CALENDAR = "calendar"
    MAIL_FOLDER = "mail-folder"
    BOOKING_CALENDAR = "booking-calendar"
    PRESENCE = "presence"


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    WARNING = "warning"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class CheckLine:
    check: Check
    target: str
    status: Status
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {
            "check": self.check.value,
            "target": self.target,
            "status": self.status.value,
            "detail": self.detail,
        }
        if self.fix:
            out["fix"] = self.fix
        return out


@dataclass(frozen=True, slots=True)
class Report:
    tenant_id: str
    checked_at: datetime
    checks: tuple[CheckLine, ...]
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not any(line.status is Status.FAILED for line in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "ok": self.ok,
            "checkedAt": self.checked_at.isoformat(),
            "truncated": self.truncated,
            "checks": [line.to_dict() for line in self.checks],
        }
