"""Cron expressions in a time zone, stepped by cronsim, with Dagster's daylight-saving rules.

Why cronsim (not croniter): it has no dependencies, works with the standard
library's ``zoneinfo``, follows Debian cron's DST handling (a time skipped by a
spring-forward runs once at the first time after the gap), iterates forwards
and backwards, and reads an optional sixth, leading seconds field
(``"*/10 * * * * *"``: every ten seconds).  croniter (which pulls in
python-dateutil) fires a ``"30 2 * * *"`` schedule twice on a fall-back day
and has a long history of DST bugs.  cronsim is imported the first time a
schedule is validated, never by ``import asyncdag``.

Daylight saving time, as Dagster documents it:

* A time that does not exist (02:30 on a spring-forward day in Europe/Berlin)
  runs once, at the first time that does (03:00).
* A time that happens twice (02:30 on a fall-back day) runs once, at its
  *second* occurrence.
* A schedule whose hour field is ``*`` (it repeats every hour) is unaffected:
  it runs once per real hour, in both passes of a repeated hour, and simply
  has nothing to run in an hour that does not exist.

Tick times are floats, seconds since the epoch: an instant, whatever the zone.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any

__all__ = ["CronSchedule", "CronScheduleError"]

# Cron's nicknames, which cronsim does not read.
_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronScheduleError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


def _zone(name: str) -> dt.tzinfo:
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise CronScheduleError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin' "
            "(on a machine without system time zones, pip install tzdata)"
        ) from exc


class CronSchedule:
    """A cron expression read in one time zone: the instants it fires at.

    Five fields (minute hour day month weekday) or six with a leading seconds
    field; also ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``.
    """

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        if not isinstance(expression, str) or not expression.strip():
            raise CronScheduleError(
                f"a cron expression must be a non-empty string, got {expression!r}"
            )
        self.expression = " ".join(expression.split())
        self.timezone = timezone
        self.tz = _zone(timezone)
        self._cron = _NICKNAMES.get(self.expression.lower(), self.expression)
        fields = self._cron.split()
        self.has_seconds = len(fields) == 6
        hour = fields[2] if self.has_seconds else fields[1] if len(fields) > 1 else ""
        #: Dagster's rule: a schedule whose hour field is ``*`` keeps to real hours across DST.
        self.repeats_every_hour = hour == "*"
        from cronsim import CronSim, CronSimError

        self._sim = CronSim
        try:
            CronSim(self._cron, dt.datetime(2000, 1, 1))
        except CronSimError as exc:
            raise CronScheduleError(
                f"invalid cron expression {expression!r}: {exc}; write five fields "
                "'minute hour day month weekday' (or six, with a leading seconds field), "
                "e.g. '0 * * * *' for every hour"
            ) from exc
        except Exception as exc:  # cronsim raises plain errors for some inputs
            raise CronScheduleError(f"invalid cron expression {expression!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r}, {self.timezone!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CronSchedule)
            and other.expression == self.expression
            and other.timezone == self.timezone
        )

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone))

    # -- stepping ------------------------------------------------------------------------

    def localize(self, t: float) -> dt.datetime:
        """The instant ``t`` as an aware datetime in the schedule's zone."""
        return dt.datetime.fromtimestamp(t, self.tz)

    def iter_after(self, t: float) -> Iterator[float]:
        """The fire times strictly after ``t``, increasing, forever (or until cron finds none).

        Cron is stepped on naive wall-clock times (pure calendar arithmetic);
        :meth:`_instants` then places each wall time in the zone, applying the
        DST rules above.  Inside a repeated hour a wall time of the first pass
        can fire in the second, after ``t``, so stepping starts one fold early.
        """
        local = self.localize(t)
        start = local.replace(tzinfo=None) - dt.timedelta(seconds=_fold_size(local))
        last = t
        pending: list[float] = []  # both passes of a repeated hour, ordered before release
        for wall in self._sim(self._cron, start):
            instants, repeated = self._instants(wall)
            if repeated and self.repeats_every_hour:
                pending.extend(instants)
                continue
            for fire in [*sorted(pending), *instants]:
                if fire > last:
                    last = fire
                    yield fire
            pending.clear()

    def next_after(self, t: float) -> float | None:
        """The first fire time after ``t``; None when the expression never fires again."""
        return next(self.iter_after(t), None)

    def next_ticks(self, t: float, n: int) -> list[float]:
        return list(itertools.islice(self.iter_after(t), n))

    def latest_between(self, after: float, until: float, limit: int) -> tuple[list[float], bool]:
        """The newest ``limit`` fire times in ``(after, until]``, oldest first, and whether older ones exist.

        Looks back from ``until`` in growing windows, so a long gap (a
        per-second schedule down for a week) costs a few dozen steps, not
        every tick of the gap.
        """
        if limit < 1 or until <= after:
            return [], False
        span = 60.0
        while True:
            low = max(after, until - span)
            ticks = list(itertools.takewhile(lambda x: x <= until, self.iter_after(low)))
            if len(ticks) > limit:
                return ticks[-limit:], True
            if low == after:
                return ticks, False
            span *= 4

    def _instants(self, wall: dt.datetime) -> tuple[list[float], bool]:
        """Where the wall time ``wall`` fires, and whether it is a repeated (ambiguous) time."""
        first = wall.replace(tzinfo=self.tz, fold=0)
        second = wall.replace(tzinfo=self.tz, fold=1)
        before, after = first.utcoffset(), second.utcoffset()
        if before == after or before is None or after is None:
            return [first.timestamp()], False
        if before > after:  # the clock went back: this wall time happens twice
            if self.repeats_every_hour:
                return [first.timestamp(), second.timestamp()], True
            return [second.timestamp()], True
        # The clock jumped forward over this wall time: it does not exist.  A schedule that
        # runs every hour keeps running once per real hour (nothing to move); any other
        # runs at the first instant after the gap.
        if self.repeats_every_hour:
            return [], False
        return [self._gap_end(second.timestamp(), first.timestamp())], False

    def _gap_end(self, low: float, high: float) -> float:
        """The instant the clock jumped forward, in ``(low, high]`` (whole seconds)."""
        offset = self.localize(low).utcoffset()
        lo, hi = int(low), int(high) + 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.localize(mid).utcoffset() == offset:
                lo = mid
            else:
                hi = mid
        return float(hi)

    def describe(self) -> dict[str, Any]:
        return {"cron_schedule": self.expression, "execution_timezone": self.timezone}


def _fold_size(local: dt.datetime) -> float:
    """How many seconds the wall time of ``local`` repeats by (0 unless it is ambiguous)."""
    first = local.replace(fold=0).utcoffset()
    second = local.replace(fold=1).utcoffset()
    if first is None or second is None or first <= second:
        return 0.0
    return (first - second).total_seconds()
