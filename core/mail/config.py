"""A tenant's mail imports (`…/mail-imports/{id}`): which mailbox, which folders, who gets what
cannot be imported, which files may be.

Folders are named as a person sees them (`Inbox/Invoices`; the first segment may be a
well-known name such as Inbox, which works in every mailbox language) and resolved through
Graph when the import is saved: a folder that does not exist, or a mailbox the app may not
read, is a field problem then, not a failed run later. The resolved ids are stored, so a folder
renamed in Outlook keeps working.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from core.errors import NotFound, StaleEtag
from core.graph.errors import ConsentMissing, GraphUnavailable, Throttled, TokenUnavailable
from core.graph.errors import NotFound as GraphNotFound
from core.graph_access import GraphProvider
from core.request_errors import (
    EditConflict,
    FieldProblem,
    InvalidInput,
    ItemNotFound,
    UpstreamUnavailable,
)
from core.runs import Clock
from core.store import Tables
from core.store.keys import escape_key
from core.store.records import MailImport, MailImportState, Tenant
from core.validators import Account, ApiModel, parse, plain_text, valid_host_id
from core.versions import check_preconditions, create_or_replace

log = logging.getLogger(__name__)

# Documents a Nordic ERP registers as vouchers: PDF, images of scanned paper, and XML for the
# e-invoice formats (EHF and PEPPOL BIS in Norway, OIOUBL in Denmark, Svefaktura in Sweden,
# Finvoice in Finland — all XML files).
DEFAULT_TYPES = ("pdf", "xml", "jpg", "jpeg", "png", "tif", "tiff")
MAX_SIZE_MB = 150  # Graph's largest attachment
MAX_TYPES = 50
_EXTENSION = re.compile(r"[a-z0-9]{1,10}")
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _folder_path(value: str) -> str:
    segments = [s.strip() for s in value.strip().strip("/").split("/")]
    if not segments or any(not s for s in segments) or len(value) > 1000:
        raise ValueError("must be folder names separated by '/', e.g. Inbox/Invoices")
    plain_text(value)
    return "/".join(segments)


def _file_type(value: str) -> str:
    value = value.strip().lower().removeprefix(".")
    if not _EXTENSION.fullmatch(value):
        raise ValueError("must be a file extension such as pdf or xml")
    return value


def _address(value: str) -> str:
    value = value.strip()
    if len(value) > 320 or not _ADDRESS.fullmatch(value):
        raise ValueError("must be an e-mail address")
    return plain_text(value)


FolderPath = Annotated[str, AfterValidator(_folder_path)]
FileType = Annotated[str, AfterValidator(_file_type)]
Address = Annotated[str, AfterValidator(_address)]


class MailImportIn(ApiModel):
    mailbox: Account
    import_folder: FolderPath
    archive_folder: FolderPath
    forward_to: Address
    allowed_types: list[FileType] = Field(default_factory=lambda: list(DEFAULT_TYPES), max_length=MAX_TYPES)
    max_size_mb: Annotated[int, Field(ge=1, le=MAX_SIZE_MB, strict=True)] = MAX_SIZE_MB
    notify_to: Address | None = None
    enabled: bool = True


def valid_import_id(value: str) -> str:
    try:
        return valid_host_id(value)
    except ValueError as exc:
        raise InvalidInput.one("importId", str(exc)) from None


def import_view(config: MailImport, state: MailImportState | None) -> dict[str, Any]:
    return {
        "id": config.import_id,
        "mailbox": config.mailbox,
        "importFolder": config.import_folder,
        "archiveFolder": config.archive_folder,
        "forwardTo": config.forward_to,
        "allowedTypes": list(config.allowed_types),
        "maxSizeMb": config.max_size_bytes // (1024 * 1024),
        "notifyTo": config.notify_to,
        "enabled": config.enabled,
        "createdAt": _iso(config.created_at),
        "updatedAt": _iso(config.updated_at),
        "lastRun": {
            "status": state.status.value if state else "never",
            "lastRunAt": _iso(state.last_run_at) if state else None,
            "lastSuccessAt": _iso(state.last_success_at) if state else None,
            "error": state.error if state else None,
            "consecutiveFailures": state.consecutive_failures if state else 0,
        },
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class MailImportService:
    """A tenant's mail imports. Every method is scoped to the tenant it was made for."""

    def __init__(self, tables: Tables, graphs: GraphProvider, tenant: Tenant, clock: Clock) -> None:
        self._configs = tables.repo(MailImport)
        self._states = tables.repo(MailImportState)
        self._graphs = graphs
        self._tenant = tenant
        self._clock = clock

    async def put(
        self, import_id: str, body: object, if_match: str | None = None, if_none_match: str | None = None
    ) -> tuple[MailImport, bool]:
        """Create or replace; returns (the stored import, whether it was created)."""
        import_id = valid_import_id(import_id)
        spec = parse(MailImportIn, body)
        key = MailImport.key(self._tenant.tenant_id, import_id)
        current = await self._configs.get(*key)
        check_preconditions(current, if_match, if_none_match)
        import_folder, archive_folder = await self._resolve(spec)
        now = self._clock()
        wanted = MailImport(
            tenant_id=self._tenant.tenant_id,
            import_id=import_id,
            mailbox=spec.mailbox,
            import_folder=spec.import_folder,
            import_folder_id=import_folder,
            archive_folder=spec.archive_folder,
            archive_folder_id=archive_folder,
            forward_to=spec.forward_to,
            allowed_types=sorted(set(spec.allowed_types)),
            max_size_bytes=spec.max_size_mb * 1024 * 1024,
            notify_to=spec.notify_to,
            enabled=spec.enabled,
            created_at=current.created_at if current else now,
            updated_at=now,
        )
        saved = await create_or_replace(
            self._configs, current, wanted, conditional=bool(if_match or if_none_match), what="The import"
        )
        log.info("mail import saved", extra={"import_id": import_id, "new_import": current is None})
        return saved, current is None

    async def _resolve(self, spec: MailImportIn) -> tuple[str, str]:
        """The two folders' ids, or InvalidInput saying which is wrong and why."""
        gateway = await self._graphs.gateway(self._tenant)
        ids: dict[str, str] = {}
        problems: list[FieldProblem] = []
        for field, path in (("importFolder", spec.import_folder), ("archiveFolder", spec.archive_folder)):
            try:
                ids[field] = (await gateway.resolve_folder_path(spec.mailbox, path)).id
            except GraphNotFound:
                problems.append(
                    FieldProblem(field, "does not exist in the mailbox (or the mailbox does not exist)")
                )
            except (ConsentMissing, TokenUnavailable) as exc:
                raise InvalidInput.one("mailbox", f"cannot be read by the bridge: {exc}") from None
            except (Throttled, GraphUnavailable):
                raise UpstreamUnavailable("Microsoft Graph is unavailable; retry later.") from None
        if problems:
            raise InvalidInput(problems)
        if ids["importFolder"] == ids["archiveFolder"]:
            raise InvalidInput.one("archiveFolder", "must not be the import folder")
        return ids["importFolder"], ids["archiveFolder"]

    async def get(self, import_id: str) -> tuple[MailImport, MailImportState | None]:
        config = await self._find(import_id)
        state = await self._states.get(*MailImportState.key(self._tenant.tenant_id, config.import_id))
        return config, state

    async def _find(self, import_id: str) -> MailImport:
        try:
            key = MailImport.key(self._tenant.tenant_id, valid_host_id(import_id))
        except ValueError:
            key = None
        config = await self._configs.get(*key) if key else None
        if config is None:
            raise ItemNotFound(f"Mail import '{import_id}' does not exist.")
        return config

    async def delete(self, import_id: str, if_match: str | None = None) -> None:
        """Delete the import. Its ledger stays: recreating the import for the same mailbox
        must not deliver again what was delivered."""
        config = await self._find(import_id)
        check_preconditions(config, if_match)
        try:
            await self._configs.delete(config)
        except (StaleEtag, NotFound):
            raise EditConflict(
                "The import changed while it was being deleted; re-read it and retry."
            ) from None
        await self._states.store.delete(*MailImportState.key(self._tenant.tenant_id, config.import_id))
        log.info("mail import deleted", extra={"import_id": config.import_id})

    async def list(self) -> list[MailImport]:
        return [c async for c in self._configs.list(escape_key(self._tenant.tenant_id))]
