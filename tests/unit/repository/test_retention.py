"""The retention policy at a given "now", on hand-built sets of back-dated records."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opskit import errors
from opskit.repository import filters, retention
from opskit.repository.catalog import BackupRecord, Listing, MetadataProblem, iso_utc
from opskit.repository.retention import Duration, Policy, select

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
_serial = itertools.count()


def record(
    created: str | datetime,
    source: str = "app",
    *,
    kind: str = "volume",
    tags: tuple[str, ...] = (),
    verified_ok: bool | None = None,
    snapshot: str | None = None,
) -> BackupRecord:
    """A valid record of `source` made at `created` (`2026-11-26T09:00` or a datetime)."""
    moment = created if isinstance(created, datetime) else datetime.fromisoformat(created)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    backup_id = f"{source}-{moment.strftime('%Y%m%dT%H%M%SZ')}-{next(_serial):04x}"
    return BackupRecord(
        id=backup_id,
        source=source,
        kind=kind,
        created=iso_utc(moment),
        size=100,
        sha256="0" * 64,
        compression="zstd",
        archive=backup_id + ".tar.zst",
        tags=list(tags),
        verified_ok=verified_ok,
        snapshot=snapshot,
    )


def kept(records: list[BackupRecord], policy: Policy, now: datetime = NOW) -> list[str]:
    """The `created` times (minutes) of the records `policy` keeps, oldest first."""
    selection = select(records, policy, now)
    return [item.created[:16] for item in selection.keep]


def reasons_of(records: list[BackupRecord], policy: Policy, index: int) -> tuple[str, ...]:
    return select(records, policy, NOW).reasons.get(records[index].id, ())


def test_select_refuses_an_empty_policy() -> None:
    with pytest.raises(errors.UsageError, match="no retention rule"):
        select([record("2026-11-26T09:00")], Policy(), NOW)


def test_select_refuses_a_negative_count() -> None:
    with pytest.raises(errors.UsageError, match="keep-daily"):
        select([], Policy(daily=-1), NOW)


def test_select_of_no_records_is_empty() -> None:
    selection = select([], Policy(last=1), NOW)
    assert (selection.keep, selection.remove, selection.reasons) == ([], [], {})


def test_select_keep_last_keeps_the_newest_n() -> None:
    records = [record(f"2026-11-2{day}T09:00") for day in range(1, 6)]
    assert kept(records, Policy(last=2)) == ["2026-11-24T09:00", "2026-11-25T09:00"]
    assert reasons_of(records, Policy(last=2), 3) == ("last #2",)


def test_select_keep_hourly_keeps_the_newest_of_each_hour_with_backups() -> None:
    records = [
        record("2026-11-26T06:10"),
        record("2026-11-26T08:05"),
        record("2026-11-26T08:55"),
        record("2026-11-26T09:15"),
        record("2026-11-26T09:45"),
    ]
    # Hour 07 has no backup and is not counted.
    assert kept(records, Policy(hourly=2)) == ["2026-11-26T08:55", "2026-11-26T09:45"]
    assert reasons_of(records, Policy(hourly=2), 2) == ("hourly 2026-11-26T08",)


def test_select_keep_daily_counts_only_days_with_backups() -> None:
    records = [
        record("2026-11-10T23:00"),
        record("2026-11-20T01:00"),
        record("2026-11-20T23:59"),
        record("2026-11-24T03:00"),
        record("2026-11-26T08:00"),
        record("2026-11-26T09:00"),
    ]
    assert kept(records, Policy(daily=3)) == [
        "2026-11-20T23:59",
        "2026-11-24T03:00",
        "2026-11-26T09:00",
    ]


def test_select_keep_daily_days_are_utc_days() -> None:
    records = [record("2026-11-25T23:59"), record("2026-11-26T00:01")]
    assert kept(records, Policy(daily=2)) == ["2026-11-25T23:59", "2026-11-26T00:01"]


def test_select_keep_weekly_uses_iso_weeks_monday_to_sunday() -> None:
    records = [
        record("2026-11-15T10:00"),  # Sunday, week 46
        record("2026-11-16T10:00"),  # Monday, week 47
        record("2026-11-22T10:00"),  # Sunday, week 47
        record("2026-11-23T10:00"),  # Monday, week 48
    ]
    assert kept(records, Policy(weekly=2)) == ["2026-11-22T10:00", "2026-11-23T10:00"]
    assert reasons_of(records, Policy(weekly=2), 2) == ("weekly 2026-W47",)


def test_select_keep_weekly_across_the_new_year_uses_the_iso_year() -> None:
    # 2026-12-31 (Thursday) and 2027-01-02 (Saturday) are both in ISO week 2026-W53.
    records = [record("2026-12-28T10:00"), record("2026-12-31T10:00"), record("2027-01-02T10:00")]
    now = datetime(2027, 1, 3, tzinfo=UTC)
    assert kept(records, Policy(weekly=1), now) == ["2027-01-02T10:00"]
    assert select(records, Policy(weekly=1), now).reasons[records[2].id] == (
        "weekly 2026-W53",
        "newest",
    )


def test_select_keep_monthly_keeps_the_newest_of_each_month() -> None:
    records = [
        record("2026-08-31T10:00"),
        record("2026-09-01T10:00"),
        record("2026-09-30T10:00"),
        record("2026-11-01T10:00"),
        record("2026-11-25T10:00"),
    ]
    assert kept(records, Policy(monthly=2)) == ["2026-09-30T10:00", "2026-11-25T10:00"]


def test_select_keep_yearly_keeps_the_newest_of_each_year() -> None:
    records = [
        record("2023-06-01T10:00"),
        record("2024-01-01T10:00"),
        record("2024-12-31T23:00"),
        record("2026-03-01T10:00"),
    ]
    assert kept(records, Policy(yearly=2)) == ["2024-12-31T23:00", "2026-03-01T10:00"]


def test_select_bucket_with_counts_left_keeps_the_oldest_too() -> None:
    # Two days with backups, --keep-daily 7: restic (0.16+) keeps the oldest backup as well,
    # for the longest history the counts allow.
    records = [record("2026-11-25T08:00"), record("2026-11-25T20:00"), record("2026-11-26T08:00")]
    assert kept(records, Policy(daily=7)) == [
        "2026-11-25T08:00",
        "2026-11-25T20:00",
        "2026-11-26T08:00",
    ]
    assert reasons_of(records, Policy(daily=7), 0) == ("daily 2026-11-25 (oldest, 5 left)",)


def test_select_bucket_without_counts_left_does_not_keep_the_oldest() -> None:
    records = [record("2026-11-25T08:00"), record("2026-11-25T20:00"), record("2026-11-26T08:00")]
    assert kept(records, Policy(daily=2)) == ["2026-11-25T20:00", "2026-11-26T08:00"]


def test_select_buckets_combine_and_each_names_its_reason() -> None:
    records = [
        record("2026-09-15T10:00"),
        record("2026-10-20T10:00"),
        record("2026-11-20T10:00"),
        record("2026-11-24T10:00"),
        record("2026-11-25T10:00"),
        record("2026-11-26T10:00"),
    ]
    policy = Policy(last=1, daily=2, monthly=3)
    assert kept(records, policy) == [
        "2026-09-15T10:00",
        "2026-10-20T10:00",
        "2026-11-25T10:00",
        "2026-11-26T10:00",
    ]
    assert reasons_of(records, policy, 5) == (
        "last #1",
        "daily 2026-11-26",
        "monthly 2026-11",
        "newest",
    )
    assert reasons_of(records, policy, 4) == ("daily 2026-11-25",)
    assert reasons_of(records, policy, 1) == ("monthly 2026-10",)


def test_select_keep_within_is_measured_from_the_newest_backup() -> None:
    # The backups stopped in 2025: the window is 2 days before the newest, not before now.
    records = [
        record("2025-03-01T10:00"),
        record("2025-03-08T09:00"),
        record("2025-03-08T11:00"),
        record("2025-03-10T10:00"),
    ]
    assert kept(records, Policy(within=Duration(days=2))) == [
        "2025-03-08T11:00",
        "2025-03-10T10:00",
    ]
    assert reasons_of(records, Policy(within=Duration(days=2)), 2) == ("within 2d",)


def test_select_keep_within_boundary_is_exclusive() -> None:
    records = [record("2026-11-24T10:00"), record("2026-11-24T10:01"), record("2026-11-26T10:00")]
    assert kept(records, Policy(within=Duration(days=2))) == [
        "2026-11-24T10:01",
        "2026-11-26T10:00",
    ]


def test_select_keep_within_ignores_backups_in_the_future_of_now() -> None:
    # A backup dated next year (a wrong clock) must not move the window past every other one.
    records = [record("2026-11-20T10:00"), record("2026-11-25T10:00"), record("2027-11-25T10:00")]
    assert kept(records, Policy(within=Duration(days=2))) == [
        "2026-11-25T10:00",
        "2027-11-25T10:00",
    ]


def test_select_keep_within_keeps_everything_when_every_backup_is_in_the_future() -> None:
    records = [record("2030-01-01T10:00"), record("2030-06-01T10:00")]
    assert len(kept(records, Policy(within=Duration(hours=1)))) == 2


def test_select_keep_within_months_are_calendar_months() -> None:
    records = [record("2026-02-28T09:00"), record("2026-02-28T11:00"), record("2026-03-31T10:00")]
    # 31 March minus one month is 28 February 10:00 (the last day of February).
    assert kept(records, Policy(within=Duration(months=1))) == [
        "2026-02-28T11:00",
        "2026-03-31T10:00",
    ]


def test_select_keep_tag_keeps_every_backup_with_the_tag() -> None:
    records = [
        record("2026-11-01T10:00", tags=("release",)),
        record("2026-11-02T10:00", tags=("nightly",)),
        record("2026-11-03T10:00", tags=("release", "nightly")),
        record("2026-11-04T10:00"),
    ]
    assert kept(records, Policy(tags=("release",))) == [
        "2026-11-01T10:00",
        "2026-11-03T10:00",
        "2026-11-04T10:00",
    ]
    assert reasons_of(records, Policy(tags=("release",)), 0) == ("tag release",)


def test_select_applies_the_policy_per_source() -> None:
    records = [
        record("2026-11-20T10:00", "app"),
        record("2026-11-21T10:00", "db"),
        record("2026-11-22T10:00", "app"),
        record("2026-11-23T10:00", "db"),
        record("2026-11-24T10:00", "/srv/app", kind="path"),
    ]
    selection = select(records, Policy(last=1), NOW)
    assert [item.id for item in selection.keep] == [records[2].id, records[3].id, records[4].id]
    assert [item.id for item in selection.remove] == [records[0].id, records[1].id]


def test_select_sources_of_different_kinds_are_separate() -> None:
    records = [record("2026-11-20T10:00", "data"), record("2026-11-21T10:00", "data", kind="path")]
    assert len(select(records, Policy(last=1), NOW).keep) == 2


def test_select_always_keeps_the_newest_backup_of_a_source() -> None:
    records = [record("2026-11-20T10:00"), record("2026-11-21T10:00")]
    selection = select(records, Policy(tags=("nothing-has-it",)), NOW)
    assert [item.id for item in selection.keep] == [records[1].id]
    assert selection.reasons[records[1].id] == ("newest",)


def test_select_keeps_the_newest_verified_while_newer_ones_are_unverified_or_failed() -> None:
    records = [
        record("2026-11-20T10:00", verified_ok=True),
        record("2026-11-21T10:00", verified_ok=True),
        record("2026-11-22T10:00", verified_ok=False),
        record("2026-11-23T10:00"),
        record("2026-11-24T10:00"),
    ]
    selection = select(records, Policy(last=1), NOW)
    assert [item.id for item in selection.keep] == [records[1].id, records[4].id]
    assert selection.reasons[records[1].id] == ("newest verified",)


def test_select_newest_verified_needs_no_older_one_when_the_newest_is_verified() -> None:
    records = [
        record("2026-11-20T10:00", verified_ok=True),
        record("2026-11-21T10:00", verified_ok=True),
    ]
    selection = select(records, Policy(last=1), NOW)
    assert [item.id for item in selection.keep] == [records[1].id]
    assert selection.reasons[records[1].id] == ("last #1", "newest", "newest verified")


def test_select_never_removes_backups_with_a_protected_tag() -> None:
    records = [
        record("2026-11-01T10:00", tags=("pre-upgrade",)),
        record("2026-11-02T10:00", tags=("pre-restore",)),
        record("2026-11-03T10:00", tags=("nightly",)),
        record("2026-11-04T10:00"),
    ]
    selection = select(records, Policy(last=1), NOW)
    assert [item.id for item in selection.remove] == [records[2].id]
    assert selection.reasons[records[0].id] == ("protected tag pre-upgrade",)
    assert selection.reasons[records[1].id] == ("protected tag pre-restore",)


def test_select_protected_tags_are_a_parameter() -> None:
    records = [
        record("2026-11-01T10:00", tags=("pre-upgrade",)),
        record("2026-11-02T10:00", tags=("pre-restore",)),
        record("2026-11-03T10:00", tags=("audit",)),
        record("2026-11-04T10:00"),
    ]
    selection = select(records, Policy(last=1, protected_tags=("audit",)), NOW)
    assert [item.id for item in selection.keep] == [records[2].id, records[3].id]


def test_select_rejects_records_with_the_same_id() -> None:
    first = record("2026-11-01T10:00")
    with pytest.raises(ValueError, match="same id"):
        select([first, first], Policy(last=1), NOW)


def test_select_orders_backups_of_one_second_by_milliseconds() -> None:
    base = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)
    records = [record(base + timedelta(milliseconds=900)), record(base + timedelta(milliseconds=5))]
    selection = select(records, Policy(last=1), NOW)
    assert [item.id for item in selection.keep] == [records[0].id]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1y2m3d4h", Duration(1, 2, 3, 4)),
        ("30d", Duration(days=30)),
        ("2d12h", Duration(days=2, hours=12)),
        ("6m", Duration(months=6)),
    ],
)
def test_duration_parse_reads_restic_durations(text: str, expected: Duration) -> None:
    assert Duration.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["", "1", "d", "1w", "1d1d", "1h1d", "0d", "1d ", "-1d", "1.5d"])
def test_duration_parse_refuses_other_text(text: str) -> None:
    with pytest.raises(errors.UsageError):
        Duration.parse(text)


def test_duration_before_a_huge_duration_is_the_beginning_of_time() -> None:
    assert Duration(years=5000).before(NOW).year == 1
    assert Duration(days=10**9).before(NOW).year == 1


def test_policy_describe_names_every_rule() -> None:
    policy = Policy(last=3, daily=7, within=Duration(days=2), tags=("release",))
    assert policy.describe() == "keep last 3, daily 7, all within 2d of the newest, tag release"


def test_filter_listing_keeps_records_with_any_of_the_tags_and_the_problems() -> None:
    records = [
        record("2026-11-01T10:00", tags=("a",)),
        record("2026-11-02T10:00", tags=("b",), snapshot="snap-1"),
        record("2026-11-03T10:00"),
    ]
    listing = Listing(records, [MetadataProblem("x.json", "broken")])
    assert [item.id for item in filters.filter_listing(listing, ["a", "b"])] == [
        records[0].id,
        records[1].id,
    ]
    assert [item.id for item in filters.filter_listing(listing, snapshot="snap-1")] == [
        records[1].id
    ]
    assert list(filters.filter_listing(listing)) == records
    assert filters.filter_listing(listing, ["zzz"]).problems == listing.problems


# Properties over random back-dated sets.
_moments = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 6, 1)).map(
    lambda moment: moment.replace(tzinfo=UTC)
)
_records = st.lists(
    st.builds(
        record,
        _moments,
        st.sampled_from(["app", "db", "cache"]),
        tags=st.lists(
            st.sampled_from(["pre-upgrade", "pre-restore", "nightly", "x"]), max_size=2
        ).map(tuple),
        verified_ok=st.sampled_from([None, True, False]),
    ),
    max_size=40,
)
_policies = st.builds(
    Policy,
    last=st.integers(0, 4),
    hourly=st.integers(0, 4),
    daily=st.integers(0, 4),
    weekly=st.integers(0, 4),
    monthly=st.integers(0, 4),
    yearly=st.integers(0, 2),
    within=st.none() | st.builds(Duration, days=st.integers(1, 40)),
    tags=st.lists(st.sampled_from(["nightly", "x", "none"]), max_size=2).map(tuple),
).filter(lambda policy: not policy.is_empty())


@settings(max_examples=300, deadline=None)
@given(records=_records, policy=_policies)
def test_select_properties_hold_on_random_sets(records: list[BackupRecord], policy: Policy) -> None:
    selection = select(records, policy, NOW)
    kept_ids = [item.id for item in selection.keep]
    removed_ids = [item.id for item in selection.remove]
    # Kept and removed partition the records; only kept ones have reasons, each at least one.
    assert sorted(kept_ids + removed_ids) == sorted(item.id for item in records)
    assert not set(kept_ids) & set(removed_ids)
    assert set(selection.reasons) == set(kept_ids)
    assert all(selection.reasons[backup_id] for backup_id in kept_ids)
    by_source: dict[str, list[BackupRecord]] = {}
    for item in sorted(records, key=lambda item: (item.created, item.id)):
        by_source.setdefault(item.source, []).append(item)
    for group in by_source.values():
        assert group[-1].id in kept_ids  # the newest of each source
        verified = [item for item in group if item.verified_ok is True]
        if verified:
            assert verified[-1].id in kept_ids  # the newest verified of each source
    for item in records:
        if set(item.tags) & set(retention.DEFAULT_PROTECTED_TAGS):
            assert item.id in kept_ids
    # The outcome does not depend on the order of the input.
    again = select(list(reversed(records)), policy, NOW)
    assert [item.id for item in again.keep] == kept_ids


@settings(max_examples=200, deadline=None)
@given(records=_records, policy=_policies, rule=st.sampled_from(list(Policy().counts())))
def test_select_a_larger_count_never_keeps_less(
    records: list[BackupRecord], policy: Policy, rule: str
) -> None:
    larger = Policy(**{**policy.__dict__, rule: getattr(policy, rule) + 1})
    before = {item.id for item in select(records, policy, NOW).keep}
    after = {item.id for item in select(records, larger, NOW).keep}
    assert before <= after


def test_select_applies_the_policy_per_host() -> None:
    """Two machines backing up a volume of one name into one store keep their own backups."""
    first = [record(f"2026-11-{day:02d}T01:00") for day in range(10, 20)]
    second = [record(f"2026-11-{day:02d}T02:00") for day in range(10, 20)]
    for item in first:
        item.hostname = "db1"
    for item in second:
        item.hostname = "db2"

    selection = select(first + second, Policy(daily=7), NOW)

    by_host = {host: [r for r in selection.keep if r.hostname == host] for host in ("db1", "db2")}
    assert len(by_host["db1"]) == 7 and len(by_host["db2"]) == 7
    assert first[-1] in selection.keep and second[-1] in selection.keep


def test_select_keeps_every_member_of_a_snapshot_that_keeps_one() -> None:
    older = [record("2026-11-20T09:00", "db", snapshot="shop-1"), record("2026-11-20T09:00", "web",
             snapshot="shop-1")]  # fmt: skip
    newer_db = record("2026-11-25T09:00", "db")
    newer_web = [record("2026-11-25T09:00", "web"), record("2026-11-25T10:00", "web")]
    records = [*older, newer_db, *newer_web]

    selection = select(records, Policy(last=2), NOW)

    # db keeps both of its backups (last 2); its older one is in snapshot shop-1, so the web
    # member of shop-1 stays too, although web's own last 2 are newer.
    assert older[1] in selection.keep
    assert selection.reasons[older[1].id] == ("snapshot shop-1",)
