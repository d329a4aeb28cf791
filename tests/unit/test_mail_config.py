"""`…/mail-imports/{id}`: folders resolved and validated when saved, defaults, problems named."""

from __future__ import annotations

from typing import Any

import pytest

from core.graph.errors import ConsentMissing, GraphUnavailable
from core.graph.fake import InMemoryGraph
from core.mail.config import DEFAULT_TYPES, MailImportService, import_view
from core.request_errors import InvalidInput, ItemNotFound, PreconditionFailed, UpstreamUnavailable
from core.store import memory_tables
from core.store.records import MailImport, Tenant
from core.versions import public_etag
from tests.unit.calendar_world import Clock

TENANT = Tenant(tenant_id="acme")
BOX = "invoices@acme.example"


@pytest.fixture
def graph() -> InMemoryGraph:
    g = InMemoryGraph()
    g.add_user(BOX, "Invoices")
    g.add_mail_folder(BOX, "Inbox/Invoices")
    g.add_mail_folder(BOX, "Archive/2026")
    return g


@pytest.fixture
def service(graph: InMemoryGraph) -> MailImportService:
    class Graphs:
        async def gateway(self, tenant: Tenant) -> Any:
            return graph

    return MailImportService(memory_tables(), Graphs(), TENANT, Clock())


def body(**fields: Any) -> dict[str, Any]:
    return {
        "mailbox": "Invoices@Acme.example",
        "importFolder": "Inbox/Invoices",
        "archiveFolder": "/Archive/2026/",
        "forwardTo": "accounts@acme.example",
    } | fields


async def test_a_new_import_resolves_its_folders_and_takes_the_defaults(
    service: MailImportService, graph: InMemoryGraph
):
    config, created = await service.put("invoices", body())
    assert created
    assert config.mailbox == BOX
    assert config.import_folder_id == (await graph.resolve_folder_path(BOX, "Inbox/Invoices")).id
    assert config.archive_folder == "Archive/2026"
    assert config.allowed_types == sorted(DEFAULT_TYPES)
    assert config.max_size_bytes == 150 * 1024 * 1024
    view = import_view(config, None)
    assert (view["maxSizeMb"], view["lastRun"]["status"]) == (150, "never")
    again, created = await service.put("invoices", body(allowedTypes=[".PDF", "xml", "pdf"], maxSizeMb=20))
    assert not created
    assert (again.allowed_types, again.max_size_bytes) == (["pdf", "xml"], 20 * 1024 * 1024)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"importFolder": "Inbox/Nope"}, "importFolder"),
        ({"archiveFolder": "Inbox/Invoices"}, "archiveFolder"),
        ({"importFolder": "Inbox//x"}, "importFolder"),
        ({"forwardTo": "not an address"}, "forwardTo"),
        ({"mailbox": "nobody"}, "mailbox"),
        ({"allowedTypes": ["p d f"]}, "allowedTypes[0]"),
        ({"maxSizeMb": 151}, "maxSizeMb"),
        ({"notifyTo": "x"}, "notifyTo"),
    ],
)
async def test_a_bad_field_is_named_and_nothing_is_stored(
    service: MailImportService, fields: dict[str, Any], field: str
):
    with pytest.raises(InvalidInput) as invalid:
        await service.put("invoices", body(**fields))
    assert field in {p.field for p in invalid.value.problems}
    assert await service.list() == []


async def test_a_mailbox_the_app_may_not_read_is_a_problem_on_the_mailbox(
    service: MailImportService, graph: InMemoryGraph
):
    graph.inject(
        BOX,
        ConsentMissing(
            "resolve_folder_path: admin consent missing for Mail.ReadWrite", permission="Mail.ReadWrite"
        ),
    )
    with pytest.raises(InvalidInput) as invalid:
        await service.put("invoices", body())
    [problem] = invalid.value.problems
    assert problem.field == "mailbox"
    assert "Mail.ReadWrite" in problem.detail


async def test_graph_unavailable_is_a_503_not_a_bad_request(service: MailImportService, graph: InMemoryGraph):
    graph.inject(BOX, GraphUnavailable("503"))
    with pytest.raises(UpstreamUnavailable):
        await service.put("invoices", body())


async def test_get_delete_and_preconditions(service: MailImportService):
    saved, _ = await service.put("invoices", body())
    with pytest.raises(PreconditionFailed):
        await service.put("invoices", body(), if_none_match="*")
    config, state = await service.get("invoices")
    assert (config.import_id, state) == ("invoices", None)
    with pytest.raises(PreconditionFailed):
        await service.delete("invoices", if_match='"stale"')
    await service.delete("invoices", if_match=public_etag(saved))
    with pytest.raises(ItemNotFound):
        await service.get("invoices")


def test_the_view_reports_the_size_limit_in_megabytes():
    config = MailImport(
        tenant_id="acme",
        import_id="x",
        mailbox=BOX,
        import_folder="a",
        import_folder_id="a",
        archive_folder="b",
        archive_folder_id="b",
        forward_to="f@acme.example",
        max_size_bytes=5 * 1024 * 1024,
    )
    assert import_view(config, None)["maxSizeMb"] == 5
