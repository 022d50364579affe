"""How a stream of unknown length is cut into S3 parts, within S3's limits and a fixed memory.

S3 holds at most 10,000 parts per object, of 5 MiB to 5 GiB each, and each part's length must
be known before it is sent. A backup's length is unknown until it ends, so parts must grow to
let 5 TiB fit, yet a part held in memory until S3 has it would make memory grow with them.

The plan separates the two: bytes always travel in *pieces* of `piece_size` (5 MiB), so memory
is (concurrency + 1) pieces whatever the archive's size. The object's first parts are single
pieces, uploaded directly. Later parts are *assembled*: their pieces go up as a temporary
staging object, which S3 then copies into the part (UploadPartCopy), server side.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB

# S3's multipart limits.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000

# Two pieces of 5 MiB in flight by default: with opskit's own ~120 MiB (Python, the Docker
# client, boto3 and its S3 model, the zstd pipeline) that keeps a backup under 150 MB of RSS
# (measured: 8 MiB parts took it to 152 MB). Each extra piece in flight costs one buffer; a
# target's max_concurrency raises it (throughput on high-latency links, for memory).
DEFAULT_MAX_CONCURRENCY = 2
# Without an explicit max_concurrency, fewer parts are uploaded at once when a fixed part_size
# is large, so that the buffers (parts in flight plus the one being filled) fit this budget.
BUFFER_BUDGET = 24 * MiB

DEFAULT_PIECE_SIZE = 5 * MiB
# The default schedule, as (number of parts, part size). Archives up to 9.8 GiB (2,000 parts of
# 5 MiB) need no server-side copy at all; beyond, each part is assembled from 205 pieces, and
# 10,000 parts hold 7.8 TiB. At most two staging objects (2 GiB) exist at a time.
DEFAULT_SCHEDULE: tuple[tuple[int, int], ...] = (
    (2000, 5 * MiB),  # parts    1-2000: archives up to 9.8 GiB, uploaded directly
    (8000, 1 * GiB),  # parts 2001-10000: up to 7.8 TiB, assembled
)


@dataclass(frozen=True)
class PartPlan:
    """Part sizes by part number, and the piece size bytes travel in."""

    piece_size: int
    schedule: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if sum(count for count, _ in self.schedule) != MAX_PARTS:
            raise ValueError(f"a part schedule must cover exactly {MAX_PARTS} parts")
        sizes = [size for _, size in self.schedule]
        if min(sizes) < self.piece_size or max(sizes) > MAX_PART_SIZE:
            raise ValueError("part sizes must lie between the piece size and 5 GiB")
        if self.piece_size < MIN_PART_SIZE and len(set(sizes)) > 1:
            # A staging object's pieces are parts themselves: all but its last need 5 MiB.
            raise ValueError("pieces of assembled parts must be at least 5 MiB")

    @classmethod
    def default(cls) -> PartPlan:
        return cls(DEFAULT_PIECE_SIZE, DEFAULT_SCHEDULE)

    @classmethod
    def fixed(cls, part_size: int) -> PartPlan:
        """Every part `part_size` bytes, each uploaded directly (the target's part_size)."""
        return cls(part_size, ((MAX_PARTS, part_size),))

    def part_size(self, part_number: int) -> int:
        """Given a 1-based part number, return that part's size in bytes.

        Raise ValueError for part numbers outside 1..MAX_PARTS.
        """
        if not 1 <= part_number <= MAX_PARTS:
            raise ValueError(f"part number {part_number} outside 1..{MAX_PARTS}")
        first_of_tier = 1
        for count, size in self.schedule:
            if part_number < first_of_tier + count:
                return size
            first_of_tier += count
        raise AssertionError("unreachable: the schedule covers MAX_PARTS parts")

    def is_assembled(self, part_number: int) -> bool:
        """Whether this part is built from several pieces by a server-side copy."""
        return self.part_size(part_number) > self.piece_size

    def max_object_size(self) -> int:
        """Return the largest object this plan can upload."""
        return sum(count * size for count, size in self.schedule)


def concurrency_for(piece_size: int, max_concurrency: int | None = None) -> int:
    """Return how many pieces of `piece_size` may be uploaded at once.

    An explicit `max_concurrency` wins. Otherwise it is `DEFAULT_MAX_CONCURRENCY`, lowered (to
    1 at least) so that pieces in flight plus the one being filled fit in `BUFFER_BUDGET`.
    """
    if max_concurrency is not None:
        return max_concurrency
    return max(1, min(DEFAULT_MAX_CONCURRENCY, BUFFER_BUDGET // piece_size - 1))
