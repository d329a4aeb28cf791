"""What a switchboard shows for one user at a moment, from their calendar items (pure).

A user is busy while any item whose `showAs` counts as busy (the tenant's `busyStatuses`,
default only `busy`) covers the moment; items that touch or overlap merge into one busy span,
so back-to-back meetings are one busy stretch, not a flicker of free in between. Busy runs
from the span's start until its end; free from the end of the last span before until the start
of the next (None where the read does not tell). Subject and location come from the item that
started last among those covering the moment; a private item never shows its subject or
location, and subjects show only where the tenant allows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.graph.model import ScheduleItem
from core.store.records import PresenceStatus

MAX_ITEMS = 100  # per user and read: a day of calendar


@dataclass(frozen=True, slots=True)
class Item:
    start: datetime
    end: datetime
    show_as: str
    private: bool = False
    subject: str = ""
    location: str = ""

    def to_dict(self, *, keep_subject: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "showAs": self.show_as,
        }
        if self.private:
            out["private"] = True
        elif keep_subject and self.subject:
            out["subject"] = self.subject
        if self.location and not self.private:
            out["location"] = self.location
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Item:
        return cls(
            datetime.fromisoformat(raw["start"]),
            datetime.fromisoformat(raw["end"]),
            str(raw.get("showAs", "busy")),
            bool(raw.get("private", False)),
            str(raw.get("subject", "")),
            str(raw.get("location", "")),
        )

    @classmethod
    def from_schedule(cls, item: ScheduleItem) -> Item:
        return cls(item.start, item.end, item.status.value, item.is_private, item.subject, item.location)


@dataclass(frozen=True, slots=True)
class State:
    status: PresenceStatus
    since: datetime | None
    until: datetime | None
    show_as: str | None = None
    subject: str | None = None
    location: str | None = None


def _spans(items: Iterable[Item], busy: frozenset[str]) -> list[tuple[datetime, datetime, list[Item]]]:
    counting = sorted(
        (i for i in items if i.show_as in busy and i.end > i.start), key=lambda i: (i.start, i.end)
    )
    spans: list[tuple[datetime, datetime, list[Item]]] = []
    for item in counting:
        if spans and item.start <= spans[-1][1]:
            start, end, members = spans[-1]
            spans[-1] = (start, max(end, item.end), [*members, item])
        else:
            spans.append((item.start, item.end, [item]))
    return spans


def state_at(items: Sequence[Item], busy: frozenset[str], moment: datetime, *, show_subjects: bool) -> State:
    """The user's state at `moment`."""
    spans = _spans(items, busy)
    for start, end, members in spans:
        if start <= moment < end:
            covering = [i for i in members if i.start <= moment < i.end]
            shown = max(covering, key=lambda i: (i.start, i.end))
            subject = shown.subject if show_subjects and not shown.private and shown.subject else None
            location = shown.location if not shown.private and shown.location else None
            return State(PresenceStatus.BUSY, start, end, shown.show_as, subject, location)
    before = [end for _, end, _ in spans if end <= moment]
    after = [start for start, _, _ in spans if start > moment]
    return State(PresenceStatus.FREE, max(before) if before else None, min(after) if after else None)
