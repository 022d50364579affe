"""A job's `schedule:` text, read into a `Schedule` that registers itself on a `schedule.Scheduler`.

The forms are plain English, as the `schedule` library spells its jobs:

- `every N seconds|minutes|hours|days` (N >= 1), and `every second|minute|hour|day`
- `daily at HH:MM`, `every day at HH:MM`, `every N days at HH:MM`
- `monday at HH:MM` ... `sunday at HH:MM`, also `every monday at HH:MM`
- `hourly`, `hourly at :MM`, `every hour at :MM`

Times are the machine's local time, as `schedule` reads them. Case and extra spaces do not
matter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import schedule

ACCEPTED_FORMS = (
    "every N seconds|minutes|hours|days",
    "every minute|hour|day",
    "daily at HH:MM",
    "every day at HH:MM",
    "every N days at HH:MM",
    "monday|tuesday|...|sunday at HH:MM (or every monday at HH:MM)",
    "hourly",
    "hourly at :MM",
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 7 * 86400}

_CLOCK = r"(?P<hour>[01]?\d|2[0-3]):(?P<minute>[0-5]\d)"
_EVERY_N = re.compile(r"every (?P<count>\d+) (?P<unit>second|minute|hour|day)s?")
_EVERY_ONE = re.compile(r"every (?P<unit>second|minute|hour|day)")
_DAILY_AT = re.compile(rf"(?:daily|every day|every (?P<count>\d+) days?) at {_CLOCK}")
_WEEKDAY_AT = re.compile(rf"(?:every )?(?P<weekday>{'|'.join(WEEKDAYS)}) at {_CLOCK}")
_HOURLY_AT = re.compile(r"(?:hourly|every hour) at :(?P<minute>[0-5]\d)")


@dataclass(frozen=True)
class Schedule:
    """When a job runs: every `interval` `unit`s (`seconds` ... `weeks`), at `at` if given
    (`HH:MM` for days and weekdays, `:MM` for hours), on `weekday` for weekly runs."""

    text: str
    interval: int
    unit: str
    at: str | None = None
    weekday: str | None = None

    def attach(self, scheduler: schedule.Scheduler, run: Callable[[], object]) -> schedule.Job:
        """Given a scheduler and the job's function, register the function on that scheduler
        (never `schedule`'s module-wide default one) and return the `schedule.Job`."""
        job = scheduler.every(self.interval)
        job = getattr(job, self.weekday) if self.weekday else getattr(job, self.unit)
        if self.at is not None:
            job = job.at(self.at)
        return job.do(run)

    def period_seconds(self) -> float:
        """Return the nominal gap between two runs, in seconds (7 days for a weekday)."""
        return float(self.interval * UNIT_SECONDS[self.unit])


def parse_schedule(text: str) -> Schedule:
    """Given a schedule such as `daily at 02:30`, return the `Schedule`.

    Raise ValueError naming the accepted forms if the text is none of them.
    """
    if not isinstance(text, str):
        raise ValueError(_unreadable(text))
    shown = text.strip()
    words = " ".join(shown.lower().split())
    if match := _EVERY_N.fullmatch(words):
        count = int(match["count"])
        if count < 1:
            raise ValueError(f"schedule {shown!r} never runs: give a count of 1 or more")
        return Schedule(shown, count, match["unit"] + "s")
    if match := _EVERY_ONE.fullmatch(words):
        return Schedule(shown, 1, match["unit"] + "s")
    if words == "hourly":
        return Schedule(shown, 1, "hours")
    if match := _HOURLY_AT.fullmatch(words):
        return Schedule(shown, 1, "hours", at=f":{match['minute']}")
    if match := _DAILY_AT.fullmatch(words):
        count = int(match["count"] or 1)
        if count < 1:
            raise ValueError(f"schedule {shown!r} never runs: give a count of 1 or more")
        return Schedule(shown, count, "days", at=_clock(match))
    if match := _WEEKDAY_AT.fullmatch(words):
        return Schedule(shown, 1, "weeks", at=_clock(match), weekday=match["weekday"])
    raise ValueError(_unreadable(shown))


def _clock(match: re.Match[str]) -> str:
    """`2:30` becomes `02:30`: `schedule` wants two-digit hours."""
    return f"{int(match['hour']):02d}:{match['minute']}"


def _unreadable(text: object) -> str:
    return f"unreadable schedule {text!r} (write one of: {', '.join(ACCEPTED_FORMS)})"
