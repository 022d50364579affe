"""The multipart plan: part sizes by part number, pieces, and how many pieces go at once."""

from __future__ import annotations

import pytest

from opskit.storage.s3 import plan
from opskit.storage.s3.plan import PartPlan

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB


def test_default_plan_holds_a_five_tib_archive() -> None:
    default = PartPlan.default()
    assert default.max_object_size() >= 5 * TiB
    total = sum(default.part_size(number) for number in range(1, plan.MAX_PARTS + 1))
    assert total == default.max_object_size()


def test_default_part_sizes_never_shrink_and_stay_within_s3_limits() -> None:
    default = PartPlan.default()
    sizes = [default.part_size(number) for number in range(1, plan.MAX_PARTS + 1)]
    assert sizes == sorted(sizes)
    assert min(sizes) >= plan.MIN_PART_SIZE
    assert max(sizes) <= plan.MAX_PART_SIZE


@pytest.mark.parametrize(
    ("part_number", "size", "assembled"),
    [
        (1, 5 * MiB, False),
        (2000, 5 * MiB, False),
        (2001, GiB, True),
        (10_000, GiB, True),
    ],
)
def test_default_plan_uploads_small_parts_and_assembles_large_ones(
    part_number: int, size: int, assembled: bool
) -> None:
    default = PartPlan.default()
    assert default.part_size(part_number) == size
    assert default.is_assembled(part_number) is assembled


def test_pieces_are_s3s_minimum_part_size_whatever_the_part_size() -> None:
    """Memory is (concurrency + 1) pieces, so it does not grow with the archive."""
    default = PartPlan.default()
    assert default.piece_size == 5 * MiB == plan.MIN_PART_SIZE
    buffers = (plan.concurrency_for(default.piece_size) + 1) * default.piece_size
    assert buffers == 15 * MiB


def test_an_assembled_part_has_fewer_pieces_than_a_staging_upload_may_have_parts() -> None:
    default = PartPlan.default()
    assert -(-default.part_size(plan.MAX_PARTS) // default.piece_size) <= plan.MAX_PARTS


def test_explicit_part_size_is_used_for_every_part_and_never_assembled() -> None:
    fixed = PartPlan.fixed(64 * MiB)
    assert {fixed.part_size(number) for number in (1, 2001, 9999)} == {64 * MiB}
    assert not any(fixed.is_assembled(number) for number in (1, 2001, 10_000))
    assert fixed.piece_size == 64 * MiB
    assert fixed.max_object_size() == 64 * MiB * 10_000


@pytest.mark.parametrize("part_number", [0, -1, 10_001])
def test_part_numbers_outside_s3_limits_are_rejected(part_number: int) -> None:
    with pytest.raises(ValueError):
        PartPlan.default().part_size(part_number)


@pytest.mark.parametrize(
    ("piece_size", "schedule"),
    [
        (5 * MiB, ((9999, 5 * MiB),)),  # not 10,000 parts
        (5 * MiB, ((5000, 5 * MiB), (5000, 6 * GiB))),  # a part above 5 GiB
        (10 * MiB, ((5000, 5 * MiB), (5000, 20 * MiB))),  # a part smaller than a piece
        (1 * MiB, ((5000, 1 * MiB), (5000, 20 * MiB))),  # assembled from sub-minimum pieces
    ],
)
def test_invalid_plans_are_rejected(piece_size: int, schedule) -> None:
    with pytest.raises(ValueError):
        PartPlan(piece_size, schedule)


def test_default_concurrency_is_two() -> None:
    assert plan.concurrency_for(5 * MiB) == 2


@pytest.mark.parametrize("part_size", [8 * MiB, 64 * MiB, GiB])
def test_concurrency_shrinks_for_large_fixed_parts_to_keep_buffers_bounded(part_size: int):
    concurrency = plan.concurrency_for(part_size)
    assert concurrency >= 1
    if concurrency > 1:  # in flight plus the part being filled fit in the budget
        assert (concurrency + 1) * part_size <= plan.BUFFER_BUDGET


def test_explicit_concurrency_wins() -> None:
    assert plan.concurrency_for(GiB, 8) == 8
    assert plan.concurrency_for(8 * MiB, 1) == 1
