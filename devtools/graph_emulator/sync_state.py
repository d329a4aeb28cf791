"""Server-side state behind `$skiptoken` and `$deltatoken`, shared by every delta-capable module.

A token is an opaque random string naming a stored state, scoped to one mailbox. Tests expire
states on demand (all, or one mailbox's) to make the next call fail the way Exchange does when it
has dropped a sync state: 410 Gone, code SyncStateNotFound.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from devtools.graph_emulator.errors import GraphError


@dataclass
class _Entry:
    user_id: str
    kind: str
    state: Any


class SyncStates:
    def __init__(self) -> None:
        self._states: dict[str, _Entry] = {}

    def put(self, user_id: str, kind: str, state: Any) -> str:
        """Store `state` and return a fresh token naming it. `kind` keeps a calendarView token from
        being replayed against a message delta and vice versa."""
        token = secrets.token_urlsafe(24)
        self._states[token] = _Entry(user_id, kind, state)
        return token

    def get(self, token: str, user_id: str, kind: str) -> Any:
        entry = self._states.get(token)
        if entry is None or entry.user_id != user_id or entry.kind != kind:
            # The real service's words (reported in microsoft-graph-docs issue 2350).
            raise GraphError(410, "SyncStateNotFound", "The sync state generation is not found.")
        return entry.state

    def expire(self, user_id: str | None = None) -> int:
        """Forget every state (or every state of one mailbox); returns how many were dropped."""
        doomed = [t for t, e in self._states.items() if user_id is None or e.user_id == user_id]
        for token in doomed:
            del self._states[token]
        return len(doomed)

    def __len__(self) -> int:
        return len(self._states)
