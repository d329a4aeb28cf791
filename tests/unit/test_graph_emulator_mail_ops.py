"""The mail module's Python API and write rules in-process (mail_ops.py): change hooks for every
write, sending semantics (Bcc hidden from copies, external recipients in the outbox,
saveToSentItems), and the refusals Graph documents or Exchange applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.graph_emulator.context import EmulatorContext
from devtools.graph_emulator.errors import GraphError
from devtools.graph_emulator.hooks import Change
from devtools.graph_emulator.mail_ops import Mail, file, item
from devtools.graph_emulator.mail_store import BlobStore


def _setup(tmp_path: Path | None = None) -> tuple[Mail, str, str, list[Change]]:
    ctx = EmulatorContext(lambda: "https://127.0.0.1:1")
    tenant = ctx.directory.add_tenant(domain="contoso.onmicrosoft.com")
    adele = ctx.directory.add_user(tenant.id, "adele@contoso.onmicrosoft.com", display_name="Adele Vance")
    megan = ctx.directory.add_user(tenant.id, "megan@contoso.onmicrosoft.com", display_name="Megan Bowen")
    changes: list[Change] = []
    ctx.hooks.subscribe(changes.append)
    return Mail(ctx, BlobStore(tmp_path, threshold=1024)), adele.id, megan.id, changes


def _to(*addresses: str) -> list[dict[str, dict[str, str]]]:
    return [{"emailAddress": {"address": a}} for a in addresses]


def test_every_write_emits_a_message_change_for_its_folder() -> None:
    mail, adele, _, changes = _setup()
    message = mail.deliver_mail(adele, subject="hooks")
    inbox = mail.mailbox(adele).folder_id(mail.folder(adele, "inbox"))
    archive = mail.mailbox(adele).folder_id(mail.folder(adele, "archive"))
    mail.mark_read(adele, message)
    mail.move_message(adele, message, "archive")
    mail.delete_message(adele, message)
    assert [(c.kind, c.change_type, c.container_id) for c in changes] == [
        ("message", "created", inbox),
        ("message", "updated", inbox),
        ("message", "deleted", inbox),  # a move: gone from the Inbox...
        ("message", "created", archive),  # ...and new in the Archive, under a new regular id
        ("message", "deleted", archive),
    ]
    assert changes[0].resource == f"Users/{adele}/Messages/{changes[0].resource_id}"
    assert changes[2].resource_id != changes[3].resource_id
    assert all(c.user_id == adele for c in changes)
    assert changes[1].change_key is not None
    assert changes[4].change_key is None


def test_send_hides_bcc_from_copies_and_records_external_recipients() -> None:
    mail, adele, megan, _ = _setup()
    mail.send_mail(
        adele,
        {
            "subject": "Quarterly",
            "body": {"contentType": "text", "content": "numbers"},
            "toRecipients": _to("partner@fabrikam.example"),
            "bccRecipients": _to("megan@contoso.onmicrosoft.com"),
        },
        save_to_sent_items=False,
    )
    (copy,) = mail.messages(megan, "inbox")
    assert copy.bcc == []
    assert copy.from_ is not None
    assert copy.from_.name == "Adele Vance"
    assert mail.messages(adele, "sentitems") == []  # saveToSentItems: false
    (sent,) = mail.sent_mail(adele)
    assert (sent.kind, sent.recipients, sent.external) == (
        "send",
        ["partner@fabrikam.example", "megan@contoso.onmicrosoft.com"],
        ["partner@fabrikam.example"],
    )
    assert mail.outbox() == [sent]
    assert b"Subject: Quarterly" in sent.mime()


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        (
            {"comment": "c", "to": _to("x@y.example"), "message": {"body": {"content": "b"}}},
            "ErrorInvalidRequest",
        ),
        ({"comment": "c"}, "ErrorInvalidRequest"),  # no recipients at all
        ({"comment": "c", "to": _to("x@y.example"), "message": {"toRecipients": _to("z@y.example")}}, None),
    ],
)
def test_forward_parameter_rules(kwargs: dict[str, object], code: str | None) -> None:
    mail, adele, _, _ = _setup()
    message = mail.deliver_mail(adele, subject="fwd")
    with pytest.raises(GraphError) as refused:
        mail.forward(adele, message, **kwargs)  # type: ignore[arg-type]
    assert refused.value.status == 400
    if code:
        assert refused.value.code == code


def test_refusals() -> None:
    mail, adele, _, _ = _setup()
    received = mail.deliver_mail(adele, subject="received")
    with pytest.raises(GraphError) as sent_message:
        mail.update_message(adele, received, {"subject": "rewritten"})
    assert sent_message.value.status == 400
    assert mail.update_message(adele, received, {"isRead": True, "categories": ["Red"]}).is_read is True
    with pytest.raises(GraphError) as stale:
        mail.update_message(adele, received, {"isRead": False}, if_match='W/"stale"')
    assert stale.value.status == 412
    with pytest.raises(GraphError) as not_a_draft:
        mail.send_draft(adele, received)
    assert not_a_draft.value.status == 400
    draft = mail.create_message(adele, {"subject": "no recipients"})
    with pytest.raises(GraphError) as nobody:
        mail.send_draft(adele, mail.message_id(adele, draft, immutable=True))
    assert nobody.value.code == "ErrorInvalidRecipients"
    with pytest.raises(GraphError) as unknown:
        mail.create_message(adele, {"subject": "x", "colour": "red"})
    assert unknown.value.code == "RequestBodyRead"
    with pytest.raises(GraphError) as too_big:
        mail.add_attachment(
            adele,
            received,
            {"name": "big.bin", "contentBytes": "A" * (4 * 1024 * 1024 + 4)},
        )
    assert too_big.value.status == 413
    mail.create_folder(adele, "Invoices", "inbox")
    with pytest.raises(GraphError) as exists:
        mail.create_folder(adele, "INVOICES", "inbox")
    assert exists.value.status == 409


def test_large_attachments_are_spooled_to_disk_and_mime_items_accepted(tmp_path: Path) -> None:
    mail, adele, _, _ = _setup(tmp_path)
    big = bytes(range(256)) * 64  # over the 1 KB threshold of this store
    source = tmp_path / "source.bin"
    source.write_bytes(big)
    eml = b"From: a@b.example\r\nTo: c@d.example\r\nSubject: Attached mail\r\n\r\nhello\r\n"
    message = mail.deliver_mail(
        adele,
        "Inbox/Imports",  # a path: the folder is made
        subject="files",
        attachments=[file("big.bin", big), file("copy.bin", source), item(eml)],
    )
    record = mail.find(adele, message)
    first, second, attached = record.attachments
    assert first.blob is not None
    assert first.blob.path is not None
    assert first.blob.path.parent == tmp_path
    assert first.blob.read() == big
    assert second.blob is not None
    assert second.blob.read() == big
    assert attached.item is not None
    assert attached.item.subject == "Attached mail"
    assert attached.name == "Attached mail"
    assert record.folder_key is not None
    assert mail.folder_path(adele, mail.mailbox(adele).folders[record.folder_key]) == "Inbox/Imports"
    mail.reset()
    assert list(tmp_path.glob("blob-*")) == []
