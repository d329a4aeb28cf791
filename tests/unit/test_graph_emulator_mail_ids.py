"""The mail id scheme (mail_ids.py) and how the store resolves ids: a regular id names a message
where it is and stops resolving after a move; an immutable id survives moves; either form is
accepted; attachment ids embed the message id in the form the response used; ids of another
mailbox or garbage are refused the way Graph refuses them (404 / 400)."""

from __future__ import annotations

import pytest

from devtools.graph_emulator import mail_ids
from devtools.graph_emulator.context import EmulatorContext
from devtools.graph_emulator.errors import GraphError
from devtools.graph_emulator.mail_ops import Mail, file


def test_ids_round_trip_and_are_told_apart() -> None:
    mailbox = mail_ids.mailbox_tag("0b5a1c3e-0000-4000-8000-000000000001")
    folder, entry, item = mail_ids.new_key(), mail_ids.new_key(), mail_ids.new_key()

    regular = mail_ids.regular_id(mailbox, folder, entry)
    immutable = mail_ids.immutable_id(mailbox, item)
    folder_id = mail_ids.folder_id(mailbox, folder)
    assert regular.startswith("AAMk")
    assert immutable.startswith("AAkALg")
    assert mail_ids.parse_message_id(regular) == mail_ids.MessageRef(
        mailbox, False, folder_key=folder, entry_key=entry
    )
    assert mail_ids.parse_message_id(immutable) == mail_ids.MessageRef(mailbox, True, item_key=item)
    assert mail_ids.parse_folder_id(folder_id) == (mailbox, folder)
    # One kind is never mistaken for another.
    assert mail_ids.parse_message_id(folder_id) is None
    assert mail_ids.parse_folder_id(regular) is None
    assert mail_ids.parse_attachment_id(regular) is None
    for garbage in ("inbox", "", "AAMk", "not base64 !!"):
        assert mail_ids.parse_message_id(garbage) is None
        assert mail_ids.parse_folder_id(garbage) is None


@pytest.mark.parametrize("immutable", [False, True])
def test_attachment_ids_embed_the_message_id(immutable: bool) -> None:
    mailbox = mail_ids.mailbox_tag("user")
    message_id = (
        mail_ids.immutable_id(mailbox, mail_ids.new_key())
        if immutable
        else mail_ids.regular_id(mailbox, mail_ids.new_key(), mail_ids.new_key())
    )
    key = mail_ids.new_key()
    attachment_id = mail_ids.attachment_id(message_id, key)
    assert attachment_id.startswith(message_id)  # like Graph's: message id, then the attachment's part
    parsed = mail_ids.parse_attachment_id(attachment_id)
    assert parsed == (mail_ids.parse_message_id(message_id), key)
    with pytest.raises(ValueError, match="not a message id"):
        mail_ids.attachment_id("inbox", key)


def _mail() -> tuple[Mail, str]:
    ctx = EmulatorContext(lambda: "https://127.0.0.1:1")
    tenant = ctx.directory.add_tenant(domain="contoso.onmicrosoft.com")
    user = ctx.directory.add_user(tenant.id, "adele@contoso.onmicrosoft.com")
    ctx.directory.add_user(tenant.id, "megan@contoso.onmicrosoft.com")
    return Mail(ctx), user.id


def test_a_move_retires_the_regular_id_and_keeps_the_immutable_one() -> None:
    mail, adele = _mail()
    immutable = mail.deliver_mail(adele, subject="x", attachments=[file("a.txt", b"a")])
    record = mail.find(adele, immutable)
    regular = mail.message_id(adele, record, immutable=False)
    assert mail.find(adele, regular) is record
    assert mail.translate_id(adele, regular, immutable=True) == immutable

    mail.move_message(adele, regular, "archive")
    with pytest.raises(GraphError) as gone:
        mail.find(adele, regular)
    assert gone.value.status == 404
    assert mail.find(adele, immutable) is record
    new_regular = mail.message_id(adele, record, immutable=False)
    assert new_regular != regular
    assert mail.find(adele, new_regular) is record
    # The retired id still translates (for change notifications and @removed entries).
    assert mail.translate_id(adele, regular, immutable=True) == immutable
    assert mail.translate_id(adele, immutable, immutable=False) == new_regular

    mail.delete_message(adele, immutable)
    with pytest.raises(GraphError):
        mail.find(adele, immutable)
    assert mail.translate_id(adele, immutable, immutable=False) == new_regular


def test_foreign_and_malformed_ids() -> None:
    mail, adele = _mail()
    megans = mail.deliver_mail("megan@contoso.onmicrosoft.com", subject="not Adele's")
    with pytest.raises(GraphError) as foreign:
        mail.find(adele, megans)
    assert foreign.value.status == 404
    with pytest.raises(GraphError) as malformed:
        mail.find(adele, "hello")
    assert (malformed.value.status, malformed.value.code) == (400, "ErrorInvalidIdMalformed")
    with pytest.raises(GraphError) as folder:
        mail.folder(adele, "nosuchfolder")
    assert folder.value.status == 400
    assert mail.folder(adele, "SentItems").display_name == "Sent Items"  # well-known, any case
