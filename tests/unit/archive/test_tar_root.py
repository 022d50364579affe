"""Reading the tar stream's root entry (`./`) so the restore can give the target root its mode
and owner."""

from __future__ import annotations

import io
import tarfile

import pytest

from opskit.archive.tar_root import BLOCK, RootEntry, TarWatcher


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


@pytest.mark.parametrize("block", [b"\0" * BLOCK, b"garbage" * 100], ids=["zeros", "garbage"])
def test_parse_root_header_returns_none_for_a_non_header(block):
    assert parse_root_header(block[:BLOCK]) is None


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
