"""Property: whatever happens to a folder's mail (arrivals, reads, moves out and back in,
deletions), a client that applies each message-delta round (upserts and @removed) ends up holding
exactly the folder's messages - with regular ids and with immutable ids alike.

Runs the emulator's mail store and its delta planner in-process (no network); the integration
tests drive the same code over HTTPS with the SDK.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.graph_emulator.context import EmulatorContext
from devtools.graph_emulator.mail_delta import Options, Seen, plan_round, render_entry, snapshot_of
from devtools.graph_emulator.mail_ops import Mail

Step = tuple[str, int]
steps = st.tuples(
    st.sampled_from(["arrive", "archive", "read", "out", "back", "delete", "round"]), st.integers(0, 50)
)


class Client:
    """What a delta client stores: id -> isRead, and the snapshot its deltaLink names."""

    def __init__(self, immutable: bool) -> None:
        self.immutable = immutable
        self.items: dict[str, bool] = {}
        self.snapshot: dict[bytes, Seen] = {}

    def sync(self, mail: Mail, user: str, options: Options) -> None:
        mailbox = mail.mailbox(user)
        current = snapshot_of(mailbox, options)
        for entry in plan_round(self.snapshot, current, immutable=self.immutable):
            item: dict[str, Any] | None = render_entry(mailbox, entry, options, self.immutable)
            assert item is not None  # nothing changes mid-round here
            if "@removed" in item:
                self.items.pop(item["id"], None)
            else:
                self.items[item["id"]] = item["isRead"]
        self.snapshot = current


def _setup() -> tuple[Mail, str]:
    ctx = EmulatorContext(lambda: "https://127.0.0.1:1")
    tenant = ctx.directory.add_tenant(domain="contoso.onmicrosoft.com")
    return Mail(ctx), ctx.directory.add_user(tenant.id, "adele@contoso.onmicrosoft.com").id


@settings(max_examples=200, deadline=None)
@given(st.lists(steps, min_size=20, max_size=60))
def test_applying_every_round_converges_on_the_folder(history: list[Step]) -> None:
    mail, user = _setup()
    inbox = mail.folder(user, "inbox")
    options = Options(inbox.key)
    clients = [Client(immutable=False), Client(immutable=True)]
    for action, n in history:
        in_inbox = mail.messages(user, "inbox")
        in_archive = mail.messages(user, "archive")
        if action == "arrive":
            mail.deliver_mail(user, subject=f"mail {n}")
        elif action == "archive":
            mail.deliver_mail(user, "archive", subject=f"archived {n}")
        elif action == "read" and in_inbox:
            record = in_inbox[n % len(in_inbox)]
            mail.mark_read(user, mail.message_id(user, record, immutable=True), not record.is_read)
        elif action == "out" and in_inbox:
            mail.move_message(
                user, mail.message_id(user, in_inbox[n % len(in_inbox)], immutable=True), "archive"
            )
        elif action == "back" and in_archive:
            mail.move_message(
                user, mail.message_id(user, in_archive[n % len(in_archive)], immutable=False), "inbox"
            )
        elif action == "delete" and in_inbox:
            mail.delete_message(user, mail.message_id(user, in_inbox[n % len(in_inbox)], immutable=False))
        elif action == "round":
            clients[n % 2].sync(mail, user, options)
    for client in clients:
        client.sync(mail, user, options)
        expected = {
            mail.message_id(user, r, immutable=client.immutable): r.is_read
            for r in mail.messages(user, "inbox")
        }
        assert client.items == expected
        # A further round reports nothing.
        current = snapshot_of(mail.mailbox(user), options)
        assert plan_round(client.snapshot, current, immutable=client.immutable) == []


def test_change_type_keeps_one_kind_of_change() -> None:
    a, b, c = (bytes([i]) * 16 for i in range(3))
    previous = {a: Seen("1", "ra"), b: Seen("1", "rb")}
    current = {a: Seen("2", "ra"), c: Seen("1", "rc")}
    assert [p.key for p in plan_round(previous, current, "created", immutable=True)] == [c]
    assert [p.key for p in plan_round(previous, current, "updated", immutable=True)] == [a]
    assert [(p.key, p.removed) for p in plan_round(previous, current, "deleted", immutable=True)] == [
        (b, Seen("1", "rb"))
    ]


def test_a_message_that_left_and_came_back_is_reported_under_its_new_regular_id() -> None:
    """Moved out and back between rounds: a new regular id, so a regular-id client is told the
    old id is removed and gets the message under the new one; an immutable-id client just sees
    an update."""
    mail, user = _setup()
    options = Options(mail.folder(user, "inbox").key)
    regular, immutable = Client(immutable=False), Client(immutable=True)
    message = mail.deliver_mail(user, subject="round trip")
    for client in (regular, immutable):
        client.sync(mail, user, options)
    old_regular = set(regular.items)
    mail.move_message(user, message, "archive")
    mail.move_message(user, message, "inbox")
    for client in (regular, immutable):
        client.sync(mail, user, options)
    (new_regular,) = regular.items
    assert {new_regular} != old_regular
    assert new_regular == mail.message_id(user, mail.find(user, message), immutable=False)
    assert set(immutable.items) == {message}
