"""The streaming tar lister (archives from GNU tar, busybox tar and Python's tarfile, fed in
chunks of every size) and the comparison of two listings (issue 9, "Verify")."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opskit import errors
from opskit.archive.listing import (
    ListedEntry,
    TarLister,
    TarListing,
    compare,
    list_tar,
)

CONTENT = b"hello opskit\n" * 100


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is not installed (apt-get install {tool})", pytrace=False)
    return found


def _tree(root: Path) -> Path:
    """A small tree: a file, a hardlink, a symlink, a FIFO, a long name, a sparse file."""
    root.mkdir()
    (root / "dir").mkdir()
    (root / "dir" / "file").write_bytes(CONTENT)
    os.link(root / "dir" / "file", root / "hard")
    os.symlink("dir/file", root / "link")
    os.mkfifo(root / "fifo")
    (root / ("L" * 150)).write_bytes(b"long\n")
    with open(root / "sparse", "wb") as sparse:
        sparse.truncate(512 << 10)
        sparse.seek(128 << 10)
        sparse.write(b"X")
    os.utime(root / "dir" / "file", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return root


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


@pytest.fixture
def tree(tmp_path) -> Path:
    return _tree(tmp_path / "tree")


def _gnu_tar(tree: Path) -> bytes:
    command = [_require("tar"), "-c", "-f", "-", "--format=posix", "--sparse"]
    command += ["--pax-option=delete=atime,delete=ctime", "--numeric-owner", "-C", str(tree), "."]
    return subprocess.run(command, check=True, capture_output=True).stdout


def _busybox_tar(tree: Path) -> bytes:
    command = [_require("busybox"), "tar", "-cf", "-", "-C", str(tree), "."]
    return subprocess.run(command, check=True, capture_output=True).stdout


def _python_tar(tree: Path, tar_format: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as archive:
        archive.add(tree, arcname=".")
    return buffer.getvalue()


ARCHIVES = {
    "gnu": _gnu_tar,
    "busybox": _busybox_tar,
    "python-pax": lambda tree: _python_tar(tree, tarfile.PAX_FORMAT),
    "python-gnu": lambda tree: _python_tar(tree, tarfile.GNU_FORMAT),
}


@pytest.mark.parametrize("writer", ARCHIVES)
def test_list_tar_reads_every_entry(tree, writer):
    listing = list_tar([ARCHIVES[writer](tree)])

    entries = listing.entries
    assert entries["."].type == "dir"
    assert entries["dir/file"].type == "file" or entries["hard"].type == "file"
    file_entry = entries["dir/file"] if entries["dir/file"].type == "file" else entries["hard"]
    assert file_entry.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert file_entry.size == len(CONTENT)
    assert file_entry.mtime == 1_600_000_000
    assert {entries["dir/file"].type, entries["hard"].type} == {"file", "hardlink"}
    assert entries["link"].type == "symlink" and entries["link"].link == "dir/file"
    assert entries["fifo"].type == "fifo"
    assert entries["L" * 150].sha256 == hashlib.sha256(b"long\n").hexdigest()
    assert entries["sparse"].size == 512 << 10
    assert entries["sparse"].sha256 == hashlib.sha256((tree / "sparse").read_bytes()).hexdigest()


def test_list_tar_reads_gnu_sub_second_mtimes(tree):
    entry = list_tar([_gnu_tar(tree)]).entries["dir/file"]

    assert (entry.mtime, entry.mtime_ns) in ((1_600_000_000, 123_456_789),)


def test_list_tar_reads_a_gnu_sparse_file_as_its_real_content(tree):
    archive = _gnu_tar(tree)
    assert len(archive) < 64 << 10  # stored sparse: the holes are not in the archive

    entry = list_tar([archive]).entries["sparse"]

    assert entry.sha256 == hashlib.sha256((tree / "sparse").read_bytes()).hexdigest()


@pytest.mark.parametrize("writer", ARCHIVES)
@pytest.mark.parametrize("size", [13, 511, 512, 513, 4096, 1 << 20])
def test_list_tar_is_the_same_in_any_chunking(tree, writer, size):
    archive = ARCHIVES[writer](tree)

    assert list_tar(_chunks(archive, size)) == list_tar([archive])


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12))
def test_list_tar_is_the_same_at_random_chunk_boundaries(cuts):
    archive = _python_tar_of({"a": CONTENT, "b/c": b"x" * 1500, "d" * 120: b""})
    points = sorted({0, len(archive), *(cut % (len(archive) + 1) for cut in cuts)})
    pieces = [archive[start:end] for start, end in zip(points, points[1:], strict=False)]

    assert list_tar(pieces) == list_tar([archive])


def _python_tar_of(files: dict[str, bytes], tar_format: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.mark.parametrize("cut", [100, 512, 1000, 1536, -1024, -1])
def test_list_tar_finds_a_truncated_archive(cut):
    archive = _python_tar_of({"a": CONTENT, "b": b"y" * 3000})
    # A tarfile archive ends with two zero blocks and zero padding to 10 KiB records.
    data_end = len(archive.rstrip(b"\0"))
    end = cut if cut > 0 else data_end + cut

    with pytest.raises(errors.ArchiveCorrupt, match="truncated"):
        list_tar([archive[:end]])


def test_list_tar_refuses_a_header_with_a_wrong_checksum():
    archive = bytearray(_python_tar_of({"a": CONTENT}))
    archive[600] ^= 0xFF  # inside the PAX or first header block's name
    archive[10] ^= 0x01

    with pytest.raises(errors.ArchiveCorrupt, match="checksum"):
        list_tar([bytes(archive)])


def test_list_tar_hashes_a_flipped_content_byte_differently():
    archive = _python_tar_of({"a": CONTENT}, tarfile.USTAR_FORMAT)
    flipped = bytearray(archive)
    flipped[512 + 5] ^= 0x01

    assert list_tar([bytes(flipped)]).entries["a"].sha256 != hashlib.sha256(CONTENT).hexdigest()


def test_list_tar_keeps_the_last_of_two_entries_of_one_path():
    archive = _python_tar_of({"a": b"first", "./a": b"second"})

    listing = list_tar([archive])

    assert listing.entries["a"].sha256 == hashlib.sha256(b"second").hexdigest()
    assert listing.duplicates == 1


def test_tar_lister_finish_needs_the_end_marker():
    lister = TarLister("x.tar")
    lister.feed(_python_tar_of({"a": b"1"})[:1024])

    with pytest.raises(errors.ArchiveCorrupt, match="x.tar .*end-of-archive marker"):
        lister.finish()


# -- compare --


def _entry(path: str, kind: str = "file", **fields) -> ListedEntry:
    defaults = {"mode": 0o644, "uid": 0, "gid": 0, "mtime": 1_700_000_000}
    if kind == "file":
        defaults |= {"size": 3, "sha256": "a" * 64}
    return ListedEntry(path=path, type=kind, **(defaults | fields))


def _listing(*entries: ListedEntry) -> TarListing:
    return TarListing(entries={entry.path: entry for entry in entries})


def _whats(differences) -> list[tuple[str, str]]:
    return [(difference.path, difference.what) for difference in differences]


def test_compare_finds_nothing_in_equal_listings():
    listing = _listing(_entry(".", "dir"), _entry("a"), _entry("l", "symlink", link="a"))

    assert compare(listing, listing, ()) == []


def test_compare_names_missing_unexpected_and_changed_entries():
    archive = _listing(_entry("a"), _entry("b"), _entry("c", mode=0o600))
    restored = _listing(_entry("a", sha256="b" * 64), _entry("c", mode=0o644), _entry("d"))

    assert _whats(compare(archive, restored, ())) == [
        ("a", "content"),
        ("b", "missing"),
        ("c", "mode"),
        ("d", "unexpected"),
    ]


def test_compare_difference_reads_well():
    (difference,) = compare(_listing(_entry("c", mode=0o600)), _listing(_entry("c")), ())

    assert str(difference) == "'./c' mode: 0600 in the archive, 0644 restored"


def test_compare_ignores_the_root_mtime_and_directory_mtimes_unless_kept():
    archive = _listing(_entry(".", "dir", mtime=1), _entry("d", "dir", mtime=1))
    restored = _listing(_entry(".", "dir", mtime=2), _entry("d", "dir", mtime=2))

    assert compare(archive, restored, ()) == []
    assert _whats(compare(archive, restored, ("dir-mtimes",))) == [("d", "mtime")]


def test_compare_sub_second_mtimes_only_when_kept():
    archive = _listing(_entry("a", mtime_ns=5))
    restored = _listing(_entry("a", mtime_ns=0))

    assert compare(archive, restored, ()) == []
    assert _whats(compare(archive, restored, ("subsecond-mtimes",))) == [("a", "mtime")]


def test_compare_pre_1970_mtimes_count_as_zero_unless_kept():
    archive, restored = _listing(_entry("a", mtime=-5)), _listing(_entry("a", mtime=0))

    assert compare(archive, restored, ()) == []
    assert _whats(compare(archive, restored, ("pre-1970-mtimes",))) == [("a", "mtime")]


def test_compare_large_owners_by_24_bits_unless_kept():
    archive = _listing(_entry("a", uid=(1 << 24) + 5))
    restored = _listing(_entry("a", uid=5))

    assert compare(archive, restored, ()) == []
    assert _whats(compare(archive, restored, ("large-owners",))) == [("a", "owner")]


def test_compare_hardlinks_as_groups_whichever_name_comes_first():
    file_a = _entry("a")
    archive = _listing(file_a, _entry("b", "hardlink", link="a"))
    restored = _listing(dataclasses.replace(file_a, path="b"), _entry("a", "hardlink", link="b"))

    assert compare(archive, restored, ()) == []


def test_compare_finds_a_lost_hardlink():
    archive = _listing(_entry("a"), _entry("b", "hardlink", link="a"))
    restored = _listing(_entry("a"), _entry("b"))

    assert _whats(compare(archive, restored, ())) == [("a", "hardlinks")]


def test_compare_symlink_targets_but_not_their_modes_or_mtimes():
    archive = _listing(_entry("l", "symlink", link="a", mode=0o777, mtime=1))
    same = _listing(_entry("l", "symlink", link="a", mode=0o644, mtime=2))
    other = _listing(_entry("l", "symlink", link="b"))

    assert compare(archive, same, ()) == []
    assert _whats(compare(archive, other, ())) == [("l", "link")]


def test_compare_attributes_only_of_what_is_kept():
    attributes = (("SCHILY.acl.access", "1234"), ("SCHILY.xattr.user.note", "abcd"))
    archive, restored = _listing(_entry("a", attributes=attributes)), _listing(_entry("a"))

    assert compare(archive, restored, ()) == []
    assert _whats(compare(archive, restored, ("xattrs",))) == [("a", "attributes")]
    assert _whats(compare(archive, restored, ("acls",))) == [("a", "attributes")]


def test_compare_type_change_is_one_difference():
    archive, restored = _listing(_entry("a")), _listing(_entry("a", "dir", mode=0o755))

    assert _whats(compare(archive, restored, ())) == [("a", "type")]


@pytest.mark.parametrize("writer", ["gnu", "busybox"])
def test_compare_a_tree_with_itself_through_two_tars(tree, writer):
    """GNU tar (as the backup writes) against busybox (as a busybox helper re-reads): equal
    where both keep something."""
    archive = list_tar([_gnu_tar(tree)])
    restored = list_tar([ARCHIVES[writer](tree)])

    assert compare(archive, restored, ()) == []
