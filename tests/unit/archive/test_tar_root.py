"""The tar watcher: the stream's root entry (`./`) and symlink owners, and the containment checks
on every header (issue 8, "Hostile archives"), on archives from Python's tarfile, from real GNU
tar, and crafted byte by byte where no tool writes such a header."""

from __future__ import annotations

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
from opskit.archive.tar_root import BLOCK, MAX_METADATA, MAX_NAMED, RootEntry, TarWatcher


def parse_root_header(block: bytes) -> RootEntry | None:
    """The root entry a watcher finds in one header block."""
    watcher = TarWatcher([block])
    for _ in watcher:
        pass
    return watcher.root


def _tar(*members: tuple[str, int, int, int, bytes | None]) -> bytes:
    """A tar of (name, mode, uid, gid, content or None for a directory) members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, mode, uid, gid, content in members:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid = mode, uid, gid
            if content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["./", "."])
def test_parse_root_header_reads_mode_and_owner(name):
    header = _tar((name, 0o2750, 999, 998, None))[:BLOCK]

    assert parse_root_header(header) == RootEntry(mode=0o2750, uid=999, gid=998)


def test_parse_root_header_keeps_setuid_setgid_and_sticky():
    header = _tar(("./", 0o7777, 0, 0, None))[:BLOCK]

    assert parse_root_header(header) == RootEntry(mode=0o7777, uid=0, gid=0)


@pytest.mark.parametrize(
    "member",
    [("./file", 0o644, 0, 0, b"x"), ("./sub/", 0o755, 0, 0, None), ("sub", 0o755, 0, 0, None)],
    ids=["file", "subdirectory", "bare-subdirectory"],
)
def test_parse_root_header_ignores_other_entries(member):
    assert parse_root_header(_tar(member)[:BLOCK]) is None


def test_parse_root_header_returns_none_for_the_end_marker():
    assert parse_root_header(b"\0" * BLOCK) is None


@pytest.mark.parametrize("chunk_size", [1, 7, 511, 512, 513, 100_000])
def test_sniffer_passes_chunks_through_and_finds_the_root(chunk_size):
    data = _tar(("./", 0o750, 999, 999, None), ("./a", 0o600, 999, 999, b"secret"))
    chunks = [data[start : start + chunk_size] for start in range(0, len(data), chunk_size)]
    sniffer = TarWatcher(iter(chunks))

    passed = list(sniffer)

    assert passed == chunks
    assert sniffer.root == RootEntry(mode=0o750, uid=999, gid=999)


def test_sniffer_finds_no_root_when_the_first_entry_is_a_file():
    data = _tar(("./a", 0o600, 1, 1, b"x"), ("./", 0o750, 999, 999, None))
    sniffer = TarWatcher(iter([data]))

    assert b"".join(sniffer) == data
    assert sniffer.root is None


def test_sniffer_of_an_empty_stream_finds_nothing():
    sniffer = TarWatcher(iter([]))

    assert list(sniffer) == []
    assert sniffer.root is None


def _archive(members: list[tuple[tarfile.TarInfo, bytes]], format: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes, uid: int = 0, gid: int = 0, data: bytes = b""):
    info = tarfile.TarInfo(name)
    info.type, info.uid, info.gid, info.size = kind, uid, gid, len(data)
    if kind == tarfile.SYMTYPE:
        info.linkname = "target"
    return info, data


@pytest.mark.parametrize("format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("chunk_size", [1, 100, 512, 4096])
def test_tar_watcher_finds_symlinks_owned_by_others(format, chunk_size):
    long_name = "./" + "d" * 150 + "/link"
    members = [
        _member(".", tarfile.DIRTYPE, 999, 999),
        _member("./file", tarfile.REGTYPE, 5, 5, b"x" * 1000),
        _member("./root-link", tarfile.SYMTYPE),
        _member("./owned-link", tarfile.SYMTYPE, 1234, 5678),
        _member("./after", tarfile.REGTYPE, data=b"y" * 513),
    ]
    if format != tarfile.USTAR_FORMAT:  # ustar cannot hold a 150-character directory name
        members.append(_member(long_name, tarfile.SYMTYPE, 7, 8))
    data = _archive(members, format)
    chunks = [data[index : index + chunk_size] for index in range(0, len(data), chunk_size)]

    watcher = TarWatcher(chunks)
    assert b"".join(watcher) == data
    assert watcher.root == RootEntry(mode=0o644, uid=999, gid=999)
    found = {(link.path, link.uid, link.gid) for link in watcher.owned_symlinks}
    expected = {("./owned-link", 1234, 5678)}
    if format != tarfile.USTAR_FORMAT:
        expected.add((long_name, 7, 8))
    assert found == expected


# --- containment: helpers ------------------------------------------------------------------

ENTRY_KINDS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
}


def entry(
    name: str,
    kind: str = "file",
    data: bytes = b"",
    link: str = "",
    mode: int = 0o644,
    pax: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = ENTRY_KINDS[kind], mode, link
    info.size = len(data) if kind == "file" else 0
    if pax:
        info.pax_headers = pax
    return info, data


def archive(*entries: tuple[tarfile.TarInfo, bytes], format: int = tarfile.PAX_FORMAT) -> bytes:
    """The members' headers and data, without the end-of-archive marker."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data else None)
        members_end = tar.offset
    return buffer.getvalue()[:members_end]


def header(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "", **fields
) -> bytes:
    """One raw header block, for headers that tarfile will not write as they are."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, size, link, 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


def with_checksum(block: bytes) -> bytes:
    """`block` with its checksum field recomputed (after editing other fields)."""
    block = block[:148] + b" " * 8 + block[156:]
    checksum = b"%06o\0 " % sum(block)
    return block[:148] + checksum + block[156:]


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def end() -> bytes:
    return bytes(2 * BLOCK)


def split(data: bytes, size: int) -> list[bytes]:
    return [data[index : index + size] for index in range(0, len(data), size)]


def watch(data: bytes, chunk_size: int = 1 << 20, **options) -> tuple[bytes, TarWatcher]:
    watcher = TarWatcher(split(data, chunk_size), archive_name="bk.tar", **options)
    return b"".join(watcher), watcher


def refused(data: bytes, error=errors.ArchiveUnsafe, chunk_size: int = 1 << 20, **options):
    """Feed `data`; return the error it raises and the bytes passed on before it."""
    passed: list[bytes] = []
    options.setdefault("archive_name", "bk.tar")
    with pytest.raises(error) as raised:
        for chunk in TarWatcher(split(data, chunk_size), **options):
            passed.append(chunk)
    return raised.value, b"".join(passed)


SYMLINK_TO_TARGET = entry("./t", "symlink", link="/target")


# --- names: absolute, `..`, reserved ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, reason",
    [
        ("/etc/x", "absolute"),
        ("../escape", "'..'"),
        ("./a/../../b", "'..'"),
        ("a/..", "'..'"),
        ("./sub/../../../etc/passwd", "'..'"),
    ],
)
@pytest.mark.parametrize("kind", ["file", "dir", "symlink", "fifo"])
def test_escaping_names_are_refused(name, reason, kind):
    data = archive(entry("./", "dir"), entry(name, kind, b"x", link="anything")) + end()

    error, _ = refused(data)

    shown = repr(name + "/" if kind == "dir" else name)  # tarfile writes directories so
    assert str(error).startswith(f"bk.tar holds an unsafe entry {shown}: ")
    assert reason in str(error)


@pytest.mark.parametrize("format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_escaping_long_names_are_refused(format):
    name = "./" + "a/" * 80 + "../" * 90 + "escape"  # needs a GNU long name or a PAX path

    error, _ = refused(archive(entry(name, data=b"x"), format=format) + end())

    assert "'..'" in str(error)


@pytest.mark.parametrize(
    "name",
    ["./ok", "ok", "./a/b/c", "a..b", "..hidden", "./...", "./dir/./x", "./dir//y", "./.x."],
)
def test_contained_names_pass(name):
    data = archive(entry("./", "dir"), entry("./dir", "dir"), entry(name, data=b"x")) + end()

    passed, _ = watch(data)

    assert passed == data


def test_a_non_directory_may_not_replace_the_root():
    error, _ = refused(archive(entry("./", "symlink", link="/")) + end())

    assert "root" in str(error)


@pytest.mark.parametrize("name", [".opskit-restore.journal", "./.opskit-restore.journal",
                                  "./.opskit-restore.journal/x"])  # fmt: skip
def test_reserved_top_level_names_are_refused(name):
    data = archive(entry(name, data=b"x")) + end()

    error, _ = refused(data, reserved_names=(".opskit-restore.journal",))

    assert "reserved" in str(error)


def test_reserved_names_below_the_top_level_pass():
    data = archive(entry("./sub/.opskit-restore.journal", data=b"x")) + end()

    passed, _ = watch(data, reserved_names=(".opskit-restore.journal",))

    assert passed == data


# --- symlinks the archive created -------------------------------------------------------------


@pytest.mark.parametrize(
    "symlink, later",
    [
        ("./t", "./t/KEEP-ME.txt"),
        ("./t", "t/KEEP-ME.txt"),
        ("t", "./t/KEEP-ME.txt"),
        ("./t/", "t//KEEP-ME.txt"),
        ("./t", "./t/./deep/er/file"),
        ("./a/b/t", "a//b/./t/x"),
    ],
)
@pytest.mark.parametrize("kind", ["file", "dir", "symlink", "hardlink", "fifo"])
def test_entries_through_an_archive_symlink_are_refused(symlink, later, kind):
    data = (
        archive(
            entry("./", "dir"),
            entry(symlink, "symlink", link="/target"),
            entry(later, kind, b"evil", link="./elsewhere"),
            entry("./elsewhere", data=b"x"),
        )
        + end()
    )

    error, passed = refused(data)

    shown = repr(later + "/" if kind == "dir" else later)  # tarfile writes directories so
    assert str(error) == (
        f"bk.tar holds an unsafe entry {shown}: it goes through the symlink {symlink!r} "
        "that the archive itself created"
    )
    assert later.encode() not in passed


@pytest.mark.parametrize("again", ["./t", "t", "./t/", "t/.", "./t//"])
@pytest.mark.parametrize("kind", ["file", "dir", "symlink", "hardlink"])
def test_replacing_an_archive_symlink_is_refused(again, kind):
    data = archive(SYMLINK_TO_TARGET, entry("./f"), entry(again, kind, link="./f")) + end()

    error, _ = refused(data)

    assert "replaces the symlink './t'" in str(error)


def test_symlinks_may_point_anywhere_and_names_beside_them_pass():
    data = (
        archive(
            entry("./", "dir"),
            entry("./abs", "symlink", link="/etc/shadow"),
            entry("./up", "symlink", link="../../../../etc"),
            entry("./dangling", "symlink", link="missing/nowhere"),
            entry("./t", "symlink", link="/target"),
            entry("./tt/file", data=b"beside t, not below it"),
            entry("./t2", data=b"x"),
            entry("./abs.d/file", data=b"x"),
        )
        + end()
    )

    passed, watcher = watch(data)

    assert passed == data
    assert watcher.setid_count == 0


# --- hardlinks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, reason",
    [
        ("../../x", "out of the target"),
        ("./a/../../x", "out of the target"),
        ("/etc/shadow", "absolute path"),
        ("./t/KEEP-ME.txt", "through the symlink './t'"),
        ("t/sub/x", "through the symlink './t'"),
        ("./", "root directory"),
    ],
)
def test_unsafe_hardlink_targets_are_refused(target, reason):
    data = archive(SYMLINK_TO_TARGET, entry("./h", "hardlink", link=target)) + end()

    error, _ = refused(data)

    assert str(error).startswith("bk.tar holds an unsafe entry './h': ")
    assert reason in str(error)


def test_a_hardlink_to_an_archive_symlink_is_a_symlink_too():
    data = (
        archive(
            SYMLINK_TO_TARGET,
            entry("./h", "hardlink", link="./t"),
            entry("./h/KEEP-ME.txt", data=b"evil"),
        )
        + end()
    )

    error, _ = refused(data)

    assert "goes through the symlink './h'" in str(error)


def test_hardlinks_to_contained_files_pass():
    data = (
        archive(
            entry("./", "dir"),
            entry("./sub/file", data=b"x"),
            entry("./link", "hardlink", link="./sub/file"),
            entry("./sub/link2", "hardlink", link="sub/file"),
        )
        + end()
    )

    assert watch(data)[0] == data


@pytest.mark.parametrize("format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_hardlink_targets_come_from_longlink_or_pax_linkpath(format):
    target = "./" + "a/" * 60 + "../" * 70 + "x"  # longer than the 100-byte linkname field

    error, _ = refused(archive(entry("./h", "hardlink", link=target), format=format) + end())

    assert "out of the target" in str(error)


def test_a_pax_linkpath_overrides_an_innocent_linkname():
    data = archive(entry("./h", "hardlink", link="./ok", pax={"linkpath": "../../x"})) + end()

    error, _ = refused(data)

    assert "out of the target" in str(error)


# --- names from PAX, GNU long names, the ustar prefix: every one is checked -------------------


def test_a_pax_path_is_checked():
    data = archive(entry("./innocent", data=b"x", pax={"path": "../../etc/cron.d/x"})) + end()

    error, _ = refused(data)

    assert "'../../etc/cron.d/x'" in str(error)


@pytest.mark.parametrize("format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_the_truncated_ustar_copy_of_a_long_name_is_not_judged(format):
    """Every extractor uses the long name or PAX path; the header's own name field then
    holds its first 100 bytes, here ending in `/` (a file named like a directory)."""
    name = "./" + "a" * 97 + "/file"
    data = archive(entry(name, data=b"x" * 600), format=format) + end()

    assert watch(data)[0] == data


def test_the_name_with_and_without_the_ustar_prefix_is_checked():
    block = bytearray(header("t/KEEP-ME.txt", size=4))
    block[345:350] = b"inner"  # the prefix field: `inner/t/KEEP-ME.txt` to tarfile
    data = header("./t", tarfile.SYMTYPE, link="/target")
    data = data + with_checksum(bytes(block)) + padded(b"evil") + end()

    error, _ = refused(data)

    assert "through the symlink './t'" in str(error)


def test_a_global_pax_header_that_sets_a_path_is_refused():
    info = tarfile.TarInfo("./file")
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"path": "../x"}
    ) as tar:
        tar.addfile(info)

    error, _ = refused(buffer.getvalue())

    assert str(error) == ("bk.tar holds a global PAX header that sets 'path' for every later entry")


def test_a_global_pax_header_with_a_comment_passes():
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "git 1a2b"}
    ) as tar:
        tar.addfile(tarfile.TarInfo("./file"))

    assert watch(buffer.getvalue())[0] == buffer.getvalue()


# --- special files ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind, word", [("char", "character device"), ("block", "block device")])
def test_device_nodes_are_refused_unless_allowed(kind, word):
    data = archive(entry("./", "dir"), entry("./dev/null", kind)) + end()

    error, _ = refused(data)

    assert str(error) == (
        f"bk.tar holds an unsafe entry './dev/null': it is a {word} node: "
        "pass --allow-devices to restore device nodes"
    )
    assert watch(data, allow_devices=True)[0] == data


def test_fifos_pass():
    data = archive(entry("./pipe", "fifo")) + end()

    assert watch(data)[0] == data


def test_setid_files_are_counted_and_the_first_ones_named():
    files = [entry(f"./bin/tool{index}", data=b"x", mode=0o4755) for index in range(MAX_NAMED + 5)]
    others = [
        entry("./bin/sgid", data=b"x", mode=0o2711),
        entry("./shared", "dir", mode=0o2775),  # a setgid directory is not a setid file
        entry("./plain", data=b"x", mode=0o755),
        entry("./bin/sticky", data=b"x", mode=0o1755),
    ]
    data = archive(*others, *files) + end()

    passed, watcher = watch(data)

    assert passed == data
    assert watcher.setid_count == MAX_NAMED + 6
    assert len(watcher.setid_files) == MAX_NAMED
    assert watcher.setid_files[:2] == ["./bin/sgid", "./bin/tool0"]


# --- no parser gap: what busybox, GNU tar and the engine could read differently ---------------


def test_garbage_where_a_header_belongs_is_corrupt():
    error, _ = refused(archive(entry("./a", data=b"x")) + b"garbage" * 100, errors.ArchiveCorrupt)

    assert str(error).startswith("bk.tar is corrupt: a tar header with a wrong checksum")
    assert "at byte 1024" in str(error)


def test_a_signed_checksum_as_old_sun_tars_wrote_it_passes():
    block = bytearray(header("./caf\xe9", size=0))
    block[148:156] = b" " * 8
    signed = sum(byte - 256 if byte > 127 else byte for byte in block)
    block[148:156] = b"%06o\0 " % signed
    data = bytes(block) + end()

    assert watch(data)[0] == data


def test_a_bad_checksum_is_corrupt():
    block = bytearray(header("./a"))
    block[0:1] = b"b"

    refused(bytes(block) + end(), errors.ArchiveCorrupt)


@pytest.mark.parametrize("size_field", [b"+0000001000\0", b"0o000001000\0", b"00000_01000\0",
                                        b"-0000001000\0", b"\xff" * 12])  # fmt: skip
def test_size_fields_that_only_tarfile_reads_are_corrupt(size_field):
    block = bytearray(header("./a"))
    block[124:136] = size_field

    error, _ = refused(with_checksum(bytes(block)) + bytes(1024), errors.ArchiveCorrupt)

    assert "invalid tar header" in str(error) or "size field" in str(error)


def test_a_base256_size_passes():
    block = bytearray(header("./a"))
    block[124:136] = b"\x80" + (600).to_bytes(11, "big")
    data = with_checksum(bytes(block)) + padded(b"y" * 600) + archive(entry("./b")) + end()

    passed, _ = watch(data)

    assert passed == data


@pytest.mark.parametrize("kind", [tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                                  tarfile.FIFOTYPE, tarfile.CHRTYPE])  # fmt: skip
def test_header_only_entries_with_a_size_are_corrupt(kind):
    """busybox and the engine skip no data for them; hiding a header there is easy."""
    hidden = header("./HIDDEN", size=5) + padded(b"evil\n")
    data = header("./d", kind, size=len(hidden), link="./x") + hidden + end()

    error, _ = refused(data, errors.ArchiveCorrupt, allow_devices=True)

    assert "declares 1024 bytes" in str(error)


def test_a_file_named_like_a_directory_with_data_is_corrupt():
    """Measured: GNU tar makes a directory (no data), busybox and the engine a file."""
    hidden = header("./HIDDEN", size=5) + padded(b"evil\n")
    data = header("./d/", tarfile.REGTYPE, size=len(hidden)) + hidden + end()

    error, _ = refused(data, errors.ArchiveCorrupt)

    assert "named like a directory" in str(error)


def test_a_header_without_a_name_is_corrupt():
    """busybox takes it for half an end marker and reads the next block as a header."""
    hidden = header("./HIDDEN", size=5) + padded(b"evil\n")
    block = bytearray(header("x", size=len(hidden)))
    block[0] = 0

    error, _ = refused(with_checksum(bytes(block)) + hidden + end(), errors.ArchiveCorrupt)

    assert "without a name" in str(error)


@pytest.mark.parametrize("kind", [b"D", b"M", b"V", b"N", b"Z"])
def test_entry_types_opskit_does_not_restore_are_corrupt(kind):
    error, _ = refused(header("./odd", kind) + end(), errors.ArchiveCorrupt)

    assert "opskit does not restore" in str(error)


def test_a_metadata_payload_over_the_limit_is_corrupt():
    data = header("././@LongLink", tarfile.GNUTYPE_LONGNAME, size=MAX_METADATA + 1)

    error, _ = refused(data, errors.ArchiveCorrupt)

    assert "metadata header" in str(error)


def test_a_big_pax_header_within_the_limit_passes():
    xattr = "v" * (MAX_METADATA - 1000)
    data = archive(entry("./big", data=b"x", pax={"SCHILY.xattr.user.big": xattr})) + end()

    assert watch(data, chunk_size=4096)[0] == data


def test_two_pax_headers_for_one_entry_are_corrupt():
    records = padded(b"14 path=./ok1\n")
    first = header("././@PaxHeader", tarfile.XHDTYPE, size=14)
    data = first + records + first + records + header("./x") + end()

    error, _ = refused(data, errors.ArchiveCorrupt)

    assert "two metadata headers" in str(error)


@pytest.mark.parametrize(
    "records",
    [b"12 path=./ok\n", b"x3 path=./ok\n", b"12path=./ok\n", b"14 path./ok1\n", b"99 path=ok\n"],
)
def test_malformed_pax_records_are_corrupt(records):
    data = header("././@PaxHeader", tarfile.XHDTYPE, size=len(records)) + padded(records)

    error, _ = refused(data + header("./x") + end(), errors.ArchiveCorrupt)

    assert "malformed PAX header" in str(error)


def test_a_pax_size_busybox_would_ignore_is_refused_unless_the_extractor_reads_it():
    """busybox takes the header's size (0) and reads the 'data' as headers (measured)."""
    hidden = header("./HIDDEN", size=5) + padded(b"evil\n")
    records = b"13 size=1024\n"
    pax = header("././@PaxHeader", tarfile.XHDTYPE, size=len(records)) + padded(records)
    data = pax + header("./outer", size=0) + hidden + end()

    error, _ = refused(data)

    assert "only a PAX record gives its size" in str(error)
    passed, _ = watch(data, extractor_reads_pax_size=True)
    assert passed == data


def test_a_huge_file_from_gnu_tar_is_skipped_by_its_pax_size():
    records = b"19 size=9663676416\n"  # GNU tar writes this, and 0 in the header (measured)
    pax = header("././@PaxHeader", tarfile.XHDTYPE, size=len(records)) + padded(records)
    data = pax + header("./huge", size=0) + bytes(8 * BLOCK)

    watcher = TarWatcher([data], extractor_reads_pax_size=True)
    assert b"".join(watcher) == data
    assert watcher._skip == 9663676416 - 8 * BLOCK


# --- the end of the archive -------------------------------------------------------------------


def test_entries_after_the_end_marker_are_not_passed_on():
    good = archive(entry("./a", data=b"x")) + end()
    hostile = archive(SYMLINK_TO_TARGET, entry("./t/KEEP-ME.txt", data=b"evil")) + end()
    consumed = []

    def chunks():
        for chunk in split(good + bytes(BLOCK * 6) + hostile, 700):
            consumed.append(chunk)
            yield chunk

    watcher = TarWatcher(chunks())
    passed = b"".join(watcher)

    assert passed == good + bytes(BLOCK * 6)
    assert b"".join(consumed) == good + bytes(BLOCK * 6) + hostile, "read to the end"
    assert watcher.ignored_after_end == len(hostile)


def test_after_a_lone_zero_block_nothing_more_is_passed_on():
    """busybox reads on after one zero block; GNU tar stops; the engine fails."""
    good = archive(entry("./a", data=b"x"))
    hostile = archive(SYMLINK_TO_TARGET, entry("./t/KEEP-ME.txt", data=b"evil")) + end()

    for chunk_size in (1, 511, 512, 1 << 20):
        passed, watcher = watch(good + bytes(BLOCK) + hostile, chunk_size)
        assert passed == good + bytes(BLOCK), chunk_size
        assert watcher.ignored_after_end == len(hostile)


def test_trailing_zeros_after_the_end_marker_pass():
    data = archive(entry("./a", data=b"x")) + bytes(10240)

    assert watch(data, chunk_size=333)[0] == data


# --- raising before the offending header reaches the helper ----------------------------------


@pytest.mark.parametrize("chunk_size", [1, 7, 511, 512, 513, 4096, 1 << 20])
def test_the_chunk_with_the_offending_header_is_not_passed_on(chunk_size):
    data = archive(
        entry("./", "dir"),
        entry("./a", data=b"a" * 3000),
        SYMLINK_TO_TARGET,
        entry("./t/KEEP-ME.txt", data=b"evil"),
    )
    offending = data.index(b"./t/KEEP-ME.txt")  # inside its PAX or ustar header block
    offending = offending // BLOCK * BLOCK

    _, passed = refused(data + end(), chunk_size=chunk_size)

    assert data.startswith(passed)
    assert len(passed) < offending + BLOCK, "the whole offending header was passed on"
    assert len(passed) > offending - chunk_size - BLOCK, "chunks before it were held back"


def test_names_in_messages_are_escaped():
    name = "./t/\x1b[31mred\x9b\udcff"
    data = archive(SYMLINK_TO_TARGET, entry(name, data=b"x")) + end()

    error, _ = refused(data, archive_name="bk\x1b]0;title\x07.tar")
    message = str(error)

    assert "\x1b" not in message and "\x9b" not in message and "\x07" not in message
    assert "'./t/\\x1b[31mred\\x9b\\xff'" in message
    assert message.startswith("bk\\x1b]0;title\\x07.tar holds")


# --- chunk boundaries ------------------------------------------------------------------------


MIXED = (
    archive(
        entry("./", "dir", mode=0o750),
        entry("./" + "long/" * 40 + "file", data=b"z" * 700),
        entry("./s", "symlink", link="/anywhere"),
        entry("./sub/setuid", data=b"x" * 513, mode=0o4755),
        entry("./h", "hardlink", link="./sub/setuid"),
        entry("./x", data=b"q" * 20, pax={"SCHILY.xattr.user.a": "b" * 3000}),
    )
    + end()
)
HOSTILE = (
    archive(
        entry("./", "dir"),
        entry("./" + "long/" * 40 + "file", data=b"z" * 700),
        SYMLINK_TO_TARGET,
        entry("./t/KEEP-ME.txt", data=b"evil"),
    )
    + end()
)


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(MIXED)), max_size=40))
def test_any_chunking_passes_the_same_bytes_and_finds_the_same(cuts):
    bounds = sorted({0, len(MIXED), *cuts})
    chunks = [MIXED[start:stop] for start, stop in zip(bounds, bounds[1:], strict=False)]
    watcher = TarWatcher(chunks)

    assert b"".join(watcher) == MIXED
    assert watcher.root == RootEntry(mode=0o750, uid=0, gid=0)
    assert (watcher.setid_count, watcher.setid_files) == (1, ["./sub/setuid"])


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(HOSTILE)), max_size=40))
def test_any_chunking_of_a_hostile_archive_is_refused(cuts):
    bounds = sorted({0, len(HOSTILE), *cuts})
    chunks = [HOSTILE[start:stop] for start, stop in zip(bounds, bounds[1:], strict=False)]

    with pytest.raises(errors.ArchiveUnsafe, match="goes through the symlink './t'"):
        for _ in TarWatcher(chunks):
            pass


# --- archives written by real GNU tar ---------------------------------------------------------


def _gnu_tar(*arguments: str, cwd: Path) -> None:
    tar = shutil.which("tar")
    version = subprocess.run([tar or "tar", "--version"], capture_output=True, text=True)
    if "GNU tar" not in version.stdout:
        pytest.fail("these tests need GNU tar as `tar` (Debian: apt-get install tar)")
    subprocess.run([tar or "tar", *arguments], cwd=cwd, check=True, capture_output=True)


def _set_xattrs_and_acl(path: Path) -> None:
    for command in (
        ["setfattr", "-n", "user.note", "-v", "n" * 3000, str(path)],
        ["setfacl", "-m", "u:1234:rwx", str(path)],
    ):
        if shutil.which(command[0]) is None:
            pytest.fail(f"these tests need {command[0]} (apt-get install -y attr acl)")
        subprocess.run(command, check=True, capture_output=True)


@pytest.fixture(scope="module")
def gnu_tree(tmp_path_factory) -> Path:
    """A tree with what GNU tar writes special headers for: sparse files (one with many
    holes, for old GNU sparse extension blocks), xattrs, ACLs, long names, links, a FIFO."""
    root = tmp_path_factory.mktemp("gnu") / "src"
    (root / "sub").mkdir(parents=True)
    with open(root / "sparse", "wb") as sparse:
        sparse.truncate(20 << 20)
        sparse.seek(20 << 20)
        sparse.write(b"tail")
    with open(root / "holes", "wb") as holes:
        for index in range(30):  # more than the 4 + 21 map entries one header holds
            holes.seek(index * (1 << 16))
            holes.write(b"data")
        holes.truncate(31 << 16)
    (root / "sub" / "file").write_bytes(b"hello\n")
    (root / "sub" / "file").chmod(0o4755)
    _set_xattrs_and_acl(root / "sub" / "file")
    long_dir = root / ("d" * 120) / ("e" * 120)
    long_dir.mkdir(parents=True)
    (long_dir / "file").write_bytes(b"deep\n")
    (root / "abs-link").symlink_to("/etc/passwd")
    (root / "dangling").symlink_to("missing")
    (root / "hard").hardlink_to(root / "sub" / "file")
    os.mkfifo(root / "fifo")
    return root


GNU_FORMATS = {
    "posix": ["--format=posix", "--xattrs", "--acls", "--sparse"],
    "gnu": ["--format=gnu", "--sparse"],
}


@pytest.fixture(scope="module", params=list(GNU_FORMATS))
def gnu_archive(request, gnu_tree) -> bytes:
    path = gnu_tree.parent / f"{request.param}.tar"
    _gnu_tar(*GNU_FORMATS[request.param], "-cf", str(path), "-C", str(gnu_tree), ".", cwd=gnu_tree)
    return path.read_bytes()


@pytest.mark.parametrize("chunk_size", [1, 511, 1 << 20])
def test_gnu_tar_archives_pass_unchanged(gnu_archive, chunk_size):
    passed, watcher = watch(gnu_archive, chunk_size)

    assert passed == gnu_archive
    assert watcher.root is not None
    assert watcher.setid_files == ["./sub/file"]
    assert watcher.ignored_after_end == 0


def test_gnu_tar_archives_hold_the_headers_these_tests_are_about(gnu_archive):
    if b"GNU.sparse" in gnu_archive:
        assert b"SCHILY.xattr.user.note" in gnu_archive and b"GNU.sparse.name" in gnu_archive
    else:
        types = {info.type for info in tarfile.open(fileobj=io.BytesIO(gnu_archive))}
        assert tarfile.GNUTYPE_SPARSE in types
        assert b"././@LongLink" in gnu_archive


@pytest.mark.parametrize("chunk_size", [1, 511, 1 << 20])
def test_a_hostile_tail_after_gnu_tar_headers_is_still_seen(gnu_archive, chunk_size):
    """The watcher stays in step through sparse maps, xattrs and long names."""
    with tarfile.open(fileobj=io.BytesIO(gnu_archive)) as tar:
        tar.getmembers()
        end_of_members = tar.offset
    hostile = archive(SYMLINK_TO_TARGET, entry("./t/KEEP-ME.txt", data=b"evil")) + end()

    error, _ = refused(gnu_archive[:end_of_members] + hostile, chunk_size=chunk_size)

    assert "goes through the symlink './t'" in str(error)
