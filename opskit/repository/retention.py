"""Which backups a retention policy keeps: restic's `forget` rules, plus opskit's guarantees.

Pure logic on records; `opskit.actions.prune` lists the store, calls `select` and removes.

The rules, applied to each source on its own (records grouped by kind and source), newest
backup first, as restic does:

- `last N` keeps the N newest backups.
- `hourly|daily|weekly|monthly|yearly N` keep the newest backup of each of the N newest
  periods that have a backup (periods without one are not counted). Periods are UTC hours,
  days, ISO weeks (Monday to Sunday), months and years. If fewer than N periods have backups,
  the oldest backup is kept as well (restic 0.16 and later): the history kept is as long as it
  can be while counts are left.
- `within DURATION` (`1y2m3d4h`: years, months, days, hours) keeps every backup made after
  the newest backup's time minus DURATION. The newest backup is the newest one not in the
  future of `now`: a clock that was wrong once cannot make the window move, and a source
  whose backups stopped is not emptied by the passing of time.
- `tag TAG` keeps every backup that has TAG.
- Rules combine: a backup is kept if any rule keeps it; each rule that did is its reason.

Guarantees, whatever the policy:

- the newest backup of each source is kept;
- the newest backup that passed verification (`verified_ok is True`) is kept, so a source
  whose newer backups are unverified or failed keeps one that is known to restore;
- a backup with a protected tag (`pre-upgrade`, `pre-restore` by default) is kept; a policy
  with other `protected_tags` changes that.

A policy without any rule is an error, never "remove everything" (restic keeps everything then;
refusing is clearer).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from opskit import errors, untrusted
from opskit.repository.catalog import SAFETY_TAG, BackupRecord

UPGRADE_TAG = "pre-upgrade"  # the tag of a compose project's snapshot before an upgrade
DEFAULT_PROTECTED_TAGS: tuple[str, ...] = (UPGRADE_TAG, SAFETY_TAG)

_DURATION_PART = re.compile(r"(\d+)([ymdh])")


@dataclass(frozen=True)
class Duration:
    """A calendar duration as restic writes it: `1y2m3d4h` (any of the parts, in that order)."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Given `1y2m3d4h` (each part optional, at least one, none twice), return the duration.
        Raise `UsageError` if it is not one."""
        shown = untrusted.printable(text)
        parts = _DURATION_PART.findall(text)
        units = [unit for _, unit in parts]
        if (
            not parts
            or "".join(number + unit for number, unit in parts) != text
            or units != sorted(set(units), key="ymdh".index)
        ):
            raise errors.UsageError(
                f"invalid duration {shown!r}",
                "write years, months, days and hours as e.g. 1y6m, 30d or 2d12h",
            )
        values = {unit: int(number) for number, unit in parts}
        duration = cls(*(values.get(unit, 0) for unit in "ymdh"))
        if duration.is_zero():
            raise errors.UsageError(f"duration {shown!r} is zero", "give a positive duration")
        return duration

    def is_zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours)

    def before(self, moment: datetime) -> datetime:
        """Return `moment` minus this duration. Months are calendar months, and a day that the
        target month lacks becomes its last day (31 March minus 1m is 28 or 29 February)."""
        month_index = moment.year * 12 + moment.month - 1 - self.years * 12 - self.months
        year, month = divmod(month_index, 12)
        if year < 1:
            return datetime.min.replace(tzinfo=UTC)
        day = min(moment.day, calendar.monthrange(year, month + 1)[1])
        shifted = moment.replace(year=year, month=month + 1, day=day)
        try:
            return shifted - timedelta(days=self.days, hours=self.hours)
        except OverflowError:
            return datetime.min.replace(tzinfo=UTC)

    def __str__(self) -> str:
        parts = zip((self.years, self.months, self.days, self.hours), "ymdh", strict=True)
        return "".join(f"{value}{unit}" for value, unit in parts if value)


@dataclass(frozen=True)
class Policy:
    """What to keep of each source. Counts are numbers of backups (`last`) or of periods that
    have backups; 0 means the rule is off."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration | None = None
    tags: tuple[str, ...] = ()
    protected_tags: tuple[str, ...] = DEFAULT_PROTECTED_TAGS

    def counts(self) -> dict[str, int]:
        return {
            "last": self.last,
            "hourly": self.hourly,
            "daily": self.daily,
            "weekly": self.weekly,
            "monthly": self.monthly,
            "yearly": self.yearly,
        }

    def is_empty(self) -> bool:
        """Whether no rule keeps anything (the guarantees aside)."""
        within = self.within is not None and not self.within.is_zero()
        return not any(self.counts().values()) and not within and not self.tags

    def check(self) -> None:
        """Raise `UsageError` if the policy has no rule or a negative count."""
        negative = [name for name, count in self.counts().items() if count < 0]
        if negative:
            raise errors.UsageError(f"--keep-{negative[0]} must be a positive number")
        if self.is_empty():
            raise errors.UsageError(
                "no retention rule given: refusing to remove every backup",
                "pass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, "
                "--keep-monthly, --keep-yearly, --keep-within, --keep-tag",
            )

    def describe(self) -> str:
        """The policy in words, e.g. `keep daily 7, weekly 4, all within 2d of the newest`."""
        words = [f"{name} {count}" for name, count in self.counts().items() if count]
        if self.within is not None and not self.within.is_zero():
            words.append(f"all within {self.within} of the newest")
        words += [f"tag {untrusted.printable(tag)}" for tag in self.tags]
        return "keep " + ", ".join(words)


@dataclass(frozen=True)
class Selection:
    """The outcome of a policy: the records kept and removed (each oldest first), and for each
    kept record's id the rules and guarantees that kept it, in the order they were checked."""

    keep: list[BackupRecord]
    remove: list[BackupRecord]
    reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def is_kept(self, record: BackupRecord) -> bool:
        return record.id in self.reasons


def created_at(record: BackupRecord) -> datetime:
    """Return the record's creation time (validated `...Z` UTC text) as an aware datetime."""
    return datetime.fromisoformat(record.created).astimezone(UTC)


# The period of each bucket rule, as a sortable label that also reads well as a reason.
_PERIODS: dict[str, Callable[[datetime], str]] = {
    "hourly": lambda moment: moment.strftime("%Y-%m-%dT%H"),
    "daily": lambda moment: moment.strftime("%Y-%m-%d"),
    "weekly": lambda moment: "{}-W{:02d}".format(*moment.isocalendar()[:2]),
    "monthly": lambda moment: moment.strftime("%Y-%m"),
    "yearly": lambda moment: moment.strftime("%Y"),
}


def select(records: Iterable[BackupRecord], policy: Policy, now: datetime) -> Selection:
    """Given backup records (of any sources), a policy and the time to judge at, decide which
    to keep and which to remove, per source (host, kind and source name); a snapshot's members
    are kept or removed together.

    Return the `Selection`. Raise `UsageError` if the policy has no rule (see `Policy.check`);
    raise ValueError if two records share an id (a programming error: ids name files).
    """
    policy.check()
    ordered = sorted(records, key=_order)
    if len({record.id for record in ordered}) != len(ordered):
        raise ValueError("records with the same id")
    # Per machine too, as restic groups by host: two hosts backing up a volume of one name
    # into one bucket each keep their own newest and their own daily backups.
    groups: dict[tuple[str, str, str], list[BackupRecord]] = {}
    for record in ordered:
        groups.setdefault((record.hostname, record.kind, record.source), []).append(record)
    reasons: dict[str, tuple[str, ...]] = {}
    for group in groups.values():
        for record, kept_by in _select_source(group, policy, now):
            if kept_by:
                reasons[record.id] = tuple(kept_by)
    _keep_whole_snapshots(ordered, reasons)
    return Selection(
        keep=[record for record in ordered if record.id in reasons],
        remove=[record for record in ordered if record.id not in reasons],
        reasons=reasons,
    )


def _keep_whole_snapshots(records: list[BackupRecord], reasons: dict[str, tuple[str, ...]]) -> None:
    """A snapshot is restored as a set: if any member is kept, every member is."""
    kept = {record.snapshot for record in records if record.snapshot and record.id in reasons}
    for record in records:
        if record.snapshot in kept and record.id not in reasons:
            reasons[record.id] = (f"snapshot {record.snapshot}",)


def _order(record: BackupRecord) -> tuple[datetime, str]:
    return created_at(record), record.id


def _select_source(
    oldest_first: list[BackupRecord], policy: Policy, now: datetime
) -> list[tuple[BackupRecord, list[str]]]:
    """Return each record of one source with the reasons it is kept (empty: removed)."""
    newest_first = list(reversed(oldest_first))
    window_start = _window_start(newest_first, policy.within, now)
    left = policy.counts()
    last_period: dict[str, str | None] = dict.fromkeys(left)
    decided: list[tuple[BackupRecord, list[str]]] = []
    for position, record in enumerate(newest_first):
        moment = created_at(record)
        kept_by = [f"tag {tag}" for tag in policy.tags if tag in record.tags]
        if window_start is not None and moment > window_start:
            kept_by.append(f"within {policy.within}")
        is_oldest = position == len(newest_first) - 1
        for rule in left:
            if left[rule] <= 0:
                continue
            period = f"#{position + 1}" if rule == "last" else _PERIODS[rule](moment)
            if period != last_period[rule]:
                kept_by.append(f"{rule} {period}")
            elif is_oldest:
                # restic keeps the oldest too while a rule has counts left: as much history as
                # the counts allow.
                kept_by.append(f"{rule} {period} (oldest, {left[rule]} left)")
            else:
                continue
            last_period[rule] = period
            left[rule] -= 1
        decided.append((record, kept_by))
    _add_guarantees(decided, policy)
    decided.reverse()
    return decided


def _window_start(
    newest_first: list[BackupRecord], within: Duration | None, now: datetime
) -> datetime | None:
    """Return the time after which `within` keeps backups (None: the rule is off).

    Measured from the newest backup that is not in the future, as restic does; if all are,
    the window keeps them all.
    """
    if within is None or within.is_zero():
        return None
    past = [created_at(record) for record in newest_first if created_at(record) <= now]
    if not past:
        return datetime.min.replace(tzinfo=UTC)
    return within.before(past[0])


def _add_guarantees(newest_first: list[tuple[BackupRecord, list[str]]], policy: Policy) -> None:
    """Add the reasons no policy overrides: newest, newest verified, protected tags."""
    if not newest_first:
        return
    newest_first[0][1].append("newest")
    for record, kept_by in newest_first:
        if record.verified_ok is True:
            kept_by.append("newest verified")
            break
    for record, kept_by in newest_first:
        kept_by.extend(
            f"protected tag {tag}" for tag in policy.protected_tags if tag in record.tags
        )
