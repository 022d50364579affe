"""The multipart plan: how part size grows with the part number, and how many parts go at once."""

from __future__ import annotations

import pytest

from opskit.storage import s3

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB


def test_part_schedule_covers_exactly_ten_thousand_parts() -> None:
    assert sum(count for count, _ in s3.PART_SCHEDULE) == s3.MAX_PARTS


def test_part_schedule_holds_a_five_tib_archive() -> None:
    assert s3.max_object_size() >= 5 * TiB
    total = sum(s3.part_size_for(number) for number in range(1, s3.MAX_PARTS + 1))
    assert total == s3.max_object_size()


def test_part_sizes_never_shrink_and_stay_within_s3_limits() -> None:
    sizes = [s3.part_size_for(number) for number in range(1, s3.MAX_PARTS + 1)]
    assert sizes == sorted(sizes)
    assert min(sizes) >= s3.MIN_PART_SIZE
    assert max(sizes) <= s3.MAX_PART_SIZE


@pytest.mark.parametrize(
    ("part_number", "size"),
    [
        (1, 5 * MiB),
        (2000, 5 * MiB),
        (2001, 10 * MiB),
        (3000, 10 * MiB),
        (3001, 20 * MiB),
        (4001, 40 * MiB),
        (5001, 80 * MiB),
        (5301, 160 * MiB),
        (5601, 320 * MiB),
        (5901, 640 * MiB),
        (6201, 1280 * MiB),
        (10_000, 1280 * MiB),
    ],
)
def test_part_size_for_follows_the_schedule(part_number: int, size: int) -> None:
    assert s3.part_size_for(part_number) == size


def test_default_part_size_is_s3s_minimum() -> None:
    assert s3.DEFAULT_PART_SIZE == 5 * MiB == s3.MIN_PART_SIZE


def test_explicit_part_size_is_used_for_every_part() -> None:
    assert {s3.part_size_for(number, 64 * MiB) for number in (1, 2001, 9999)} == {64 * MiB}
    assert s3.max_object_size(64 * MiB) == 64 * MiB * 10_000


@pytest.mark.parametrize("part_number", [0, -1, 10_001])
def test_part_numbers_outside_s3_limits_are_rejected(part_number: int) -> None:
    with pytest.raises(ValueError):
        s3.part_size_for(part_number)


def test_default_concurrency_is_two_for_the_first_parts() -> None:
    assert s3.concurrency_for(8 * MiB) == 2


@pytest.mark.parametrize("part_number", [1, 2001, 3001, 4001, 5001, 6201])
def test_concurrency_shrinks_as_parts_grow_to_keep_buffers_bounded(part_number: int) -> None:
    part_size = s3.part_size_for(part_number)
    concurrency = s3.concurrency_for(part_size)
    assert concurrency >= 1
    if concurrency > 1:  # in flight plus the part being filled fit in the budget
        assert (concurrency + 1) * part_size <= s3.BUFFER_BUDGET


def test_concurrency_per_tier() -> None:
    assert [s3.concurrency_for(size) for _, size in s3.PART_SCHEDULE] == [2, 1, 1, 1, 1, 1, 1, 1, 1]


@pytest.mark.parametrize(
    ("last_part", "archive_gib", "buffers_mib"),
    [
        (2000, 9.765625, 15),
        (3000, 19.53125, 20),
        (4000, 39.0625, 40),
        (5000, 78.125, 80),
        (6200, 429.6875, 1280),
        (10_000, 5179.6875, 2560),
    ],
)
def test_part_buffers_by_archive_size(last_part: int, archive_gib: float, buffers_mib: int):
    """Memory for part buffers, (concurrency + 1) x part size, as documented in README.md."""
    archive = sum(s3.part_size_for(number) for number in range(1, last_part + 1))
    assert archive == archive_gib * GiB
    size = s3.part_size_for(last_part)
    assert (s3.concurrency_for(size) + 1) * size == buffers_mib * MiB


def test_explicit_concurrency_wins() -> None:
    assert s3.concurrency_for(GiB, 8) == 8
    assert s3.concurrency_for(8 * MiB, 1) == 1
