"""The rolling window a calendar is synced over.

Graph fixes a `calendarView/delta` window when the round starts: the delta link carries it and
cannot move it. So the bridge asks for more than it needs — `slack_days` beyond the days ahead —
and keeps following the same delta link while the window it needs, [today - days back,
today + days ahead], still lies inside the one the link covers. Only when time (or a setting)
has pushed the need past the link's window does the next run start a new full round over a
fresh window: one full re-read every `slack_days`, incremental rounds in between.

Windows are whole UTC days, so runs on the same day agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


def _day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    days_back: int = 30
    days_ahead: int = 365
    slack_days: int = 7

    def needed(self, now: datetime) -> tuple[datetime, datetime]:
        """What the host must see: from `days_back` before today to `days_ahead` after it."""
        today = _day(now)
        return today - timedelta(days=self.days_back), today + timedelta(days=self.days_ahead + 1)

    def fresh(self, now: datetime) -> tuple[datetime, datetime]:
        """The window a new full round asks for: what is needed, plus the slack ahead."""
        start, end = self.needed(now)
        return start, end + timedelta(days=self.slack_days)

    def covers(self, start: datetime | None, end: datetime | None, now: datetime) -> bool:
        """Whether a delta link over [start, end) still serves what is needed now."""
        if start is None or end is None:
            return False
        need_start, need_end = self.needed(now)
        return start <= need_start and end >= need_end
