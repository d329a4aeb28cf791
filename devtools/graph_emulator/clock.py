"""The emulator's clock: wall time plus an offset tests can move.

Everything time-dependent in the emulated mailboxes (createdDateTime, upload session expiry,
the per-mailbox request budget's window) reads this clock, so a test can "wait ten minutes" in
no time. Access tokens are the exception: clients judge their expiry by the real clock, so the
emulator does too (see identity.py).
"""

from __future__ import annotations

import datetime as dt


class Clock:
    def __init__(self) -> None:
        self._offset = dt.timedelta(0)
        self._frozen: dt.datetime | None = None

    def now(self) -> dt.datetime:
        """Aware UTC now, as the emulated service sees it."""
        if self._frozen is not None:
            return self._frozen
        return dt.datetime.now(dt.UTC) + self._offset

    def timestamp(self) -> float:
        return self.now().timestamp()

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        """Move time forward (or back, with a negative delta); a frozen clock stays frozen."""
        if self._frozen is not None:
            self._frozen += delta
        else:
            self._offset += delta
        return self.now()

    def set(self, when: dt.datetime, *, freeze: bool = False) -> dt.datetime:
        """Make `now()` return `when` (aware); it keeps running unless `freeze`."""
        if when.tzinfo is None:
            raise ValueError("the clock takes aware datetimes")
        when = when.astimezone(dt.UTC)
        if freeze:
            self._frozen = when
        else:
            self._frozen = None
            self._offset = when - dt.datetime.now(dt.UTC)
        return self.now()

    def reset(self) -> None:
        self._offset = dt.timedelta(0)
        self._frozen = None
